//! `hv demo hypercall`: a hypercall's round trip next to a bare exit's, measured now, and
//! the part of it that is hv's own work.

use pv_abi::MmuMode;

use super::guest::DemoGuest;
use super::stage::{duration, Stage};
use super::DemoError;
use crate::vcpu::handling::HandledAs;

/// Runs the demo; `calls` null hypercalls are timed.
pub fn run(stage: &mut Stage, calls: u64) -> Result<(), DemoError> {
    stage.step("a bare exit: the floor");
    stage.say(
        "First the least an exit can cost: a tiny VM running the very instructions of the guest kernel's hypercall \
         loop (64-bit ring 0: set up the arguments, `out`, decode the answer), but to a port nobody claims, under a loop \
         that does nothing but KVM_RUN again. Guest to host and back, with no hypervisor logic at all.",
    );
    let bare = crate::bench::baseline::bare_exit_round_trip(calls, 3).map_err(|e| DemoError::Measure(e.to_string()))?;
    stage.figure("bare KVM exit round trip", &duration(bare.median));

    stage.step("a hypercall: the guest asks hv for something");
    stage.say(
        "Now the guest kernel makes null hypercalls in a loop, timing them with its own clock: the same `out`, \
         but hv's exit loop reads the registers, looks up the call, checks its arguments, runs it and writes the \
         result back. A paravirtual guest asks instead of being caught.",
    );
    let count = calls.to_string();
    let run = DemoGuest::new(&["hypercall-bench", &count], MmuMode::Ept).run()?;
    let line = run.console.lines().find(|l| l.starts_with("hypercall-bench:")).unwrap_or("").to_string();
    let per_call = line.split(", ").nth(1).and_then(|w| w.split(" ns each").next()).and_then(|n| n.trim().parse::<f64>().ok());
    stage.evidence(&[line.as_str()]);
    let Some(per_call) = per_call else { return Err(DemoError::Measure(format!("no timing in the guest's output: {line:?}"))) };
    stage.figure("hypercall round trip (guest's clock)", &duration(per_call));
    stage.figure("hypercall / bare exit", &format!("{:.2}×", per_call / bare.median));

    stage.step("how much of that is hv?");
    stage.say(
        "hv times itself too, from KVM_RUN's return to the next entry, for every exit. Set against the round trip, \
         it shows where the time goes: into the switch between guest and host, not into hv's dispatch.",
    );
    let own = run.stats.vcpu.handling.of(HandledAs::Hypercall("nop"));
    stage.figure("hv's own time per null hypercall", &duration(own.mean_ns()));
    stage.figure("hv's share of the round trip", &format!("{:.1}%", 100.0 * own.mean_ns() / per_call));
    stage.lesson(
        "A hypercall costs about what an exit costs: the world switch dominates, not the hypervisor's code. \
         That is why paravirtual interfaces batch (mmu_update) and avoid exits altogether (rings, ioeventfd).",
    );
    Ok(())
}
