//! The seed corpus of every fuzz target, made here so that anyone can see what each
//! seed is: for each target a few valid inputs (so the fuzzer starts past the first
//! checks) and a few hostile ones (each named after the attack it tries). Each input
//! format is the one the target's `fuzz_entry` function documents.

use pv_abi::device::block::{BlockRequest, BLOCK_MAX_SEGMENTS, BLOCK_OP_FLUSH, BLOCK_OP_READ, BLOCK_OP_WRITE};
use pv_abi::device::console::{ConsoleRequest, CONSOLE_CHUNK};
use pv_abi::device::net::{NetRxRequest, NetTxRequest};
use pv_abi::grant::{GrantFlags, GRANT_ENTRY_SIZE, GRANT_TABLE_FRAMES};
use pv_abi::layout::{KERNEL_VIRT_BASE, PAGE_SIZE};
use pv_abi::ring::RingEntry;

/// (target, seed name, bytes) for every seed.
pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, bytes) in elf() {
        out.push(("elf", name, bytes));
    }
    for (name, bytes) in hypercalls(false) {
        out.push(("hypercall_ept", name, bytes));
    }
    for (name, bytes) in hypercalls(true) {
        out.push(("hypercall_shadow", name, bytes));
    }
    for (name, bytes) in snapshot_file() {
        out.push(("snapshot_file", name, bytes));
    }
    for (name, bytes) in control_request() {
        out.push(("control_request", name, bytes));
    }
    for (name, bytes) in block_request() {
        out.push(("block_request", name, bytes));
    }
    for (name, bytes) in console_request() {
        out.push(("console_request", name, bytes));
    }
    for (name, bytes) in net_request() {
        out.push(("net_request", name, bytes));
    }
    for (name, bytes) in balloon_request() {
        out.push(("balloon_request", name, bytes));
    }
    for (name, bytes) in ring_back() {
        out.push(("ring_back", name, bytes));
    }
    for (name, bytes) in shadow_mmu() {
        out.push(("shadow_mmu", name, bytes));
    }
    for (name, bytes) in migration_stream() {
        out.push(("migration_stream", name, bytes));
    }
    for (name, bytes) in record_log() {
        out.push(("record_log", name, bytes));
    }
    out
}

// ---- elf --------------------------------------------------------------------------

/// A program header: (type, flags, offset, paddr, file size, memory size); the
/// virtual address is the kernel map's.
type Phdr = (u32, u32, u64, u64, u64, u64);

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const KERNEL_AT: u64 = 0x20_0000;

/// An x86-64 executable with these program headers, `entry` and `body` after the table.
fn elf_file(entry: u64, phdrs: &[Phdr], body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&entry.to_le_bytes());
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&64u16.to_le_bytes());
    f.extend_from_slice(&56u16.to_le_bytes());
    f.extend_from_slice(&(phdrs.len() as u16).to_le_bytes());
    f.extend_from_slice(&[64, 0, 0, 0, 0, 0]);
    for &(kind, flags, offset, paddr, filesz, memsz) in phdrs {
        f.extend_from_slice(&kind.to_le_bytes());
        f.extend_from_slice(&flags.to_le_bytes());
        f.extend_from_slice(&offset.to_le_bytes());
        f.extend_from_slice(&KERNEL_VIRT_BASE.wrapping_add(paddr).to_le_bytes());
        f.extend_from_slice(&paddr.to_le_bytes());
        f.extend_from_slice(&filesz.to_le_bytes());
        f.extend_from_slice(&memsz.to_le_bytes());
        f.extend_from_slice(&PAGE_SIZE.to_le_bytes());
    }
    f.extend_from_slice(body);
    f
}

fn elf() -> Vec<(&'static str, Vec<u8>)> {
    let entry = KERNEL_VIRT_BASE + KERNEL_AT;
    // `hlt; jmp $-1`
    let code = [0xf4, 0xeb, 0xfd];
    let text_at = 64 + 2 * 56;
    let two = [(PT_LOAD, PF_R | PF_X, text_at, KERNEL_AT, 3, 3), (PT_LOAD, PF_R | PF_W, text_at, KERNEL_AT + 0x1000, 0, 0x2000)];
    let mut truncated = elf_file(entry, &two, &code);
    truncated.truncate(100);
    vec![
        ("text-and-bss", elf_file(entry, &two, &code)),
        ("one-segment", elf_file(entry, &[(PT_LOAD, PF_R | PF_X, 64 + 56, KERNEL_AT, 3, 0x1000)], &code)),
        // A legal zero-size segment inside the text page (issue 14, item 6).
        ("hostile-empty-segment-in-text-page", elf_file(entry, &[two[0], (PT_LOAD, PF_R, text_at, KERNEL_AT + 0x10, 0, 0)], &code)),
        ("hostile-overlapping-segments", elf_file(entry, &[two[0], (PT_LOAD, PF_R | PF_W, text_at, KERNEL_AT + 0x800, 0, 0x1000)], &code)),
        ("hostile-data-past-end-of-file", elf_file(entry, &[(PT_LOAD, PF_R | PF_X, 0x10_0000, KERNEL_AT, 0x1000, 0x1000)], &code)),
        ("hostile-segment-beyond-ram", elf_file(entry, &[(PT_LOAD, PF_R | PF_X, 64 + 56, u64::MAX - 0xfff, 3, 0x2000)], &code)),
        ("hostile-entry-outside-text", elf_file(entry + 0x10_0000, &two, &code)),
        ("hostile-truncated-program-headers", truncated),
        ("hostile-not-elf", b"#!/bin/sh\necho hello\n".to_vec()),
        ("hostile-many-program-headers", elf_file(entry, &[(6, 0, 0, 0, 0, 0); 300], &code)),
    ]
}

// ---- hypercalls -------------------------------------------------------------------

/// Builds the step language of `hv::fuzz_entry::hypercalls`.
#[derive(Default)]
struct Steps(Vec<u8>);

/// An argument: (selector, payload) as `fuzz_entry::argument` reads it.
#[derive(Clone, Copy)]
enum Arg {
    Small(u16),
    PoolEntry(u16),
    BelowRamEnd(u16),
    Raw(u64),
}

impl Steps {
    fn arg(&mut self, a: Arg) {
        match a {
            Arg::Small(v) => self.0.extend([0, v as u8, (v >> 8) as u8]),
            Arg::PoolEntry(v) => self.0.extend([1, v as u8, (v >> 8) as u8]),
            Arg::BelowRamEnd(v) => self.0.extend([2, v as u8, (v >> 8) as u8]),
            Arg::Raw(v) => {
                self.0.push(3);
                self.0.extend(v.to_le_bytes());
            }
        }
    }
    fn store(mut self, at: Arg, bytes: &[u8]) -> Self {
        self.0.push(0);
        self.arg(at);
        self.0.push(bytes.len() as u8);
        self.0.extend(bytes);
        self
    }
    fn call(mut self, nr: u8, args: [Arg; 4]) -> Self {
        self.0.extend([1, nr]);
        for a in args {
            self.arg(a);
        }
        self
    }
    fn batch(mut self, writes: &[(u16, Arg, u8)]) -> Self {
        self.0.extend([2, writes.len() as u8]);
        for &(entry, value, low) in writes {
            self.0.extend(entry.to_le_bytes());
            self.arg(value);
            self.0.push(low);
        }
        self
    }
    fn trapped(mut self, at: Arg, bytes: &[u8]) -> Self {
        self.0.push(3);
        self.arg(at);
        self.0.push(bytes.len() as u8 - 1);
        self.0.extend(bytes);
        self
    }
}

fn hypercalls(shadow: bool) -> Vec<(&'static str, Vec<u8>)> {
    use Arg::*;
    let z = Small(0);
    // Entry 0 of the pool's first page points at its second page (a table), entry 512
    // (second page) maps a data page: a connected tree the engine shadows.
    let tree = Steps::default()
        .call(6, [PoolEntry(0), z, z, z])
        .batch(&[(0, PoolEntry(512), 7), (512, Small(0x3000), 3), (1, Raw(0x8000_0000_0020_0083), 0)])
        .call(6, [PoolEntry(0), z, z, z]);
    let mut seeds = vec![
        ("console-write", Steps::default().store(Small(0x100), b"hello, world\n").call(1, [Small(0x100), Small(13), z, z]).0),
        ("shutdown-with-counters", Steps::default().call(0, [z; 4]).call(2, [Small(0), Small(0x200), z, z]).0),
        ("page-table-tree", tree.0),
        ("hostile-escape-sequences-in-a-panic", Steps::default().store(Small(0x100), b"\x1b]52;c;aGk=\x07\x9b2J\r").call(3, [Small(0x100), Small(13), z, z]).0),
        ("hostile-console-write-past-ram", Steps::default().call(1, [BelowRamEnd(4), Small(64), z, z]).call(1, [Raw(u64::MAX - 3), Small(8), z, z]).0),
        ("hostile-huge-lengths", Steps::default().call(1, [z, Raw(u64::MAX), z, z]).call(5, [z, Raw(1 << 40), z, z]).0),
        ("hostile-unknown-numbers", Steps::default().call(7, [z; 4]).call(9, [Raw(u64::MAX); 4]).0),
        ("hostile-batch-outside-the-pool", Steps::default().batch(&[(0, Small(7), 0)]).store(Small(0x1000), &0x2000u64.to_le_bytes()).call(5, [Small(0x1000), Small(1), z, z]).0),
        ("hostile-misaligned-cr3", Steps::default().call(6, [Raw(pv_abi::layout::pt_pool(8 << 20).start.raw() + 8), z, z, z]).call(6, [Raw(u64::MAX), z, z, z]).0),
        ("hostile-exception-vector", Steps::default().call(4, [Raw(u64::MAX), z, z, z]).0),
    ];
    if shadow {
        seeds.push((
            "trapped-stores",
            Steps::default()
                .call(6, [PoolEntry(0), z, z, z])
                .trapped(PoolEntry(0), &0x1234_5007u64.to_le_bytes())
                .trapped(PoolEntry(1), &[0xff])
                .0,
        ));
        // A store straddling two entries, and one at the very end of the pool (issue 14, item 2).
        let pool_end = pv_abi::layout::pt_pool(8 << 20).end.raw();
        seeds.push((
            "hostile-straddling-stores",
            Steps::default()
                .call(6, [PoolEntry(0), z, z, z])
                .trapped(PoolEntry(0), &[0; 1])
                .trapped(Raw(pool_end - 4), &[0xff; 8])
                .0,
        ));
    }
    seeds
}

// ---- snapshot file ----------------------------------------------------------------

/// A real snapshot of an all-zero 8 MiB guest, as `snapshot_file::write` makes it, cut
/// at the end of its stored data (the target's mode bit 1 extends it with a hole).
fn real_snapshot(stored_page: Option<u64>) -> Vec<u8> {
    real_snapshot_of(seed_state(), stored_page)
}

/// [`real_snapshot`] of `state`.
fn real_snapshot_of(state: hv::state::VmState, stored_page: Option<u64>) -> Vec<u8> {
    use hv::state::snapshot_file;
    let ram = hv::memory::GuestRam::new(8 << 20).expect("8 MiB");
    if let Some(page) = stored_page {
        ram.write(pv_abi::addr::PseudoPhys::new(page * PAGE_SIZE), b"stored page").expect("inside RAM");
    }
    let path = std::env::temp_dir().join(format!("hv-seed-snapshot-{}-{}", std::process::id(), stored_page.unwrap_or(u64::MAX)));
    snapshot_file::write(&path, state, &ram).expect("writing a snapshot");
    let mut bytes = std::fs::read(&path).expect("reading it back");
    let _ = std::fs::remove_file(&path);
    let memory_off = u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes"));
    let keep = memory_off + stored_page.map_or(0, |p| (p + 1) * PAGE_SIZE);
    bytes.truncate(keep as usize);
    bytes
}

/// The VM state of an all-zero 8 MiB ept guest with a network device (guest 0 of a
/// switch), as a snapshot or a migration carries it.
fn seed_state() -> hv::state::VmState {
    let pool = pv_abi::layout::pt_pool(8 << 20);
    let vcpu = hv::kvm::vcpu_state::VcpuState {
        mp_state: Default::default(),
        regs: Default::default(),
        sregs: Default::default(),
        xsave: Default::default(),
        xcrs: Default::default(),
        debugregs: Default::default(),
        lapic: Default::default(),
        msrs: vec![(0xc000_0080, 0xd01)],
        events: Default::default(),
        tsc_khz: 0,
    };
    hv::state::VmState {
        mmu: pv_abi::MmuMode::Ept as u32,
        ram_bytes: 8 << 20,
        guest_root: pool.start.raw(),
        cross_mode_safe: true,
        vcpu,
        rings: Default::default(),
        disk: None,
        notify_always: false,
        guest_args: vec!["seed".into()],
        balloon: None,
        net: Some(hv::devices::net::NetSaved {
            mac: pv_abi::device::net::guest_mac(0),
            ipv4: [10, 0, 0, 2],
            prefix_len: 24,
            gateway: [10, 0, 0, 1],
            tx: 300,
            rx: 41,
        }),
    }
}

fn snapshot_file() -> Vec<(&'static str, Vec<u8>)> {
    let with_mode = |mode: u8, file: &[u8]| [&[mode][..], file].concat();
    let valid = real_snapshot(None);
    let one_page = real_snapshot(Some(3));
    let mut bad_version = valid.clone();
    bad_version[8] = 99;
    let mut huge_state = valid.clone();
    huge_state[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut memory_overlaps_state = valid.clone();
    memory_overlaps_state[32..40].copy_from_slice(&PAGE_SIZE.to_le_bytes());
    let mut garbage_state = valid.clone();
    for b in &mut garbage_state[PAGE_SIZE as usize..PAGE_SIZE as usize + 64] {
        *b = 0xff;
    }
    // A network device with a multicast MAC (bit 0 of the first byte), written by
    // `snapshot_file::write` itself so that every checksum is right: only the check of
    // the state's values can refuse it.
    let mut multicast = seed_state();
    if let Some(net) = multicast.net.as_mut() {
        net.mac[0] |= 1;
    }
    let multicast_mac = real_snapshot_of(multicast, None);
    let mut long_prefix = seed_state();
    if let Some(net) = long_prefix.net.as_mut() {
        net.prefix_len = 33;
    }
    let long_prefix = real_snapshot_of(long_prefix, None);
    vec![
        ("zero-ram", with_mode(3, &valid)),
        ("one-stored-page", with_mode(3, &one_page)),
        ("hostile-truncated", with_mode(0, &valid)),
        ("hostile-wrong-version", with_mode(3, &bad_version)),
        ("hostile-huge-state-length", with_mode(3, &huge_state)),
        ("hostile-memory-over-the-state", with_mode(3, &memory_overlaps_state)),
        ("hostile-garbage-state", with_mode(3, &garbage_state)),
        ("hostile-net-multicast-mac", with_mode(3, &multicast_mac)),
        ("hostile-net-prefix-33", with_mode(3, &long_prefix)),
        ("hostile-not-a-snapshot", with_mode(2, &[0u8; 5000])),
    ]
}

// ---- control socket ---------------------------------------------------------------

fn control_request() -> Vec<(&'static str, Vec<u8>)> {
    let lines = |l: &[&str]| l.iter().map(|s| format!("{s}\n")).collect::<String>().into_bytes();
    let mut too_long = vec![b'{'; hv::control::protocol::MAX_LINE + 10];
    too_long.push(b'\n');
    vec![
        ("every-command", lines(&[
            r#"{"v":1,"cmd":"status"}"#,
            r#"{"v":1,"cmd":"pause"}"#,
            r#"{"v":1,"cmd":"resume"}"#,
            r#"{"v":1,"cmd":"stats"}"#,
            "{\"v\":1,\"cmd\":\"snapshot\",\"file\":\"/tmp/x.hvsnap\",\"stop\":true}\r",
        ])),
        ("hostile-envelopes", lines(&[
            "",
            "[1,2,3]",
            r#"{"cmd":"status"}"#,
            r#"{"v":2,"cmd":"status"}"#,
            r#"{"v":"1","cmd":"status"}"#,
            r#"{"v":1,"cmd":7}"#,
            r#"{"v":1,"cmd":"reboot"}"#,
            r#"{"v":1,"cmd":"snapshot"}"#,
            r#"{"v":1,"cmd":"snapshot","file":3,"stop":"yes","extra":null}"#,
        ])),
        ("hostile-deep-nesting", format!("{}\n", "[".repeat(10_000)).into_bytes()),
        ("hostile-not-utf8", b"{\"v\":1,\"cmd\":\"\xff\xfe\"}\n".to_vec()),
        ("hostile-line-too-long", too_long),
        ("hostile-unterminated", br#"{"v":1,"cmd":"status"}"#.to_vec()),
    ]
}

// ---- block requests ---------------------------------------------------------------

/// The first frame of the grant table in the fuzz targets' 64-page model memory: its
/// top `GRANT_TABLE_FRAMES` pages.
const MODEL_GRANT_TABLE_FRAME: u64 = 64 - GRANT_TABLE_FRAMES as u64;

/// The grant-table prefix of a `block_request` input: entry `i` of `grants` grants frame
/// `frame` with `flags`; the table holds 24 entries.
fn grant_table(grants: &[(usize, u32, u64)]) -> Vec<u8> {
    let mut table = vec![0u8; 24 * GRANT_ENTRY_SIZE];
    for &(i, flags, frame) in grants {
        table[i * GRANT_ENTRY_SIZE..i * GRANT_ENTRY_SIZE + 4].copy_from_slice(&flags.to_le_bytes());
        table[i * GRANT_ENTRY_SIZE + 8..i * GRANT_ENTRY_SIZE + 16].copy_from_slice(&frame.to_le_bytes());
    }
    table
}

fn block(id: u64, op: u8, sector: u64, nr_sectors: u32, grefs: &[u32]) -> Vec<u8> {
    let mut g = [0; BLOCK_MAX_SEGMENTS];
    g[..grefs.len().min(BLOCK_MAX_SEGMENTS)].copy_from_slice(&grefs[..grefs.len().min(BLOCK_MAX_SEGMENTS)]);
    let request = BlockRequest { id, sector, op, nr_segments: grefs.len() as u8, nr_sectors, grefs: g };
    let mut out = vec![0u8; BlockRequest::SIZE];
    request.encode(&mut out);
    out
}

fn block_request() -> Vec<(&'static str, Vec<u8>)> {
    let permit = GrantFlags::PERMIT_ACCESS.bits();
    let read_only = GrantFlags::READ_ONLY.bits();
    // Entry 4 grants the grant table's own first frame (the model memory's top 4 pages
    // hold the table, `backend_drivers::fuzz_entry`); entry 5 a frame past the memory.
    let table = grant_table(&[(1, permit, 3), (2, permit, 4), (3, permit | read_only, 5), (4, permit, MODEL_GRANT_TABLE_FRAME), (5, permit, 64)]);
    let input = |ro: u8, sectors: u64, requests: &[Vec<u8>]| [table.clone(), vec![ro], sectors.to_le_bytes().to_vec(), requests.concat()].concat();
    vec![
        ("read-write-flush", input(0, 64, &[block(1, BLOCK_OP_WRITE, 0, 8, &[1]), block(2, BLOCK_OP_READ, 0, 12, &[1, 2]), block(3, BLOCK_OP_FLUSH, 0, 0, &[])])),
        ("read-only-disk", input(1, 64, &[block(1, BLOCK_OP_READ, 56, 8, &[3]), block(2, BLOCK_OP_WRITE, 0, 8, &[1])])),
        ("hostile-read-into-a-read-only-grant", input(0, 64, &[block(1, BLOCK_OP_READ, 0, 8, &[3])])),
        ("hostile-grants-outside-the-window", input(0, 64, &[block(1, BLOCK_OP_READ, 0, 8, &[4]), block(2, BLOCK_OP_READ, 0, 8, &[5]), block(3, BLOCK_OP_READ, 0, 8, &[4000])])),
        ("hostile-sector-overflow", input(0, u64::MAX, &[block(1, BLOCK_OP_READ, u64::MAX - 3, 8, &[1]), block(2, BLOCK_OP_READ, 60, 8, &[1])])),
        ("hostile-segment-counts", input(0, 64, &[block(1, BLOCK_OP_READ, 0, 136, &[1; 17]), block(2, BLOCK_OP_READ, 0, 8, &[1, 2]), block(3, 9, 0, 8, &[1])])),
    ]
}

// ---- console requests -------------------------------------------------------------

fn console(id: u64, text: &[u8], len: Option<u32>) -> Vec<u8> {
    let mut request = ConsoleRequest::new(id, &text[..text.len().min(CONSOLE_CHUNK)]);
    if let Some(len) = len {
        request.len = len;
    }
    let mut out = vec![0u8; ConsoleRequest::SIZE];
    request.encode(&mut out);
    out
}

fn console_request() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("plain-lines", [console(1, b"hello\n", None), console(2, b"tab\tand crlf\r\n", None)].concat()),
        ("hostile-terminal-escapes", [console(1, b"\x1b]0;title\x07\x1b[2J", None), console(2, "\u{9b}2J\u{202e}".as_bytes(), None), console(3, b"ok\rhv: forged\n", None)].concat()),
        ("hostile-length-past-the-slot", [console(1, b"x", Some(CONSOLE_CHUNK as u32 + 1)), console(2, b"y", Some(u32::MAX))].concat()),
        ("hostile-invalid-utf8", console(1, b"\xff\xfe\xc3(\xe2\x82", None)),
    ]
}

// ---- network requests -------------------------------------------------------------

/// A `net_request` step pushing a transmit request.
fn net_tx(id: u32, gref: u32, offset: u16, len: u32) -> Vec<u8> {
    let mut out = vec![0u8; 1 + NetTxRequest::SIZE];
    NetTxRequest { id, gref, offset, flags: 0, len }.encode(&mut out[1..]);
    out
}

/// A `net_request` step posting a receive buffer.
fn net_rx(id: u32, gref: u32) -> Vec<u8> {
    let mut out = vec![1u8; 1 + NetRxRequest::SIZE];
    NetRxRequest { id, gref }.encode(&mut out[1..]);
    out
}

/// A `net_request` step injecting a frame of `len` bytes from the network.
fn net_frame(len: u16) -> Vec<u8> {
    [vec![2], len.to_le_bytes().to_vec(), (0..len).map(|i| i as u8).collect()].concat()
}

const NET_SERVE_TX: u8 = 3;
const NET_SERVE_RX: u8 = 4;

fn net_request() -> Vec<(&'static str, Vec<u8>)> {
    let permit = GrantFlags::PERMIT_ACCESS.bits();
    let read_only = GrantFlags::READ_ONLY.bits();
    // Entry 1: frame 4 read-only (a tx buffer); 2: frame 5 writable (an rx buffer);
    // 3: frame 6 read-only (a bad rx buffer); 4: the grant table's own first frame.
    let table = grant_table(&[(1, permit | read_only, 4), (2, permit, 5), (3, permit | read_only, 6), (4, permit, MODEL_GRANT_TABLE_FRAME)]);
    let input = |steps: &[Vec<u8>]| [table.clone(), steps.concat()].concat();
    vec![
        ("both-ways", input(&[net_tx(1, 1, 0, 60), net_tx(2, 1, 2582, 1514), vec![NET_SERVE_TX], net_rx(7, 2), net_frame(60), net_frame(1514), net_rx(8, 2), vec![NET_SERVE_RX]])),
        ("hostile-lengths", input(&[net_tx(1, 1, 0, 0), net_tx(2, 1, 0, 13), net_tx(3, 1, 0, 1515), net_tx(4, 1, 0, u32::MAX), vec![NET_SERVE_TX]])),
        ("hostile-offset-past-the-frame", input(&[net_tx(1, 1, 4000, 100), net_tx(2, 1, u16::MAX, 14), vec![NET_SERVE_TX]])),
        ("hostile-grants", input(&[net_tx(1, 0, 0, 60), net_tx(2, 4, 0, 60), net_tx(3, 200, 0, 60), vec![NET_SERVE_TX], net_rx(1, 3), net_rx(2, 4), net_frame(100), vec![NET_SERVE_RX]])),
        ("hostile-frames-from-the-network", input(&[net_frame(0), net_frame(13), net_frame(1515), net_frame(2047), vec![NET_SERVE_RX], net_rx(1, 2), vec![NET_SERVE_RX]])),
        ("hostile-corrupt-indices", input(&[net_tx(1, 1, 0, 60), vec![5, 0x40, 0x42, 0x0f, 0], vec![NET_SERVE_TX], vec![6, 0xff, 0xff, 0xff, 0xff], net_frame(60), vec![NET_SERVE_RX]])),
    ]
}

// ---- balloon requests -------------------------------------------------------------

fn balloon(op: u8, frames: &[u64], count: Option<u32>) -> Vec<u8> {
    use pv_abi::device::balloon::BalloonRequest;
    let mut request = BalloonRequest::new(1, op, frames);
    if let Some(count) = count {
        request.count = count;
    }
    let mut bytes = vec![0u8; BalloonRequest::SIZE];
    request.encode(&mut bytes);
    bytes
}

fn balloon_request() -> Vec<(&'static str, Vec<u8>)> {
    use pv_abi::device::balloon::{BALLOON_OP_DEFLATE as DEFLATE, BALLOON_OP_INFLATE as INFLATE};
    vec![
        ("inflate-then-deflate", [balloon(INFLATE, &[3, 4, 5, 20], None), balloon(DEFLATE, &[4, 20], None), balloon(INFLATE, &[4], None)].concat()),
        ("hostile-double-return", [balloon(INFLATE, &[30], None), balloon(INFLATE, &[30], None), balloon(INFLATE, &[31, 31], None)].concat()),
        ("hostile-frames-not-the-guests", [balloon(INFLATE, &[0], None), balloon(INFLATE, &[9], None), balloon(INFLATE, &[60], None), balloon(INFLATE, &[64], None), balloon(INFLATE, &[u64::MAX], None)].concat()),
        ("hostile-deflate-never-given", balloon(DEFLATE, &[40, 41], None)),
        ("hostile-counts-and-ops", [balloon(INFLATE, &[40], Some(0)), balloon(INFLATE, &[40], Some(31)), balloon(INFLATE, &[40], Some(u32::MAX)), balloon(0, &[40], None), balloon(255, &[40], None)].concat()),
    ]
}

// ---- ring back end ----------------------------------------------------------------

/// A ring page holding `requests` console requests published (req_prod = count).
fn ring_page(requests: &[Vec<u8>], req_prod: u32) -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE as usize];
    page[0..4].copy_from_slice(&req_prod.to_le_bytes());
    page[12..16].copy_from_slice(&1u32.to_le_bytes()); // rsp_event: notify on the first response
    let slot = pv_abi::ring::slot_size(ConsoleRequest::SIZE, pv_abi::device::console::ConsoleResponse::SIZE);
    for (i, r) in requests.iter().enumerate() {
        let at = pv_abi::ring::HEADER_SIZE + i * slot;
        page[at..at + r.len()].copy_from_slice(r);
    }
    page
}

fn ring_back() -> Vec<(&'static str, Vec<u8>)> {
    let three = [console(1, b"one\n", None), console(2, b"two\n", None), console(3, b"three\n", None)];
    let page = ring_page(&three, 3);
    let steps = |start: u32, s: &[u8]| [page.clone(), start.to_le_bytes().to_vec(), s.to_vec()].concat();
    vec![
        ("serve-three", steps(0, &[0])),
        ("block-ring-steps", steps(0, &[1, 1, 2, 3, 4, 2, 2, 3])),
        ("hostile-producer-far-ahead", steps(0, &[5, 0xe8, 3, 0, 0, 0, 1])),
        ("hostile-producer-behind-consumer", steps(0, &[0, 5, 1, 0, 0, 0, 0])),
        ("hostile-wrapping-indices", steps(u32::MAX - 1, &[5, 1, 0, 0, 0, 0, 6, 0, 0, 0, 0x80, 1, 2, 3])),
        ("hostile-rewritten-slot", steps(0, &[1, 7, 64, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0])),
    ]
}

// ---- shadow engine ----------------------------------------------------------------

fn shadow_mmu() -> Vec<(&'static str, Vec<u8>)> {
    // Steps: 0 = write (entry: table byte, index byte; value: kind, flags, operand),
    // 2 = batch, 3 = load (root byte). Values: kind 1 = table, 4 = 4 KiB page, 6 = 2 MiB.
    let load = |root: u8| vec![3, root];
    let write = |table: u8, index: u8, kind: u8, flags: u8, operand: u8| vec![0, table, index, kind, flags, operand];
    let tree = [
        load(0),
        write(0, 0, 1, 3, 1),
        write(1, 0, 1, 3, 2),
        write(2, 0, 1, 3, 3),
        write(3, 0, 4, 3, 5),
        write(3, 1, 4, 1, 200),
        write(2, 1, 6, 3, 0),
    ]
    .concat();
    vec![
        ("build-a-tree", [vec![0], tree.clone()].concat()),
        ("build-a-tree-pool-traps", [vec![1], tree.clone()].concat()),
        ("hostile-tiny-shadow-area", [vec![2], tree.clone(), load(1), load(2), load(0)].concat()),
        ("hostile-tiny-build-budget", [vec![4], load(0), tree.clone(), write(0, 0, 0, 0, 0), write(0, 0, 1, 3, 1)].concat()),
        ("hostile-raw-entry-addresses", [vec![0], load(0), vec![0, 0xff], u64::MAX.to_le_bytes().to_vec(), vec![0, 0, 0], vec![3, 0xff], 0x1000u64.to_le_bytes().to_vec()].concat()),
        ("hostile-garbage-values", [vec![0], load(0), vec![0, 0, 0, 7], 0xffff_ffff_ffff_ffffu64.to_le_bytes().to_vec(), vec![2, 3, 0, 0, 1, 3, 0, 1, 0, 1, 4, 7, 255]].concat()),
        ("hostile-page-table-mapped-writable", [vec![0], load(0), write(0, 0, 1, 3, 1), write(1, 0, 1, 3, 2), write(2, 0, 1, 3, 3), write(3, 0, 4, 1, 140)].concat()),
    ]
}

// ---- migration stream -------------------------------------------------------------

/// A migration stream as a source's `hv::migration::stream` writer makes it, for the
/// model guest the target receives into (8 MiB, kernel `MIGRATION_KERNEL`): `rounds`
/// of (frame, data byte or None for a zero page), then the seed state and `Done`.
fn migration(ram_bytes: u64, rounds: &[&[(u64, Option<u8>)]], state: Option<Vec<u8>>) -> Vec<u8> {
    use hv::migration::stream::{write_pages, Header, PageData, Record};
    use pv_abi::addr::PseudoFrame;
    let mut b = Vec::new();
    Header { ram_bytes, mode: pv_abi::MmuMode::Shadow, kernel: hv::fuzz_entry::MIGRATION_KERNEL }.write(&mut b).expect("into a Vec");
    let mut total = 0;
    for (round, pages) in rounds.iter().enumerate() {
        let pages: Vec<(PseudoFrame, PageData)> = pages
            .iter()
            .map(|&(frame, byte)| (PseudoFrame::new(frame), byte.map_or(PageData::Zero, |x| PageData::Data(Box::new([x; PAGE_SIZE as usize])))))
            .collect();
        write_pages(&mut b, round as u32, pages.iter().map(|(f, d)| (*f, d))).expect("into a Vec");
        Record::EndOfRound { round: round as u32, pages: pages.len() as u64 }.write(&mut b).expect("into a Vec");
        total += pages.len() as u64;
    }
    if let Some(state) = state {
        Record::State(state).write(&mut b).expect("into a Vec");
        Record::Done { total_pages: total }.write(&mut b).expect("into a Vec");
    }
    b
}

fn migration_stream() -> Vec<(&'static str, Vec<u8>)> {
    let state = postcard::to_stdvec(&seed_state()).expect("the seed state encodes");
    let two_rounds: [&[(u64, Option<u8>)]; 2] = [&[(1, Some(7)), (2, None), (3, Some(9))], &[(2, Some(1))]];
    let valid = migration(8 << 20, &two_rounds, Some(state.clone()));
    let header_len = 40;
    let mut frame_outside = migration(8 << 20, &[&[(5, None)]], Some(state.clone()));
    frame_outside[header_len + 9..header_len + 17].copy_from_slice(&(8u64 << 20 >> 12).to_le_bytes());
    let mut miscounted = migration(8 << 20, &[&[(5, None)]], Some(state.clone()));
    let end_of_round = header_len + 9 + 9;
    miscounted[end_of_round + 5..end_of_round + 13].copy_from_slice(&7u64.to_le_bytes());
    let mut huge_batch = migration(8 << 20, &[&[(5, None)]], None);
    huge_batch[header_len + 5..header_len + 9].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut refusal = vec![0x7f];
    refusal.extend_from_slice(&7u16.to_le_bytes());
    refusal.extend_from_slice(b"\x1b]0;hi\x07");
    vec![
        ("two-rounds-state-done", valid.clone()),
        ("hostile-garbage-state", migration(8 << 20, &[&[(1, Some(1))]], Some(vec![0xff; 64]))),
        ("hostile-truncated", valid[..valid.len() - 20].to_vec()),
        ("hostile-wrong-ram-size", migration(64 << 20, &two_rounds, Some(state.clone()))),
        ("hostile-frame-outside-ram", frame_outside),
        ("hostile-miscounted-round", miscounted),
        ("hostile-huge-batch", huge_batch),
        ("hostile-no-state", migration(8 << 20, &two_rounds, None)),
        ("hostile-escapes-in-a-refusal", refusal),
    ]
}

// ---- record log -------------------------------------------------------------------

/// A record log as `hv::record::log::LogWriter` writes it: a header of a run of the
/// built-in guest on 8 MiB, then `events`.
fn record_log_file(events: &[hv::record::log::Event]) -> Vec<u8> {
    use hv::record::log::{Header, LogWriter, MAGIC, VERSION};
    static FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let header = Header {
        magic: MAGIC.into(),
        version: VERSION,
        kernel_hash: "7b0a3c5e9d1f2468".into(),
        kernel_bytes: 123_456,
        kernel_path: None,
        guest_args: vec!["count".into(), "3".into()],
        mem_mib: 8,
        mmu: "ept".into(),
        tsc_khz: 2_000_000,
        nx: true,
        disk: None,
    };
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("hv-seed-record-log-{}-{n}", std::process::id()));
    let mut log = LogWriter::create(&path, &header).expect("creating a record log");
    for event in events {
        log.append(event);
    }
    log.finish().expect("writing the record log");
    let bytes = std::fs::read(&path).expect("reading it back");
    let _ = std::fs::remove_file(&path);
    bytes
}

fn record_log() -> Vec<(&'static str, Vec<u8>)> {
    use hv::record::log::{DeviceRecord, Event, ExitRecord, MemoryWrite};
    let exit = |n: u64, reason: &str, port: Option<u16>| Event::Exit(ExitRecord { n, reason: reason.into(), port, gpa: None });
    let device = |gpa: u64, data: &str| {
        Event::Device(Box::new(DeviceRecord {
            n: 2,
            port: 0x600,
            rip: 0xffff_8000_0020_1234,
            ring_hash: "0123456789abcdef".into(),
            writes: vec![MemoryWrite { gpa, data: data.into() }],
            lines: Vec::new(),
            printed: "68690a".into(),
            upcall: true,
        }))
    };
    let end = Event::End { exits: 3, stop: "shutdown code=0".into(), memory_hash: "0011223344556677".into() };
    let run = [exit(1, "io-out", Some(0x600)), device(0x1000, "6869"), Event::Clock { n: 3, tsc: 123_456_789 }, exit(3, "hlt", None), end.clone()];
    let valid = record_log_file(&run);
    // The same log as bare JSON lines (mode 1: the target frames them).
    let bare: String = String::from_utf8(valid.clone()).expect("a log is text").lines().map(|l| format!("{}\n", &l[17..])).collect();
    let with_mode = |mode: u8, file: &[u8]| [&[mode][..], file].concat();
    let mut flipped = valid.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 1;
    // Escaped in JSON (raw control characters are not JSON); `\u{9b}` is a C1 CSI.
    let escapes = bare.replace("shutdown code=0", r"\u001b]52;c;cm0gLXJm\u0007").replace("\"io-out\"", "\"\\u001b[2J\u{9b}2J\"");
    let bad_version = bare.replacen("\"version\":1", "\"version\":2", 1);
    vec![
        ("exit-device-clock-end", with_mode(0, &valid)),
        ("exit-device-clock-end-bare", with_mode(1, bare.as_bytes())),
        ("hostile-flipped-byte", with_mode(0, &flipped)),
        ("hostile-truncated", with_mode(0, &valid[..valid.len() / 2])),
        ("hostile-no-end-record", with_mode(0, &record_log_file(&run[..3]))),
        ("hostile-not-a-log", with_mode(0, b"0123456789abcdef {\"magic\":\"something else\"}\n")),
        ("hostile-wrong-version", with_mode(1, bad_version.as_bytes())),
        ("hostile-terminal-escapes", with_mode(1, escapes.as_bytes())),
        ("hostile-escapes-in-the-header", with_mode(1, bare.replacen("\"mmu\":\"ept\"", "\"mmu\":\"\\u001b]0;owned\\u0007\"", 1).as_bytes())),
        ("hostile-device-write-outside-ram", with_mode(0, &record_log_file(&[device(u64::MAX - 1, "6869"), end.clone()]))),
        ("hostile-device-write-not-hex", with_mode(0, &record_log_file(&[device(0x1000, "zz"), end.clone()]))),
        ("hostile-unknown-event", with_mode(1, format!("{}{{\"e\":\"reboot\",\"n\":1}}\n", bare.lines().next().expect("a header")).as_bytes())),
    ]
}
