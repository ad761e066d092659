//! hv's command line: [`args`] says what the user may type, [`commands`] does it;
//! [`migrate`] holds what live migration adds to both, [`group`] what running several
//! guests adds, [`network`] what one guest on a TAP device adds.

pub mod args;
pub mod commands;
pub mod migrate;
pub mod group;
pub mod network;

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use args::{Cli, Command};

/// Runs hv with the process's arguments; returns its exit code.
pub fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => commands::run_command(args, started),
        Command::Replay(args) => commands::replay_command(args, started),
        Command::BlkBench(args) => commands::blk_bench_command(args),
        Command::Bench(args) => commands::bench_command(args),
        Command::Restore(args) => commands::restore_command(args, started),
        Command::StateBench(args) => commands::state_bench_command(args),
        Command::Ctl(args) => commands::ctl_command(args),
        Command::Trace(args::TraceCommand::Explain(args)) => commands::trace_explain_command(args),
        Command::Top(args) => commands::top_command(args),
        Command::Demo(args) => commands::demo_command(args),
        Command::ContainerInit { rounds } => ExitCode::from(u8::try_from(crate::container::workload::init(rounds)).unwrap_or(1)),
    }
}
