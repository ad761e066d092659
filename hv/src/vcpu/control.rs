//! Reaching a running guest from another thread: jobs run on the vCPU thread, at an
//! exit boundary.
//!
//! Everything a management interface does to a VM (pause it, read its counters, save
//! its state, move it) must happen while the vCPU is *outside* the guest, between two
//! `KVM_RUN`s, and on the thread that owns the vCPU. Another thread therefore does not
//! touch the VM; it hands the vCPU thread a **job** ([`VcpuControl::call`]) and kicks
//! it out of `KVM_RUN` (`super::kick`). After the exit it was handling, the exit loop
//! runs the job with the whole VM in hand ([`ExitBoundary`]); the job says whether the
//! guest then runs on, stays paused (the thread then waits for the next job instead of
//! entering the guest), or stops.
//!
//! **Where a job may run.** Any exit is a boundary between two guest instructions, so
//! the VM's state is whole there. One thing more is asked for jobs that move the guest
//! to another memory mode later (snapshots, migration): the guest must not be in the
//! middle of loading CR3 the way its current mode wants (it reads the mode, then writes
//! CR3 itself or asks hv to). A paravirtual guest says so itself: it sets a byte in the
//! shared-info page (`pv_abi::event_channel::SHARED_INFO_CR3_SECTION_OFFSET`) around
//! that code. At an exit hv caused (a kick) inside that section the loop lets the guest
//! run on and takes the job at a later exit; the section is a few instructions long. A
//! guest that never leaves it gets its job anyway after [`MAX_DEFERRAL`], with
//! [`ExitBoundary::in_cr3_section`] set, so that what cannot be done safely is refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use pv_abi::addr::PseudoPhys;
use pv_abi::event_channel::SHARED_INFO_CR3_SECTION_OFFSET;
use pv_abi::layout::SHARED_INFO_GPA;

use super::counters::VcpuCounters;
use super::kick::VcpuKicker;
use crate::devices::console::ConsoleOutput;
use crate::devices::Devices;
use crate::kvm::KvmVm;
use crate::outcome::GuestStop;
use crate::shadow::ShadowPaging;
use crate::trace::Tracer;

/// How often a waiting caller kicks the vCPU again until its job has been taken.
const KICK_INTERVAL: Duration = Duration::from_millis(1);
/// How long the loop waits for a guest to leave its CR3 section before it runs a job
/// anyway (with [`ExitBoundary::in_cr3_section`] set).
pub const MAX_DEFERRAL: Duration = Duration::from_secs(2);

/// The VM, as a job sees it: the vCPU is between two `KVM_RUN`s.
pub struct ExitBoundary<'a> {
    /// KVM's VM, its vCPU and guest RAM.
    pub kvm: &'a mut KvmVm,
    /// Shadow paging, in shadow mode.
    pub shadow: Option<&'a mut ShadowPaging>,
    /// The devices and their backend threads.
    pub devices: &'a Devices,
    /// The exit loop's counters so far.
    pub counters: &'a VcpuCounters,
    /// The trace.
    pub tracer: &'a Tracer,
    /// The console.
    pub console: &'a ConsoleOutput,
    /// Whether the guest is paused (a previous job asked for it).
    pub paused: bool,
    /// The guest is inside its CR3 section (see the module comment): its state is whole
    /// for this memory mode, but it must not be moved to the other one.
    pub in_cr3_section: bool,
}

/// What the vCPU does once a job is done.
#[derive(Debug)]
pub enum AfterJob {
    /// Enter the guest again (also: resume a paused guest).
    Run,
    /// Stay out of the guest and wait for the next job.
    Pause,
    /// End the run.
    Stop(GuestStop),
}

type Job = Box<dyn FnOnce(&mut ExitBoundary) -> AfterJob + Send>;

struct Posted {
    job: Job,
    taken: Arc<AtomicBool>,
}

/// The vCPU is gone: its run ended before (or while) the job could run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the guest is no longer running")]
pub struct VcpuGone;

/// A handle other threads use to give the vCPU thread jobs; cheap to clone.
#[derive(Clone)]
pub struct VcpuControl {
    jobs: Sender<Posted>,
    kicker: VcpuKicker,
}

/// The vCPU thread's end: where the exit loop finds its jobs.
pub struct VcpuMailbox {
    jobs: Receiver<Posted>,
    kicker: VcpuKicker,
}

/// A connected pair: give the control to whoever manages the VM, the mailbox to its
/// exit loop.
pub fn channel() -> (VcpuControl, VcpuMailbox) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let kicker = VcpuKicker::new();
    (VcpuControl { jobs: tx, kicker: kicker.clone() }, VcpuMailbox { jobs: rx, kicker })
}

impl VcpuControl {
    /// Runs `job` on the vCPU thread at its next exit boundary and returns what the job
    /// returned. Blocks until then (kicking the vCPU out of the guest meanwhile).
    pub fn call<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut ExitBoundary) -> (R, AfterJob) + Send + 'static,
    ) -> Result<R, VcpuGone> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        let taken = Arc::new(AtomicBool::new(false));
        let job: Job = Box::new(move |boundary: &mut ExitBoundary| {
            let (result, after) = job(boundary);
            let _ = reply_tx.send(result);
            after
        });
        self.jobs.send(Posted { job, taken: taken.clone() }).map_err(|_| VcpuGone)?;
        loop {
            if !taken.load(Ordering::Acquire) {
                self.kicker.kick();
            }
            match reply_rx.recv_timeout(KICK_INTERVAL) {
                Ok(result) => return Ok(result),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Err(VcpuGone),
            }
        }
    }

    /// The kicker of this VM's vCPU thread (the watchdog uses it too).
    pub fn kicker(&self) -> VcpuKicker {
        self.kicker.clone()
    }
}

impl VcpuMailbox {
    /// The kicker of this VM's vCPU thread.
    pub fn kicker(&self) -> &VcpuKicker {
        &self.kicker
    }

    /// Whether a job is waiting (one atomic load: the loop asks at every exit).
    pub fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Runs waiting jobs at this exit boundary; while a job leaves the guest paused, waits
    /// for and runs the next ones. Returns `Some` when a job stopped the guest.
    ///
    /// `hv_caused` says the exit was not the guest's own doing (a kick): only then may
    /// the guest be inside its CR3 section, and `deferred_since` times how long jobs
    /// have waited for it to leave.
    pub fn serve(&self, boundary: &mut ExitBoundary, hv_caused: bool, deferred_since: &mut Option<Instant>) -> Option<GuestStop> {
        boundary.in_cr3_section = hv_caused && in_cr3_section(boundary.kvm);
        if boundary.in_cr3_section {
            let since = *deferred_since.get_or_insert_with(Instant::now);
            if since.elapsed() < MAX_DEFERRAL {
                return None; // let the guest leave the section; the caller kicks again
            }
        }
        *deferred_since = None;
        loop {
            let posted = if boundary.paused {
                match self.jobs.recv() {
                    Ok(posted) => posted,
                    // Nobody can resume the guest any more: run it on.
                    Err(_) => return None,
                }
            } else {
                match self.jobs.try_recv() {
                    Ok(posted) => posted,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => return None,
                }
            };
            posted.taken.store(true, Ordering::Release);
            match (posted.job)(boundary) {
                AfterJob::Run => boundary.paused = false,
                AfterJob::Pause => boundary.paused = true,
                AfterJob::Stop(stop) => return Some(stop),
            }
        }
    }
}

/// Whether the guest has marked itself inside its CR3 section.
pub fn in_cr3_section(kvm: &KvmVm) -> bool {
    let flag = PseudoPhys::new(SHARED_INFO_GPA + SHARED_INFO_CR3_SECTION_OFFSET as u64);
    let mut byte = [0u8];
    kvm.ram().read(flag, &mut byte).is_ok() && byte[0] != 0
}
