//! `hv demo trap-and-emulate`: the guest runs on the real CPU until it does something
//! sensitive; one exit, what KVM handed hv, what hv did.

use pv_abi::MmuMode;

use super::guest::{DemoGuest, DemoRun};
use super::stage::Stage;
use super::DemoError;

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    stage.step("the guest runs on the real CPU");
    stage.say(
        "hv boots its guest kernel and lets it run. The kernel's instructions execute directly on the CPU: \
         moves, arithmetic, its own page tables, even its interrupts. hv sees none of them. The kernel prints \
         its greeting through a shared-memory ring, which needs no exit either.",
    );
    let run = DemoGuest::new(&[], MmuMode::Ept).run()?;
    let greeting: Vec<&str> = run.console.lines().take(2).collect();
    stage.evidence(&greeting);
    stage.figure("VM exits during the whole boot", &run.stats.vcpu.total_exits().to_string());

    stage.step("one sensitive instruction traps");
    stage.say(
        "To stop, the kernel executes `out dx, eax` to port 0x600. Port I/O is privileged: under hardware \
         virtualization the CPU does not perform it but leaves the guest, and KVM returns from KVM_RUN to hv \
         with the reason (an I/O exit), the port and the size. That is the trap. This is the one exit of the run:",
    );
    let exits: Vec<String> = run.lines_of("exit").iter().map(|l| DemoRun::strip_seq(l)).collect();
    stage.evidence(&exits);

    stage.step("hv emulates it");
    stage.say(
        "hv reads the guest's registers (rax: what it asks for; rdi, rsi…: the arguments), does the work on the \
         guest's behalf and writes the answer into rax; the next KVM_RUN resumes the guest after the `out`. That is \
         the emulate. Here the guest asked to shut down, so hv ended the run with its exit code:",
    );
    let mut done: Vec<String> = run.lines_of("hypercall").iter().map(|l| DemoRun::strip_seq(l)).collect();
    done.extend(run.lines_of("stop").iter().map(|l| DemoRun::strip_seq(l)));
    stage.evidence(&done);
    stage.lesson(
        "Trap-and-emulate: what is harmless runs natively; what is sensitive traps to the hypervisor, which \
         emulates it. Popek and Goldberg: a machine can be virtualized this way if every sensitive instruction traps.",
    );
    Ok(())
}
