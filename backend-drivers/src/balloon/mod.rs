//! The balloon backend: frames the guest gives back have their host memory released.
//!
//! One request, in [`BalloonBackend::handle`]'s order:
//! 1. [`check::check_request`]: the operation, the count, then every frame against the
//!    guest's layout ([`check::BalloonLimits`]) and the set of frames the host holds
//!    ([`state::FrameSet`]). A batch with one bad frame is refused whole, with a status
//!    naming the frame, and a `refused` trace event.
//! 2. An inflate releases the frames' host memory ([`release::HostMemory::release`]:
//!    `madvise(MADV_DONTNEED)`) and adds them to the set; a deflate takes them out of the
//!    set and makes sure they read as zeros ([`release::HostMemory::restore`]).
//! 3. The balloon's size is written to the ring page's control block
//!    (`pv_abi::device::balloon`, `ballooned_pages`), for the guest and `hv ctl`.
//!
//! A request names at most `BALLOON_BATCH` (30) frames, so the work per request is
//! bounded: 30 frames checked against a bitmap, at most 30 `madvise` calls.

pub mod check;
pub mod release;
pub mod state;

use std::sync::{Arc, Mutex};

use pv_abi::device::balloon::{BalloonRequest, BalloonResponse, BalloonStatus, BALLOON_OP_DEFLATE, BALLOON_OP_INFLATE, BALLOON_SIZE_OFFSET};
use pv_abi::ring::SharedPage;

use crate::events::DeviceEvent;
use crate::guest_page::GuestPage;
use crate::runner::{HandlerContext, RequestHandler};
use check::{BalloonLimits, BalloonOp, CheckedBatch};
use release::HostMemory;
use state::BalloonState;

/// The balloon's state as hv shares it with the backend thread.
pub type SharedBalloonState = Arc<Mutex<BalloonState>>;

/// The balloon device's backend.
pub struct BalloonBackend {
    limits: BalloonLimits,
    state: SharedBalloonState,
    host: HostMemory,
    ring_page: GuestPage,
    rss: Option<RssProbe>,
}

/// Reads the process's resident memory (VmRSS in `/proc/self/status`) through a file
/// opened before the backend's thread was confined: the thread then needs `pread`, not
/// `open`.
pub struct RssProbe {
    file: std::fs::File,
}

impl RssProbe {
    /// Opens `/proc/self/status` (call it before confining the thread that reads it).
    pub fn open() -> std::io::Result<Self> {
        Ok(RssProbe { file: std::fs::File::open("/proc/self/status")? })
    }

    /// VmRSS in KiB, if the kernel says.
    pub fn resident_kib(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 4096];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl BalloonBackend {
    /// A backend for a guest laid out as `limits`, releasing memory of `host`, keeping
    /// its set and counters in `state` (empty for a new guest, a snapshot's for a
    /// restored one), and publishing the balloon's size in `ring_page`'s control block.
    /// With `rss`, the counters also record hv's resident memory around inflations.
    pub fn new(limits: BalloonLimits, state: SharedBalloonState, host: HostMemory, ring_page: GuestPage, rss: Option<RssProbe>) -> Self {
        let backend = BalloonBackend { limits, state, host, ring_page, rss };
        let size = backend.lock().ballooned.len();
        backend.publish_size(size);
        backend
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BalloonState> {
        // A panic elsewhere while holding the lock leaves a set that is still a set.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_size(&self, size: u64) {
        self.ring_page.write_bytes(BALLOON_SIZE_OFFSET, &size.to_le_bytes());
    }

    /// Carries out a checked batch; the set and counters change only for frames whose
    /// host memory was really released (a failed `madvise` leaves them the guest's).
    fn apply(&self, batch: &CheckedBatch, cx: &mut HandlerContext) -> BalloonStatus {
        let mut state = self.lock();
        let status = match batch.op {
            BalloonOp::Inflate => {
                let rss = |b: &Self| b.rss.as_ref().and_then(RssProbe::resident_kib).unwrap_or(0);
                if !state.counters.inflating {
                    state.counters.rss_before_kib = rss(self);
                }
                let started = std::time::Instant::now();
                let released = self.host.release(&batch.frames);
                state.counters.release_ns += started.elapsed().as_nanos() as u64;
                match released {
                Ok(_) => {
                    for &f in &batch.frames {
                        state.ballooned.insert(f);
                    }
                    state.counters.inflated += batch.frames.len() as u64;
                    state.counters.inflating = true;
                    state.counters.rss_after_kib = rss(self);
                    BalloonStatus::Ok
                }
                Err(e) => {
                    state.counters.release_errors += 1;
                    record_refusal(cx, format!("inflate: host error: {e}"));
                    BalloonStatus::HostError
                }
                }
            }
            BalloonOp::Deflate => {
                let mut status = BalloonStatus::Ok;
                for &f in &batch.frames {
                    if let Err(e) = self.host.restore(f) {
                        state.counters.release_errors += 1;
                        record_refusal(cx, format!("deflate: host error: {e}"));
                        status = BalloonStatus::HostError;
                    }
                    state.ballooned.remove(f);
                }
                state.counters.deflated += batch.frames.len() as u64;
                state.counters.inflating = false;
                status
            }
        };
        let size = state.ballooned.len();
        drop(state);
        self.publish_size(size);
        status
    }
}

fn record_refusal(cx: &mut HandlerContext, reason: String) {
    if cx.events.enabled() {
        cx.events.record(DeviceEvent::Refused { device: BalloonBackend::NAME, reason });
    }
}

impl RequestHandler for BalloonBackend {
    type Request = BalloonRequest;
    type Response = BalloonResponse;
    const NAME: &'static str = "balloon";

    fn handle(&mut self, request: &BalloonRequest, cx: &mut HandlerContext) -> BalloonResponse {
        let checked = check::check_request(request, &self.limits, &self.lock().ballooned);
        match checked {
            Ok(batch) => {
                let status = self.apply(&batch, cx);
                if status != BalloonStatus::Ok {
                    cx.stats.failed_requests += 1;
                }
                BalloonResponse { id: request.id, status: status as i32, detail: batch.frames.len() as u32 }
            }
            Err(refusal) => {
                cx.stats.failed_requests += 1;
                self.lock().counters.refused += 1;
                record_refusal(cx, format!("frame #{} ({:#x}): {}", refusal.index, refusal.frame, refusal.status.name()));
                BalloonResponse { id: request.id, status: refusal.status as i32, detail: refusal.index }
            }
        }
    }

    fn request_id(request: &BalloonRequest) -> u64 {
        request.id
    }

    fn summarize(r: &BalloonRequest) -> String {
        let op = match r.op {
            BALLOON_OP_INFLATE => "inflate".to_string(),
            BALLOON_OP_DEFLATE => "deflate".to_string(),
            other => format!("op{other}"),
        };
        match r.used_frames() {
            Some(frames) => format!("{op} frames={} first={:#x}", frames.len(), frames[0]),
            None => format!("{op} count={} (bad)", r.count),
        }
    }

    fn describe_response(response: &BalloonResponse) -> (u64, String) {
        let status = BalloonStatus::from_i32(response.status);
        let text = match status {
            BalloonStatus::Ok => format!("ok ({} frames)", response.detail),
            other => format!("{} (frame #{})", other.name(), response.detail),
        };
        (response.id, text)
    }
}
