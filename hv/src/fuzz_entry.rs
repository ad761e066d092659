//! Fuzz entry points: hv's parsers of guest and file input, driven by arbitrary bytes.
//!
//! Each `pub fn` here is the body of one libFuzzer target in the repository's `fuzz/`
//! crate (nightly only) *and* of the stable regression test `tests/fuzz_corpus.rs`,
//! which runs every committed seed and past crash through the same function
//! (docs/fuzzing.md). Every function returns normally whatever the input: the input is
//! a guest's registers and memory, a kernel file, a snapshot file or a control-socket
//! line, and hv answers all of them with an error, never a panic. Properties that must
//! hold for any input (guest text reaching a terminal is sanitized; a shadow CR3 lies
//! in the shadow area) are asserted, so a violation is a crash the fuzzer reports.

use std::io::Cursor;
use std::os::unix::fs::FileExt;

use pv_abi::addr::{MachineAddr, PseudoPhys};
use pv_abi::layout::PAGE_SIZE;
use pv_abi::{DeviceInfo, Hypercall, MmuMode};

use crate::boot::{self, elf, BootInputs, DeviceLayout};
use crate::control::framing::{Frame, LineReader};
use crate::control::protocol::{self, MAX_LINE};
use crate::control::{commands, table};
use crate::devices::console::ConsoleOutput;
use crate::memory::GuestRam;
use crate::outcome::GuestStop;
use crate::shadow::ShadowPaging;
use crate::state::snapshot_file;
use crate::vcpu::hypercall::{dispatch, HypercallContext, HypercallRequest};

/// The model guest's RAM: the smallest hv runs (8 MiB), so a fresh one per input is cheap.
const MODEL_RAM: u64 = pv_abi::layout::MIN_MEM_MIB << 20;
/// Steps one hypercall input may take: bounds the work per input.
const MAX_STEPS: usize = 32;
/// Where the `mmu_update` step writes its batch in the model RAM.
const BATCH_GPA: u64 = 0x1000;

/// Reads an input front to back; past the end every read gives zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let take = n.min(self.0.len());
        let mut out = self.0[..take].to_vec();
        out.resize(n, 0);
        self.0 = &self.0[take..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes(8).try_into().unwrap_or_default())
    }
}

/// What a terminal may receive from a guest: hv's sanitizer leaves text unchanged only
/// if it holds nothing it would replace.
fn assert_sanitized(text: &str) {
    assert_eq!(backend_drivers::console::sanitize_text(text), text, "unsanitized guest text: {text:?}");
}

/// Target `elf`: any bytes as a kernel file, through `boot::elf::parse_kernel` against
/// the smallest RAM hv runs; a file it accepts is then loaded for real
/// (`boot::prepare`: segments copied, boot page tables built) into that RAM.
pub fn elf(data: &[u8]) {
    let limit = boot::kernel_memory_limit(MODEL_RAM);
    let Ok(image) = elf::parse_kernel(data, limit) else { return };
    assert!(!image.segments.is_empty(), "an image without a loadable segment was accepted");
    for segment in &image.segments {
        let (start, end) = segment.phys_pages();
        assert!(start <= end && end <= limit, "a segment reaches past the kernel's memory limit");
        assert!(segment.file_offset.checked_add(segment.file_size).is_some_and(|e| e <= data.len() as u64), "a segment's bytes pass the end of the file");
    }
    let ram = GuestRam::new(MODEL_RAM).expect("8 MiB of model RAM");
    let absent = DeviceLayout { console: DeviceInfo::ABSENT, block: DeviceInfo::ABSENT, block_sectors: 0, block_flags: 0, balloon: DeviceInfo::ABSENT, net: None };
    let inputs = BootInputs { kernel: data, image: &image, guest_args: &[], mmu: MmuMode::Ept, tsc_khz: 0, nx: true, devices: absent, clock_recorded: false };
    // An accepted kernel that cannot be prepared is an error for the user, not a panic.
    let _ = boot::prepare(&ram, &inputs);
}

/// One hypercall argument: usually a value near something meaningful (small, a page of
/// the page-table pool, the end of RAM), so that the fuzzer reaches past the first
/// check; sometimes any 64 bits.
fn argument(input: &mut Input, pool: &std::ops::Range<PseudoPhys>) -> u64 {
    match input.u8() % 4 {
        0 => u64::from(input.u16()),
        1 => pool.start.raw() + u64::from(input.u16()) * 8,
        2 => MODEL_RAM.wrapping_sub(u64::from(input.u16())),
        _ => input.u64(),
    }
}

/// Checks what any hypercall outcome must satisfy.
fn check_outcome(outcome: &crate::vcpu::hypercall::HypercallOutcome, shadow: Option<&ShadowPaging>) {
    if let Some(text) = &outcome.text {
        assert_sanitized(text);
    }
    if let Some(GuestStop::Panicked { message }) = &outcome.stop {
        assert_sanitized(message);
    }
    match (outcome.cr3, shadow) {
        (Some(cr3), Some(shadow)) => assert!(shadow.layout().in_shadow_area(cr3), "CR3 {:#x} is not a shadow root", cr3.raw()),
        (Some(_), None) => panic!("ept mode returned a CR3"),
        (None, _) => {}
    }
}

/// Hypercalls against a fresh model guest (8 MiB of RAM, its page-table pool; in
/// shadow mode the real `ShadowPaging` with its shadow area). Input: steps, each a
/// byte choosing one of: store bytes into RAM; make a hypercall (any number, arguments
/// from [`argument`]); write an `mmu_update` batch of pool entries and call it; (shadow
/// mode) a trapped store of 1 to 8 bytes at a machine address, as the exit loop hands it
/// to the shadow engine.
fn hypercalls(data: &[u8], shadow_mode: bool) {
    let ram = GuestRam::new(MODEL_RAM).expect("8 MiB of model RAM");
    let console = ConsoleOutput::new(Box::new(std::io::sink()));
    let mut shadow = shadow_mode.then(|| ShadowPaging::new(MODEL_RAM).expect("shadow paging for 8 MiB"));
    let pool = pv_abi::layout::pt_pool(MODEL_RAM);
    let mut input = Input(data);
    for _ in 0..MAX_STEPS {
        if input.0.is_empty() {
            break;
        }
        let outcome = match input.u8() % 4 {
            0 => {
                let at = argument(&mut input, &pool);
                let len = usize::from(input.u8() % 64);
                let _ = ram.write(PseudoPhys::new(at), &input.bytes(len));
                continue;
            }
            1 => {
                let nr = match input.u8() {
                    0xff => input.u64(),
                    b => u64::from(b % 10),
                };
                let args = [(); 4].map(|_| argument(&mut input, &pool));
                let req = HypercallRequest { nr, args };
                let _ = req.name();
                dispatch(&req, &mut HypercallContext { ram: &ram, console: &console, pt_pool: pool.clone(), shadow: shadow.as_mut() })
            }
            2 => {
                let count = input.u8() % 17;
                for i in 0..u64::from(count) {
                    let entry = pool.start.raw() + u64::from(input.u16() % 1024) * 8;
                    let record = BATCH_GPA + i * pv_abi::hypercall::MMU_UPDATE_SIZE;
                    let _ = ram.write_u64(PseudoPhys::new(record), entry);
                    let _ = ram.write_u64(PseudoPhys::new(record + 8), argument(&mut input, &pool) | (u64::from(input.u8()) & 0x7));
                }
                let req = HypercallRequest { nr: Hypercall::MmuUpdate as u64, args: [BATCH_GPA, u64::from(count), 0, 0] };
                dispatch(&req, &mut HypercallContext { ram: &ram, console: &console, pt_pool: pool.clone(), shadow: shadow.as_mut() })
            }
            _ => {
                let Some(s) = shadow.as_mut() else { continue };
                let target = argument(&mut input, &pool);
                let machine = s.layout().machine_of(PseudoPhys::new(target)).unwrap_or(MachineAddr::new(target));
                let len = 1 + usize::from(input.u8() % 8);
                let _ = s.trapped_write(&ram, machine, &input.bytes(len));
                continue;
            }
        };
        check_outcome(&outcome, shadow.as_ref());
        if outcome.stop.is_some() {
            break;
        }
    }
}

/// Target `hypercall_ept`: [`hypercalls`] in ept mode (no shadow engine).
pub fn hypercall_ept(data: &[u8]) {
    hypercalls(data, false);
}

/// Target `hypercall_shadow`: [`hypercalls`] in shadow mode, with trapped page-table
/// stores.
pub fn hypercall_shadow(data: &[u8]) {
    hypercalls(data, true);
}

/// Target `snapshot_file`: any bytes written to a temporary file, opened with
/// `state::snapshot_file::read` (and mapped, if it passes).
///
/// The first byte is a mode, the rest the file. Mode bit 0 recomputes the header's
/// and the state section's CRC-32s after the fuzzer's changes, and bit 1 extends the
/// file with a hole to the length its header claims (up to 64 MiB), so that the fuzzer
/// reaches the state decoder and the extent checks instead of stopping at a checksum
/// or at the file's length. (Checksums catch damage, not malice: a hostile file can
/// have right ones, so the checks behind them must hold on their own.)
pub fn snapshot_file(data: &[u8]) {
    let (mode, file) = data.split_first().map_or((0, &[][..]), |(m, f)| (*m, f));
    let mut bytes = file.to_vec();
    let u64_at = |b: &[u8], o: usize| b.get(o..o + 8).map_or(0, |s| u64::from_le_bytes(s.try_into().unwrap_or_default()));
    if mode & 1 != 0 && bytes.len() >= 64 {
        let state_len = u64_at(&bytes, 24);
        let state = usize::try_from(PAGE_SIZE).ok().and_then(|off| Some(off..off.checked_add(usize::try_from(state_len).ok()?)?));
        if let Some(section) = state.and_then(|r| bytes.get(r)) {
            let crc = crc32fast::hash(section);
            bytes[48..52].copy_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    }
    let path = std::env::temp_dir().join(format!("hv-fuzz-snapshot-{}", std::process::id()));
    let file = std::fs::File::create(&path).expect("creating the temporary snapshot file");
    file.write_all_at(&bytes, 0).expect("writing the temporary snapshot file");
    if mode & 2 != 0 {
        let claimed = u64_at(&bytes, 32).checked_add(u64_at(&bytes, 40));
        if let Some(len) = claimed.filter(|&l| l > bytes.len() as u64 && l <= 64 << 20) {
            file.set_len(len).expect("extending the temporary snapshot file");
        }
    }
    drop(file);
    if let Ok(open) = snapshot_file::read(&path) {
        let _ = open.map_ram();
    }
    let _ = std::fs::remove_file(&path);
}

/// Target `control_request`: any bytes as what a client sends on the control socket:
/// split into lines by the server's reader (`control::framing`, at most [`MAX_LINE`]
/// bytes a line), each line through `control::protocol::parse_request` and, if it
/// names a command, that command's argument check. Also each line as a reply, through
/// the client's parser. The error messages quote the client: they must stay short.
pub fn control_request(data: &[u8]) {
    let mut reader = LineReader::new(Cursor::new(data), MAX_LINE);
    for _ in 0..1024 {
        let line = match reader.next_line() {
            Ok(Frame::Line(line)) => line,
            Ok(_) | Err(_) => break,
        };
        let _ = protocol::parse_reply(&line);
        match protocol::parse_request(&line) {
            Ok(request) => {
                if let Some(command) = commands::find(&request.cmd) {
                    if let Err(message) = table::check_args(&request.cmd, command.fields, request.args) {
                        assert!(message.len() < 4096, "an argument error of {} bytes", message.len());
                    }
                }
            }
            Err(e) => assert!(e.to_string().len() < 4096, "a request error of {} bytes", e.to_string().len()),
        }
    }
}

/// What the fuzzed migration receiver expects: the model guest's RAM and this kernel
/// identity (the seeds' headers carry both, so the fuzzer starts past the header).
pub const MIGRATION_KERNEL: u64 = 0x6876_2d66_757a_7a21;

/// Target `migration_stream`: any bytes as what a source sends a destination: the
/// header through `migration::stream::Header::read` and the destination's check
/// (RAM size [`MODEL_RAM`], kernel [`MIGRATION_KERNEL`]), then the records through the
/// receiver's round loop (`migration::receive::read_rounds`) into a fresh 8 MiB guest,
/// and a received state through the decoder the destination uses. The same bytes also
/// go through the source's reader of the destination's replies (`Reply::read`).
/// Every refusal is a message for a terminal: it must be short and sanitized.
pub fn migration_stream(data: &[u8]) {
    use crate::migration::{receive, stream};
    let check_message = |message: String| {
        assert!(message.len() < 4096, "a refusal of {} bytes", message.len());
        assert_sanitized(&message);
    };
    match stream::Reply::read(&mut &data[..]) {
        Ok(stream::Reply::Refuse(message)) => check_message(message),
        Ok(_) => {}
        Err(e) => check_message(e.to_string()),
    }
    let mut input = data;
    let expect = receive::Expect { ram_bytes: MODEL_RAM, kernel: MIGRATION_KERNEL };
    let header = match stream::Header::read(&mut input).map_err(crate::migration::MigrationError::from).and_then(|h| receive::check_header(h, expect)) {
        Ok(header) => header,
        Err(e) => return check_message(e.to_string()),
    };
    let ram = GuestRam::new(header.ram_bytes).expect("8 MiB of model RAM");
    match receive::read_rounds(&mut input, &ram) {
        Ok((state, rounds, pages)) => {
            assert!(rounds >= 1 && pages <= u64::from(rounds) * (MODEL_RAM / PAGE_SIZE), "{pages} pages in {rounds} rounds");
            if let Ok(state) = postcard::from_bytes::<crate::state::VmState>(&state) {
                let _ = crate::vmm::VmConfig::for_state(&state, Some(header.mode));
            }
        }
        Err(e) => check_message(e.to_string()),
    }
}

/// Most events the `record_log` target reads from one input.
const MAX_LOG_EVENTS: usize = 4096;

/// Target `record_log`: any bytes as a record log (`hv replay LOG`), written to a
/// temporary file and read with `record::log::LogReader`: the header, then events until
/// the end record, an error or [`MAX_LOG_EVENTS`]; each device event's memory writes
/// are applied to a fresh 8 MiB guest as replay applies them.
///
/// The first byte is a mode, the rest the file. Mode bit 0 takes the rest as bare JSON
/// lines and frames them (checksum chain) as the recorder does, so that the fuzzer
/// reaches the event decoder instead of stopping at a checksum (a hostile log can have
/// right checksums: FNV is no signature). Every message the reader makes, and every
/// event's description, reaches the user's terminal: it must be sanitized.
pub fn record_log(data: &[u8]) {
    use crate::record::framing::{frame, Chain};
    use crate::record::log::{Event, LogReader};
    static FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let (mode, file) = data.split_first().map_or((0, &[][..]), |(m, f)| (*m, f));
    let bytes = if mode & 1 != 0 {
        let mut chain = Chain::default();
        String::from_utf8_lossy(file).lines().map(|line| frame(&mut chain, line)).collect::<String>().into_bytes()
    } else {
        file.to_vec()
    };
    let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("hv-fuzz-record-log-{}-{n}", std::process::id()));
    std::fs::write(&path, &bytes).expect("writing the temporary record log");
    let checked = |message: String| assert_sanitized(&message);
    match LogReader::open(&path) {
        Err(e) => checked(e.to_string()),
        Ok(mut log) => {
            if let Err(e) = crate::vmm::session::replay_config(log.header(), None) {
                checked(e.to_string());
            }
            let ram = GuestRam::new(MODEL_RAM).expect("8 MiB of model RAM");
            for _ in 0..MAX_LOG_EVENTS {
                match log.next_event() {
                    Err(e) => {
                        checked(e.to_string());
                        break;
                    }
                    Ok(event) => {
                        checked(event.describe());
                        match &event {
                            Event::Device(device) => {
                                for write in &device.writes {
                                    let _ = crate::record::replayer::apply(&ram, write.gpa, &write.data);
                                }
                            }
                            Event::End { .. } => break,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}
