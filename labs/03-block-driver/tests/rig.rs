//! The test rig of lab 3 (not a test file: `mod rig;` in each test file).
//!
//! A block frontend and a block backend in one process, on simulated guest memory, with
//! no KVM and no backend thread: the test itself plays the backend thread, calling
//! `backend_drivers::runner::service_ring` when it wants the backend to serve the ring.
//! Everything in between is the real code: the ring page (`pv_abi::ring`), the grant
//! table page and its check (`backend_drivers::grant_table`), the disk image on the
//! host. A panic in your code (a `todo!`) therefore shows up in the test that caused it.
//!
//! Guest memory: 8 MiB. The first MiB is the "reserved area" (no grant may name a frame
//! there); the shared-info page, the grant table and the ring live in it. Data frames
//! are from 1 MiB up.

#![allow(dead_code)] // each test file uses a part of the rig

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use backend_drivers::block::image::DiskImage;
use backend_drivers::block::BlockBackend;
use backend_drivers::event_channel::GuestNotifier;
use backend_drivers::events::{DeviceEvent, DeviceEventSink};
use backend_drivers::grant_table::GrantTable;
use backend_drivers::guest_page::GuestPage;
use backend_drivers::runner::{service_ring, BackendStats, BackendWiring, NotifyPolicy};
use frontend_drivers::block::BlockFront;
use frontend_drivers::grant_table::{GrantFrames, GrantTableFront};
use frontend_drivers::{Doorbell, WaitForEvent};
use pv_abi::addr::{FrameRange, PseudoFrame, PseudoPhys};
use pv_abi::device::block::{BlockRequest, BlockResponse, BLOCK_MAX_SEGMENTS};
use pv_abi::grant::{GrantAccess, GrantRef, GRANT_ENTRY_SIZE, GRANT_FLAGS_OFFSET};
use pv_abi::ring::{BackRing, FrontRing};
use backend_drivers::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest RAM of the rig.
pub const MEM: u64 = 8 << 20;
const SHARED_INFO: u64 = 0x3000;
/// The grant table's first frame (`pv_abi::grant::GRANT_TABLE_FRAMES` frames from here,
/// past the ring, where hv puts them).
pub const GRANT_TABLE: u64 = 0x1_0000;
const RING: u64 = 0x5000;
/// The first frame a grant may name (1 MiB).
pub const FIRST_DATA_FRAME: u64 = 0x100;
/// A sector, in bytes.
pub const SECTOR: usize = 512;

/// The `i`th data frame.
pub fn data_frame(i: u64) -> PseudoFrame {
    PseudoFrame::new(FIRST_DATA_FRAME + i)
}

/// What byte `i` of a rig's disk image holds: every sector differs from its neighbours.
pub fn image_byte(i: u64) -> u8 {
    (i % 251) as u8 ^ (i / 512) as u8
}

/// A disk image file in the temporary directory, removed when dropped.
pub struct TempImage(pub std::path::PathBuf);

impl TempImage {
    /// An image of `sectors` sectors filled with [`image_byte`].
    pub fn new(sectors: u64) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("hv-lab3-{}-{n}.img", std::process::id()));
        let data: Vec<u8> = (0..sectors * SECTOR as u64).map(image_byte).collect();
        std::fs::write(&path, data).expect("the test can write a disk image to the temporary directory");
        TempImage(path)
    }

    /// The image's bytes now.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).expect("the disk image is readable")
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Collects the backend's events (what hv would write to its trace).
#[derive(Default)]
pub struct Collected(pub Mutex<Vec<DeviceEvent>>);

impl DeviceEventSink for Collected {
    fn enabled(&self) -> bool {
        true
    }
    fn record(&self, e: DeviceEvent) {
        self.0.lock().unwrap().push(e);
    }
}

/// A doorbell nobody listens to: the test serves the ring itself.
pub struct QuietDoorbell;

impl Doorbell for QuietDoorbell {
    fn ring(&self) {}
}

/// The frontend may only sleep when no response is waiting; in this rig the backend
/// never answers while the frontend sleeps, so sleeping is always a mistake.
pub struct NeverSleep;

impl WaitForEvent for NeverSleep {
    fn wait(&self) {
        panic!("lab 3: the frontend went to sleep although a response was waiting on the ring: BlockFront::poll must take it and return it");
    }
}

/// The frontend type the rig builds.
pub type Front = BlockFront<GuestPage, GuestPage, QuietDoorbell, NeverSleep>;

/// One frontend/backend pair on one simulated guest.
pub struct Rig {
    pub memory: GuestMemory,
    pub image: TempImage,
    pub backend: BlockBackend,
    ring: BackRing<GuestPage, BlockRequest, BlockResponse>,
    wiring: BackendWiring,
    pub stats: BackendStats,
    pub events: Arc<Collected>,
}

impl Rig {
    /// A rig whose disk has `sectors` sectors (`read_only`: the disk refuses writes).
    pub fn new(sectors: u64, read_only: bool) -> Rig {
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), MEM as usize)]).expect("8 MiB of simulated guest memory");
        let image = TempImage::new(sectors);
        let disk = DiskImage::open(&image.0, read_only).expect("the disk image opens");
        let usable = FrameRange { start: data_frame(0), end: PseudoFrame::new(MEM / 4096) };
        let grants = GrantTable::new(memory.clone(), PseudoPhys::new(GRANT_TABLE), usable);
        let events = Arc::new(Collected::default());
        let wiring = BackendWiring {
            ring_page: page(&memory, RING),
            doorbell: EventFd::new(EFD_NONBLOCK).expect("an eventfd"),
            notifier: GuestNotifier::new(memory.clone(), PseudoPhys::new(SHARED_INFO), 1, EventFd::new(EFD_NONBLOCK).expect("an eventfd"))
                .expect("the shared-info page is in guest memory"),
            events: events.clone(),
            notify_policy: NotifyPolicy::EventIndex,
            ring_start: 0,
        };
        let ring = BackRing::attach(page(&memory, RING));
        Rig { backend: BlockBackend::new(disk, grants), memory, image, ring, wiring, stats: BackendStats::default(), events }
    }

    /// The backend serves everything published on the ring (what its thread does when
    /// the doorbell rings).
    pub fn serve(&mut self) {
        service_ring(&mut self.ring, &mut self.backend, &self.wiring, &mut self.stats).expect("the ring is intact");
    }

    /// The real block frontend on this rig's ring and grant table (use it, or
    /// [`Rig::hand_made`], not both).
    pub fn front(&self) -> Front {
        let grants = GrantTableFront::new(grant_frames(&self.memory));
        BlockFront::new(page(&self.memory, RING), grants, QuietDoorbell, NeverSleep)
    }

    /// A hostile frontend: the bare ring and grant table, to send hand-made requests.
    pub fn hand_made(&self) -> HandMade {
        HandMade {
            ring: FrontRing::init(page(&self.memory, RING)),
            grants: GrantTableFront::new(grant_frames(&self.memory)),
        }
    }

    /// A forging backend: takes every published request, answers each with what
    /// `answer` makes of it (moving no data), and publishes the answers.
    pub fn answer_with(&mut self, mut answer: impl FnMut(&BlockRequest) -> BlockResponse) {
        let mut taken = Vec::new();
        while let Some(request) = self.ring.take_request().expect("the ring is intact") {
            taken.push(request);
        }
        for request in &taken {
            self.ring.push_response(&answer(request)).expect("a request to answer");
        }
        self.ring.publish_responses();
    }

    /// Sends one hand-made request through the ring and returns the backend's response.
    pub fn send(&mut self, hostile: &mut HandMade, request: BlockRequest) -> BlockResponse {
        hostile.ring.push_request(&request).expect("the ring has room");
        hostile.ring.publish_requests();
        self.serve();
        hostile.ring.take_response().expect("the ring is intact").expect("lab 3: the backend must answer every request it takes, good or bad (with an error status for a bad one)")
    }

    /// `len` bytes of data frame `i`.
    pub fn frame_bytes(&self, i: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.memory.read_slice(&mut v, GuestAddress(data_frame(i).raw() * 4096)).unwrap();
        v
    }

    /// Fills data frame `i` with `byte`.
    pub fn fill_frame(&self, i: u64, byte: u8) {
        self.memory.write_slice(&[byte; 4096], GuestAddress(data_frame(i).raw() * 4096)).unwrap();
    }

    /// The flags word of grant entry `gref` (0: revoked).
    pub fn grant_flags(&self, gref: GrantRef) -> u32 {
        let at = GRANT_TABLE + u64::from(gref) * GRANT_ENTRY_SIZE as u64 + GRANT_FLAGS_OFFSET as u64;
        self.memory.read_obj(GuestAddress(at)).unwrap()
    }

    /// The grant checks the backend made so far: (gref, access, passed).
    pub fn grant_checks(&self) -> Vec<(GrantRef, GrantAccess, bool)> {
        let events = self.events.0.lock().unwrap();
        events
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::GrantCheck { gref, access, result, .. } => Some((*gref, *access, result.is_ok())),
                _ => None,
            })
            .collect()
    }
}

/// A frontend that writes whatever it likes: the bare ring and grant table.
pub struct HandMade {
    pub ring: FrontRing<GuestPage, BlockRequest, BlockResponse>,
    pub grants: GrantTableFront<GuestPage>,
}

impl HandMade {
    /// Grants data frame `i` (read-only or writable) and returns the reference.
    pub fn grant(&mut self, i: u64, read_only: bool) -> GrantRef {
        self.grants.grant(data_frame(i), read_only).expect("the grant table has room")
    }
}

/// A request with the given fields and grant references (unused slots 0).
pub fn request(op: u8, sector: u64, nr_sectors: u32, grefs: &[GrantRef]) -> BlockRequest {
    let mut all = [0; BLOCK_MAX_SEGMENTS];
    all[..grefs.len()].copy_from_slice(grefs);
    BlockRequest { id: 42, sector, op, nr_segments: grefs.len() as u8, nr_sectors, grefs: all }
}

fn page(memory: &GuestMemory, gpa: u64) -> GuestPage {
    GuestPage::new(memory.clone(), PseudoPhys::new(gpa)).expect("the page is in guest memory")
}

/// The grant table's frames, as the guest kernel hands them to its allocator.
fn grant_frames(memory: &GuestMemory) -> GrantFrames<GuestPage> {
    core::array::from_fn(|i| page(memory, GRANT_TABLE + i as u64 * 4096))
}
