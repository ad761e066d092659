//! `hv demo isolation`: hostile hypercall arguments and page-table entries are refused,
//! and the guest harms only itself.

use pv_abi::MmuMode;

use super::guest::{DemoGuest, DemoRun};
use super::stage::Stage;
use super::DemoError;

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    stage.step("hostile hypercalls");
    stage.say(
        "The guest calls hv with arguments that point outside its memory, lengths that run off its end, unknown \
         call numbers, a 4096-byte `rep outsb` at the hypercall port. hv checks every argument before it acts; a \
         bad one gets an error code in rax, and the guest runs on.",
    );
    let calls = DemoGuest::new(&["bad-hypercalls"], MmuMode::Ept).run()?;
    let refused: Vec<String> = calls.lines_of("hypercall").iter().filter(|l| l.contains("= -E")).take(6).map(|l| DemoRun::strip_seq(l)).collect();
    stage.evidence(&refused);
    let summary: Vec<&str> = calls.console.lines().filter(|l| l.contains("refused; the guest is still running")).collect();
    stage.evidence(&summary);

    stage.step("hostile page-table entries (shadow mode)");
    stage.say(
        "Now the guest writes page-table entries meant to reach what it was not given: memory past its RAM, hv's \
         shadow area, a 1 GiB page, reserved bits. The guest's own table keeps the value (it is the guest's \
         memory); hv's shadow, the table the CPU really walks, gets a not-present entry instead. The task that tries \
         to use the mapping faults and is killed by the guest kernel; the kernel and hv go on.",
    );
    let ptes = DemoGuest::new(&["hostile-ptes"], MmuMode::Shadow).run()?;
    let refusals: Vec<String> = ptes.lines_of("shadow").iter().filter(|l| l.contains("REFUSED")).take(6).map(|l| DemoRun::strip_seq(l)).collect();
    stage.evidence(&refusals);
    let result: Vec<&str> = ptes.console.lines().filter(|l| l.contains("hostile entries refused")).collect();
    stage.evidence(&result);

    stage.step("and the guest is still alive");
    stage.figure("bad-hypercalls exit code", &calls.stop.exit_code().to_string());
    stage.figure("hostile-ptes exit code", &ptes.stop.exit_code().to_string());
    stage.lesson(
        "Isolation: everything a guest hands the hypervisor is checked before it is used, so a malicious guest can \
         only hurt itself. docs/security.md lists every such entry point and the tests that attack it.",
    );
    Ok(())
}
