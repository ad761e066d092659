//! Lab 5 on a real guest: the `pt-update` benchmark's guest program (pages mapped on
//! first touch and unmapped) with the direct and the batched page-table writer, in both
//! memory modes, graded by the counters `hv run --stats` prints. Counts are compared
//! with a run of the same program with zero operations, so boot and setup cancel out.

mod guest;

use guest::{kvm_or_not_run, pt_update, Run};
use pv_abi::MmuMode;

/// Pages the graded runs map and unmap (a multiple of 16, as the program requires).
const OPS: u32 = 64;

/// The run with `OPS` operations, after checking that it and its zero-work run finished.
fn measured(mmu: MmuMode, batched: bool) -> (Run, Run) {
    let concept = "the pt-update program maps, touches and unmaps its pages and shuts down cleanly";
    let idle = pt_update(mmu, batched, 0);
    idle.expect_exit(0, concept);
    let busy = pt_update(mmu, batched, OPS);
    busy.expect_exit(0, concept);
    assert!(busy.output.contains("bench-done:"), "lab 5: {concept}: `{}` did not report bench-done:\n{}", busy.what, busy.output);
    (idle, busy)
}

#[test]
fn vm_batched_writer_sends_its_writes_with_mmu_update() {
    if !kvm_or_not_run() {
        return;
    }
    let (_, run) = measured(MmuMode::Ept, true);
    let (direct, batched) = run.guest_pt_writes();
    assert!(batched > 0, "lab 5: the batched writer counts its writes (write bumps BATCHED_PT_WRITES): {}", run.counts());
    assert_eq!(direct, 0, "lab 5: the batched writer never stores an entry itself: {}", run.counts());
    assert!(run.mmu_update_hypercalls() > 0, "lab 5: a flush sends the queue with the mmu_update hypercall, but the VMM served none: {}", run.counts());
    assert_eq!(
        run.mmu_update_entries(),
        batched,
        "lab 5: every queued write reaches the VMM exactly once (mmu_update entries = the guest's batched writes): a flush sends queue[..len], then empties the queue: {}",
        run.counts()
    );
}

#[test]
fn vm_batched_writer_sends_more_than_one_entry_per_hypercall() {
    if !kvm_or_not_run() {
        return;
    }
    let (idle, busy) = measured(MmuMode::Ept, true);
    let hypercalls = busy.mmu_update_hypercalls() - idle.mmu_update_hypercalls().min(busy.mmu_update_hypercalls());
    let entries = busy.mmu_update_entries() - idle.mmu_update_entries().min(busy.mmu_update_entries());
    // Each page takes two entry writes (map, unmap); the address space flushes before it
    // touches a page it just mapped, so about one hypercall per page is what batching
    // gives here, and one per entry is no batching at all.
    assert!(
        hypercalls > 0 && entries * 2 >= hypercalls * 3,
        "lab 5: a batch holds several entries: the writer flushes when the queue is full (BATCH entries) or when asked, never after each write; \
         for {OPS} pages: {entries} mmu_update entries in {hypercalls} hypercalls (at least 1.5 entries per hypercall expected)\n--- with {OPS} pages: {}\n--- with none: {}",
        busy.counts(),
        idle.counts()
    );
}

#[test]
fn vm_batching_saves_the_trapped_writes_of_shadow_mode() {
    if !kvm_or_not_run() {
        return;
    }
    let (direct_idle, direct) = measured(MmuMode::Shadow, false);
    let (batched_idle, batched) = measured(MmuMode::Shadow, true);
    let trapped = |busy: &Run, idle: &Run| busy.trapped_pt_writes().saturating_sub(idle.trapped_pt_writes());
    let (by_direct, by_batched) = (trapped(&direct, &direct_idle), trapped(&batched, &batched_idle));
    assert!(by_direct >= u64::from(OPS), "lab 5: in shadow mode each direct page-table store traps (the tables are read-only to the guest): {}", direct.counts());
    assert!(
        by_batched * 10 <= by_direct,
        "lab 5: in shadow mode batched writes reach the tables through mmu_update, not through trapped stores: for {OPS} pages the direct writer trapped {by_direct} times, the batched one {by_batched} (at most a tenth expected)\n--- direct: {}\n--- batched: {}",
        direct.counts(),
        batched.counts()
    );
    assert!(
        batched.stats.vcpu.total_exits() < direct.stats.vcpu.total_exits(),
        "lab 5: in shadow mode the batched program exits less often than the direct one\n--- direct: {}\n--- batched: {}",
        direct.counts(),
        batched.counts()
    );
}

#[test]
fn vm_selftest_passes_in_both_modes() {
    if !kvm_or_not_run() {
        return;
    }
    // The memory self-tests map, remap and reuse tables with both writers; a batched
    // writer whose `read` ignores the queue maps over an entry it has just cleared.
    for mmu in [MmuMode::Ept, MmuMode::Shadow] {
        let run = guest::boot(mmu, &["selftest"]);
        run.expect_exit(0, "the self-tests pass with the batched writer: a queued write wins over the table when read, a flush leaves nothing queued");
    }
}
