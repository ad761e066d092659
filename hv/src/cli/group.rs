//! `hv run --guests N` and `hv run --guest WORDS …`: several guests in one hv, each on
//! its own vCPU thread, their console lines prefixed with their names
//! (`crate::vmm::group` explains the idea).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use backend_drivers::runner::NotifyPolicy;

use super::args::{seccomp_wanted, RunArgs};
use crate::devices::console::PrefixedLines;
use crate::outcome::EXIT_VMM_ERROR;
use crate::vmm::group::{guest_name, run_group, GroupNetwork, GuestSpec};
use crate::vmm::VmConfig;

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
    let ends = match run_group(specs, started, console, Some(network)) {
        Ok(ends) => ends,
        Err(e) => {
            eprintln!("hv: error: {e}");
            return ExitCode::from(EXIT_VMM_ERROR);
        }
    };
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
    code
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
            let trace = args.trace.destination().map(|(path, format)| (if several { trace_path_for(&path, &name) } else { path }, format));
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
                balloon_target_mib: None,
            };
            GuestSpec { name, config }
        })
        .collect())
}

/// Guest `name`'s trace file: `name` put before `path`'s extension (`t.txt` → `t.g0.txt`,
/// `trace` → `trace.g0`).
fn trace_path_for(path: &Path, name: &str) -> PathBuf {
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
        assert_eq!(trace_path_for(Path::new("/tmp/t.txt"), "g0"), PathBuf::from("/tmp/t.g0.txt"));
        assert_eq!(trace_path_for(Path::new("trace"), "g1"), PathBuf::from("trace.g1"));
    }
}
