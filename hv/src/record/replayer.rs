//! Replaying: run the guest again from the same boot, feeding it the logged inputs.
//!
//! No backend runs. The guest executes its own code on KVM as before; at each exit the
//! replayer takes the next logged event and checks that the guest is where the log says
//! it was ([`Replayer::exit`]). A `read_clock` gets the logged value
//! ([`Replayer::clock`]). A doorbell write gets what the device did then
//! ([`Replayer::doorbell`]): the guest must be at the same rip with the same requests
//! on its ring (a hash of the ring page), and then the logged bytes are written into
//! guest memory, the device's trace lines and console text re-emitted, and the upcall
//! raised, at the same exit, so the guest sees exactly what it saw. The first event that
//! does not match stops the replay with both sides ([`Divergence`]).

use std::path::{Path, PathBuf};

use pv_abi::addr::{PseudoPhys, PAGE_SIZE};

use super::framing::{fnv, from_hex};
use super::guest_memory::memory_hash;
use super::log::{Event, ExitRecord, LogReader};
use super::SessionReport;
use crate::devices::console::ConsoleOutput;
use crate::devices::{raise_upcall, Devices};
use crate::kvm::KvmVm;
use crate::memory::GuestRam;
use crate::outcome::{GuestStop, KvmFailure};
use crate::trace::{TraceEvent, Tracer};

/// Where replay and log first disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The log line of the recorded side (0: none).
    pub line: u64,
    /// What the log says.
    pub recorded: String,
    /// What the replay did.
    pub replay: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replay diverged from the log at line {}:\n  recorded: {}\n  replay:   {}", self.line, self.recorded, self.replay)
    }
}

/// The replay diverged from the log (the details are kept in the replayer).
#[derive(Debug)]
pub struct Diverged;

impl Diverged {
    /// How the guest stops for it.
    pub fn stop(self) -> Option<GuestStop> {
        Some(GuestStop::Ended { why: "replay diverged from the log".into() })
    }
}

/// A run being replayed.
pub struct Replayer {
    log: LogReader,
    exits: u64,
    events: u64,
    until: Option<u64>,
    divergence: Option<Divergence>,
    /// The log's end came before the guest stopped: `(exits, stop)` as recorded.
    ended_early: Option<(u64, String, String)>,
    /// `--until` stopped the replay here.
    stopped_at: Option<String>,
    /// The last exit the guest made.
    last_exit: Option<ExitRecord>,
    /// Where to write a snapshot when `--until` stops the replay.
    snapshot: Option<PathBuf>,
}

impl Replayer {
    /// A replay of `log` (its header already checked against this VM), stopping after
    /// exit `until` if given.
    pub fn new(log: LogReader, until: Option<u64>, snapshot: Option<PathBuf>) -> Self {
        Replayer { log, exits: 0, events: 0, until, divergence: None, ended_early: None, stopped_at: None, last_exit: None, snapshot }
    }

    /// `--until` stopped the replay and a snapshot was asked for there: where to write it.
    /// (hv's `state` layer writes it, from `vmm`, with the vCPU still at that exit.)
    pub fn snapshot_due(&self) -> Option<&Path> {
        self.stopped_at.as_ref().and(self.snapshot.as_deref())
    }

    /// Notes the divergence; the guest must stop ([`Diverged::stop`]).
    fn diverge(&mut self, recorded: String, replay: String) -> Diverged {
        let line = self.log.line();
        self.divergence = Some(Divergence { line, recorded, replay });
        Diverged
    }

    /// The next logged event, or the divergence a damaged log is; `actual` says what the
    /// guest did, for the message.
    fn next(&mut self, actual: &dyn Fn() -> String) -> Result<Event, Diverged> {
        match self.log.next_event() {
            Ok(event) => {
                self.events += 1;
                Ok(event)
            }
            Err(e) => Err(self.diverge(e.to_string(), actual())),
        }
    }

    /// A guest exit: it must be the one the log has next.
    pub fn exit(&mut self, actual: ExitRecord) -> Option<GuestStop> {
        self.exits = actual.n;
        self.last_exit = Some(actual.clone());
        match self.next(&|| actual.to_string()) {
            Err(diverged) => diverged.stop(),
            Ok(Event::Exit(logged)) if logged == actual => None,
            Ok(Event::End { exits, stop, memory_hash }) if exits + 1 == actual.n => {
                // The recorded run was stopped from outside (a timeout, a control
                // command) after its last exit; the replay stops at the same point.
                self.ended_early = Some((exits, stop, memory_hash));
                Some(GuestStop::Ended { why: "the recording ends here".into() })
            }
            Ok(other) => self.diverge(other.describe(), actual.to_string()).stop(),
        }
    }

    /// How many exits the guest has made.
    pub fn exits(&self) -> u64 {
        self.exits
    }

    /// `read_clock`: the logged value replaces the host's.
    pub fn clock(&mut self, host_tsc: u64) -> Result<u64, Diverged> {
        let n = self.exits;
        match self.next(&|| format!("read_clock at exit {n}"))? {
            Event::Clock { n: logged, tsc } if logged == n => Ok(tsc),
            other => Err(self.diverge(other.describe(), format!("read_clock at exit {n} (host counter {host_tsc})"))),
        }
    }

    /// The guest rang doorbell `port`: do what the device did then.
    pub fn doorbell(&mut self, vm: &mut KvmVm, devices: &Devices, tracer: &Tracer, console: &ConsoleOutput, port: u16) -> Option<GuestStop> {
        let ring = devices.ring_of(port)?;
        let rip = match vm.guest_regs() {
            Ok(regs) => regs.rip,
            Err(e) => return Some(GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "KVM_GET_REGS", source: e }, dump: None }),
        };
        let mut page = vec![0u8; PAGE_SIZE as usize];
        let _ = vm.ram().read(ring, &mut page);
        let ring_hash = format!("{:016x}", fnv(&page));
        let n = self.exits;
        let actual = format!("doorbell port={port:#x} at exit {n} rip={rip:#x} ring={ring_hash}");
        let described = actual.clone();
        let device = match self.next(&move || described.clone()) {
            Err(diverged) => return diverged.stop(),
            Ok(Event::Device(d)) if d.n == n && d.port == port && d.rip == rip && d.ring_hash == ring_hash => d,
            Ok(other) => return self.diverge(other.describe(), actual).stop(),
        };
        for write in &device.writes {
            if let Err(what) = apply(vm.ram(), write.gpa, &write.data) {
                return self.diverge(format!("a device write at {:#x}: {what}", write.gpa), actual).stop();
            }
        }
        for line in &device.lines {
            tracer.emit(|| TraceEvent::Replayed(line.clone()));
        }
        match from_hex(&device.printed) {
            Some(text) if !text.is_empty() => {
                let mut out = console.clone();
                let _ = std::io::Write::write_all(&mut out, &text);
            }
            Some(_) => {}
            None => return self.diverge("console text that is not hex".into(), actual).stop(),
        }
        if device.upcall {
            if let Err(e) = raise_upcall(vm) {
                return Some(GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "KVM_SIGNAL_MSI", source: e }, dump: None });
            }
        }
        None
    }

    /// After an exit was handled: `--until` stops here.
    pub fn after_exit(&mut self) -> Option<GuestStop> {
        if self.until != Some(self.exits) || self.divergence.is_some() {
            return None;
        }
        let exit = self.last_exit.as_ref().map_or(String::new(), |x| format!(" ({x})"));
        self.stopped_at = Some(format!("--until: stopped after exit {}{exit}, log line {}", self.exits, self.log.line()));
        Some(GuestStop::Ended { why: format!("hv replay --until {}", self.exits) })
    }

    /// The guest stopped: compare with the log's end.
    pub fn finish(mut self, stop: &GuestStop, ram: &GuestRam) -> SessionReport {
        let hash = memory_hash(ram);
        let mut report = SessionReport { memory_hash: hash, exits: self.exits, events: self.events, problem: None, note: None };
        if let Some(d) = self.divergence.take() {
            report.problem = Some(d.to_string());
            return report;
        }
        if let Some(at) = self.stopped_at.take() {
            report.note = Some(at);
            return report;
        }
        if let Some((exits, stop, _)) = self.ended_early.take() {
            report.note = Some(format!(
                "the recorded run was stopped from outside the guest ({stop}) after exit {exits}; the replay stopped there too, and memory is not compared"
            ));
            return report;
        }
        let line = super::stop_line(stop);
        let (exits, described) = (self.exits, line.clone());
        let recorded_hash = match self.next(&move || format!("end after {exits} exits: {described}")) {
            Ok(Event::End { exits, stop: logged_stop, memory_hash }) if exits == self.exits && logged_stop == line => memory_hash,
            Ok(other) => {
                let problem = Divergence { line: self.log.line(), recorded: other.describe(), replay: format!("end after {} exits: {line}", self.exits) };
                report.problem = Some(problem.to_string());
                return report;
            }
            Err(_) => {
                report.problem = self.divergence.take().map(|d| d.to_string());
                return report;
            }
        };
        report.events = self.events;
        if let Some(until) = self.until.filter(|u| *u > self.exits) {
            report.note = Some(format!("--until {until}: the guest stopped after exit {}, before reaching it", self.exits));
        }
        let hash_text = format!("{hash:016x}");
        if recorded_hash != hash_text {
            let d = Divergence { line: self.log.line(), recorded: format!("memory hash {recorded_hash}"), replay: format!("memory hash {hash_text}") };
            report.problem = Some(d.to_string());
        }
        report
    }
}

/// Writes one logged device write into guest RAM, checked.
pub(crate) fn apply(ram: &GuestRam, gpa: u64, hex: &str) -> Result<(), String> {
    let bytes = from_hex(hex).ok_or("its data is not hex")?;
    if bytes.len() as u64 > PAGE_SIZE * 64 {
        return Err(format!("{} bytes is more than a device writes at once", bytes.len()));
    }
    ram.write(PseudoPhys::new(gpa), &bytes).map_err(|e| e.to_string())
}
