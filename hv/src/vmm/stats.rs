//! `--stats`: counters for one run, printed as a table when the guest stops
//! ([`RunStats`]'s `Display`), and the same figures as JSON ([`RunStats::to_json`]) for
//! programs (the control socket's `stats` command sends both).

use std::fmt;
use std::time::{Duration, Instant};

use pv_abi::MmuMode;

use crate::devices::DeviceStats;
use crate::shadow::ShadowCounters;
use crate::vcpu::counters::VcpuCounters;

/// What one run did.
#[derive(Clone, Debug)]
pub struct RunStats {
    started: Instant,
    /// Start of hv to the guest's first complete console line.
    pub first_console_line: Option<Duration>,
    /// Start of hv to the guest's stop.
    pub wall: Duration,
    /// What the exit loop counted.
    pub vcpu: VcpuCounters,
    /// Each device backend's counters.
    pub devices: DeviceStats,
    /// The memory mode the guest ran in.
    pub mmu: MmuMode,
    /// What the shadow-paging engine did (shadow mode only).
    pub shadow: Option<ShadowCounters>,
    /// The balloon's figures (none in a recorded or replayed run).
    pub balloon: Option<crate::devices::balloon::BalloonReport>,
    /// The network device's own counters (frames, drops), beyond its two rings' lines
    /// in `devices`; none without a network device.
    pub net: Option<backend_drivers::net::NetStats>,
}

impl RunStats {
    /// Counters starting at `started` (when hv started).
    pub fn new(started: Instant) -> Self {
        RunStats {
            started,
            first_console_line: None,
            wall: Duration::ZERO,
            vcpu: VcpuCounters::default(),
            devices: Vec::new(),
            mmu: MmuMode::Ept,
            shadow: None,
            balloon: None,
            net: None,
        }
    }

    /// Records the end of the run and the time of the first console line.
    pub fn finish(&mut self, first_line_at: Option<Instant>) {
        self.wall = self.started.elapsed();
        self.first_console_line = first_line_at.map(|t| t.duration_since(self.started));
    }
}

impl RunStats {
    /// The same figures as the table, as one JSON object: times in milliseconds, counters
    /// by the names the table uses in its code (`exits.by_reason."io-out"`,
    /// `devices.console.requests`, …). `shadow` is null in ept mode, `guest` until the
    /// guest has handed over its own counters (at shutdown).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let millis = |d: Duration| d.as_secs_f64() * 1e3;
        let exits: serde_json::Map<String, serde_json::Value> =
            self.vcpu.exits.iter().map(|(reason, n)| (reason.name().to_string(), json!(n))).collect();
        let shadow = self.shadow.as_ref().map(|c| {
            json!({
                "trapped_pt_writes": c.trapped_pt_writes,
                "shadow_syncs": c.shadow_syncs,
                "cr3_loads": c.cr3_loads,
                "roots_built": c.roots_built,
                "root_hits": c.root_hits,
                "roots_evicted": c.roots_evicted,
                "roots_invalidated": c.roots_invalidated,
                "tables_built": c.tables_built,
                "tables_freed": c.tables_freed,
                "entries_changed": c.entries_changed,
                "recycles": c.recycles,
                "refused": c.refused,
                "budget_spent": c.budget_spent,
            })
        });
        let guest = self.vcpu.guest.as_ref().map(|g| {
            json!({
                "page_faults": g.page_faults,
                "cr3_loads": g.cr3_loads,
                "syscalls": g.syscalls,
                "direct_pt_writes": g.direct_pt_writes,
                "batched_pt_writes": g.batched_pt_writes,
            })
        });
        let devices: serde_json::Map<String, serde_json::Value> = self
            .devices
            .iter()
            .map(|(name, d)| {
                let figures = json!({
                    "doorbells": d.doorbells,
                    "wakeups": d.wakeups,
                    "requests": d.requests,
                    "upcalls": d.notifications,
                    "upcalls_suppressed": d.notifications_suppressed,
                    "failed_requests": d.failed_requests,
                    "grant_refusals": d.grant_refusals,
                    "bytes_to_guest": d.bytes_to_guest,
                    "bytes_from_guest": d.bytes_from_guest,
                    "ring_errors": d.ring_errors,
                });
                (name.to_string(), figures)
            })
            .collect();
        json!({
            "wall_ms": millis(self.wall),
            "first_console_line_ms": self.first_console_line.map(millis),
            "exits": { "total": self.vcpu.total_exits(), "by_reason": exits },
            "hypercalls": {
                "total": self.vcpu.total_hypercalls(),
                "by_name": self.vcpu.hypercalls,
                "refused": self.vcpu.hypercall_errors,
            },
            "mmu_update_entries": self.vcpu.mmu_update_entries,
            "memory": {
                "mode": self.mmu.name(),
                "kvm_translation_flushes": self.vcpu.translation_flushes,
                "shadow": shadow,
                "guest": guest,
            },
            "devices": devices,
            "balloon": self.balloon,
            "net": self.net.as_ref().map(net_json),
            "doorbell_exits": self.vcpu.doorbell_exits,
        })
    }

    /// The memory-mode section: what the VMM did for the MMU, and what the guest counted.
    fn fmt_memory(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        write!(f, "  memory mode {}", self.mmu.name())?;
        if let Some(c) = &self.shadow {
            writeln!(f)?;
            writeln!(f, "    {:<30} {:>12}", "trapped page-table writes", c.trapped_pt_writes)?;
            writeln!(f, "    {:<30} {:>12}", "shadow entries synced", c.shadow_syncs)?;
            writeln!(f, "    {:<30} {:>12}", "CR3 loads (set_cr3)", c.cr3_loads)?;
            writeln!(f, "    {:<30} {:>12}", "shadow roots built", c.roots_built)?;
            writeln!(f, "    {:<30} {:>12}", "shadow roots from the cache", c.root_hits)?;
            writeln!(f, "    {:<30} {:>12}", "shadow roots evicted", c.roots_evicted)?;
            writeln!(f, "    {:<30} {:>12}", "idle shadow roots dropped", c.roots_invalidated)?;
            writeln!(f, "    {:<30} {:>12}", "shadow tables built / freed", format!("{} / {}", c.tables_built, c.tables_freed))?;
            writeln!(f, "    {:<30} {:>12}", "present shadow entries changed", c.entries_changed)?;
            writeln!(f, "    {:<30} {:>12}", "shadow area recycled", c.recycles)?;
            writeln!(f, "    {:<30} {:>12}", "build budget reached", c.budget_spent)?;
            write!(f, "    {:<30} {:>12}", "guest entries refused", c.refused)?;
        } else {
            writeln!(f)?;
            write!(f, "    {:<30} {:>12}", "trapped page-table writes", "0 (none trap)")?;
        }
        writeln!(f)?;
        write!(f, "    {:<30} {:>12}", "KVM translation flushes", self.vcpu.translation_flushes)?;
        if let Some(g) = &self.vcpu.guest {
            writeln!(f)?;
            writeln!(f, "    {:<30} {:>12}", "guest page faults", g.page_faults)?;
            writeln!(f, "    {:<30} {:>12}", "guest CR3 loads", g.cr3_loads)?;
            writeln!(f, "    {:<30} {:>12}", "guest system calls", g.syscalls)?;
            writeln!(f, "    {:<30} {:>12}", "guest direct page-table writes", g.direct_pt_writes)?;
            write!(f, "    {:<30} {:>12}", "guest batched page-table writes", g.batched_pt_writes)?;
        }
        Ok(())
    }
}

/// The network device's counters as JSON (`net` in [`RunStats::to_json`]; `hv top` reads
/// these names).
pub fn net_json(n: &backend_drivers::net::NetStats) -> serde_json::Value {
    serde_json::json!({
        "frames_sent": n.frames_tx,
        "bytes_sent": n.tx.bytes_from_guest,
        "frames_received": n.frames_rx,
        "bytes_received": n.rx.bytes_to_guest,
        "refused": n.refused(),
        "dropped_no_buffer": n.rx_dropped_no_buffer,
        "dropped_bad_frame": n.rx_dropped_bad_frame,
        "ring_errors": n.tx.ring_errors + n.rx.ring_errors,
        "budget_exhausted": n.budget_exhausted,
    })
}

/// The network device's line of the table.
pub fn net_line(n: &backend_drivers::net::NetStats) -> String {
    format!(
        "network: sent {} frames ({} bytes), received {} frames ({} bytes); {} requests refused, {} frames dropped (no buffer posted), {} dropped (bad length)",
        n.frames_tx, n.tx.bytes_from_guest, n.frames_rx, n.rx.bytes_to_guest, n.refused(), n.rx_dropped_no_buffer, n.rx_dropped_bad_frame
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

impl fmt::Display for RunStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "hv stats")?;
        writeln!(f, "  {:<32} {:>12}", "wall time", ms(self.wall))?;
        let first = self.first_console_line.map_or("(no line)".into(), ms);
        writeln!(f, "  {:<32} {:>12}", "start to first console line", first)?;
        writeln!(f, "  {:<32} {:>12}", "VM exits", self.vcpu.total_exits())?;
        for (reason, n) in &self.vcpu.exits {
            writeln!(f, "    {:<30} {:>12}", reason.name(), n)?;
        }
        writeln!(f, "  {:<32} {:>12}", "hypercalls", self.vcpu.total_hypercalls())?;
        for (name, n) in &self.vcpu.hypercalls {
            writeln!(f, "    {:<30} {:>12}", name, n)?;
        }
        writeln!(f, "  {:<32} {:>12}", "hypercalls refused (error code)", self.vcpu.hypercall_errors)?;
        write!(f, "  {:<32} {:>12}", "page-table entries via mmu_update", self.vcpu.mmu_update_entries)?;
        self.fmt_memory(f)?;
        for (name, d) in &self.devices {
            writeln!(f)?;
            writeln!(f, "  device {name}")?;
            writeln!(f, "    {:<30} {:>12}", "doorbells (guest → backend)", d.doorbells)?;
            writeln!(f, "    {:<30} {:>12}", "backend wake-ups", d.wakeups)?;
            writeln!(f, "    {:<30} {:>12}", "requests", d.requests)?;
            writeln!(f, "    {:<30} {:>12}", "upcalls (backend → guest)", d.notifications)?;
            writeln!(f, "    {:<30} {:>12}", "upcalls suppressed", d.notifications_suppressed)?;
            writeln!(f, "    {:<30} {:>12}", "failed requests", d.failed_requests)?;
            writeln!(f, "    {:<30} {:>12}", "grant refusals", d.grant_refusals)?;
            write!(f, "    {:<30} {:>12}", "bytes guest ↔ device", d.bytes_to_guest + d.bytes_from_guest)?;
        }
        if !self.devices.is_empty() {
            writeln!(f)?;
            write!(f, "  {:<32} {:>12}", "doorbell exits to the vCPU loop", self.vcpu.doorbell_exits)?;
        }
        if let Some(balloon) = &self.balloon {
            writeln!(f)?;
            write!(f, "  {}", balloon.line())?;
        }
        if let Some(net) = &self.net {
            writeln!(f)?;
            write!(f, "  {}", net_line(net))?;
        }
        Ok(())
    }
}
