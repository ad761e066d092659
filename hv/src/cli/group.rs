//! `hv run --guests N` and `hv run --guest WORDS …`: several guests in one hv, each on
//! its own vCPU thread, their console lines prefixed with their names
//! (`crate::vmm::group` explains the idea).
//!
//! Every `hv run` option either works here or is refused by [`refusal`], naming the
//! option and why: a tool that silently ignores what it was asked is worse than one that
//! says no. What works per guest gets one file per guest, named by [`per_guest_path`]
//! (`--trace t.txt` → `t.g0.txt`; `--control hv.sock` → `hv.g0.sock`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use backend_drivers::runner::NotifyPolicy;

use super::args::{seccomp_wanted, RunArgs};
use crate::control::{ControlServer, Session};
use crate::devices::console::PrefixedLines;
use crate::outcome::EXIT_VMM_ERROR;
use crate::vmm::group::{build_group, guest_name, GroupNetwork, GuestSpec};
use crate::vmm::VmConfig;

/// Why `args`, a network form of `hv run` (`--tap`, `--guests`, `--guest`), asks for
/// something hv will not do; `None` if it does not.
pub(super) fn refusal(args: &RunArgs) -> Option<String> {
    let several = args.guests.is_some() || !args.guest.is_empty();
    let form = if args.guests.is_some() {
        "--guests"
    } else if !args.guest.is_empty() {
        "--guest"
    } else if args.tap.is_some() {
        "--tap"
    } else {
        return None;
    };
    if args.record.is_some() {
        return Some(format!(
            "--record cannot be used with {form}: a recorded run serves its devices on the vCPU thread at the guest's doorbell exits, \
             and frames come from the network whenever it sends them, at no exit a replay could repeat"
        ));
    }
    if !several {
        return None;
    }
    if args.disk.is_some() {
        return Some(format!("--disk cannot be used with {form}: the guests would share one image (for one guest on the network, use --tap with --disk)"));
    }
    if args.incoming.is_some() {
        return Some(format!("--incoming receives one guest: use it with --tap NAME, not {form}"));
    }
    if args.migrate_to.is_some() {
        return Some(format!(
            "--migrate-to sends one guest: use it with --tap NAME, or give {form} a --control PATH and migrate one guest of the group through its own socket \
             (with --control hv.sock: `hv ctl hv.g1.sock migrate HOST:PORT`)"
        ));
    }
    None
}

/// Runs the guests `args` describes; hv's exit code is the first non-zero one in guest
/// order, or 0.
pub(super) fn run_group_command(args: RunArgs, started: Instant) -> ExitCode {
    let specs = match guest_specs(&args) {
        Ok(specs) => specs,
        Err(message) => {
            eprintln!("hv: error: {message}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    // One guest (`hv run --tap`) prints as `hv run` does; several are told apart by name.
    let prefixed = specs.len() > 1;
    let console = move |name: &str| -> Box<dyn std::io::Write + Send> {
        if prefixed {
            Box::new(PrefixedLines::new(name, std::io::stdout()))
        } else {
            Box::new(std::io::stdout())
        }
    };
    let network = GroupNetwork { tap: args.tap.clone() };
    let group = match build_group(specs, started, console, Some(network)) {
        Ok(group) => group,
        Err(e) => {
            eprintln!("hv: error: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    // One control socket per guest, each announced with the guest's name.
    let mut servers = Vec::new();
    if let Some(path) = &args.control {
        let several = group.guests().count() > 1;
        for (name, vm) in group.guests() {
            let path = if several { per_guest_path(path, name) } else { path.clone() };
            let session = Session::new(vm.control(), vm.config().clone(), started, group.switch());
            match ControlServer::start_catching_signals(&path, session) {
                Ok(server) => {
                    eprintln!("hv: {name}: control socket listening at {}", server.path().display());
                    servers.push(server);
                }
                Err(e) => {
                    eprintln!("hv: error: {name}: {e}");
                    return ExitCode::from(EXIT_VMM_ERROR);
                }
            }
        }
    }
    let ends = match group.run() {
        Ok(ends) => ends,
        Err(e) => {
            eprintln!("hv: error: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
    let signal = servers.iter().find_map(ControlServer::stopped_by_signal);
    drop(servers);
    let mut code = ExitCode::SUCCESS;
    let mut failed = false;
    if args.stats {
        if let Some(switch) = &ends.switch {
            eprintln!("virtual switch:\n{switch}");
        }
        if let Some((name, tap)) = &ends.tap {
            eprintln!("TAP {name}: {tap:?}");
        }
    }
    for end in ends.guests {
        let guest_code = match end.result {
            Ok(report) => {
                if let Some(message) = report.stop.message() {
                    eprintln!("hv: {}: {message}", end.name);
                }
                if args.stats {
                    eprintln!("{}:\n{}", end.name, report.stats);
                }
                report.stop.exit_code()
            }
            Err(e) => {
                eprintln!("hv: {}: error: {e}", end.name);
                EXIT_VMM_ERROR
            }
        };
        if guest_code != 0 && !failed {
            failed = true;
            code = ExitCode::from(guest_code);
        }
    }
    // Stopped by Ctrl-C or SIGTERM through the control sockets: 128 + the signal, as a
    // shell expects (and as `hv run` with one guest does).
    match signal {
        Some(signal) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(u8::MAX)),
        None => code,
    }
}

/// One [`GuestSpec`] per guest: `--guests N` copies of the GUEST ARGS, or one per
/// `--guest WORDS`; `--mmu` gives one mode for all or one per guest.
fn guest_specs(args: &RunArgs) -> Result<Vec<GuestSpec>, String> {
    let commands: Vec<Vec<String>> = match (args.guests, args.guest.is_empty()) {
        (Some(n), _) => vec![args.guest_args.clone(); usize::from(n)],
        (None, false) => args.guest.iter().map(|words| words.split_whitespace().map(str::to_string).collect()).collect(),
        // `hv run --tap NAME -- ARGS`: one guest on the network.
        (None, true) => vec![args.guest_args.clone()],
    };
    let modes = match args.mmu.as_slice() {
        [one] => vec![*one; commands.len()],
        modes if modes.len() == commands.len() => modes.to_vec(),
        modes => return Err(format!("--mmu lists {} modes for {} guests: give one mode for all, or one per guest", modes.len(), commands.len())),
    };
    let seccomp = seccomp_wanted(args.no_seccomp);
    let several = commands.len() > 1;
    Ok(commands
        .into_iter()
        .zip(modes)
        .enumerate()
        .map(|(index, (guest_args, mmu))| {
            let name = guest_name(index);
            let trace = args.trace.destination().map(|(path, format)| (if several { per_guest_path(&path, &name) } else { path }, format));
            let config = VmConfig {
                kernel: args.kernel.clone(),
                mem_mib: args.mem,
                guest_args,
                trace,
                trace_max_events: args.trace.max_events,
                disk: None,
                notify_policy: NotifyPolicy::EventIndex,
                timeout: args.timeout,
                mmu: mmu.into(),
                seccomp,
                balloon_target_mib: args.balloon_target,
            };
            GuestSpec { name, config }
        })
        .collect())
}

/// Guest `name`'s own file of a per-guest option (`--trace`, `--control`): `name` put
/// before `path`'s extension (`t.txt` → `t.g0.txt`, `hv.sock` → `hv.g0.sock`, `trace` →
/// `trace.g0`).
pub fn per_guest_path(path: &Path, name: &str) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let file = match path.extension() {
        Some(ext) => format!("{stem}.{name}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{name}"),
    };
    path.with_file_name(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_guest_traces_to_its_own_file() {
        assert_eq!(per_guest_path(Path::new("/tmp/t.txt"), "g0"), PathBuf::from("/tmp/t.g0.txt"));
        assert_eq!(per_guest_path(Path::new("trace"), "g1"), PathBuf::from("trace.g1"));
        assert_eq!(per_guest_path(Path::new("/run/hv.sock"), "g2"), PathBuf::from("/run/hv.g2.sock"));
    }
}
