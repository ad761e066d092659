//! The source's side: copy a running guest to another hv, round by round, then pause it,
//! send the rest and its state, and end here only once the destination runs it.
//!
//! Everything happens on the caller's thread (a management thread), while the vCPU
//! thread runs the guest. The two meet only through jobs (`crate::vcpu::control`): one
//! to turn dirty logging on and hand out what this thread needs (a handle on KVM's log,
//! a reference to guest memory), one to pause the guest and capture its state, and one
//! at the end that either ends the run (the destination confirmed) or resumes the guest
//! (anything went wrong before that: the guest goes on as if nothing had happened).
//!
//! ```text
//!  connect, header ─► Accept?                        (guest runs)
//!  job: dirty logging on
//!  round 0: every non-zero page ─►                   (guest runs, dirtying pages)
//!  round n: pages dirtied during round n-1 ─►        (until `precopy::next_step` stops)
//!  job: capture state, take the last dirty set, PAUSE ─────────┐ downtime
//!  last pages, State, Done ─► ... ◄─ Running                    │
//!  job: logging off, STOP (Ended: "migrated to …") ────────────┘
//!  on any error before Running: job: logging off, RUN
//! ```

use std::io::{BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use backend_drivers::GuestMemory;
use pv_abi::addr::{PseudoFrame, PAGE_SIZE};
use pv_abi::MmuMode;
use vm_memory::{Bytes, GuestAddress};

use super::dirty::DirtyLog;
use super::figures::{MigrationReport, RoundFigures};
use super::precopy::{live_rounds, round_figures, DirtySource, Policy, RoundSink, Sent};
use super::stream::{write_pages, Header, PageData, Record, Reply, StreamError, MAX_BATCH_PAGES};
use super::MigrationError;
use crate::memory::dirty::DirtySet;
use crate::outcome::GuestStop;
use crate::vcpu::control::{AfterJob, ExitBoundary, VcpuControl};

/// How long connecting to the destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the destination may take to answer (it builds a VM before `Running`).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// What an untouched page holds.
static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

/// What a migration is asked to do.
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// The destination, `HOST:PORT`.
    pub destination: String,
    /// At most this many live rounds (round 0 included) before stop-and-copy.
    pub max_rounds: u32,
    /// The downtime to aim for.
    pub downtime_target: Duration,
    /// The kernel's identity (`stream::kernel_identity` of its ELF): the destination
    /// must run the same kernel.
    pub kernel: u64,
}

/// What a job leaves the guest doing when it is not the migration's business: running,
/// or paused if it was paused before (a management interface may migrate a paused guest,
/// and a failed migration must leave it paused).
fn as_before(b: &ExitBoundary) -> AfterJob {
    if b.paused {
        AfterJob::Pause
    } else {
        AfterJob::Run
    }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What the migration thread keeps while rounds run.
struct Source {
    out: BufWriter<Counting<TcpStream>>,
    reply: TcpStream,
    memory: GuestMemory,
    ram_bytes: u64,
    /// Pages the host had ever backed when logging began (`GuestRam::touched_pages`):
    /// round 0 skips the others without reading them (they are zeros, and reading one
    /// would cost a page fault). A page first written later is in the dirty log.
    touched: Option<Vec<bool>>,
}

impl Source {
    fn bytes_so_far(&self) -> u64 {
        self.out.get_ref().bytes + self.out.buffer().len() as u64
    }
}

impl RoundSink for Source {
    fn send_round(&mut self, round: u32, pages: &DirtySet, skip_zero: bool) -> Result<Sent, MigrationError> {
        let start = Instant::now();
        let bytes_before = self.bytes_so_far();
        let mut batch: Vec<(PseudoFrame, PageData)> = Vec::with_capacity(MAX_BATCH_PAGES as usize);
        let mut sent = 0u64;
        let mut page = [0u8; PAGE_SIZE as usize];
        for frame in pages.iter() {
            let untouched = self.touched.as_ref().is_some_and(|t| !t.get(frame.raw() as usize).copied().unwrap_or(true));
            if skip_zero && untouched {
                continue;
            }
            let at = frame.checked_address().map_or(u64::MAX, |a| a.raw());
            self.memory.read_slice(&mut page, GuestAddress(at)).map_err(|e| MigrationError::Memory(e.to_string()))?;
            // (A slice comparison is one memcmp: round 0 looks at every page of RAM.)
            let data = if page[..] == ZERO_PAGE[..] { PageData::Zero } else { PageData::Data(Box::new(page)) };
            if skip_zero && data == PageData::Zero {
                continue;
            }
            batch.push((frame, data));
            sent += 1;
            if batch.len() == MAX_BATCH_PAGES as usize {
                write_pages(&mut self.out, round, batch.iter().map(|(f, d)| (*f, d)))?;
                batch.clear();
            }
        }
        if !batch.is_empty() {
            write_pages(&mut self.out, round, batch.iter().map(|(f, d)| (*f, d)))?;
        }
        Record::EndOfRound { round, pages: sent }.write(&mut self.out)?;
        self.out.flush()?;
        Ok(Sent { pages: sent, bytes: self.bytes_so_far() - bytes_before, elapsed: start.elapsed() })
    }
}

impl DirtySource for DirtyLog {
    fn dirtied_since_last_call(&mut self) -> Result<DirtySet, MigrationError> {
        Ok(self.since_last_call()?)
    }
}

/// Connects and exchanges the header.
fn connect(options: &SendOptions, ram_bytes: u64, mode: MmuMode) -> Result<(TcpStream, TcpStream), MigrationError> {
    let addrs: Vec<_> = options
        .destination
        .to_socket_addrs()
        .map_err(|e| MigrationError::Connect { to: options.destination.clone(), source: e })?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
                stream.set_write_timeout(Some(REPLY_TIMEOUT))?;
                let mut reply = stream.try_clone()?;
                let mut out = stream.try_clone()?;
                Header { ram_bytes, mode, kernel: options.kernel }.write(&mut out)?;
                return match Reply::read(&mut reply)? {
                    Reply::Accept => Ok((stream, reply)),
                    Reply::Refuse(why) => Err(MigrationError::Refused(why)),
                    other => Err(StreamError::Malformed(format!("{other:?} where Accept or Refuse was expected")).into()),
                };
            }
            Err(e) => last = Some(e),
        }
    }
    let source = last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"));
    Err(MigrationError::Connect { to: options.destination.clone(), source })
}

/// Sends the VM `control` reaches to `options.destination`, calling `progress` with each
/// round's figures as it ends. `capture` runs on the vCPU thread with the guest paused
/// and returns its state (vCPU and devices) as bytes (`super::state_capture`). On
/// success the source's run has ended (the guest runs at the destination); on any error
/// the guest runs on here as before, and the error says what went wrong.
pub fn send(
    control: &VcpuControl,
    options: &SendOptions,
    capture: impl FnOnce(&mut ExitBoundary) -> Result<Vec<u8>, String> + Send + 'static,
    mut progress: impl FnMut(&RoundFigures),
) -> Result<MigrationReport, MigrationError> {
    let started = Instant::now();
    // What this thread needs from the VM; logging starts here, and hv's own record is
    // cleared, so both count writes from now on.
    let (ram_bytes, mode, memory, kvm_log, was_paused) = control.call(|b: &mut ExitBoundary| {
        let mode = if b.shadow.is_some() { MmuMode::Shadow } else { MmuMode::Ept };
        ((b.kvm.ram().size(), mode, b.kvm.ram().memory().clone(), b.kvm.dirty_log(), b.paused), as_before(b))
    })?;
    let result = (|| {
        let (stream, reply) = connect(options, ram_bytes, mode)?;
        let touched = control
            .call(|b: &mut ExitBoundary| {
                let on = b.kvm.set_dirty_logging(true);
                crate::memory::dirty::take_written_by_host(b.kvm.ram().memory(), &mut DirtySet::new(b.kvm.ram().size()));
                // Asked after logging is on: a page touched from now on is also dirty.
                (on.map(|()| b.kvm.ram().touched_pages()), as_before(b))
            })?
            .map_err(MigrationError::Logging)?;
        let mut dirty_log = DirtyLog::new(kvm_log, memory.clone(), ram_bytes);
        let mut source = Source { out: BufWriter::with_capacity(1 << 20, Counting { inner: stream, bytes: 0 }), reply, memory, ram_bytes, touched };
        precopy_and_stop(control, options, capture, &mut source, &mut dirty_log, started, mode, &mut progress)
    })();
    match result {
        Ok(report) => Ok(report),
        Err(e) => {
            // Whatever failed, the guest must go on here as if nothing had happened:
            // running, or paused if it was paused before the migration began.
            let after = move || if was_paused { AfterJob::Pause } else { AfterJob::Run };
            let _ = control.call(move |b: &mut ExitBoundary| {
                // The network backend, if the pause job drained it, serves again.
                b.devices.thaw();
                (b.kvm.set_dirty_logging(false), after())
            });
            Err(e)
        }
    }
}

/// The rounds, the pause, the last pages and the state, and the destination's answer.
#[allow(clippy::too_many_arguments)]
fn precopy_and_stop(
    control: &VcpuControl,
    options: &SendOptions,
    capture: impl FnOnce(&mut ExitBoundary) -> Result<Vec<u8>, String> + Send + 'static,
    source: &mut Source,
    dirty_log: &mut DirtyLog,
    started: Instant,
    mode: MmuMode,
    progress: &mut impl FnMut(&RoundFigures),
) -> Result<MigrationReport, MigrationError> {
    let policy = Policy { ram_bytes: source.ram_bytes, max_rounds: options.max_rounds, downtime_target: options.downtime_target };
    let live = live_rounds(source, dirty_log, &policy, progress)?;
    let (mut rounds, stopped_because, mut total_pages) = (live.rounds, live.stopped_because, live.pages_sent);
    // Pause: capture the state first (it drains the devices, whose last writes are then
    // in the dirty record), then take the last dirty set. The guest stays paused.
    let ram_bytes = source.ram_bytes;
    let (paused_at, in_job, state, last) = control.call(move |b: &mut ExitBoundary| {
        let paused_at = Instant::now();
        let state = capture(b);
        let mut last = DirtySet::new(ram_bytes);
        let taken = b.kvm.dirty_log().take(&mut last);
        crate::memory::dirty::take_written_by_host(b.kvm.ram().memory(), &mut last);
        let after = if state.is_ok() && taken.is_ok() { AfterJob::Pause } else { as_before(b) };
        // How long the pause job held the guest: the state capture (devices drained,
        // vCPU read) and the last look at the dirty logs, a share of the downtime.
        let in_job = paused_at.elapsed();
        ((paused_at, in_job, state, taken.map(|()| last)), after)
    })?;
    let state = state.map_err(MigrationError::State)?;
    let mut last = last?;
    last.union_with(&live.still_dirty);
    let round = rounds.len() as u32;
    let sent = source.send_round(round, &last, false)?;
    total_pages += sent.pages;
    let row = round_figures(round, true, &sent, 0);
    progress(&row);
    rounds.push(row);
    let state_bytes = state.len() as u64;
    Record::State(state).write(&mut source.out)?;
    Record::Done { total_pages }.write(&mut source.out)?;
    source.out.flush()?;
    let restore_us = match Reply::read(&mut source.reply)? {
        Reply::Running { restore_us } => restore_us,
        Reply::Refuse(why) => return Err(MigrationError::Refused(why)),
        Reply::Accept => return Err(StreamError::Malformed("Accept where Running or Refuse was expected".into()).into()),
    };
    let downtime = paused_at.elapsed();
    let destination = options.destination.clone();
    let why = format!("the guest migrated to {destination}, which runs it now");
    control.call(move |b: &mut ExitBoundary| {
        let _ = b.kvm.set_dirty_logging(false);
        ((), AfterJob::Stop(GuestStop::Ended { why }))
    })?;
    Ok(MigrationReport {
        destination,
        ram_bytes,
        mode: mode.name(),
        downtime_target_ms: options.downtime_target.as_secs_f64() * 1e3,
        max_rounds: options.max_rounds,
        rounds,
        stopped_because,
        total_pages,
        total_bytes: source.bytes_so_far(),
        state_bytes,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        downtime_ms: downtime.as_secs_f64() * 1e3,
        destination_restore_ms: restore_us as f64 / 1e3,
        capture_ms: in_job.as_secs_f64() * 1e3,
    })
}
