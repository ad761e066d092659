//! The trace: a typed record of everything the hypervisor does that teaches something.
//!
//! Each [`TraceEvent`] is one thing that happened (a VM exit, a hypercall with its
//! arguments and result, the guest's death). Two writers turn events into files:
//! - [`text`]: one line per event, deterministic (sequence numbers, no times, no host
//!   addresses), so the same run twice gives the same bytes and a snapshot test or a lab
//!   grader can compare traces;
//! - [`jsonl`]: one JSON object per line, for scripts;
//! - [`perfetto`]: a timeline (Chrome's trace-event JSON) for the Perfetto UI: the vCPU
//!   and each backend thread as tracks, hv's handling of each exit as a slice.
//!
//! [`explain`] reads a text trace back and says what each kind of line means
//! (`hv trace explain FILE`).

pub mod jsonl;
pub mod text;
pub mod perfetto;
pub mod explain;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use backend_drivers::events::{DeviceEvent, DeviceEventSink};

use crate::outcome::GuestStop;
use pv_abi::addr::{GuestVirt, MachineAddr, PseudoPhys};
use pv_abi::paging::Pte;
use pv_abi::HypercallError;

/// Why the vCPU returned to hv.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExitReason {
    /// `out` to a port no in-kernel device claims (hypercalls come this way).
    IoOut,
    /// `in` from such a port.
    IoIn,
    /// A read from guest-physical memory not backed by RAM.
    MmioRead,
    /// A write to such memory.
    MmioWrite,
    /// `hlt`.
    Hlt,
    /// The vCPU shut down (triple fault).
    Shutdown,
    /// VM entry failed.
    FailEntry,
    /// KVM hit an internal error.
    InternalError,
    /// KVM_RUN was interrupted by a signal.
    Interrupted,
    /// Anything else.
    Other,
}

impl ExitReason {
    /// The name used in traces and statistics.
    pub const fn name(self) -> &'static str {
        match self {
            ExitReason::IoOut => "io-out",
            ExitReason::IoIn => "io-in",
            ExitReason::MmioRead => "mmio-read",
            ExitReason::MmioWrite => "mmio-write",
            ExitReason::Hlt => "hlt",
            ExitReason::Shutdown => "shutdown",
            ExitReason::FailEntry => "fail-entry",
            ExitReason::InternalError => "internal-error",
            ExitReason::Interrupted => "interrupted",
            ExitReason::Other => "other",
        }
    }
}

/// One event in the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// The VM is set up and the vCPU is about to run.
    Boot {
        /// Kernel entry point.
        entry: GuestVirt,
        /// Guest RAM in bytes.
        mem_bytes: u64,
        /// Memory mode name.
        mmu: &'static str,
        /// Number of ELF segments loaded.
        segments: usize,
        /// The guest command line words.
        cmdline: Vec<String>,
    },
    /// The guest was restored from a saved state (a snapshot, or a migration's stream)
    /// instead of booted.
    Restore {
        /// Where it continues.
        rip: GuestVirt,
        /// Guest RAM in bytes.
        mem_bytes: u64,
        /// The memory mode it runs in now.
        mmu: &'static str,
        /// The memory mode the state was taken in.
        taken_in: &'static str,
    },
    /// A VM exit.
    Exit {
        /// Why.
        reason: ExitReason,
        /// The port, for port I/O exits.
        port: Option<u16>,
        /// The guest-physical (machine) address, for MMIO exits.
        gpa: Option<MachineAddr>,
    },
    /// A hypercall and its result.
    Hypercall {
        /// The number in rax.
        nr: u64,
        /// Its name, or `unknown`.
        name: &'static str,
        /// The four argument registers.
        args: [u64; 4],
        /// What the guest got back.
        result: Result<u64, HypercallError>,
        /// For console writes: the text.
        text: Option<String>,
    },
    /// Port I/O to a port nothing handles (reads see all ones, writes are dropped).
    UnhandledPort {
        /// The port.
        port: u16,
        /// A write (or a read).
        write: bool,
        /// Access size in bytes.
        size: usize,
    },
    /// The emulated UART (`devices::uart`): one register access, one exit.
    Uart {
        /// The register (`THR`, `LSR`…).
        register: &'static str,
        /// A write (or a read).
        write: bool,
        /// The byte written or read.
        value: u8,
    },
    /// Shadow mode: a guest store to its page-table pool, trapped (an MMIO exit).
    PtWrite {
        /// Machine address of the store.
        machine: MachineAddr,
        /// The entry written.
        entry: PseudoPhys,
        /// Its new value.
        value: Pte,
    },
    /// Shadow mode: what the shadow-paging engine did.
    Shadow(shadow_mmu::ShadowEvent),
    /// Shadow mode: a store to the shadow area (possible only through page tables the
    /// guest loaded behind hv's back); dropped.
    ShadowAreaWrite {
        /// Machine address of the store.
        machine: MachineAddr,
    },
    /// KVM was made to forget its cached translations (a memslot removed and re-added)
    /// because hv changed a page-table entry the CPU may have cached.
    TranslationFlush,
    /// Something a device backend did (on its own thread).
    Device(DeviceEvent),
    /// `hv replay`: a device event of the recorded run, re-emitted from the log (no
    /// backend runs in a replay), as the two formats wrote it then.
    Replayed(RecordedLine),
    /// The guest stopped (boxed: a register dump is large, and events are moved often).
    Stop(Box<GuestStop>),
    /// The trace reached its limit (`--trace-max`) and records nothing more.
    Cut {
        /// The limit, in events.
        limit: u64,
    },
}

/// One device event as both trace formats render it, kept in a record log
/// (`crate::record`) so that a replay writes the same lines without the device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedLine {
    /// The text format's kind column (the device name).
    pub kind: String,
    /// The text format's detail.
    pub detail: String,
    /// The JSON-lines object, without its sequence number.
    pub json: serde_json::Value,
}

impl RecordedLine {
    /// How both formats render `event`.
    pub fn of(event: &DeviceEvent) -> Self {
        let (kind, detail) = text::describe_device(event);
        RecordedLine { kind: kind.to_string(), detail, json: jsonl::device_json(event) }
    }
}

/// The trace's file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    /// One deterministic line per event.
    Text,
    /// One JSON object per line.
    Jsonl,
    /// A timeline for the Perfetto UI (ui.perfetto.dev) or chrome://tracing: Chrome's
    /// trace-event JSON, with times.
    Perfetto,
}

/// Writes events to a file, numbering them, up to a limit.
pub struct TraceWriter {
    out: BufWriter<File>,
    format: TraceFormat,
    seq: u64,
    limit: u64,
    /// The timeline's state (`perfetto` format only).
    timeline: Option<perfetto::PerfettoState>,
}

impl TraceWriter {
    /// Creates (or truncates) the trace file, which will hold at most `limit` events and
    /// then one line saying it was cut.
    pub fn create(path: &Path, format: TraceFormat, limit: u64) -> std::io::Result<Self> {
        let out = BufWriter::new(File::create(path)?);
        let timeline = (format == TraceFormat::Perfetto).then(perfetto::PerfettoState::new);
        Ok(TraceWriter { out, format, seq: 0, limit, timeline })
    }

    /// Appends one event (nothing once the limit has been reached and said).
    pub fn record(&mut self, event: &TraceEvent) -> std::io::Result<()> {
        if self.seq > self.limit {
            return Ok(());
        }
        self.seq += 1;
        let cut = TraceEvent::Cut { limit: self.limit };
        let event = if self.seq > self.limit { &cut } else { event };
        match (self.format, &mut self.timeline) {
            (TraceFormat::Perfetto, Some(timeline)) => timeline.record(&mut self.out, self.seq, event),
            (TraceFormat::Jsonl, _) => writeln!(self.out, "{}", jsonl::format_event(self.seq, event)),
            _ => writeln!(self.out, "{}", text::format_event(self.seq, event)),
        }
    }

    /// The vCPU is about to enter the guest (only the timeline records it: its slices of
    /// hv's handling of each exit end here).
    fn guest_entry(&mut self) -> std::io::Result<()> {
        match &mut self.timeline {
            Some(timeline) if self.seq <= self.limit => timeline.guest_entry(&mut self.out),
            _ => Ok(()),
        }
    }

    /// Ends the file (the timeline closes its slices and its array) and flushes it.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some(timeline) = &mut self.timeline {
            timeline.finish(&mut self.out)?;
        }
        self.out.flush()
    }
}

/// A handle on the run's trace, shared by the vCPU loop and the backend threads.
///
/// Every source writes through the same lock, in the order things happen, so the file
/// shows cause before effect (a backend records its response before it signals the
/// guest). With tracing off the handle is empty and events are never even built.
#[derive(Clone, Default)]
pub struct Tracer {
    shared: Option<Arc<Mutex<TraceState>>>,
    /// Whether the trace is a timeline (which also records each guest entry).
    timeline: bool,
}

struct TraceState {
    writer: Option<TraceWriter>,
    error: Option<std::io::Error>,
}

impl Tracer {
    /// A tracer that writes to `writer`.
    pub fn to_writer(writer: TraceWriter) -> Self {
        let timeline = writer.timeline.is_some();
        Tracer { shared: Some(Arc::new(Mutex::new(TraceState { writer: Some(writer), error: None }))), timeline }
    }

    /// Whether events are being recorded.
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Records the event `make` builds, if tracing is on. The first write error is kept
    /// and tracing stops (the guest run goes on).
    pub fn emit(&self, make: impl FnOnce() -> TraceEvent) {
        let Some(shared) = &self.shared else { return };
        // A backend thread that panicked while holding the lock leaves it poisoned; the
        // trace is still consistent line by line, so keep writing.
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = &mut state.writer {
            if let Err(e) = w.record(&make()) {
                state.error = Some(e);
                state.writer = None;
            }
        }
    }

    /// The vCPU thread is about to enter the guest (`KVM_RUN`). Only a timeline trace
    /// records it (hv's handling of the last exit ends here); otherwise nothing is done,
    /// not even taking the lock.
    pub fn mark_guest_entry(&self) {
        if !self.timeline {
            return;
        }
        let Some(shared) = &self.shared else { return };
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = &mut state.writer {
            if let Err(e) = w.guest_entry() {
                state.error = Some(e);
                state.writer = None;
            }
        }
    }

    /// Flushes; returns the first error seen, if any.
    pub fn finish(&self) -> std::io::Result<()> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = &mut state.writer {
            w.finish()?;
        }
        match state.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Backends record their events into the run's trace.
impl DeviceEventSink for Tracer {
    fn enabled(&self) -> bool {
        Tracer::enabled(self)
    }

    fn record(&self, event: DeviceEvent) {
        self.emit(|| TraceEvent::Device(event));
    }
}
