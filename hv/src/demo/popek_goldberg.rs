//! `hv demo popek-goldberg`: x86's sensitive-but-unprivileged instructions run in ring 3
//! without trapping, what each reveals, and what UMIP changed.

use pv_abi::MmuMode;

use super::guest::DemoGuest;
use super::stage::Stage;
use super::DemoError;

/// The guest's lines about each instruction.
fn findings(console: &str) -> Vec<String> {
    console.lines().filter(|l| l.starts_with("sensitive: ") && l.contains(" in ring 3: ")).map(|l| l.trim_start_matches("sensitive: ").to_string()).collect()
}

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    stage.step("Popek and Goldberg's condition");
    stage.say(
        "Trap-and-emulate works if every sensitive instruction (one that reads or changes the machine's state) is \
         privileged: it traps when the deprivileged guest kernel runs it, and the hypervisor emulates it. Classic x86 \
         had sensitive instructions that ring 3 may run without trapping. A ring-3 task in hv's guest now runs six of \
         them, one per task, and reports what it saw:",
    );
    let plain = DemoGuest::new(&["sensitive"], MmuMode::Ept).run()?;
    stage.evidence(&findings(&plain.console));
    stage.figure("VM exits of the whole run (hv saw none of those instructions)", &plain.stats.vcpu.total_exits().to_string());

    stage.step("why that broke virtualization");
    stage.say(
        "A guest kernel deprivileged to ring 1 or 3 (as in software virtualization before VT-x) would run `popf` to \
         turn interrupts off, and the CPU would silently ignore it: no trap, so the hypervisor never learns, and the \
         guest runs on believing its interrupts are off. `sgdt`, `sidt`, `str` and `smsw` show the real machine's \
         tables, not the virtual machine's. VMware answered with binary translation, Xen with paravirtualization; \
         VT-x and AMD-V gave the guest a ring 0 of its own, where these instructions are the guest's to run.",
    );

    stage.step("what UMIP changed");
    stage.say(
        "Newer CPUs have UMIP (User-Mode Instruction Prevention): with CR4.UMIP set, `sgdt`, `sidt`, `sldt`, `smsw` \
         and `str` fault in ring 3 instead of answering. The guest kernel sets it and runs the same tasks again; \
         `pushf` and `popf` are not covered and still say nothing.",
    );
    let umip = DemoGuest::new(&["sensitive", "umip"], MmuMode::Ept).run()?;
    let mut shown: Vec<String> = umip.console.lines().filter(|l| l.contains("UMIP")).take(1).map(str::to_string).collect();
    shown.extend(findings(&umip.console));
    stage.evidence(&shown);
    stage.lesson(
        "Classic x86 was not virtualizable by trap-and-emulate because some sensitive instructions did not trap; \
         hardware support (VT-x/AMD-V, and UMIP for ring 3) closed the gap that binary translation and \
         paravirtualization had worked around.",
    );
    Ok(())
}
