//! Counters per operation, with boot and setup taken out.
//!
//! hv counts for a whole VM: its exits include the boot, the tasks being spawned and
//! the memory being mapped before the first measured operation. So each workload runs
//! twice, each time in a fresh VM: once as measured, and once with zero operations
//! (the same boot, the same tasks, the same setup, the same repetitions). The
//! difference of the two, divided by the operations measured, is what one operation
//! costs. Counters that do not depend on the operation cancel exactly; anything left
//! is the operation's own.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::vmm::stats::RunStats;

/// Every counter of one run, by a flat name such as `exit/io-out`, `guest/page_faults`
/// or `shadow/trapped_pt_writes`.
pub type Counts = BTreeMap<String, u64>;

/// Flattens a run's statistics.
pub fn counts(stats: &RunStats) -> Counts {
    let mut c = Counts::new();
    for (reason, n) in &stats.vcpu.exits {
        c.insert(format!("exit/{}", reason.name()), *n);
    }
    for (name, n) in &stats.vcpu.hypercalls {
        c.insert(format!("hypercall/{name}"), *n);
    }
    c.insert("mmu_update_entries".into(), stats.vcpu.mmu_update_entries);
    c.insert("translation_flushes".into(), stats.vcpu.translation_flushes);
    if let Some(g) = &stats.vcpu.guest {
        c.insert("guest/page_faults".into(), g.page_faults);
        c.insert("guest/cr3_loads".into(), g.cr3_loads);
        c.insert("guest/syscalls".into(), g.syscalls);
        c.insert("guest/direct_pt_writes".into(), g.direct_pt_writes);
        c.insert("guest/batched_pt_writes".into(), g.batched_pt_writes);
    }
    if let Some(s) = &stats.shadow {
        c.insert("shadow/trapped_pt_writes".into(), s.trapped_pt_writes);
        c.insert("shadow/shadow_syncs".into(), s.shadow_syncs);
        c.insert("shadow/cr3_loads".into(), s.cr3_loads);
        c.insert("shadow/roots_built".into(), s.roots_built);
        c.insert("shadow/root_hits".into(), s.root_hits);
        c.insert("shadow/roots_evicted".into(), s.roots_evicted);
        c.insert("shadow/refused".into(), s.refused);
    }
    for (kind, total) in &stats.vcpu.handling.by_kind {
        c.insert(format!("{HANDLING_COUNT}{}", kind.label()), total.count);
        c.insert(format!("{HANDLING_NS}{}", kind.label()), total.nanos);
    }
    c.insert(format!("{HANDLING_COUNT}{FLUSH_LABEL}"), stats.vcpu.handling.flushes.count);
    c.insert(format!("{HANDLING_NS}{FLUSH_LABEL}"), stats.vcpu.handling.flushes.nanos);
    for (device, d) in &stats.devices {
        c.insert(format!("device/{device}/doorbells"), d.doorbells);
        c.insert(format!("device/{device}/upcalls"), d.notifications);
        c.insert(format!("device/{device}/requests"), d.requests);
    }
    c
}

/// Prefixes of the handling-time counters (`crate::vcpu::handling`), by the kind's label.
const HANDLING_COUNT: &str = "handling_count/";
const HANDLING_NS: &str = "handling_ns/";
/// The label of translation flushes among them.
pub const FLUSH_LABEL: &str = "memslot flush";

/// hv's own time on one kind of exit, in a workload's operations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HandlingPerOp {
    /// Exits of this kind per operation.
    pub per_op: f64,
    /// hv's mean time on one, in nanoseconds (from `KVM_RUN`'s return to the next entry).
    pub mean_ns: f64,
}

/// What one operation caused, on average (see the module comment for how).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerOp {
    /// VM exits to hv (user space), all reasons. Exits KVM handles inside the host
    /// kernel (its own page faults, interrupts) are invisible to hv and not counted.
    pub vm_exits: f64,
    /// The same, by reason (`io-out`, `mmio-write`, …).
    pub vm_exits_by_reason: BTreeMap<String, f64>,
    /// Hypercalls, by name.
    pub hypercalls_by_name: BTreeMap<String, f64>,
    /// Guest page-table stores that exited to hv: shadow mode's count; in ept mode the
    /// MMIO-write exits, where such a store would have to show up (the pool is
    /// ordinary RAM there, so this is 0).
    pub trapped_pt_writes: f64,
    /// Page-table entries applied through `mmu_update`.
    pub mmu_update_entries: f64,
    /// Times KVM was made to forget cached translations because hv changed a page-table
    /// entry from the host side (a memslot flip; see `KvmVm::forget_cached_translations`).
    pub translation_flushes: f64,
    /// Shadow entries re-derived (shadow mode only).
    pub shadow_syncs: Option<f64>,
    /// Shadow roots built, i.e. root-cache misses (shadow mode only).
    pub shadow_roots_built: Option<f64>,
    /// Address-space loads the guest made (`mov cr3` or `set_cr3`).
    pub cr3_loads: Option<f64>,
    /// Page faults the guest kernel took.
    pub guest_page_faults: Option<f64>,
    /// System calls from ring 3.
    pub system_calls: Option<f64>,
    /// Page-table entries the guest stored directly.
    pub direct_pt_writes: Option<f64>,
    /// Page-table entries the guest queued for `mmu_update`.
    pub batched_pt_writes: Option<f64>,
    /// Block-device doorbells (blk only).
    pub blk_doorbells: Option<f64>,
    /// Block-device upcalls (blk only).
    pub blk_upcalls: Option<f64>,
    /// hv's own handling time, by kind of exit (`hypercall nop`, `trapped page-table
    /// write`, …, and `memslot flush`), for the kinds the operations caused.
    pub hv_handling: BTreeMap<String, HandlingPerOp>,
}

/// (measured − zero-work) / operations, for each counter. A counter missing from
/// both runs is `None`; one missing from only one run counts as 0 there.
pub fn per_op(measured: &Counts, zero_work: &Counts, operations: u64) -> PerOp {
    let n = operations.max(1) as f64;
    let delta = |key: &str| -> Option<f64> {
        let (a, b) = (measured.get(key), zero_work.get(key));
        if a.is_none() && b.is_none() {
            return None;
        }
        Some((a.copied().unwrap_or(0) as f64 - b.copied().unwrap_or(0) as f64) / n)
    };
    let by_prefix = |prefix: &str| -> BTreeMap<String, f64> {
        let keys = measured.keys().chain(zero_work.keys()).filter_map(|k| k.strip_prefix(prefix));
        keys.map(|k| (k.to_string(), delta(&format!("{prefix}{k}")).unwrap_or(0.0))).collect()
    };
    let vm_exits_by_reason = by_prefix("exit/");
    let in_shadow_mode = measured.contains_key("shadow/trapped_pt_writes");
    PerOp {
        vm_exits: vm_exits_by_reason.values().sum(),
        trapped_pt_writes: if in_shadow_mode {
            delta("shadow/trapped_pt_writes").unwrap_or(0.0)
        } else {
            delta("exit/mmio-write").unwrap_or(0.0)
        },
        vm_exits_by_reason,
        hypercalls_by_name: by_prefix("hypercall/"),
        mmu_update_entries: delta("mmu_update_entries").unwrap_or(0.0),
        translation_flushes: delta("translation_flushes").unwrap_or(0.0),
        shadow_syncs: delta("shadow/shadow_syncs"),
        shadow_roots_built: delta("shadow/roots_built"),
        cr3_loads: delta("guest/cr3_loads"),
        guest_page_faults: delta("guest/page_faults"),
        system_calls: delta("guest/syscalls"),
        direct_pt_writes: delta("guest/direct_pt_writes"),
        batched_pt_writes: delta("guest/batched_pt_writes"),
        blk_doorbells: delta("device/blk/doorbells"),
        blk_upcalls: delta("device/blk/upcalls"),
        hv_handling: handling_per_op(measured, zero_work, n),
    }
}

/// The handling time of each kind of exit the operations caused: how many per operation
/// ((measured − zero-work) / operations), and hv's mean time on one: the measured run's
/// time less the zero-work run's, over the exits the operations added, as for every other
/// counter. When that difference is not positive (the zero-work run's few exits of a
/// kind can be its costliest, as a first `set_cr3` building a root is, and timing noise
/// does the rest), the mean over all the measured run's exits of that kind is used.
fn handling_per_op(measured: &Counts, zero_work: &Counts, operations: f64) -> BTreeMap<String, HandlingPerOp> {
    let get = |c: &Counts, k: String| c.get(&k).copied().unwrap_or(0) as f64;
    measured
        .keys()
        .filter_map(|k| k.strip_prefix(HANDLING_COUNT))
        .filter_map(|label| {
            let count = get(measured, format!("{HANDLING_COUNT}{label}"));
            let nanos = get(measured, format!("{HANDLING_NS}{label}"));
            let exits = count - get(zero_work, format!("{HANDLING_COUNT}{label}"));
            let added = nanos - get(zero_work, format!("{HANDLING_NS}{label}"));
            let mean_ns = if added > 0.0 { added / exits } else { nanos / count };
            (exits > 0.0).then(|| (label.to_string(), HandlingPerOp { per_op: exits / operations, mean_ns }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_of(pairs: &[(&str, u64)]) -> Counts {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn boot_and_setup_cancel_out() {
        let zero = counts_of(&[("exit/io-out", 10), ("guest/page_faults", 3), ("mmu_update_entries", 0)]);
        let measured = counts_of(&[("exit/io-out", 110), ("guest/page_faults", 53), ("mmu_update_entries", 200)]);
        let p = per_op(&measured, &zero, 50);
        assert_eq!(p.vm_exits, 2.0);
        assert_eq!(p.vm_exits_by_reason["io-out"], 2.0);
        assert_eq!(p.guest_page_faults, Some(1.0));
        assert_eq!(p.mmu_update_entries, 4.0);
        assert_eq!(p.shadow_syncs, None);
    }

    #[test]
    fn ept_trapped_writes_are_the_mmio_write_exits() {
        let zero = counts_of(&[("exit/io-out", 1)]);
        let p = per_op(&zero, &zero, 10);
        assert_eq!(p.trapped_pt_writes, 0.0);
        let shadow = counts_of(&[("shadow/trapped_pt_writes", 40), ("exit/mmio-write", 40)]);
        let shadow_zero = counts_of(&[("shadow/trapped_pt_writes", 20), ("exit/mmio-write", 20)]);
        assert_eq!(per_op(&shadow, &shadow_zero, 10).trapped_pt_writes, 2.0);
    }

    #[test]
    fn a_reason_seen_in_one_run_only_still_counts() {
        let p = per_op(&counts_of(&[("exit/mmio-write", 8)]), &counts_of(&[("exit/io-out", 1)]), 4);
        assert_eq!(p.vm_exits_by_reason["mmio-write"], 2.0);
        assert_eq!(p.vm_exits_by_reason["io-out"], -0.25);
    }
}
