//! What each command does once its arguments are parsed: each builds the library's
//! objects (a [`Vm`], a benchmark run), runs them, and turns the result into messages
//! and hv's exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use backend_drivers::runner::NotifyPolicy;

use super::args::{seccomp_wanted, BenchArgs, BenchMmuArg, BlkBenchArgs, CtlArgs, ReplayArgs, RestoreArgs, RunArgs, StateBenchArgs, DemoArgs, TopArgs, TraceExplainArgs};
use crate::control::{self, ControlServer, Session};
use super::network::OneGuestNetwork;
use crate::outcome::EXIT_VMM_ERROR;
use crate::record::log::LogReader;
use crate::vmm::session::replay_config;
use crate::vmm::{RunReport, SessionSetup, Vm, VmConfig};

/// `hv blk-bench`.
pub(super) fn blk_bench_command(args: BlkBenchArgs) -> ExitCode {
    if args.requests == 0 {
        eprintln!("hv: error: --requests must be at least 1");
        return ExitCode::from(EXIT_VMM_ERROR);
    }
    let config = crate::bench::blk_bench::BlkBenchConfig {
        disk: args.disk,
        requests: args.requests,
        seccomp: seccomp_wanted(args.no_seccomp),
    };
    match crate::bench::blk_bench::run(&config) {
        Ok(rows) => {
            print!("{}", crate::bench::blk_bench::render(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hv: error: {e}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}

/// `hv bench`.
pub(super) fn bench_command(args: BenchArgs) -> ExitCode {
    use crate::bench::{self, workloads};
    if args.network {
        return network_bench_command(args);
    }
    let modes = match args.mmu {
        BenchMmuArg::Both => vec![pv_abi::MmuMode::Ept, pv_abi::MmuMode::Shadow],
        BenchMmuArg::Ept => vec![pv_abi::MmuMode::Ept],
        BenchMmuArg::Shadow => vec![pv_abi::MmuMode::Shadow],
    };
    let selected: Vec<&'static workloads::Workload> = if args.workloads.is_empty() {
        workloads::ALL.iter().collect()
    } else {
        workloads::ALL.iter().filter(|w| args.workloads.iter().any(|name| workloads::select(name).contains(w))).collect()
    };
    let config = bench::BenchConfig { modes, workloads: selected, quick: args.quick, seccomp: seccomp_wanted(args.no_seccomp) };
    let report = match bench::run(&config) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("hv: error: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    print!("{}", bench::report::render(&report));
    let mut ok = report.complete();
    type Writer = fn(&bench::results::BenchReport, &std::path::Path) -> std::io::Result<()>;
    let outputs: [(&Option<PathBuf>, Writer, &str); 2] = [(&args.json, bench::json::write, "JSON"), (&args.plot, bench::plot::write, "plot")];
    for (path, write, what) in outputs {
        if let Some(path) = path {
            match write(&report, path) {
                Ok(()) => eprintln!("hv bench: wrote the {what} to {}", path.display()),
                Err(e) => {
                    eprintln!("hv: error: cannot write the {what} to {}: {e}", path.display());
                    ok = false;
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("hv bench: not everything was measured and verified (see \"failures\" above)");
        ExitCode::from(EXIT_VMM_ERROR)
    }
}

/// `hv bench --network`.
fn network_bench_command(args: BenchArgs) -> ExitCode {
    use crate::bench::network::{self, interrupt::Interrupts, report, table};
    // Before any thread starts: every thread of the run inherits the blocked signals.
    let interrupts = match Interrupts::catch() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("hv: error: cannot catch Ctrl-C for the benchmark: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    let config = network::NetBenchConfig { quick: args.quick, seccomp: seccomp_wanted(args.no_seccomp) };
    let report = match network::run(&config, &interrupts) {
        Ok(report) => report,
        Err(network::NetBenchError::Interrupted(signal)) => {
            eprintln!("hv bench: interrupted; the guests are stopped and the namespace removed");
            return ExitCode::from((128 + signal) as u8);
        }
    };
    print!("{}", table::render(&report));
    let mut ok = report.complete();
    if let Some(path) = &args.json {
        match report::write_json(&report, path) {
            Ok(()) => eprintln!("hv bench: wrote the JSON to {}", path.display()),
            Err(e) => {
                eprintln!("hv: error: cannot write the JSON to {}: {e}", path.display());
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("hv bench: not every figure was measured (see \"not measured\" above)");
        ExitCode::from(EXIT_VMM_ERROR)
    }
}

/// hv's exit code for a command line that asks for something hv will not do (as clap's
/// own usage errors).
pub(super) const EXIT_USAGE: u8 = 2;

/// `hv run`: one [`Vm`] with its console on standard output: booted, or received from
/// another hv (`--incoming`); sent to another after a while with `--migrate-to`; with
/// `--tap`, on a virtual switch with a host TAP device (`super::network`).
pub(super) fn run_command(args: RunArgs, started: Instant) -> ExitCode {
    if let Some(refusal) = super::group::refusal(&args) {
        eprintln!("hv: error: {refusal}");
        return ExitCode::from(EXIT_USAGE);
    }
    if args.guests.is_some() || !args.guest.is_empty() {
        return super::group::run_group_command(args, started);
    }
    let mmu = match args.mmu.as_slice() {
        [one] => *one,
        modes => {
            eprintln!("hv: error: --mmu lists {} modes, but there is one guest (several modes are for --guests or --guest)", modes.len());
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    let config = VmConfig {
        kernel: args.kernel,
        mem_mib: args.mem,
        guest_args: args.guest_args,
        trace: args.trace.destination(),
        trace_max_events: args.trace.max_events,
        disk: args.disk,
        notify_policy: NotifyPolicy::EventIndex,
        timeout: args.timeout,
        mmu: mmu.into(),
        seccomp: seccomp_wanted(args.no_seccomp),
        balloon_target_mib: args.balloon_target,
    };
    // The TAP first: a guest migrating here must not arrive (and its source end) only for
    // hv to find that its network cannot be attached.
    let network = match args.tap.as_deref().map(|tap| OneGuestNetwork::attach(tap, config.seccomp)).transpose() {
        Ok(network) => network,
        Err(e) => {
            eprintln!("hv: error: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    let (network, port) = match network {
        Some((network, port)) => (Some(network), Some(port)),
        None => (None, None),
    };
    let setup = args.record.map(|log| SessionSetup::Record { log });
    let vm = match (&args.incoming, port) {
        (Some(address), port) => super::migrate::receive(address, &config, started, port),
        (None, Some(port)) => Vm::on_network(&config, Box::new(std::io::stdout()), started, port, OneGuestNetwork::new_guest())
            .map(|vm| (vm, config))
            .map_err(|e| e.to_string()),
        (None, None) => Vm::with_session(&config, Box::new(std::io::stdout()), started, setup).map(|vm| (vm, config)).map_err(|e| e.to_string()),
    };
    let (vm, config) = match vm {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("hv: error: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    if let (Some(net), Some(tap)) = (vm.net_config(), &args.tap) {
        eprintln!("hv: the guest is {} on the switch of TAP {tap}", net.address());
    }
    // --migrate-to: a thread that waits, then sends the guest while this one runs it.
    let migration = args.migrate_to.map(|destination| {
        let (control, options, after, config) = (vm.control(), args.migrate, args.migrate_after, config.clone());
        std::thread::spawn(move || {
            // The one thread that may connect out (`sandbox::ThreadKind::MigrationSender`).
            if config.seccomp {
                if let Err(e) = crate::sandbox::confine_current_thread(crate::sandbox::ThreadKind::MigrationSender) {
                    eprintln!("hv: {e}; the guest is not migrated");
                    return;
                }
            }
            std::thread::sleep(after);
            if let Err(e) = super::migrate::migrate(&control, &config, &destination, &options) {
                eprintln!("hv: {e}");
            }
        })
    });
    let switch = network.as_ref().map(OneGuestNetwork::switch);
    let server = match serve_control(args.control.as_deref(), &vm, config, started, switch) {
        Ok(server) => server,
        Err(code) => return code,
    };
    let result = vm.run();
    if let Some(thread) = migration {
        let _ = thread.join();
    }
    let signal = server.as_ref().and_then(ControlServer::stopped_by_signal);
    drop(server);
    if let Some(network) = network {
        network.finish(args.stats);
    }
    match result {
        Ok(report) => finish(&report, args.stats, false, signal),
        Err(e) => {
            eprintln!("hv: error: {e}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}

/// Reports how a run (recorded, replayed or plain) ended; returns hv's exit code.
fn finish(report: &RunReport, stats: bool, replay: bool, signal: Option<i32>) -> ExitCode {
    let diverged = report.session.as_ref().and_then(|s| s.problem.as_ref());
    // A replay stopped for a divergence or by --until ended by hv's hand: its stop is
    // no news from the guest.
    let quiet = replay && report.session.as_ref().is_some_and(|s| s.problem.is_some() || s.note.is_some());
    if let Some(message) = report.stop.message().filter(|_| !quiet) {
        eprintln!("hv: {message}");
    }
    if let Some(session) = &report.session {
        if let Some(note) = &session.note {
            eprintln!("hv replay: {note}");
        }
        eprintln!("hv: memory hash {:016x} after {} guest exits ({} log events)", session.memory_hash, session.exits, session.events);
    }
    if stats {
        eprintln!("{}", report.stats);
    }
    match diverged {
        Some(problem) => {
            eprintln!("hv: error: {problem}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
        None if quiet => ExitCode::SUCCESS,
        None => exit_code(&report.stop, signal),
    }
}

/// `hv replay`: the recorded guest, booted from the log's header, fed from the log.
pub(super) fn replay_command(args: ReplayArgs, started: Instant) -> ExitCode {
    let run = || -> Result<RunReport, crate::vmm::VmError> {
        let log = LogReader::open(&args.log)?;
        let mut config = replay_config(log.header(), args.kernel.clone())?;
        config.trace = args.trace.destination();
        config.trace_max_events = args.trace.max_events;
        config.timeout = args.timeout;
        let setup = SessionSetup::Replay { log: Box::new(log), until: args.until, snapshot: args.snapshot.clone() };
        Vm::with_session(&config, Box::new(std::io::stdout()), started, Some(setup))?.run()
    };
    match run() {
        Ok(report) => finish(&report, args.stats, true, None),
        Err(e) => {
            eprintln!("hv: error: {e}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}

/// `hv restore`: a [`Vm`] continued from a snapshot file, its console on standard output.
pub(super) fn restore_command(args: RestoreArgs, started: Instant) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("hv: error: {e}");
        ExitCode::from(EXIT_VMM_ERROR)
    };
    let snapshot = match crate::state::snapshot_file::read(&args.file) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let (state, ram) = match snapshot.map_ram() {
        Ok(x) => x,
        Err(e) => return fail(&e),
    };
    let mut config = match VmConfig::for_state(&state, args.mmu.map(Into::into)) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    config.trace = args.trace.destination();
    config.trace_max_events = args.trace.max_events;
    config.timeout = args.timeout;
    config.seccomp = seccomp_wanted(args.no_seccomp);
    let (network, port) = match args.tap.as_deref().map(|tap| OneGuestNetwork::attach(tap, config.seccomp)).transpose() {
        Ok(Some((network, port))) => (Some(network), Some(port)),
        Ok(None) => (None, None),
        Err(e) => return fail(&e),
    };
    let vm = match Vm::restore_on_network(&config, &state, ram, Box::new(std::io::stdout()), started, port) {
        Ok(vm) => vm,
        Err(e) => return fail(&e),
    };
    let restored_in = started.elapsed();
    let switch = network.as_ref().map(OneGuestNetwork::switch);
    let server = match serve_control(args.control.as_deref(), &vm, config, started, switch) {
        Ok(server) => server,
        Err(code) => return code,
    };
    let result = vm.run();
    let signal = server.as_ref().and_then(ControlServer::stopped_by_signal);
    drop(server);
    if let Some(network) = network {
        network.finish(args.stats);
    }
    match result {
        Ok(report) => {
            if let Some(message) = report.stop.message() {
                eprintln!("hv: {message}");
            }
            if args.stats {
                eprintln!("restore: {:.3} ms from hv's start to the guest's first instruction", restored_in.as_secs_f64() * 1e3);
                eprintln!("{}", report.stats);
            }
            exit_code(&report.stop, signal)
        }
        Err(e) => fail(&e),
    }
}

/// `hv state-bench`.
pub(super) fn state_bench_command(args: StateBenchArgs) -> ExitCode {
    use crate::bench::state_bench;
    match state_bench::run(&state_bench::StateBenchConfig { mem_mib: args.mem, reps: args.reps }) {
        Ok(report) => {
            print!("{}", state_bench::render(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hv: error: {e}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}

/// `hv top PATH`: the live view (`crate::top`); one text frame with `--once` or when
/// standard output is not a terminal.
pub(super) fn top_command(args: TopArgs) -> ExitCode {
    use std::io::IsTerminal;
    let once = args.once || !std::io::stdout().is_terminal();
    match crate::top::run(&crate::top::TopOptions { socket: args.socket, interval: args.interval, once }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hv top: {e}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}

/// `hv demo [NAME]`: the list, or one demo (`crate::demo`).
pub(super) fn demo_command(args: DemoArgs) -> ExitCode {
    use crate::demo::stage::Pacing;
    use std::io::IsTerminal;
    let Some(name) = args.name else {
        print!("{}", crate::demo::list());
        return ExitCode::SUCCESS;
    };
    let Some(demo) = crate::demo::find(&name) else {
        let names: Vec<&str> = crate::demo::DEMOS.iter().map(|d| d.name).collect();
        eprintln!("hv demo: there is no demo '{name}'; the demos are: {}", names.join(", "));
        return ExitCode::from(2);
    };
    let pacing = match (args.fast, args.auto || !std::io::stdin().is_terminal()) {
        (true, _) => Pacing::Fast,
        (false, true) => Pacing::Auto,
        (false, false) => Pacing::Interactive,
    };
    let styled = std::io::stdout().is_terminal();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match crate::demo::run(demo, &mut out, pacing, styled) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            drop(out);
            eprintln!("hv demo {name}: {e}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}

/// `hv trace explain FILE`: the trace with an explanation after the first line of each
/// kind (`crate::trace::explain`).
pub(super) fn trace_explain_command(args: TraceExplainArgs) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("hv: error: {e}");
        ExitCode::from(EXIT_VMM_ERROR)
    };
    // A FIFO or a device would make this wait or read forever: only a regular file.
    match std::fs::metadata(&args.file) {
        Ok(m) if m.is_file() => {}
        Ok(m) => return fail(&format!("{} is {}; hv trace explain reads a trace file", args.file.display(), backend_drivers::block::image::file_kind(m.file_type()))),
        Err(e) => return fail(&format!("cannot read the trace {}: {e}", args.file.display())),
    }
    let file = match std::fs::File::open(&args.file) {
        Ok(f) => f,
        Err(e) => return fail(&format!("cannot read the trace {}: {e}", args.file.display())),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match crate::trace::explain::explain(std::io::BufReader::new(file), &mut out, args.first_only) {
        Ok(summary) if summary.lines > 0 && summary.kinds.keys().all(|k| *k == crate::trace::explain::Kind::Unknown) => {
            drop(out);
            fail(&format!("{} does not look like an hv text trace (written by --trace PATH with --trace-format text)", args.file.display()))
        }
        Ok(_) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot read the trace {}: {e}", args.file.display())),
    }
}

/// `--control PATH`: the control socket for `vm`, announced on standard error; SIGINT and
/// SIGTERM then stop the guest cleanly (see [`exit_code`]). The caller keeps the server
/// until the run is over; dropping it removes the socket.
fn serve_control(
    path: Option<&std::path::Path>,
    vm: &Vm,
    config: VmConfig,
    started: Instant,
    switch: Option<backend_drivers::switch::Switch>,
) -> Result<Option<ControlServer>, ExitCode> {
    let Some(path) = path else { return Ok(None) };
    match ControlServer::start_catching_signals(path, Session::new(vm.control(), config, started, switch)) {
        Ok(server) => {
            eprintln!("hv: control socket listening at {}", server.path().display());
            Ok(Some(server))
        }
        Err(e) => {
            eprintln!("hv: error: {e}");
            Err(ExitCode::from(EXIT_VMM_ERROR))
        }
    }
}

/// hv's exit code for a run that stopped with `stop`: 128 + the signal's number if a
/// signal stopped it through the control socket (as a shell expects), else the stop's.
fn exit_code(stop: &crate::outcome::GuestStop, signal: Option<i32>) -> ExitCode {
    match signal {
        Some(signal) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(u8::MAX)),
        None => ExitCode::from(stop.exit_code()),
    }
}

/// `hv ctl`: one request to a control socket, its reply on standard output.
pub(super) fn ctl_command(args: CtlArgs) -> ExitCode {
    // `--json` is hv ctl's own option wherever it is written (`hv ctl P stats --json`),
    // unless the command has a `json` argument of its own: then after the command it is
    // the command's.
    let command_takes_json = control::commands::find(&args.command).is_some_and(|c| c.fields.iter().any(|f| f.name == "json"));
    let json = args.json || (!command_takes_json && args.args.iter().any(|a| a == "--json"));
    let words: Vec<String> = args.args.into_iter().filter(|a| command_takes_json || a != "--json").collect();
    let mut show_progress = |raw: &str, report: &control::protocol::Reply| {
        if json {
            println!("{raw}");
        } else {
            println!("{}", report.text);
        }
    };
    let result = control::client::prepare(&args.command, &words)
        .and_then(|(command, fields)| control::client::call(&args.path, command, &fields, args.timeout, &mut show_progress));
    match result {
        Ok((raw, answer)) => {
            if json {
                println!("{raw}");
            }
            match answer {
                Ok(reply) => {
                    if !json {
                        println!("{}", reply.text);
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("hv ctl: error: {error}");
                    ExitCode::from(EXIT_VMM_ERROR)
                }
            }
        }
        Err(e) => {
            eprintln!("hv ctl: error: {e}");
            ExitCode::from(EXIT_VMM_ERROR)
        }
    }
}
