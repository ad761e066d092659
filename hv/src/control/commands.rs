//! The control socket's commands: one table ([`COMMANDS`]) and one small handler each.
//!
//! A handler never touches the VM itself: the VM belongs to its vCPU thread. It hands
//! that thread a job (`VcpuControl::call`), which runs at the next exit boundary with
//! the whole VM in hand and says whether the guest then runs, stays paused or stops.
//! `pause` is a job that answers "stay out of the guest"; `resume` one that answers "run";
//! `status` and `stats` read counters and leave the guest as it was; `snapshot` is
//! `crate::vmm::snapshot::take`, which is such a job too; `migrate` is
//! `crate::migration::send`, whose jobs start dirty logging, pause the guest for the
//! last round and end (or resume) it, and which reports each round as progress.
//!
//! To add a command: write its handler (`fn(&Session, &Args, &mut Progress) -> Result<Reply,
//! String>`; a long one may report through `Progress` before it returns),
//! add a row to [`COMMANDS`] with its fields, and document its request and reply in
//! `super::protocol`'s table and in docs/control.md. `hv ctl` and the server's checks
//! (`super::dispatch`) follow from the row.

use std::time::{Duration, Instant};

use pv_abi::MmuMode;
use serde_json::Value;

use super::protocol::{self, Reply};
use super::table::{Args, Field, FieldKind};
use crate::vcpu::control::{AfterJob, ExitBoundary, VcpuControl};
use crate::vmm::snapshot::{self as vm_snapshot, AfterSnapshot, SnapshotInputs};
use crate::vmm::stats::RunStats;
use crate::vmm::VmConfig;

/// What the handlers work with: the running VM's control handle and what it was made of.
pub struct Session {
    /// Jobs for the vCPU thread.
    pub control: VcpuControl,
    /// The VM's configuration (kernel, guest arguments, disk, memory mode asked for).
    pub config: VmConfig,
    /// When hv started: uptime and `--stats` times count from here.
    pub started: Instant,
    /// The thread that sends migrations (the server starts it, before anything is
    /// confined); without it a migration runs on the client's own thread.
    pub migration_worker: Option<super::migration_worker::MigrationWorker>,
    /// The latest migration's progress, for `stats` (and so `hv top`): its rounds so far,
    /// as the client that asked for it sees them.
    pub migration_progress: std::sync::Arc<std::sync::Mutex<Option<MigrationProgress>>>,
    /// The virtual switch the guest's network device is a port of (`--tap`, `--guests`):
    /// `stats` shows its ports. Shared by every guest of a group, so each guest's socket
    /// shows the same switch.
    pub switch: Option<backend_drivers::switch::Switch>,
}

impl Session {
    /// A session for the VM `control` reaches, made from `config`, started at `started`
    /// (no migration yet; the server starts the migration thread).
    pub fn new(control: VcpuControl, config: VmConfig, started: Instant, switch: Option<backend_drivers::switch::Switch>) -> Session {
        Session { control, config, started, migration_worker: None, migration_progress: Default::default(), switch }
    }
}

/// How a migration asked through this socket is going.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MigrationProgress {
    /// Where the guest is going.
    pub destination: String,
    /// Rounds done so far.
    pub rounds: u32,
    /// Pages sent so far.
    pub pages_sent: u64,
    /// Pages the last round let the guest dirty (what the next round must send).
    pub last_dirtied: u64,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
}

/// Where a command sends progress reports before its reply (a migration's rounds, say):
/// each goes to the client at once as a progress line. A client that has gone away makes
/// this do nothing; the command goes on.
pub type Progress<'a> = dyn FnMut(Reply) + 'a;

/// One command of the control socket.
pub struct Command {
    /// `cmd` in a request.
    pub name: &'static str,
    /// One line for `hv ctl --help`.
    pub about: &'static str,
    /// Its arguments.
    pub fields: &'static [Field],
    /// Does it; the error is the reply's message.
    pub run: fn(&Session, &Args, &mut Progress<'_>) -> Result<Reply, String>,
}

/// Every command, in the order `hv ctl --help` lists them.
pub const COMMANDS: &[Command] = &[
    Command { name: "pause", about: "stop running the guest at its next exit; answers once it is out of the guest", fields: &[], run: pause },
    Command { name: "resume", about: "let a paused guest run on", fields: &[], run: resume },
    Command {
        name: "status",
        about: "running or paused, memory mode, RAM, uptime, exits and hypercalls so far, kernel and guest arguments",
        fields: &[],
        run: status,
    },
    Command { name: "stats", about: "the --stats table so far (with --json: every figure as JSON)", fields: &[], run: stats },
    Command {
        name: "snapshot",
        about: "write the whole VM to FILE (for hv restore), pausing the guest meanwhile; --stop: end the run after",
        fields: &[
            Field { name: "file", kind: FieldKind::Path, required: true, positional: true },
            Field { name: "stop", kind: FieldKind::Flag, required: false, positional: false },
        ],
        run: snapshot,
    },
    Command {
        name: "migrate",
        about: "send the guest to the hv waiting at DESTINATION (hv run --incoming HOST:PORT) by pre-copy live migration, reporting each round; the run ends here once it runs there",
        fields: &[
            Field { name: "destination", kind: FieldKind::Text, required: true, positional: true },
            Field { name: "max_rounds", kind: FieldKind::Count, required: false, positional: false },
            Field { name: "downtime_ms", kind: FieldKind::Count, required: false, positional: false },
            Field { name: "json", kind: FieldKind::Path, required: false, positional: false },
            Field { name: "plot", kind: FieldKind::Path, required: false, positional: false },
        ],
        run: migrate,
    },
    Command {
        name: "balloon",
        about: "set the balloon's target to MIB of RAM the guest should keep and tell the guest; answers at once with the balloon as it stands (the guest inflates or deflates while it runs)",
        fields: &[Field { name: "mib", kind: FieldKind::Count, required: true, positional: true }],
        run: balloon,
    },
];

/// `migrate`'s round limit and downtime target when the request names none (the same
/// as `hv run --migrate-to`'s).
const DEFAULT_MAX_ROUNDS: u64 = 30;
const DEFAULT_DOWNTIME_MS: u64 = 5;
/// The most rounds a request may ask for (the stream allows more; a class needs fewer).
const MAX_ROUNDS: u64 = 1000;

/// The command called `name`.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The command names, for messages.
pub fn names() -> String {
    COMMANDS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// What a job answers to leave the guest as it found it.
fn as_it_was(boundary: &ExitBoundary) -> AfterJob {
    if boundary.paused {
        AfterJob::Pause
    } else {
        AfterJob::Run
    }
}

/// Runs `job` on the vCPU thread; the guest having ended is the error.
fn on_vcpu<R: Send + 'static>(
    session: &Session,
    job: impl FnOnce(&mut ExitBoundary) -> (R, AfterJob) + Send + 'static,
) -> Result<R, String> {
    session.control.call(job).map_err(|gone| gone.to_string())
}

fn pause(session: &Session, _: &Args, _: &mut Progress) -> Result<Reply, String> {
    let was_paused = on_vcpu(session, |b| (b.paused, AfterJob::Pause))?;
    let text = if was_paused { "the guest was already paused" } else { "paused" };
    Ok(Reply::new(text).with("state", "paused").with("changed", !was_paused))
}

fn resume(session: &Session, _: &Args, _: &mut Progress) -> Result<Reply, String> {
    let was_paused = on_vcpu(session, |b| (b.paused, AfterJob::Run))?;
    let text = if was_paused { "resumed" } else { "the guest was already running" };
    Ok(Reply::new(text).with("state", "running").with("changed", was_paused))
}

fn balloon(session: &Session, args: &Args, _: &mut Progress) -> Result<Reply, String> {
    let mib = args.count("mib").ok_or("'balloon' needs \"mib\"")?;
    let ram_mib = session.config.mem_mib;
    if mib > ram_mib {
        return Err(format!("a balloon target of {mib} MiB is more than the guest's {ram_mib} MiB of RAM"));
    }
    let pages = crate::devices::balloon::mib_to_pages(mib);
    let report = on_vcpu(session, move |b| {
        let set = b.devices.set_balloon_target(b.kvm, pages);
        let report = b.devices.balloon_report(b.kvm.ram());
        ((set, report), as_it_was(b))
    })?;
    match report {
        (Ok(true), Some(r)) => {
            let mib_of = |pages: u64| pages as f64 * 4096.0 / f64::from(1 << 20);
            let text = format!(
                "balloon target set to {mib} MiB; the host holds {:.1} MiB now (floor {:.1} MiB)",
                mib_of(r.ballooned_pages),
                mib_of(r.floor_pages)
            );
            Ok(Reply::new(text)
                .with("target_mib", mib)
                .with("held_pages", r.ballooned_pages)
                .with("floor_pages", r.floor_pages)
                .with("inflated", r.counters.inflated)
                .with("deflated", r.counters.deflated)
                .with("refused", r.counters.refused))
        }
        (Ok(_), _) => Err("this VM has no balloon (a recorded or replayed run)".into()),
        (Err(why), _) => Err(format!("could not set the balloon's target: {why}")),
    }
}

/// What `status` reads on the vCPU thread.
struct Live {
    paused: bool,
    shadow: bool,
    exits: u64,
    hypercalls: u64,
    ram_bytes: u64,
}

fn status(session: &Session, _: &Args, _: &mut Progress) -> Result<Reply, String> {
    let live = on_vcpu(session, |b| {
        let live = Live {
            paused: b.paused,
            shadow: b.shadow.is_some(),
            exits: b.counters.total_exits(),
            hypercalls: b.counters.total_hypercalls(),
            ram_bytes: b.kvm.ram().size(),
        };
        (live, as_it_was(b))
    })?;
    let state = if live.paused { "paused" } else { "running" };
    let mmu = if live.shadow { MmuMode::Shadow } else { MmuMode::Ept }.name();
    let uptime = session.started.elapsed();
    let kernel = session.config.kernel.as_ref().map_or_else(|| "built-in pv-guest".to_string(), |p| p.display().to_string());
    let args = &session.config.guest_args;
    let mut text = String::new();
    for (label, value) in [
        ("state", state.to_string()),
        ("memory mode", mmu.to_string()),
        ("RAM", format!("{} MiB", live.ram_bytes >> 20)),
        ("uptime", format!("{:.3} s", uptime.as_secs_f64())),
        ("VM exits", live.exits.to_string()),
        ("hypercalls", live.hypercalls.to_string()),
        ("kernel", kernel.clone()),
        ("guest args", if args.is_empty() { "(none)".to_string() } else { args.join(" ") }),
    ] {
        text.push_str(&format!("{label:<12} {value}\n"));
    }
    text.pop();
    Ok(Reply::new(text)
        .with("state", state)
        .with("mmu", mmu)
        .with("exits", live.exits)
        .with("hypercalls", live.hypercalls)
        .with("uptime_ms", uptime.as_secs_f64() * 1e3)
        .with("ram_bytes", live.ram_bytes)
        .with("pid", std::process::id())
        .with("kernel", kernel)
        .with("guest_args", Value::from(args.clone())))
}

fn stats(session: &Session, _: &Args, _: &mut Progress) -> Result<Reply, String> {
    let started = session.started;
    let stats = on_vcpu(session, move |b| {
        let mut stats = RunStats::new(started);
        stats.mmu = if b.shadow.is_some() { MmuMode::Shadow } else { MmuMode::Ept };
        stats.vcpu = b.counters.clone();
        stats.shadow = b.shadow.as_deref().map(|s| s.counters());
        // The backend threads answer for themselves; the guest waits meanwhile (a few
        // microseconds: each thread replies between two requests).
        stats.devices = b.devices.stats_now();
        stats.balloon = b.devices.balloon_report(b.kvm.ram());
        stats.net = b.devices.net_stats();
        stats.finish(b.console.first_line_at());
        let rings = b.devices.ring_occupancy(b.kvm.ram());
        ((stats, rings), as_it_was(b))
    })?;
    let (stats, rings) = stats;
    let rings: serde_json::Map<String, Value> = rings.into_iter().map(|(name, n)| (name.to_string(), Value::from(n))).collect();
    let migration = session.migration_progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut text = stats.to_string();
    let switch = session.switch.as_ref().map(|switch| {
        let now = switch.stats();
        text.push_str(&format!("\n{now}"));
        switch_json(&now)
    });
    Ok(Reply::new(text)
        .with("stats", stats.to_json())
        .with("rings_in_flight", rings)
        .with("migration", serde_json::to_value(migration).unwrap_or_default())
        .with("switch", switch.unwrap_or_default()))
}

/// The switch's counters as JSON: each port by name, and the MAC table.
fn switch_json(s: &backend_drivers::switch::SwitchStats) -> Value {
    let port = |p: &backend_drivers::switch::PortReport| {
        serde_json::json!({
            "id": p.id.0,
            "name": p.name,
            "frames_from_it": p.stats.rx_frames,
            "bytes_from_it": p.stats.rx_bytes,
            "frames_to_it": p.stats.tx_frames,
            "bytes_to_it": p.stats.tx_bytes,
            "flooded": p.stats.flooded,
            "filtered": p.stats.filtered,
            "dropped_bad": p.stats.dropped_bad,
            "dropped_queue_full": p.stats.dropped_full,
            "queued": p.queued,
        })
    };
    let t = &s.table;
    serde_json::json!({
        "ports": s.ports.iter().map(port).collect::<Vec<_>>(),
        "departed": s.departed.iter().map(port).collect::<Vec<_>>(),
        "mac_table": {
            "entries": t.entries,
            "learned": t.learned,
            "moved": t.moved,
            "aged_out": t.aged_out,
            "refused_table_full": t.refused_table_full,
            "refused_port_full": t.refused_port_full,
        },
    })
}

fn snapshot(session: &Session, args: &Args, _: &mut Progress) -> Result<Reply, String> {
    let file = args.text("file").ok_or("'snapshot' needs \"file\"")?;
    let after = if args.flag("stop") { AfterSnapshot::Stop } else { AfterSnapshot::Continue };
    let inputs = SnapshotInputs::from_config(&session.config);
    let report = vm_snapshot::take(&session.control, inputs, file.into(), after).map_err(|e| format!("snapshot: {e}"))?;
    let s = &report.summary;
    let paused_ms = report.paused_for.as_secs_f64() * 1e3;
    let then = match after {
        AfterSnapshot::Stop => "the guest has stopped",
        AfterSnapshot::Continue => "the guest goes on",
    };
    let text = format!(
        "snapshot written to {}: {} of {} pages stored ({:.1} MiB on disk), guest paused {paused_ms:.1} ms; {then}",
        s.path.display(),
        s.pages_stored,
        s.ram_pages,
        s.stored_bytes as f64 / f64::from(1 << 20),
    );
    Ok(Reply::new(text)
        .with("file", s.path.display().to_string())
        .with("pages_stored", s.pages_stored)
        .with("ram_pages", s.ram_pages)
        .with("file_bytes", s.file_bytes)
        .with("stored_bytes", s.stored_bytes)
        .with("paused_ms", paused_ms)
        .with("stopped", after == AfterSnapshot::Stop))
}

fn migrate(session: &Session, args: &Args, progress: &mut Progress) -> Result<Reply, String> {
    use super::migration_worker::MigrationEvent;
    use crate::migration::{self, SendOptions};
    let destination = args.text("destination").ok_or("'migrate' needs \"destination\"")?;
    let max_rounds = args.count("max_rounds").unwrap_or(DEFAULT_MAX_ROUNDS);
    if !(1..=MAX_ROUNDS).contains(&max_rounds) {
        return Err(format!("'migrate': max_rounds must be 1..={MAX_ROUNDS}, not {max_rounds}"));
    }
    let downtime_ms = args.count("downtime_ms").unwrap_or(DEFAULT_DOWNTIME_MS).min(3_600_000);
    let options = SendOptions {
        destination: destination.to_string(),
        max_rounds: max_rounds as u32,
        downtime_target: Duration::from_millis(downtime_ms),
        kernel: migration::kernel_of(&session.config)?,
    };
    let (control, capture) = (session.control.clone(), migration::state_capture(&session.config));
    let files = (args.text("json").map(str::to_string), args.text("plot").map(str::to_string));
    // The files are written on the migration's own thread: a client's thread may open
    // no file (its seccomp filter).
    let job = move |events: &crossbeam_channel::Sender<MigrationEvent>| {
        let report = migration::send(&control, &options, capture, |round| {
            let _ = events.send(MigrationEvent::Round(round.clone()));
        });
        let done = report.map_err(|e| e.to_string()).map(|report| {
            let problems = write_figures(&report, files.0.as_deref(), files.1.as_deref());
            (report, problems)
        });
        let _ = events.send(MigrationEvent::Done(done));
    };
    let events = match &session.migration_worker {
        Some(worker) => worker.submit(Box::new(job)),
        None => {
            let (tx, rx) = crossbeam_channel::unbounded();
            job(&tx);
            rx
        }
    };
    let mut outcome = Err("the migration thread ended without a result".to_string());
    let shared = session.migration_progress.clone();
    let update = |f: &dyn Fn(&mut MigrationProgress)| {
        if let Some(p) = shared.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            f(p);
        }
    };
    *shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(MigrationProgress { destination: destination.to_string(), state: "running", ..Default::default() });
    for event in events.iter() {
        match event {
            MigrationEvent::Round(round) => {
                update(&|p| {
                    p.rounds += 1;
                    p.pages_sent += round.pages_sent;
                    p.last_dirtied = round.pages_dirtied;
                });
                progress(Reply::new(round.line()).with("round", serde_json::to_value(&round).unwrap_or_default()))
            }
            MigrationEvent::Done(result) => {
                let state = if result.is_ok() { "done" } else { "failed" };
                update(&|p| p.state = state);
                outcome = result;
                break;
            }
        }
    }
    let report = outcome.map_err(|e| format!("migration to {destination} failed: {e}; the guest runs on here"))?;
    // The guest runs at the destination now; a file that cannot be written is said in
    // the reply, not made an error (the migration itself is done).
    let (report, problems) = report;
    let mut text = report.summary();
    for problem in problems {
        text.push_str(&format!("\n{problem}"));
    }
    Ok(Reply::new(text).with("report", serde_json::to_value(&report).unwrap_or_default()))
}

/// Writes a migration's figures where asked; returns what could not be written (said in
/// the reply, not made an error: the migration itself is done).
fn write_figures(report: &crate::migration::MigrationReport, json: Option<&str>, plot: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(path) = json {
        if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
            problems.push(format!("cannot write the JSON to {path}: {e}"));
        }
    }
    if let Some(path) = plot {
        if let Err(e) = crate::migration::plot::write(report, std::path::Path::new(path)) {
            problems.push(format!("cannot write the plot to {path}: {e}"));
        }
    }
    problems
}

/// The `hv ctl --help` list of commands.
pub fn help() -> String {
    let mut help = String::from("Commands (hv ctl PATH COMMAND ...):\n");
    for c in COMMANDS {
        help.push_str(&format!("  {:<24} {}\n", super::table::usage(c.name, c.fields), c.about));
    }
    help.push_str(&format!(
        "\nThe protocol (one JSON object per line, version {}) is in docs/control.md.",
        protocol::VERSION
    ));
    help
}
