//! The timeline trace (`--trace-format perfetto`): Chrome's trace-event JSON, which the
//! Perfetto UI (ui.perfetto.dev) and `chrome://tracing` open as a timeline.
//!
//! The text trace says *what* happened, in order; a timeline shows *when*, and on which
//! thread, so that the cost of each step can be seen. The file is a JSON array of events
//! (the "JSON Array Format", whose closing `]` is optional, so a trace cut short by a
//! crash still opens):
//!
//! ```text
//!  vCPU track     [guest running][exit io-out][guest running ........][exit mmio-write]
//!                      ·  doorbell ↘  hypercall nop (instant)    ↗ upcall
//!  console track             [serve ring: pop, push, publish]
//!  counters       exits ▁▂▃▄   trapped page-table writes ▁▁▂▂
//! ```
//!
//! - **Tracks:** the vCPU thread and each backend thread (named by what they are).
//! - **Slices:** on the vCPU track, hv's handling of each exit (from `KVM_RUN`'s return
//!   to the next entry, [`super::Tracer::mark_guest_entry`]) alternating with the guest
//!   running; on a backend's track, one slice from the doorbell that woke it to the
//!   responses it published. Slices of a track never overlap and nest strictly (at most
//!   one is open per track), as Perfetto requires.
//! - **Instant events:** hypercalls, page-table writes, shadow syncs, flushes, ring pops
//!   and pushes, each with its text-trace line as an argument.
//! - **Flow arrows:** from the guest's doorbell (on the vCPU track) to the backend that
//!   woke, and from the backend's published responses to the upcall on the vCPU track.
//! - **Counter tracks:** VM exits and trapped page-table writes, cumulative.
//!
//! Times are microseconds since the trace began, read when hv records each event, under
//! the trace's lock: so they are in the order things happened, on every track.

use std::collections::HashMap;
use std::io::Write;
use std::thread::ThreadId;
use std::time::Instant;

use backend_drivers::events::DeviceEvent;
use serde_json::{json, Value};

use super::{text, ExitReason, TraceEvent};

/// The process id every event carries (one hv guest is one "process" on the timeline).
const PID: u32 = 1;
/// The track of the counters (a pseudo thread id no real thread gets).
const COUNTER_TID: u32 = 0;

/// What the timeline writer remembers between events.
pub struct PerfettoState {
    began: Instant,
    /// Each thread seen, as the small track number events carry.
    tracks: HashMap<ThreadId, u32>,
    /// The vCPU thread's track, once known.
    vcpu: Option<u32>,
    /// The slice open on each track, if any: its name.
    open: HashMap<u32, &'static str>,
    next_flow: u64,
    exits: u64,
    trapped_writes: u64,
    /// Whether the first event (the `[`) has been written.
    started: bool,
}

impl PerfettoState {
    /// A timeline starting now.
    pub fn new() -> Self {
        PerfettoState {
            began: Instant::now(),
            tracks: HashMap::new(),
            vcpu: None,
            open: HashMap::new(),
            next_flow: 1,
            exits: 0,
            trapped_writes: 0,
            started: false,
        }
    }

    /// Microseconds since the trace began.
    fn now_us(&self) -> f64 {
        self.began.elapsed().as_nanos() as f64 / 1000.0
    }

    /// Writes one JSON event, the array's `[` before the first.
    fn put(&mut self, out: &mut impl Write, event: Value) -> std::io::Result<()> {
        if self.started {
            writeln!(out, ",{event}")
        } else {
            self.started = true;
            writeln!(out, "[{event}")
        }
    }

    /// The calling thread's track; a new one is named `name` (a metadata event).
    fn track(&mut self, out: &mut impl Write, name: impl FnOnce() -> String) -> std::io::Result<u32> {
        let id = std::thread::current().id();
        if let Some(tid) = self.tracks.get(&id) {
            return Ok(*tid);
        }
        if self.tracks.is_empty() {
            self.put(out, json!({"ph": "M", "pid": PID, "tid": COUNTER_TID, "name": "process_name", "args": {"name": "hv guest"}}))?;
        }
        let tid = self.tracks.len() as u32 + 1;
        self.tracks.insert(id, tid);
        self.put(out, json!({"ph": "M", "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": name()}}))?;
        Ok(tid)
    }

    /// The vCPU's track (the calling thread's, the first time).
    fn vcpu_track(&mut self, out: &mut impl Write) -> std::io::Result<u32> {
        if let Some(tid) = self.vcpu {
            return Ok(tid);
        }
        let tid = self.track(out, || "vCPU 0 (guest running, hv handling exits)".to_string())?;
        self.vcpu = Some(tid);
        Ok(tid)
    }

    /// Opens slice `name` on `tid`, closing the one open there first (so slices never
    /// overlap on a track).
    fn begin(&mut self, out: &mut impl Write, tid: u32, name: &'static str, ts: f64, args: Value) -> std::io::Result<()> {
        self.end(out, tid, ts)?;
        self.open.insert(tid, name);
        self.put(out, json!({"ph": "B", "pid": PID, "tid": tid, "ts": ts, "name": name, "cat": "slice", "args": args}))
    }

    /// Closes the slice open on `tid`, if any.
    fn end(&mut self, out: &mut impl Write, tid: u32, ts: f64) -> std::io::Result<()> {
        match self.open.remove(&tid) {
            Some(name) => self.put(out, json!({"ph": "E", "pid": PID, "tid": tid, "ts": ts, "name": name, "cat": "slice"})),
            None => Ok(()),
        }
    }

    fn instant(&mut self, out: &mut impl Write, tid: u32, ts: f64, name: String, line: String) -> std::io::Result<()> {
        self.put(out, json!({"ph": "i", "s": "t", "pid": PID, "tid": tid, "ts": ts, "name": name, "cat": "event", "args": {"trace": line}}))
    }

    fn counter(&mut self, out: &mut impl Write, ts: f64, name: &str, value: u64) -> std::io::Result<()> {
        self.put(out, json!({"ph": "C", "pid": PID, "tid": COUNTER_TID, "ts": ts, "name": name, "args": {"count": value}}))
    }

    /// One end of a flow arrow: `phase` "s" (start) or "f" (finish, bound to the slice
    /// that encloses it).
    fn flow(&mut self, out: &mut impl Write, phase: &str, id: u64, tid: u32, ts: f64, name: &str) -> std::io::Result<()> {
        let mut event = json!({"ph": phase, "id": id, "pid": PID, "tid": tid, "ts": ts, "name": name, "cat": "flow"});
        if phase == "f" {
            event["bp"] = json!("e");
        }
        self.put(out, event)
    }

    /// The vCPU is about to enter the guest: hv's handling of the last exit ends, the
    /// guest runs.
    pub fn guest_entry(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let tid = self.vcpu_track(out)?;
        let ts = self.now_us();
        self.begin(out, tid, "guest running", ts, json!({}))
    }

    /// Records `event` (already numbered `seq` in the other formats).
    pub fn record(&mut self, out: &mut impl Write, seq: u64, event: &TraceEvent) -> std::io::Result<()> {
        let line = text::format_event(seq, event);
        match event {
            TraceEvent::Device(device_event) => return self.device(out, device_event, line),
            TraceEvent::Replayed(recorded) => {
                // A replay has no backend thread: the device's lines go on a track named
                // after it, as instants.
                let tid = self.vcpu_track(out)?;
                let ts = self.now_us();
                return self.instant(out, tid, ts, format!("{} (replayed)", recorded.kind), line);
            }
            _ => {}
        }
        let tid = self.vcpu_track(out)?;
        let ts = self.now_us();
        match event {
            TraceEvent::Exit { reason, .. } => {
                self.exits += 1;
                self.begin(out, tid, exit_slice_name(*reason), ts, json!({"trace": line}))?;
                let exits = self.exits;
                self.counter(out, ts, "VM exits", exits)
            }
            TraceEvent::PtWrite { .. } => {
                self.trapped_writes += 1;
                self.instant(out, tid, ts, "trapped page-table write".to_string(), line)?;
                let n = self.trapped_writes;
                self.counter(out, ts, "trapped page-table writes", n)
            }
            TraceEvent::Hypercall { name, .. } => self.instant(out, tid, ts, format!("hypercall {name}"), line),
            TraceEvent::Stop(_) => {
                self.instant(out, tid, ts, "guest stopped".to_string(), line)?;
                self.close_all(out, ts)
            }
            TraceEvent::Cut { .. } => {
                self.instant(out, tid, ts, "trace cut (--trace-max)".to_string(), line)?;
                self.close_all(out, ts)
            }
            _ => {
                // Shadow syncs, flushes, unhandled ports, boot: named by their kind column.
                let name = line.split_whitespace().nth(1).unwrap_or("event").to_string();
                self.instant(out, tid, ts, name, line)
            }
        }
    }

    /// A backend's event, on its own track.
    fn device(&mut self, out: &mut impl Write, event: &DeviceEvent, line: String) -> std::io::Result<()> {
        let device = device_name(event);
        let tid = self.track(out, || format!("{device} backend thread"))?;
        let ts = self.now_us();
        match event {
            DeviceEvent::Doorbell { .. } => {
                // The guest rang (its write never left the kernel: no exit): an arrow from
                // the vCPU's current slice to this backend's wake-up.
                let vcpu = self.vcpu_track(out)?;
                let id = self.new_flow();
                self.flow(out, "s", id, vcpu, ts, "doorbell")?;
                self.begin(out, tid, "serve ring", ts, json!({"trace": line}))?;
                self.flow(out, "f", id, tid, ts, "doorbell")
            }
            DeviceEvent::Published { notified, .. } => {
                self.instant(out, tid, ts, "publish responses".to_string(), line)?;
                if *notified {
                    // The upcall: an arrow from here to whatever the vCPU is doing.
                    let vcpu = self.vcpu_track(out)?;
                    let id = self.new_flow();
                    self.flow(out, "s", id, tid, ts, "upcall")?;
                    self.flow(out, "f", id, vcpu, ts, "upcall")?;
                }
                self.end(out, tid, ts)
            }
            _ => {
                let name = line.splitn(3, char::is_whitespace).nth(2).unwrap_or("").trim_start();
                let short: String = name.split(':').next().unwrap_or(name).chars().take(40).collect();
                self.instant(out, tid, ts, short, line)
            }
        }
    }

    fn new_flow(&mut self) -> u64 {
        let id = self.next_flow;
        self.next_flow += 1;
        id
    }

    /// Closes every open slice (the trace ends).
    fn close_all(&mut self, out: &mut impl Write, ts: f64) -> std::io::Result<()> {
        let mut open: Vec<u32> = self.open.keys().copied().collect();
        open.sort_unstable();
        for tid in open {
            self.end(out, tid, ts)?;
        }
        Ok(())
    }

    /// Ends the file: closes open slices and the array.
    pub fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let ts = self.now_us();
        self.close_all(out, ts)?;
        if self.started {
            writeln!(out, "]")?;
            self.started = false;
        } else {
            writeln!(out, "[]")?;
        }
        Ok(())
    }
}

impl Default for PerfettoState {
    fn default() -> Self {
        Self::new()
    }
}

/// The slice name of hv's handling of an exit.
fn exit_slice_name(reason: ExitReason) -> &'static str {
    match reason {
        ExitReason::IoOut => "exit io-out",
        ExitReason::IoIn => "exit io-in",
        ExitReason::MmioRead => "exit mmio-read",
        ExitReason::MmioWrite => "exit mmio-write",
        ExitReason::Hlt => "exit hlt",
        ExitReason::Shutdown => "exit shutdown",
        ExitReason::FailEntry => "exit fail-entry",
        ExitReason::InternalError => "exit internal-error",
        ExitReason::Interrupted => "exit interrupted",
        ExitReason::Other => "exit other",
    }
}

fn device_name(event: &DeviceEvent) -> &'static str {
    match event {
        DeviceEvent::Doorbell { device, .. }
        | DeviceEvent::RequestPopped { device, .. }
        | DeviceEvent::GrantCheck { device, .. }
        | DeviceEvent::ResponsePushed { device, .. }
        | DeviceEvent::Published { device, .. }
        | DeviceEvent::RingError { device, .. }
        | DeviceEvent::Refused { device, .. } => device,
    }
}
