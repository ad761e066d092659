//! Frontend and backend together in one process, on simulated guest memory (no KVM).
//!
//! The backend runs on its real thread with its real loop; the frontend is the same
//! code the guest kernel runs. Only the two "hardware" links are simulated, each with
//! the same kind of object KVM uses: the doorbell is the backend's eventfd written
//! directly (KVM's ioeventfd would write it), and the upcall is the irqfd read directly
//! (KVM would turn it into an interrupt).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backend_drivers::block::image::DiskImage;
use backend_drivers::block::BlockBackend;
use backend_drivers::console::ConsoleBackend;
use backend_drivers::event_channel::GuestNotifier;
use backend_drivers::events::{DeviceEvent, DeviceEventSink};
use backend_drivers::grant_table::GrantTable;
use backend_drivers::guest_page::GuestPage;
use backend_drivers::runner::{self, BackendHandle, BackendWiring, NotifyPolicy, RequestHandler};
use frontend_drivers::block::{BlockError, BlockFront};
use frontend_drivers::console::ConsoleFront;
use frontend_drivers::grant_table::{GrantFrames, GrantTableFront};
use frontend_drivers::{Doorbell, WaitForEvent};
use pv_abi::device::block::{BlockOp, BlockRequest, BlockResponse, BlockStatus, BLOCK_MAX_SEGMENTS, BLOCK_OP_READ};
use pv_abi::device::console::{ConsoleRequest, ConsoleResponse, CONSOLE_EINVAL};
use pv_abi::addr::{FrameRange, PseudoFrame, PseudoPhys};
use pv_abi::grant::GRANT_ENTRIES;
use pv_abi::ring::{FrontRing, SharedPage};
use backend_drivers::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MEM: u64 = 8 << 20;
const SHARED_INFO: u64 = 0x3000;
/// The grant table's first frame (its frames follow, past the ring), where hv puts it.
const GRANT_TABLE: u64 = pv_abi::layout::GRANT_TABLE_GPA;
const RING: u64 = 0x5000;
/// Data frames live above the "reserved" first MiB, as in a real guest.
const FIRST_DATA_FRAME: u64 = 0x100;
/// A test that waits longer than this has found a lost wake-up.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// The simulated doorbell: writes the backend's eventfd, as KVM's ioeventfd would.
struct EventFdDoorbell(EventFd);
impl Doorbell for EventFdDoorbell {
    fn ring(&self) {
        self.0.write(1).unwrap();
    }
}

/// The simulated upcall: waits for the irqfd the backend signals.
struct IrqfdWait(EventFd);
impl WaitForEvent for IrqfdWait {
    fn wait(&self) {
        let start = Instant::now();
        while self.0.read().is_err() {
            assert!(start.elapsed() < WAIT_LIMIT, "no upcall arrived: a notification was lost");
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Collects the backend's events.
#[derive(Default)]
struct Collected(Mutex<Vec<DeviceEvent>>);
impl DeviceEventSink for Collected {
    fn enabled(&self) -> bool {
        true
    }
    fn record(&self, e: DeviceEvent) {
        self.0.lock().unwrap().push(e);
    }
}

/// A console output the test can read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Rig {
    backend: BackendHandle,
    doorbell: EventFd,
    irqfd: EventFd,
    events: Arc<Collected>,
}

fn rig<H: RequestHandler>(memory: &GuestMemory, handler: H, policy: NotifyPolicy) -> Rig {
    let doorbell = EventFd::new(EFD_NONBLOCK).unwrap();
    let irqfd = EventFd::new(EFD_NONBLOCK).unwrap();
    let events = Arc::new(Collected::default());
    let wiring = BackendWiring {
        ring_page: GuestPage::new(memory.clone(), PseudoPhys::new(RING)).unwrap(),
        doorbell: doorbell.try_clone().unwrap(),
        notifier: GuestNotifier::new(memory.clone(), PseudoPhys::new(SHARED_INFO), 1, irqfd.try_clone().unwrap()).unwrap(),
        events: events.clone(),
        notify_policy: policy,
        ring_start: 0,
    };
    let backend = runner::spawn(handler, wiring).unwrap();
    backend.start();
    Rig { backend, doorbell, irqfd, events }
}

/// The frames grants may name: the test's "RAM" above its reserved first MiB.
fn data_frames() -> FrameRange<PseudoFrame> {
    FrameRange { start: data_frame(0), end: PseudoFrame::new(MEM / 4096) }
}

/// The `i`th data frame.
fn data_frame(i: u64) -> PseudoFrame {
    PseudoFrame::new(FIRST_DATA_FRAME + i)
}

fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
}

fn page(m: &GuestMemory, gpa: u64) -> GuestPage {
    GuestPage::new(m.clone(), PseudoPhys::new(gpa)).unwrap()
}

/// The grant table's frames, as the guest kernel hands them to its allocator.
fn grant_frames(m: &GuestMemory) -> GrantFrames<GuestPage> {
    core::array::from_fn(|i| page(m, GRANT_TABLE + i as u64 * 4096))
}

impl Rig {
    fn doorbell(&self) -> EventFdDoorbell {
        EventFdDoorbell(self.doorbell.try_clone().unwrap())
    }
    fn waiter(&self) -> IrqfdWait {
        IrqfdWait(self.irqfd.try_clone().unwrap())
    }
}

// ---------------------------------------------------------------- console

#[test]
fn a_console_burst_larger_than_the_ring_arrives_whole_and_in_order() {
    let m = memory();
    let out = Captured::default();
    let rig = rig(&m, ConsoleBackend::new(Box::new(out.clone())), NotifyPolicy::EventIndex);
    let mut console = ConsoleFront::new(page(&m, RING), rig.doorbell(), rig.waiter());
    let mut expected = Vec::new();
    for i in 0..500 {
        let line = format!("line {i:03}: the quick brown fox jumps over the lazy dog\n");
        console.write(line.as_bytes()).unwrap();
        expected.extend_from_slice(line.as_bytes());
    }
    console.flush().unwrap();
    assert!(expected.len() > 32 * 48 * 10, "the burst is many times the ring's capacity");
    assert_eq!(*out.0.lock().unwrap(), expected);
    let stats = rig.backend.stop().unwrap();
    assert_eq!(stats.requests, console.stats().requests);
    assert!(console.stats().waits > 0, "the frontend had to wait for the ring to drain");
}

#[test]
fn hostile_console_request_whose_length_runs_past_its_slot_is_refused() {
    let m = memory();
    let out = Captured::default();
    let rig = rig(&m, ConsoleBackend::new(Box::new(out.clone())), NotifyPolicy::EventIndex);
    let mut ring: FrontRing<GuestPage, ConsoleRequest, ConsoleResponse> = FrontRing::init(page(&m, RING));
    let mut hostile = ConsoleRequest::new(7, b"abc");
    hostile.len = 100_000;
    ring.push_request(&hostile).unwrap();
    ring.publish_requests();
    rig.doorbell().ring();
    let response = wait_for(|| ring.take_response().unwrap());
    assert_eq!(response, ConsoleResponse { id: 7, status: CONSOLE_EINVAL });
    assert!(out.0.lock().unwrap().is_empty(), "nothing was printed");
}

#[test]
fn hostile_corrupt_producer_index_is_reported_and_nothing_is_consumed() {
    let m = memory();
    let out = Captured::default();
    let rig = rig(&m, ConsoleBackend::new(Box::new(out.clone())), NotifyPolicy::EventIndex);
    let _ring: FrontRing<GuestPage, ConsoleRequest, ConsoleResponse> = FrontRing::init(page(&m, RING));
    // req_prod is the first u32 of the ring page: claim a million requests.
    page(&m, RING).store_u32(0, 1_000_000);
    rig.doorbell().ring();
    wait_for(|| rig.events.0.lock().unwrap().iter().any(|e| matches!(e, DeviceEvent::RingError { .. })).then_some(()));
    let stats = rig.backend.stats().expect("the backend thread is still alive");
    assert_eq!((stats.requests, stats.ring_errors), (0, 1));
    assert!(out.0.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------- block

/// A temporary disk image filled with a pattern.
struct TempImage(std::path::PathBuf);
impl TempImage {
    fn new(name: &str, sectors: u64) -> Self {
        let path = std::env::temp_dir().join(format!("hv-split-{}-{name}.img", std::process::id()));
        let data: Vec<u8> = (0..sectors * 512).map(|i| (i * 7 + i / 512) as u8).collect();
        std::fs::write(&path, data).unwrap();
        TempImage(path)
    }
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}
impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn block_rig(m: &GuestMemory, image: &TempImage, read_only: bool) -> Rig {
    let disk = DiskImage::open(&image.0, read_only).unwrap();
    let grants = GrantTable::new(m.clone(), PseudoPhys::new(GRANT_TABLE), data_frames());
    rig(m, BlockBackend::new(disk, grants), NotifyPolicy::EventIndex)
}

type Front = BlockFront<GuestPage, GuestPage, EventFdDoorbell, IrqfdWait>;

fn block_front(m: &GuestMemory, rig: &Rig) -> Front {
    let grants = GrantTableFront::new(grant_frames(m));
    BlockFront::new(page(m, RING), grants, rig.doorbell(), rig.waiter())
}

fn frame_bytes(m: &GuestMemory, frame: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    m.read_slice(&mut v, GuestAddress(frame * 4096)).unwrap();
    v
}

#[test]
fn thirty_two_reads_in_flight_return_exactly_the_image_bytes() {
    let m = memory();
    let image = TempImage::new("reads", 32 * 8);
    let rig = block_rig(&m, &image, false);
    let mut front = block_front(&m, &rig);
    let mut ids = Vec::new();
    for i in 0..32u64 {
        ids.push((front.submit(BlockOp::Read, i * 8, 8, &[data_frame(i)]).unwrap(), i));
    }
    assert_eq!(front.in_flight(), 32);
    front.kick();
    for _ in 0..32 {
        let (_, status) = front.wait_for_completion().unwrap();
        assert_eq!(status, BlockStatus::Ok);
    }
    let disk = image.bytes();
    for (_, i) in ids {
        let start = (i * 4096) as usize;
        assert_eq!(frame_bytes(&m, FIRST_DATA_FRAME + i, 4096), disk[start..start + 4096], "request {i}");
    }
    let stats = rig.backend.stop().unwrap();
    assert_eq!(stats.requests, 32);
    assert!(stats.doorbells < 32, "one publish of 32 requests needs one doorbell, not 32");
}

#[test]
fn persistent_grants_serve_many_rounds_of_requests_and_are_revoked_only_when_asked() {
    // The task path (pv-guest's task::blk_io): 4 buffers of 2 frames granted once,
    // requests stored field by field into the ring, completions found through the id
    // hint; 5 rounds over the same grants, every byte checked.
    let m = memory();
    let image = TempImage::new("persistent", 5 * 4 * 16);
    let rig = block_rig(&m, &image, false);
    let mut front = block_front(&m, &rig);
    let grefs: Vec<Vec<u32>> = (0..4u64).map(|b| (0..2).map(|f| front.grant_persistent(data_frame(b * 2 + f), false).unwrap()).collect()).collect();
    assert_eq!(front.grants_free(), GRANT_ENTRIES - 1 - 8);
    let disk = image.bytes();
    for round in 0..5u64 {
        for (b, g) in grefs.iter().enumerate() {
            front.submit_granted(b, BlockOp::Read, (round * 4 + b as u64) * 16, 16, g).unwrap();
        }
        assert_eq!(front.submit_granted(0, BlockOp::Read, 0, 16, &grefs[0]), Err(BlockError::RingFull), "buffer 0 is in flight");
        front.kick();
        let mut done = 0;
        while done < 4 {
            match front.take_completion().unwrap() {
                Some((_, Some(_), status)) => {
                    assert_eq!(status, BlockStatus::Ok);
                    done += 1;
                }
                Some((id, None, _)) => panic!("completion {id} not matched to its buffer"),
                None => front.wait_for_responses(),
            }
        }
        for b in 0..4u64 {
            let start = ((round * 4 + b) * 16 * 512) as usize;
            assert_eq!(frame_bytes(&m, FIRST_DATA_FRAME + b * 2, 8192), disk[start..start + 8192], "round {round} buffer {b}");
        }
    }
    assert_eq!(front.grants_free(), GRANT_ENTRIES - 1 - 8, "completions revoke nothing on the persistent path");
    grefs.iter().flatten().for_each(|g| front.revoke_persistent(*g));
    assert_eq!(front.grants_free(), GRANT_ENTRIES - 1);
    // A request on revoked grants is refused by the backend's grant check.
    front.submit_granted(0, BlockOp::Read, 0, 16, &grefs[0]).unwrap();
    front.kick();
    let status = loop {
        match front.take_completion().unwrap() {
            Some((_, _, status)) => break status,
            None => front.wait_for_responses(),
        }
    };
    assert_eq!(status, BlockStatus::BadGrant);
    assert_eq!(front.submit_granted(32, BlockOp::Read, 0, 8, &grefs[0][..1]), Err(BlockError::BadShape), "no buffer 32");
    assert_eq!(front.submit_granted(1, BlockOp::Read, 0, 9, &grefs[1][..1]), Err(BlockError::BadShape), "9 sectors need 2 frames");
    rig.backend.stop().unwrap();
}

#[test]
fn a_write_then_flush_reaches_the_image_file() {
    let m = memory();
    let image = TempImage::new("write", 64);
    let rig = block_rig(&m, &image, false);
    let mut front = block_front(&m, &rig);
    let frames = [data_frame(0), data_frame(1)];
    m.write_slice(&[0xab; 8192], GuestAddress(FIRST_DATA_FRAME * 4096)).unwrap();
    assert_eq!(front.transfer(BlockOp::Write, 10, 12, &frames).unwrap(), BlockStatus::Ok);
    assert_eq!(front.transfer(BlockOp::Flush, 0, 0, &[]).unwrap(), BlockStatus::Ok);
    let disk = image.bytes();
    assert!(disk[10 * 512..22 * 512].iter().all(|b| *b == 0xab));
    assert_ne!(disk[22 * 512], 0xab, "exactly 12 sectors were written");
    assert_ne!(disk[10 * 512 - 1], 0xab);
}

#[test]
fn hostile_write_to_a_read_only_disk_is_refused_and_its_bytes_kept() {
    let m = memory();
    let image = TempImage::new("ro", 16);
    let before = image.bytes();
    let rig = block_rig(&m, &image, true);
    let mut front = block_front(&m, &rig);
    assert_eq!(front.transfer(BlockOp::Write, 0, 8, &[data_frame(0)]).unwrap(), BlockStatus::ReadOnly);
    assert_eq!(front.transfer(BlockOp::Read, 0, 8, &[data_frame(0)]).unwrap(), BlockStatus::Ok);
    assert_eq!(image.bytes(), before);
}

/// A tmpfs of a few KiB mounted for one test (a full file system on demand), unmounted
/// and removed when dropped. `None`, said loudly, where mounting is not allowed.
struct SmallFs(std::path::PathBuf);
impl SmallFs {
    fn mount(kib: u64) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("hv-split-{}-tmpfs", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs", dir.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root): the ENOSPC test did not run");
            std::fs::remove_dir(&dir).ok();
            return None;
        }
        Some(SmallFs(dir))
    }
}
impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn hostile_disk_on_a_full_file_system_reports_eio_and_never_a_write_that_did_not_land() {
    let Some(fs) = SmallFs::mount(64) else { return };
    let path = fs.0.join("disk.img");
    // 1 MiB of disk on 64 KiB of file system: a sparse file that fills as it is written.
    std::fs::File::create(&path).unwrap().set_len(1 << 20).unwrap();
    let m = memory();
    let disk = DiskImage::open(&path, false).unwrap();
    let rig = rig(&m, BlockBackend::new(disk, GrantTable::new(m.clone(), PseudoPhys::new(GRANT_TABLE), data_frames())), NotifyPolicy::EventIndex);
    let mut front = block_front(&m, &rig);
    let frames: Vec<PseudoFrame> = (0..16).map(data_frame).collect();
    // 128 sectors (64 KiB) per request, each request's bytes its own.
    let mut answers = Vec::new();
    for (i, sector) in (0..2048u64).step_by(128).enumerate() {
        m.write_slice(&[i as u8 + 1; 16 * 4096], GuestAddress(FIRST_DATA_FRAME * 4096)).unwrap();
        answers.push((sector, i as u8 + 1, front.transfer(BlockOp::Write, sector, 128, &frames).unwrap()));
    }
    assert!(answers.iter().any(|(_, _, s)| *s == BlockStatus::IoError), "the file system filled: {answers:?}");
    assert_eq!(front.transfer(BlockOp::Flush, 0, 0, &[]).unwrap(), BlockStatus::Ok, "what was reported written is on the file system");
    let on_disk = std::fs::read(&path).unwrap();
    for (sector, byte, status) in &answers {
        if *status == BlockStatus::Ok {
            let at = (*sector * 512) as usize;
            assert!(on_disk[at..at + 128 * 512].iter().all(|b| b == byte), "a write reported done at sector {sector} is in the file");
        }
    }
    // The backend goes on serving.
    assert_eq!(front.transfer(BlockOp::Read, 0, 8, &[data_frame(0)]).unwrap(), BlockStatus::Ok);
    let stats = rig.backend.stop().unwrap();
    assert!(stats.failed_requests >= 1);
}

#[test]
fn hostile_disk_image_that_shrinks_gives_read_errors_and_hv_goes_on() {
    let m = memory();
    let image = TempImage::new("shrink", 64);
    let rig = block_rig(&m, &image, false);
    let mut front = block_front(&m, &rig);
    // Someone truncates the image under hv to 16 sectors.
    std::fs::OpenOptions::new().write(true).open(&image.0).unwrap().set_len(16 * 512).unwrap();
    assert_eq!(front.transfer(BlockOp::Read, 32, 8, &[data_frame(0)]).unwrap(), BlockStatus::IoError, "past the new end");
    assert_eq!(front.transfer(BlockOp::Read, 0, 8, &[data_frame(0)]).unwrap(), BlockStatus::Ok, "before it");
    // A write past the new end lands in the file (which grows again): it is reported done
    // because it is there.
    m.write_slice(&[0xcd; 4096], GuestAddress(FIRST_DATA_FRAME * 4096)).unwrap();
    assert_eq!(front.transfer(BlockOp::Write, 40, 8, &[data_frame(0)]).unwrap(), BlockStatus::Ok);
    assert_eq!(front.transfer(BlockOp::Flush, 0, 0, &[]).unwrap(), BlockStatus::Ok);
    assert!(image.bytes()[40 * 512..48 * 512].iter().all(|b| *b == 0xcd));
}

#[test]
fn hostile_disk_image_removed_under_hv_refuses_writes_and_flushes() {
    let m = memory();
    let image = TempImage::new("removed", 64);
    let rig = block_rig(&m, &image, false);
    let mut front = block_front(&m, &rig);
    std::fs::remove_file(&image.0).unwrap();
    assert_eq!(front.transfer(BlockOp::Write, 0, 8, &[data_frame(0)]).unwrap(), BlockStatus::IoError, "the data would vanish with hv");
    assert_eq!(front.transfer(BlockOp::Flush, 0, 0, &[]).unwrap(), BlockStatus::IoError);
    // Reads still answer from the open file: its data is intact.
    assert_eq!(front.transfer(BlockOp::Read, 0, 8, &[data_frame(0)]).unwrap(), BlockStatus::Ok);
}

/// Sends one hand-made request straight through the ring and returns the response.
fn raw_block_request(m: &GuestMemory, rig: &Rig, request: BlockRequest) -> BlockResponse {
    let mut ring: FrontRing<GuestPage, BlockRequest, BlockResponse> = FrontRing::init(page(m, RING));
    ring.push_request(&request).unwrap();
    ring.publish_requests();
    rig.doorbell().ring();
    wait_for(|| ring.take_response().unwrap())
}

fn read_request(sector: u64, grefs: [u32; BLOCK_MAX_SEGMENTS]) -> BlockRequest {
    BlockRequest { id: 42, sector, op: BLOCK_OP_READ, nr_segments: 1, nr_sectors: 8, grefs }
}

#[test]
fn hostile_ungranted_reference_gets_an_error_and_no_data_moves() {
    let m = memory();
    let image = TempImage::new("nogrant", 16);
    let rig = block_rig(&m, &image, false);
    let _grants = GrantTableFront::new(grant_frames(&m)); // every entry revoked
    let mut grefs = [0; BLOCK_MAX_SEGMENTS];
    grefs[0] = 5;
    let r = raw_block_request(&m, &rig, read_request(0, grefs));
    assert_eq!(BlockStatus::from_i32(r.status), BlockStatus::BadGrant);
    let events = rig.events.0.lock().unwrap();
    assert!(events.iter().any(|e| matches!(e, DeviceEvent::GrantCheck { gref: 5, result: Err(_), .. })));
    assert_eq!(rig.backend.stats().unwrap().bytes_to_guest, 0);
}

#[test]
fn hostile_references_at_the_grant_tables_end_the_last_is_served_the_next_is_refused() {
    let m = memory();
    let image = TempImage::new("tableend", 16);
    let rig = block_rig(&m, &image, false);
    let mut front = block_front(&m, &rig);
    assert_eq!(front.grants_free(), GRANT_ENTRIES - 1);
    // Fill the table, so the last grant handed out is the table's last entry.
    let all: Vec<_> = (0..GRANT_ENTRIES - 1).map(|i| front.grant_persistent(data_frame(u64::from(i % 64)), false).unwrap()).collect();
    let last = *all.last().unwrap();
    assert_eq!((last, front.grants_free()), (GRANT_ENTRIES - 1, 0));
    front.revoke_persistent(last);
    assert_eq!(front.grant_persistent(data_frame(100), false), Ok(last));
    let mut read = |buffer: usize, gref: u32| {
        front.submit_granted(buffer, BlockOp::Read, 0, 8, &[gref]).unwrap();
        front.kick();
        loop {
            match front.take_completion().unwrap() {
                Some((_, Some(b), status)) if b == buffer => break status,
                Some(other) => panic!("an unexpected completion {other:?}"),
                None => front.wait_for_responses(),
            }
        }
    };
    assert_eq!(read(0, last), BlockStatus::Ok, "entry {last}, in the table's last frame, is served");
    assert_eq!(frame_bytes(&m, data_frame(100).raw(), 4096), image.bytes()[..4096]);
    // One past it: the 16 bytes after the table hold what looks like a grant of
    // another frame, which the backend must never read.
    let past = GRANT_TABLE + u64::from(GRANT_ENTRIES) * 16;
    m.write_obj(data_frame(101).raw(), GuestAddress(past + 8)).unwrap();
    m.write_obj(1u32, GuestAddress(past)).unwrap();
    let moved = rig.backend.stats().unwrap().bytes_to_guest;
    assert_eq!(read(1, GRANT_ENTRIES), BlockStatus::BadGrant);
    assert_eq!(read(2, u32::MAX), BlockStatus::BadGrant);
    assert_eq!(rig.backend.stats().unwrap().bytes_to_guest, moved, "no data moved");
    assert!(frame_bytes(&m, data_frame(101).raw(), 4096).iter().all(|b| *b == 0));
}

#[test]
fn hostile_grant_of_a_frame_outside_guest_ram_is_refused() {
    let m = memory();
    let image = TempImage::new("badframe", 16);
    let rig = block_rig(&m, &image, false);
    let mut grants = GrantTableFront::new(grant_frames(&m));
    let gref = grants.grant(PseudoFrame::new(u64::MAX / 4096), false).unwrap();
    let mut grefs = [0; BLOCK_MAX_SEGMENTS];
    grefs[0] = gref;
    let r = raw_block_request(&m, &rig, read_request(0, grefs));
    assert_eq!(BlockStatus::from_i32(r.status), BlockStatus::BadGrant);
}

#[test]
fn hostile_sector_near_u64_max_is_refused() {
    let m = memory();
    let image = TempImage::new("bigsector", 16);
    let rig = block_rig(&m, &image, false);
    let mut grants = GrantTableFront::new(grant_frames(&m));
    let mut grefs = [0; BLOCK_MAX_SEGMENTS];
    grefs[0] = grants.grant(data_frame(0), false).unwrap();
    let r = raw_block_request(&m, &rig, read_request(u64::MAX - 3, grefs));
    assert_eq!(BlockStatus::from_i32(r.status), BlockStatus::BadRequest);
}

#[test]
fn hostile_disk_that_shrinks_under_the_backend_gives_io_errors_not_a_hang() {
    let m = memory();
    let image = TempImage::new("shrink", 64);
    let rig = block_rig(&m, &image, false);
    let mut front = block_front(&m, &rig);
    std::fs::OpenOptions::new().write(true).open(&image.0).unwrap().set_len(512).unwrap();
    assert_eq!(front.transfer(BlockOp::Read, 8, 8, &[data_frame(0)]).unwrap(), BlockStatus::IoError);
    // And the device still works for what is left.
    std::fs::File::options().write(true).open(&image.0).unwrap().write_all_at(&[1; 512], 0).unwrap();
    assert_eq!(front.transfer(BlockOp::Read, 0, 1, &[data_frame(0)]).unwrap(), BlockStatus::Ok);
}

#[test]
fn event_index_suppression_cuts_upcalls_compared_with_always_notifying() {
    let mut upcalls = Vec::new();
    for policy in [NotifyPolicy::EventIndex, NotifyPolicy::Always] {
        let m = memory();
        let image = TempImage::new(&format!("{policy:?}"), 256);
        let disk = DiskImage::open(&image.0, false).unwrap();
        let grants = GrantTable::new(m.clone(), PseudoPhys::new(GRANT_TABLE), data_frames());
        let rig = rig(&m, BlockBackend::new(disk, grants), policy);
        let mut front = block_front(&m, &rig);
        for i in 0..32 {
            front.submit(BlockOp::Read, i * 8, 8, &[data_frame(i)]).unwrap();
        }
        front.kick();
        for _ in 0..32 {
            front.wait_for_completion().unwrap();
        }
        upcalls.push(rig.backend.stop().unwrap().notifications);
    }
    assert_eq!(upcalls[1], 32, "always: one upcall per response");
    assert!(upcalls[0] <= upcalls[1], "suppression never adds upcalls: {upcalls:?}");
}

/// Polls `f` until it returns Some, failing the test after WAIT_LIMIT.
fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT_LIMIT, "timed out waiting for the backend");
        std::thread::sleep(Duration::from_micros(100));
    }
}

// ---------------------------------------------------------------- balloon

/// A balloon backend on the test's memory: reserved below frame 0x100, a "kernel" at
/// 0x100..0x110, a "page-table pool" in the top 1 MiB.
fn balloon_rig(m: &GuestMemory) -> (Rig, Arc<Mutex<backend_drivers::balloon::state::BalloonState>>) {
    use backend_drivers::balloon::check::BalloonLimits;
    use backend_drivers::balloon::release::HostMemory;
    use backend_drivers::balloon::state::BalloonState;
    let frames = MEM / 4096;
    let limits = BalloonLimits { ram_frames: frames, reserved_end: FIRST_DATA_FRAME, kernel: 0x100..0x110, pool: frames - 256..frames };
    let state = Arc::new(Mutex::new(BalloonState::new(frames)));
    let backend = backend_drivers::balloon::BalloonBackend::new(limits, state.clone(), HostMemory::new(m.clone()), page(m, RING), None);
    (rig(m, backend, NotifyPolicy::EventIndex), state)
}

#[test]
fn balloon_frames_given_read_as_zeros_and_come_back_when_taken() {
    use frontend_drivers::balloon::{BalloonFront, BalloonOp};
    use pv_abi::device::balloon::{BalloonStatus, BALLOON_SIZE_OFFSET};
    let m = memory();
    let (rig, state) = balloon_rig(&m);
    let mut front = BalloonFront::new(page(&m, RING), rig.doorbell());
    let given: Vec<PseudoFrame> = (0x200..0x200 + 60).map(PseudoFrame::new).collect();
    for f in &given {
        m.write_slice(&[0xee; 4096], GuestAddress(f.raw() * 4096)).unwrap();
    }
    for batch in given.chunks(30) {
        front.submit(BalloonOp::Inflate, batch).unwrap();
    }
    front.kick();
    for _ in 0..2 {
        let done = wait_for(|| front.poll().unwrap());
        assert_eq!((done.op, done.status, done.count), (BalloonOp::Inflate, BalloonStatus::Ok, 30));
    }
    let mut byte = [0u8; 1];
    m.read_slice(&mut byte, GuestAddress(0x200 * 4096 + 17)).unwrap();
    assert_eq!(byte[0], 0, "a released frame reads as zeros");
    assert_eq!(front.host_size_pages(), 60, "the control block says what the host holds");
    assert_eq!(state.lock().unwrap().ballooned.len(), 60);
    let mut size = [0u8; 8];
    page(&m, RING).read_bytes(BALLOON_SIZE_OFFSET, &mut size);
    assert_eq!(u64::from_le_bytes(size), 60);

    front.submit(BalloonOp::Deflate, &given[..10]).unwrap();
    front.kick();
    let done = wait_for(|| front.poll().unwrap());
    assert_eq!((done.op, done.status, done.frames()), (BalloonOp::Deflate, BalloonStatus::Ok, &given[..10]));
    assert_eq!(state.lock().unwrap().ballooned.len(), 50);
    assert_eq!(state.lock().unwrap().counters.deflated, 10);
}

#[test]
fn hostile_balloon_batches_are_refused_whole_with_a_refused_event() {
    use frontend_drivers::balloon::{BalloonFront, BalloonOp};
    use pv_abi::device::balloon::BalloonStatus;
    let m = memory();
    let (rig, state) = balloon_rig(&m);
    let mut front = BalloonFront::new(page(&m, RING), rig.doorbell());
    // One good frame, then one of the "kernel": nothing of the batch may happen.
    front.submit(BalloonOp::Inflate, &[PseudoFrame::new(0x300), PseudoFrame::new(0x105)]).unwrap();
    front.kick();
    let done = wait_for(|| front.poll().unwrap());
    assert_eq!(done.status, BalloonStatus::Kernel);
    assert!(state.lock().unwrap().ballooned.is_empty(), "a refused batch gives nothing");
    front.submit(BalloonOp::Deflate, &[PseudoFrame::new(0x300)]).unwrap();
    front.kick();
    assert_eq!(wait_for(|| front.poll().unwrap()).status, BalloonStatus::NotBallooned);
    let refused = rig.events.0.lock().unwrap().iter().filter(|e| matches!(e, DeviceEvent::Refused { device: "balloon", .. })).count();
    assert_eq!(refused, 2, "each refusal is an event for the trace");
    assert_eq!(state.lock().unwrap().counters.refused, 2);
}
