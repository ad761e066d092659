//! `hv demo shadow-vs-ept`: the same page-table workload in both memory modes, trapped
//! page-table writes counted, then `mmu_update` batching cutting them.

use pv_abi::MmuMode;

use super::stage::{duration, Stage};
use super::DemoError;
use crate::bench::measure::{self, MeasureInputs, Measured};
use crate::bench::workloads;

/// Measures workload `id` in `mode` (quick sizes with `quick`).
fn measured(id: &str, mode: MmuMode, quick: bool) -> Result<Measured, DemoError> {
    let workload = workloads::select(id).into_iter().next().ok_or_else(|| DemoError::Measure(format!("no workload {id}")))?;
    let inputs = MeasureInputs { mode, quick, disk: None, disk_hash: None, seccomp: true };
    measure::measure(workload, &inputs, &mut |_| {}).map_err(|e| DemoError::Measure(e.to_string()))
}

fn show(stage: &mut Stage, mode: MmuMode, m: &Measured) {
    let p = &m.per_op;
    stage.figure(
        &format!("--mmu {:<6} per operation", mode.name()),
        &format!(
            "{} ; {:.2} trapped page-table writes, {:.2} entries by mmu_update, {:.2} exits, {:.2} translation flushes",
            duration(m.time_per_op_ns.median),
            p.trapped_pt_writes,
            p.mmu_update_entries,
            p.vm_exits,
            p.translation_flushes
        ),
    );
}

/// Runs the demo.
pub fn run(stage: &mut Stage, quick: bool) -> Result<(), DemoError> {
    stage.step("one workload, two ways to translate memory");
    stage.say(
        "A ring-3 task maps and unmaps a page over and over: each operation is two page-table stores by the guest \
         kernel. With ept, KVM translates guest-physical addresses itself (on hardware, a second page-table walk), \
         so the guest's stores are ordinary memory writes. With shadow, hv keeps its own copy of the guest's tables \
         for the CPU to walk, and the guest's tables are mapped read-only so that every store traps.",
    );
    let direct_ept = measured("pt-update/direct", MmuMode::Ept, quick)?;
    show(stage, MmuMode::Ept, &direct_ept);
    let direct_shadow = measured("pt-update/direct", MmuMode::Shadow, quick)?;
    show(stage, MmuMode::Shadow, &direct_shadow);

    stage.step("batching: mmu_update");
    stage.say(
        "The same operations, but the guest queues its page-table entries and hands them to hv in one mmu_update \
         hypercall, as a Xen PV guest does. hv checks the whole batch, applies it and syncs its shadows once: no \
         store traps any more, one exit carries all the entries.",
    );
    let batched_shadow = measured("pt-update/batched", MmuMode::Shadow, quick)?;
    show(stage, MmuMode::Shadow, &batched_shadow);
    stage.figure(
        "trapped writes per operation, direct → batched (shadow)",
        &format!("{:.2} → {:.2}", direct_shadow.per_op.trapped_pt_writes, batched_shadow.per_op.trapped_pt_writes),
    );
    stage.lesson(
        "Shadow paging makes the hypervisor pay for every guest page-table change (a trap, a sync, often a flush); \
         EPT/NPT hardware removes that cost, and paravirtual batching cuts it where there is no such hardware.",
    );
    Ok(())
}
