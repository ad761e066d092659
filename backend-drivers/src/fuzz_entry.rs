//! Fuzz entry points: this crate's parsers of guest input, driven by arbitrary bytes.
//!
//! Each `pub fn` here is the body of one libFuzzer target in the repository's `fuzz/`
//! crate (nightly only) *and* of the stable regression test `tests/fuzz_corpus.rs`,
//! which runs every committed seed and every past crash through the same function. So a
//! fuzzer finding becomes a plain test the moment its input is saved in
//! `fuzz/corpus/<target>/` (docs/fuzzing.md tells the whole story).
//!
//! A function returns normally for every input: a guest's hostile request is an error
//! status, never a panic. Where a property must hold whatever the guest sends (a console
//! line reaches the terminal without control characters; a checked block request stays
//! inside the disk), the function asserts it, so a violation is a crash the fuzzer reports.
//!
//! The model guest memory is 64 pages: page 0 the grant table, page 1 the ring, page 2
//! the shared-info page (the pending flags), pages 3.. the frames a grant may name. The
//! network target adds its receive ring at page 3 (the transmit ring is page 1), and its
//! grants may name pages 4.. only.

use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use pv_abi::addr::{FrameRange, PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::device::block::{BlockOp, BlockRequest, BlockResponse, SECTOR_SIZE};
use pv_abi::device::console::{ConsoleRequest, ConsoleResponse};
use pv_abi::grant::{GRANT_ENTRY_SIZE, GRANT_TABLE_BYTES, GRANT_TABLE_FRAMES};
use pv_abi::ring::{BackRing, RingEntry, SharedPage, REQ_PROD_OFFSET, RSP_EVENT_OFFSET};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::block::image::DiskImage;
use crate::block::{check as block_check, BlockBackend};
use crate::console::{check as console_check, sanitize, ConsoleBackend};
use crate::event_channel::GuestNotifier;
use crate::events::NoEvents;
use crate::grant_table::GrantTable;
use crate::guest_page::GuestPage;
use crate::runner::{service_ring, BackendStats, BackendWiring, HandlerContext, NotifyPolicy, RequestHandler};
use crate::frame_port::{Frame, FramePort};
use crate::net::{check as net_check, NetBackend, NetWiring};
use crate::GuestMemory;
use pv_abi::device::net::{NetRxRequest, NetRxResponse, NetTxRequest, NetTxResponse, NET_MAX_FRAME, NET_MIN_FRAME};
use pv_abi::ring::FrontRing;

/// Pages of the model guest memory.
const MODEL_PAGES: u64 = 64;
/// The grant table's first frame: the table is the model memory's top
/// `GRANT_TABLE_FRAMES` pages, so its last entry is the memory's last 16 bytes, and no
/// usable frame overlaps it.
const GRANT_TABLE_PAGE: u64 = MODEL_PAGES - GRANT_TABLE_FRAMES as u64;
const RING_PAGE: u64 = 1;
const SHARED_INFO_PAGE: u64 = 2;
const FIRST_USABLE_FRAME: u64 = 3;
/// Grant entries the fuzzer fills in (the rest of the table stays zero: no grant).
const FUZZED_GRANTS: usize = 24;
/// Sectors of the model disk (a 32 KiB file in the temporary directory).
const DISK_SECTORS: u64 = 64;
/// Requests one input may carry: bounds the work per input.
const MAX_REQUESTS: usize = 64;

/// Reads an input front to back; past the end every read gives zeros, so any input is
/// a complete description.
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
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes(4).try_into().unwrap_or_default())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes(8).try_into().unwrap_or_default())
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn model_memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), (MODEL_PAGES * PAGE_SIZE) as usize)]).expect("a 256 KiB anonymous mapping")
}

fn page(n: u64) -> PseudoPhys {
    PseudoPhys::new(n * PAGE_SIZE)
}

fn usable_frames() -> FrameRange<PseudoFrame> {
    FrameRange { start: PseudoFrame::new(FIRST_USABLE_FRAME), end: PseudoFrame::new(GRANT_TABLE_PAGE) }
}

/// The model disk: created once per process and unlinked at once, so that nothing is
/// left behind however the process ends; each input reopens it through
/// `/proc/self/fd`, as `DiskImage::open` takes a path.
fn disk_path() -> PathBuf {
    static DISK: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    let file = DISK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("hv-fuzz-disk-{}.img", std::process::id()));
        std::fs::write(&path, vec![0x5a; (DISK_SECTORS * SECTOR_SIZE) as usize]).expect("writing the model disk");
        let file = std::fs::File::open(&path).expect("opening the model disk");
        let _ = std::fs::remove_file(&path);
        file
    });
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// A request that `check_request` accepted must stay inside the disk and name one grant
/// per segment.
fn assert_checked_block_request_is_sound(checked: &block_check::CheckedRequest, disk_sectors: u64, read_only: bool) {
    if checked.op == BlockOp::Flush {
        assert!(checked.grefs.is_empty() && checked.nr_sectors == 0, "a flush carries no data");
        return;
    }
    assert!(!(read_only && checked.op == BlockOp::Write), "a write to a read-only disk passed");
    assert!(!checked.grefs.is_empty(), "a data request with no segment passed");
    let mut covered = 0u64;
    for i in 0..checked.grefs.len() {
        let (offset, len) = checked.segment_span(i);
        assert!(len > 0 && len as u64 <= PAGE_SIZE, "segment {i} is {len} bytes");
        assert!(u128::from(offset) + len as u128 <= u128::from(disk_sectors) * u128::from(SECTOR_SIZE), "segment {i} passes the end of the disk");
        covered += len as u64;
    }
    assert_eq!(covered, u64::from(checked.nr_sectors) * SECTOR_SIZE, "segments do not cover the sectors exactly");
}

/// Target `block_request`: block requests (any bytes, decoded as the ring decodes them)
/// through `block::check::check_request` against a disk size the input picks, then
/// through the backend's handler on the model memory, with a grant table whose first
/// entries the input writes.
///
/// Input: `FUZZED_GRANTS` raw grant entries (16 bytes each), one byte of flags
/// (read-only disk), a u64 disk size in sectors for the bare check (taken modulo the
/// largest disk a file can hold), then requests of
/// `BlockRequest::SIZE` bytes.
pub fn block_request(data: &[u8]) {
    let mut input = Input(data);
    let memory = model_memory();
    let table = input.bytes(FUZZED_GRANTS * GRANT_ENTRY_SIZE);
    memory.write_slice(&table, GuestAddress(page(GRANT_TABLE_PAGE).raw())).expect("the table page is in memory");
    let read_only = input.u8() & 1 == 1;
    // Any disk a file can hold: a file's size is at most i64::MAX bytes, so a byte
    // offset inside the disk never overflows a u64.
    let check_sectors = input.u64() % (i64::MAX as u64 / SECTOR_SIZE + 1);
    let image = DiskImage::open(&disk_path(), read_only).expect("opening the model disk");
    let grants = GrantTable::new(memory.clone(), page(GRANT_TABLE_PAGE), usable_frames());
    let mut backend = BlockBackend::new(image, grants);
    let mut stats = BackendStats::default();
    for _ in 0..MAX_REQUESTS {
        if input.is_empty() {
            break;
        }
        let request = BlockRequest::decode(&input.bytes(BlockRequest::SIZE));
        if let Ok(checked) = block_check::check_request(&request, check_sectors, read_only) {
            assert_checked_block_request_is_sound(&checked, check_sectors, read_only);
        }
        let response = backend.handle(&request, &mut HandlerContext { events: &NoEvents, stats: &mut stats });
        assert_eq!(response.id, request.id, "the response answers another request");
        let _ = BlockBackend::summarize(&request);
    }
    // Nothing outside granted frames was written: the grant table is as the input left
    // it (a read writes only into frames granted writable, all of which lie between
    // FIRST_USABLE_FRAME and the table).
    assert_table_unchanged(&memory, &table);
}

/// The whole grant table, every frame, is as the input wrote it: its first entries
/// `table`, zeros after them.
fn assert_table_unchanged(memory: &GuestMemory, table: &[u8]) {
    let mut after = vec![0u8; GRANT_TABLE_BYTES as usize];
    memory.read_slice(&mut after, GuestAddress(page(GRANT_TABLE_PAGE).raw())).expect("the table is in memory");
    assert_eq!(after[..table.len()], *table, "the backend wrote into the grant table");
    assert!(after[table.len()..].iter().all(|b| *b == 0), "the backend wrote into the grant table's later frames");
}

/// What the terminal may receive from a guest: no control character but newline, tab,
/// and a carriage return directly before a newline.
fn assert_terminal_safe(text: &str) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => {}
            '\r' => assert_eq!(chars.peek(), Some(&'\n'), "a bare carriage return reached the terminal"),
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => panic!("a direction override reached the terminal"),
            c => assert!(!c.is_control(), "control character {c:?} reached the terminal"),
        }
    }
}

/// A `Write` that keeps what it is given, shared with the caller.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Target `console_request`: console requests (any bytes, decoded as the ring decodes
/// them) through `console::check::check_request` and the backend's handler; the whole
/// input also straight through the sanitizer. Whatever reaches the output must be
/// terminal-safe, and a refused request must print nothing.
pub fn console_request(data: &[u8]) {
    assert_terminal_safe(&String::from_utf8(sanitize(data)).expect("the sanitizer's output is UTF-8"));
    let captured = Captured::default();
    let mut backend = ConsoleBackend::new(Box::new(captured.clone()));
    let mut stats = BackendStats::default();
    let mut input = Input(data);
    for _ in 0..MAX_REQUESTS {
        if input.is_empty() {
            break;
        }
        let request = ConsoleRequest::decode(&input.bytes(ConsoleRequest::SIZE));
        let before = captured.0.lock().map(|b| b.len()).unwrap_or(0);
        let response = backend.handle(&request, &mut HandlerContext { events: &NoEvents, stats: &mut stats });
        let after = captured.0.lock().map(|b| b.len()).unwrap_or(0);
        match console_check::check_request(&request) {
            Ok(text) => assert_eq!(response.status, text.len() as i32, "the status is not the length written"),
            Err(too_long) => {
                assert_eq!(response.status, too_long.status());
                assert_eq!(before, after, "a refused request printed something");
            }
        }
        let _ = ConsoleBackend::summarize(&request);
    }
    let out = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
    assert_terminal_safe(&String::from_utf8(out).expect("the console's output is UTF-8"));
}

/// The balloon's frame check and its backend: each input is a series of balloon
/// requests (`BalloonRequest::SIZE` bytes each) served in order against a 64-frame
/// model RAM (hv's reserved area frames 0..3, the kernel 8..12, the page-table pool
/// 56..64). Whatever the requests say: the backend holds only frames the guest may
/// give, a refused batch changes nothing, an accepted one moves every frame, and the
/// set's size is always frames given minus frames taken back.
pub fn balloon_request(data: &[u8]) {
    use crate::balloon::check::{check_request, BalloonLimits};
    use crate::balloon::release::HostMemory;
    use crate::balloon::state::BalloonState;
    use crate::balloon::BalloonBackend;
    use pv_abi::device::balloon::{BalloonRequest, BalloonStatus};

    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), (MODEL_PAGES * PAGE_SIZE) as usize)]).expect("the model memory");
    let limits = BalloonLimits { ram_frames: MODEL_PAGES, reserved_end: 3, kernel: 8..12, pool: 56..64 };
    let state = Arc::new(std::sync::Mutex::new(BalloonState::new(MODEL_PAGES)));
    let ring = GuestPage::new(memory.clone(), PseudoPhys::new(RING_PAGE * PAGE_SIZE)).expect("the ring page");
    let mut backend = BalloonBackend::new(limits.clone(), state.clone(), HostMemory::new(memory), ring, None);
    let mut stats = BackendStats::default();
    let mut input = Input(data);
    for _ in 0..MAX_REQUESTS {
        if input.is_empty() {
            break;
        }
        let request = BalloonRequest::decode(&input.bytes(BalloonRequest::SIZE));
        let before = state.lock().expect("not poisoned").clone();
        let expected = check_request(&request, &limits, &before.ballooned);
        let response = backend.handle(&request, &mut HandlerContext { events: &NoEvents, stats: &mut stats });
        let after = state.lock().expect("not poisoned").clone();
        match expected {
            Ok(batch) => {
                assert_eq!(response.status, BalloonStatus::Ok as i32, "a batch that passed the check was not done");
                for &f in &batch.frames {
                    assert!(f >= 3 && !(8..12).contains(&f) && f < 56, "frame {f:#x} is not the guest's to give, yet passed");
                }
                assert_eq!(after.ballooned.len().abs_diff(before.ballooned.len()), batch.frames.len() as u64, "not every frame moved");
            }
            Err(refusal) => {
                assert_eq!(response.status, refusal.status as i32);
                assert_eq!(after.ballooned, before.ballooned, "a refused batch changed the set");
            }
        }
        assert_eq!(after.ballooned.len(), after.counters.inflated - after.counters.deflated, "the set and the counters disagree");
        assert!(after.ballooned.is_consistent());
        let _ = BalloonBackend::summarize(&request);
        let _ = BalloonBackend::describe_response(&response);
    }
}

/// A wiring for a backend thread on the model memory (eventfds that nobody reads).
fn model_wiring(memory: &GuestMemory) -> BackendWiring {
    // Non-blocking, so that a full eventfd counter never blocks the fuzzer.
    let eventfd = || EventFd::new(EFD_NONBLOCK).expect("an eventfd");
    BackendWiring {
        ring_page: GuestPage::new(memory.clone(), page(RING_PAGE)).expect("the ring page is in memory"),
        doorbell: eventfd(),
        notifier: GuestNotifier::new(memory.clone(), page(SHARED_INFO_PAGE), 0, eventfd()).expect("channel 0 exists"),
        events: Arc::new(NoEvents),
        notify_policy: NotifyPolicy::EventIndex,
        ring_start: 0,
    }
}

/// Target `ring_back`: the ring's back end (`pv_abi::ring::BackRing` over a
/// [`GuestPage`] of the model memory) on a page the input fills, under a hostile
/// frontend that rewrites indices and slots between the backend's steps.
///
/// Input: the ring page (4096 bytes; a short input leaves the rest zero), then steps of
/// one byte each (with operands): serve the ring with the console backend (the runner's
/// real `service_ring`), take / answer / publish / final-check on a block ring over the
/// same page, or write `req_prod`, `rsp_event` or any 8 bytes of the page.
pub fn ring_back(data: &[u8]) {
    let memory = model_memory();
    let mut input = Input(data);
    let ring_gpa = GuestAddress(page(RING_PAGE).raw());
    memory.write_slice(&input.bytes(PAGE_SIZE as usize), ring_gpa).expect("the ring page is in memory");
    let wiring = model_wiring(&memory);
    let start = input.u32();
    let mut console_ring: BackRing<GuestPage, ConsoleRequest, ConsoleResponse> = BackRing::attach_at(wiring.ring_page.clone(), start);
    let mut block_ring: BackRing<GuestPage, BlockRequest, BlockResponse> = BackRing::attach_at(wiring.ring_page.clone(), start);
    let mut console = ConsoleBackend::new(Box::new(std::io::sink()));
    let mut stats = BackendStats::default();
    let mut taken = 0u32;
    for _ in 0..256 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 => {
                if service_ring(&mut console_ring, &mut console, &wiring, &mut stats).is_ok() {
                    assert!(console_ring.idle_position().is_some(), "service_ring returned with requests unanswered");
                }
            }
            1 => {
                if let Ok(Some(_)) = block_ring.take_request() {
                    taken += 1;
                    assert!(taken <= BackRing::<GuestPage, BlockRequest, BlockResponse>::SLOTS, "more requests held than the ring has slots");
                }
            }
            2 => {
                if block_ring.push_response(&BlockResponse { id: 0, status: 0 }).is_ok() {
                    taken -= 1;
                }
            }
            3 => {
                block_ring.publish_responses();
            }
            4 => {
                block_ring.final_check_for_requests();
            }
            5 => wiring.ring_page.store_u32(REQ_PROD_OFFSET, input.u32()),
            6 => wiring.ring_page.store_u32(RSP_EVENT_OFFSET, input.u32()),
            _ => {
                let offset = (input.u32() as usize) % (PAGE_SIZE as usize - 8);
                wiring.ring_page.write_bytes(offset, &input.bytes(8));
            }
        }
    }
}

/// The network target's receive ring page (its transmit ring is `RING_PAGE`).
const NET_RX_RING_PAGE: u64 = 3;
/// The first frame the network target's grants may name.
const NET_FIRST_USABLE_FRAME: u64 = 4;
/// Frames one network input may inject from the model network.
const MAX_NET_FRAMES: usize = 256;

/// The model network: frames the backend sent, frames waiting for the guest.
#[derive(Default)]
struct ModelNetwork {
    sent: Vec<Frame>,
    waiting: std::collections::VecDeque<Frame>,
}

/// A port on the model network (a mutex, since a port must be `Send`).
struct ModelPort {
    network: Arc<std::sync::Mutex<ModelNetwork>>,
    ready: EventFd,
}

impl FramePort for ModelPort {
    fn transmit(&self, frame: &[u8]) {
        if let Ok(mut network) = self.network.lock() {
            network.sent.push(frame.to_vec());
        }
    }
    fn receive(&self) -> Option<Frame> {
        self.network.lock().ok()?.waiting.pop_front()
    }
    fn ready(&self) -> &EventFd {
        &self.ready
    }
}

/// Target `net_request`: the network backend (`net::NetBackend`, with its real
/// `net::check`) under a hostile guest that writes transmit requests and receive
/// buffers (any bytes, decoded as the ring decodes them), rewrites ring indices, and a
/// network that sends frames of any length.
///
/// Input: `FUZZED_GRANTS` raw grant entries (16 bytes each), then steps of one byte each
/// (with operands): push a transmit request (16 bytes) or a receive request (8 bytes)
/// and publish it; inject a frame (a u16 length, taken modulo 2048, then its bytes);
/// serve the transmit or the receive path; write a ring's `req_prod` (a u32).
///
/// Checked: a transmit request the check accepts names 14..=1514 bytes inside its frame;
/// every frame that reaches the network, and every frame a receive response announces,
/// has such a length; the counters agree with what the network saw; the grant table is
/// never written.
pub fn net_request(data: &[u8]) {
    let mut input = Input(data);
    let memory = model_memory();
    let table = input.bytes(FUZZED_GRANTS * GRANT_ENTRY_SIZE);
    memory.write_slice(&table, GuestAddress(page(GRANT_TABLE_PAGE).raw())).expect("the table page is in memory");
    let eventfd = || EventFd::new(EFD_NONBLOCK).expect("an eventfd");
    let ring = |n| GuestPage::new(memory.clone(), page(n)).expect("a ring page is in memory");
    let network = Arc::new(std::sync::Mutex::new(ModelNetwork::default()));
    let usable = FrameRange { start: PseudoFrame::new(NET_FIRST_USABLE_FRAME), end: PseudoFrame::new(GRANT_TABLE_PAGE) };
    let wiring = NetWiring {
        tx_ring: ring(RING_PAGE),
        rx_ring: ring(NET_RX_RING_PAGE),
        grants: GrantTable::new(memory.clone(), page(GRANT_TABLE_PAGE), usable),
        port: Box::new(ModelPort { network: network.clone(), ready: eventfd() }),
        tx_notifier: GuestNotifier::new(memory.clone(), page(SHARED_INFO_PAGE), 2, eventfd()).expect("channel 2 exists"),
        rx_notifier: GuestNotifier::new(memory.clone(), page(SHARED_INFO_PAGE), 3, eventfd()).expect("channel 3 exists"),
        events: Arc::new(NoEvents),
        notify_policy: NotifyPolicy::EventIndex,
    };
    let mut tx: FrontRing<GuestPage, NetTxRequest, NetTxResponse> = FrontRing::init(ring(RING_PAGE));
    let mut rx: FrontRing<GuestPage, NetRxRequest, NetRxResponse> = FrontRing::init(ring(NET_RX_RING_PAGE));
    let mut backend = NetBackend::new(wiring);
    let mut injected = 0;
    for _ in 0..MAX_REQUESTS * 4 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 7 {
            0 => {
                let request = NetTxRequest::decode(&input.bytes(NetTxRequest::SIZE));
                if let Ok(bytes) = net_check::check_tx_shape(&request) {
                    assert!((NET_MIN_FRAME..=NET_MAX_FRAME).contains(&bytes.len()), "a {}-byte frame passed", bytes.len());
                    assert!(bytes.end <= PAGE_SIZE as usize, "the bytes leave the frame");
                }
                if tx.push_request(&request).is_ok() {
                    tx.publish_requests();
                }
            }
            1 => {
                let request = NetRxRequest::decode(&input.bytes(NetRxRequest::SIZE));
                if rx.push_request(&request).is_ok() {
                    rx.publish_requests();
                }
            }
            2 => {
                let len = usize::from(u16::from_le_bytes([input.u8(), input.u8()])) % 2048;
                let frame = input.bytes(len);
                if injected < MAX_NET_FRAMES {
                    injected += 1;
                    network.lock().expect("the model network").waiting.push_back(frame);
                }
            }
            3 => {
                backend.serve_tx();
                while let Ok(Some(_)) = tx.take_response() {}
            }
            4 => {
                backend.serve_rx();
                while let Ok(Some(response)) = rx.take_response() {
                    assert!(response.status < 0 || (NET_MIN_FRAME..=NET_MAX_FRAME).contains(&(response.status as usize)), "a receive response of {} bytes", response.status);
                }
            }
            5 => ring(RING_PAGE).store_u32(REQ_PROD_OFFSET, input.u32()),
            _ => ring(NET_RX_RING_PAGE).store_u32(REQ_PROD_OFFSET, input.u32()),
        }
    }
    let stats = backend.stats().clone();
    let sent = std::mem::take(&mut network.lock().expect("the model network").sent);
    assert_eq!(sent.len() as u64, stats.frames_tx);
    for frame in &sent {
        assert!((NET_MIN_FRAME..=NET_MAX_FRAME).contains(&frame.len()), "a {}-byte frame reached the network", frame.len());
    }
    assert_table_unchanged(&memory, &table);
}
