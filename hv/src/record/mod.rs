//! Record and replay: a run of the guest moved in time (ReVirt, OSDI'02).
//!
//! `hv run --record LOG` logs every input the guest receives from outside its own
//! instructions; `hv replay LOG` boots the same guest and re-executes it on KVM, feeding
//! it those inputs at the same points, so it writes the same trace and ends with the
//! same memory. Replay is possible because the paravirtual guest takes almost every
//! input at an exit it makes itself; `docs/vm-state.md` ("Record and replay") lists
//! each source of nondeterminism and what is done about it.
//!
//! | file | idea |
//! | --- | --- |
//! | [`framing`] | the log's lines: checksummed, chained, hex for bytes |
//! | [`log`] | the log's header and events, written and read |
//! | [`guest_memory`] | which pages a device wrote (the dirty bitmap), a hash of all memory |
//! | [`recorder`] | logging at each exit, serving devices on the vCPU thread |
//! | [`replayer`] | checking each exit against the log, applying what devices did |
//!
//! The exit loop calls a [`Session`] at four points (each exit, each `read_clock`, each
//! doorbell write, after each exit); a normal run has no session and nothing changes.

pub mod framing;
pub mod log;
pub mod guest_memory;
pub mod recorder;
pub mod replayer;

use pv_abi::addr::MachineAddr;

use crate::devices::console::ConsoleOutput;
use crate::devices::Devices;
use crate::kvm::KvmVm;
use crate::memory::GuestRam;
use crate::outcome::GuestStop;
use crate::trace::{text, ExitReason, TraceEvent, Tracer};
use log::ExitRecord;
pub use recorder::Recorder;
pub use replayer::Replayer;

/// A recorded or replayed run, as the exit loop sees it.
pub enum Session {
    /// `hv run --record`.
    Record(Recorder),
    /// `hv replay` (boxed: a replayer holds its open log).
    Replay(Box<Replayer>),
}

/// What a session found, reported when the run ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionReport {
    /// FNV-1a of all guest memory at the stop.
    pub memory_hash: u64,
    /// Exits the guest made.
    pub exits: u64,
    /// Events logged (record) or read (replay), after the header.
    pub events: u64,
    /// What went wrong: the log could not be written, or the replay diverged (with both
    /// sides). `None` when all is well.
    pub problem: Option<String>,
    /// Something to say that is not a failure (where `--until` stopped).
    pub note: Option<String>,
}

impl Session {
    /// A VM exit. `guest_made` is false for one a signal caused (`interrupted`), which
    /// is no guest event: it is neither numbered nor logged. `Some` stops the guest.
    pub fn exit(&mut self, reason: ExitReason, port: Option<u16>, gpa: Option<MachineAddr>) -> Option<GuestStop> {
        let n = match self {
            Session::Record(r) => r.exits() + 1,
            Session::Replay(r) => r.exits() + 1,
        };
        let record = ExitRecord { n, reason: reason.name().to_string(), port, gpa: gpa.map(MachineAddr::raw) };
        match self {
            Session::Record(r) => {
                r.exit(record);
                None
            }
            Session::Replay(r) => r.exit(record),
        }
    }

    /// A `read_clock` answered `tsc` from the host: logged, or replaced by the logged
    /// value. `Err`: the replay diverged; the guest must stop (`Diverged::stop`).
    pub fn clock(&mut self, tsc: u64) -> Result<u64, replayer::Diverged> {
        match self {
            Session::Record(r) => {
                r.clock(tsc);
                Ok(tsc)
            }
            Session::Replay(r) => r.clock(tsc),
        }
    }

    /// The guest wrote doorbell `port` (of an attached device): served and logged, or
    /// replayed from the log.
    pub fn doorbell(&mut self, vm: &mut KvmVm, devices: &Devices, tracer: &Tracer, console: &ConsoleOutput, port: u16) -> Option<GuestStop> {
        match self {
            Session::Record(r) => r.doorbell(vm, devices, port),
            Session::Replay(r) => r.doorbell(vm, devices, tracer, console, port),
        }
    }

    /// After an exit was handled (`hv replay --until`).
    pub fn after_exit(&mut self) -> Option<GuestStop> {
        match self {
            Session::Record(_) => None,
            Session::Replay(r) => r.after_exit(),
        }
    }

    /// Where a replay stopped by `--until` must write a snapshot, if asked.
    pub fn snapshot_due(&self) -> Option<&std::path::Path> {
        match self {
            Session::Record(_) => None,
            Session::Replay(r) => r.snapshot_due(),
        }
    }

    /// The run is over.
    pub fn finish(self, stop: &GuestStop, ram: &GuestRam) -> SessionReport {
        match self {
            Session::Record(r) => r.finish(stop, ram),
            Session::Replay(r) => r.finish(stop, ram),
        }
    }
}

/// How a stop reads in the trace, without the sequence number: what the log's end
/// records and a replay compares.
pub fn stop_line(stop: &GuestStop) -> String {
    let line = text::format_event(0, &TraceEvent::Stop(Box::new(stop.clone())));
    line.split_once(' ').map_or(line.clone(), |(_, rest)| rest.trim_start().to_string())
}
