//! What a migration measured: one row per round while it runs, and the totals at the
//! end, printed for a person and written as JSON (`--json`).
//!
//! **Downtime** is defined here once: from the instant the source's vCPU thread paused
//! the guest to the instant the source received the destination's `Running` reply. The
//! destination sends that reply once the restored VM is built, immediately before it
//! enters the guest, so the figure bounds the real gap (last guest instruction on the
//! source → first on the destination) from above by one loopback message. The reply
//! also carries the destination's own share (end of stream → ready), shown beside it.

use serde::Serialize;

/// One round of the pre-copy loop.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundFigures {
    /// Round number: 0 copies all touched memory, each later one what the previous
    /// round let the guest dirty; the last one runs with the guest paused.
    pub round: u32,
    /// Whether the guest was paused during this round (the stop-and-copy round).
    pub paused: bool,
    /// Pages sent in the round.
    pub pages_sent: u64,
    /// Pages the guest (or hv, or a backend) dirtied while the round ran: what the next
    /// round must send.
    pub pages_dirtied: u64,
    /// Bytes put on the connection in the round.
    pub bytes: u64,
    /// The round's wall time, milliseconds.
    pub ms: f64,
    /// Bandwidth of the round, MB/s (10^6 bytes per second).
    pub mb_per_s: f64,
    /// Downtime predicted if the guest were paused now: the pages still dirty at the
    /// measured bandwidth, milliseconds.
    pub estimated_downtime_ms: f64,
}

impl RoundFigures {
    /// The row as printed while the migration runs.
    pub fn line(&self) -> String {
        format!(
            "migrate: round {:>2}{}: sent {:>6} pages ({:>8.1} KiB) in {:>8.2} ms, {:>8.1} MB/s; dirtied meanwhile {:>6}; estimated downtime {:>7.2} ms",
            self.round,
            if self.paused { " (paused)" } else { "" },
            self.pages_sent,
            self.bytes as f64 / 1024.0,
            self.ms,
            self.mb_per_s,
            self.pages_dirtied,
            self.estimated_downtime_ms
        )
    }
}

/// Why the pre-copy rounds stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The dirty set fit the downtime target.
    Converged,
    /// The round limit was reached first: the rest is copied with the guest paused
    /// (stop-and-copy), whatever the downtime.
    RoundLimit,
}

/// A whole migration, as the source saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MigrationReport {
    /// Where the VM went.
    pub destination: String,
    /// Guest RAM, bytes.
    pub ram_bytes: u64,
    /// The memory mode on the source.
    pub mode: &'static str,
    /// The downtime target, milliseconds.
    pub downtime_target_ms: f64,
    /// The round limit.
    pub max_rounds: u32,
    /// Every round, the paused one last.
    pub rounds: Vec<RoundFigures>,
    /// Why the live rounds stopped.
    pub stopped_because: StopReason,
    /// Pages sent over all rounds.
    pub total_pages: u64,
    /// Bytes sent over all rounds, with the state.
    pub total_bytes: u64,
    /// Bytes of VM state (vCPU and devices).
    pub state_bytes: u64,
    /// From connecting to the destination's confirmation, milliseconds.
    pub total_ms: f64,
    /// Measured downtime (module comment), milliseconds.
    pub downtime_ms: f64,
    /// The destination's share of it: end of stream to guest ready, milliseconds.
    pub destination_restore_ms: f64,
    /// The source's pause job's share: capturing the state (devices drained, vCPU read)
    /// and the last look at the dirty logs, milliseconds.
    pub capture_ms: f64,
}

impl MigrationReport {
    /// The closing lines, printed after the rounds.
    pub fn summary(&self) -> String {
        let how = match self.stopped_because {
            StopReason::Converged => {
                let live = self.rounds.len().saturating_sub(1);
                format!("converged after {live} live round{}", if live == 1 { "" } else { "s" })
            }
            StopReason::RoundLimit => format!(
                "did not converge within {} rounds: fell back to stop-and-copy of the remaining dirty pages",
                self.max_rounds
            ),
        };
        format!(
            "migrate: {how}\nmigrate: done: {} pages ({:.1} MiB) and {} bytes of state to {} in {:.1} ms; downtime {:.2} ms (target {:.1} ms; state capture {:.2} ms, destination's restore {:.2} ms)",
            self.total_pages,
            self.total_bytes as f64 / f64::from(1 << 20),
            self.state_bytes,
            self.destination,
            self.total_ms,
            self.downtime_ms,
            self.downtime_target_ms,
            self.capture_ms,
            self.destination_restore_ms
        )
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
