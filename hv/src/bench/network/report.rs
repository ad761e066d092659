//! What one `hv bench --network` run found, as one value: the table on standard output
//! and the `--json` file are both made from it.
//!
//! Every figure sits next to its baseline from the same run, and every comparison is a
//! ratio of two **costs** (time per round trip, per frame, per MiB), guest over baseline:
//! 40× means the guest's path takes forty times as long as the host doing the same
//! alone. Units are in the field names (`_ns`, `_mib`, `_seconds`, `_per_second`).

use serde::Serialize;

use super::balloon_rate::{BalloonFigures, MadviseFigures};
use super::latency::Latency;
use super::switch_rate::SwitchRate;
use crate::bench::results::HostDescription;
use crate::bench::summary::Summary;

/// The JSON document's format version; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;
/// Issue 12's goal for the host → guest ping on this host.
pub const HOST_PING_GOAL_NS: f64 = 1e6;

/// A figure, or why there is none.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome<T> {
    /// The figure (`null` if not measured).
    pub measured: Option<T>,
    /// Why not: an error, or what is missing for a skipped row.
    pub error: Option<String>,
    /// Not measured because a tool is missing (not a failure of hv).
    pub skipped: bool,
}

impl<T> Outcome<T> {
    /// A figure.
    pub fn of(figure: T) -> Self {
        Outcome { measured: Some(figure), error: None, skipped: false }
    }

    /// A failure.
    pub fn failed(why: impl Into<String>) -> Self {
        Outcome { measured: None, error: Some(why.into()), skipped: false }
    }

    /// A row left out, loudly, because something it needs is not installed.
    pub fn skipped(why: impl Into<String>) -> Self {
        Outcome { measured: None, error: Some(why.into()), skipped: true }
    }

    /// From a result.
    pub fn from_result(result: Result<T, String>) -> Self {
        result.map_or_else(Outcome::failed, Outcome::of)
    }
}

/// A series of pings.
#[derive(Clone, Debug, Serialize)]
pub struct PingFigure {
    /// Who was pinged, from where.
    pub path: String,
    /// Requests sent (replies: `latency.count`).
    pub sent: usize,
    /// The round trips.
    pub latency: Latency,
}

/// Repeated downloads of the same size with `curl`.
#[derive(Clone, Debug, Serialize)]
pub struct TcpFigure {
    /// What was fetched.
    pub url: String,
    /// Body bytes per download.
    pub bytes: u64,
    /// Throughput of each download (body bytes / curl's `time_total`).
    pub bytes_per_second: Summary,
}

/// One guest/baseline ratio of costs.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The row.
    pub figure: &'static str,
    /// What both numbers are.
    pub unit: &'static str,
    /// The guest's cost.
    pub guest: f64,
    /// The baseline's cost.
    pub baseline: f64,
    /// `guest / baseline`.
    pub ratio: f64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct NetReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `"network"`: tells this document from `hv bench`'s memory one.
    pub kind: &'static str,
    /// The machine.
    pub host: HostDescription,
    /// `/proc/loadavg`'s three figures at the start and at the end (other work on the
    /// host inflates every figure; say how busy it was).
    pub load_average_start: Option<[f64; 3]>,
    /// The same at the end.
    pub load_average_end: Option<[f64; 3]>,
    /// A `--quick` run.
    pub quick: bool,
    /// hv pinging the guest through the TAP, the switch and netback.
    pub ping_host_to_guest: Outcome<PingFigure>,
    /// hv pinging the namespace's own loopback (the baseline of both pings).
    pub ping_loopback: Outcome<PingFigure>,
    /// One guest pinging another through the switch (`net-ping`).
    pub ping_guest_to_guest: Outcome<PingFigure>,
    /// The switch alone against a port queue alone, per frame size.
    pub switch: Vec<Outcome<SwitchRate>>,
    /// `curl` fetching the guest's `/big`.
    pub tcp_guest: Outcome<TcpFigure>,
    /// `curl` fetching as many bytes from a host server on loopback.
    pub tcp_host: Outcome<TcpFigure>,
    /// The balloon taking memory from a guest.
    pub balloon: Outcome<BalloonFigures>,
    /// `madvise` releasing as much host memory.
    pub balloon_baseline: Outcome<MadviseFigures>,
    /// The ratios.
    pub comparisons: Vec<Comparison>,
    /// Wall time of the run.
    pub wall_seconds: f64,
}

impl NetReport {
    /// Fills [`NetReport::comparisons`] from the figures present.
    pub fn compute_comparisons(&mut self) {
        let mut out = Vec::new();
        let mut push = |figure, unit, guest: f64, baseline: f64| {
            if guest > 0.0 && baseline > 0.0 {
                out.push(Comparison { figure, unit, guest, baseline, ratio: guest / baseline });
            }
        };
        if let Some(loopback) = &self.ping_loopback.measured {
            if let Some(g) = &self.ping_host_to_guest.measured {
                push("ping host -> guest", "ns per round trip, p50", g.latency.p50_ns, loopback.latency.p50_ns);
            }
            if let Some(g) = &self.ping_guest_to_guest.measured {
                push("ping guest -> guest", "ns per round trip, p50", g.latency.p50_ns, loopback.latency.p50_ns);
            }
        }
        for rate in self.switch.iter().filter_map(|s| s.measured.as_ref()) {
            let figure = if rate.frame_bytes <= 60 { "switch, 60-byte frames" } else { "switch, 1514-byte frames" };
            push(figure, "ns per frame, median", rate.switch_ns_per_frame.median, rate.queue_ns_per_frame.median);
        }
        if let (Some(g), Some(h)) = (&self.tcp_guest.measured, &self.tcp_host.measured) {
            push("TCP through curl", "seconds per MiB, median", seconds_per_mib(g.bytes_per_second.median), seconds_per_mib(h.bytes_per_second.median));
        }
        if let (Some(g), Some(h)) = (&self.balloon.measured, &self.balloon_baseline.measured) {
            push("balloon reclaim", "seconds per MiB", 1.0 / g.mib_per_second, 1.0 / h.mib_per_second);
        }
        self.comparisons = out;
    }

    /// Whether every row was measured (skipped rows do not count against it).
    pub fn complete(&self) -> bool {
        let ok = |error: &Option<String>, skipped: bool| error.is_none() || skipped;
        ok(&self.ping_host_to_guest.error, self.ping_host_to_guest.skipped)
            && ok(&self.ping_loopback.error, self.ping_loopback.skipped)
            && ok(&self.ping_guest_to_guest.error, self.ping_guest_to_guest.skipped)
            && self.switch.iter().all(|s| ok(&s.error, s.skipped))
            && ok(&self.tcp_guest.error, self.tcp_guest.skipped)
            && ok(&self.tcp_host.error, self.tcp_host.skipped)
            && ok(&self.balloon.error, self.balloon.skipped)
            && ok(&self.balloon_baseline.error, self.balloon_baseline.skipped)
    }

    /// The ratio of row `figure`, if measured.
    pub fn ratio(&self, figure: &str) -> Option<f64> {
        self.comparisons.iter().find(|c| c.figure == figure).map(|c| c.ratio)
    }
}

/// Seconds to move one MiB at `bytes_per_second`.
fn seconds_per_mib(bytes_per_second: f64) -> f64 {
    (1u64 << 20) as f64 / bytes_per_second
}

/// `/proc/loadavg`'s first three figures.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    parse_load_average(&text)
}

/// The first three figures of `/proc/loadavg` text.
pub fn parse_load_average(text: &str) -> Option<[f64; 3]> {
    let mut words = text.split_whitespace().map(str::parse::<f64>);
    Some([words.next()?.ok()?, words.next()?.ok()?, words.next()?.ok()?])
}

/// The report as pretty-printed JSON.
pub fn to_json(report: &NetReport) -> String {
    // Plain structs and finite or null numbers: serde does not refuse them; if it ever
    // did, the file says so rather than hv panicking.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"cannot serialize the report: {e}\"}}"))
}

/// Writes the report to `path`.
pub fn write_json(report: &NetReport, path: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(path, to_json(report) + "\n")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A report with every figure, as a run on a slow host could give.
    pub fn sample() -> NetReport {
        let latency = |p50: f64| Latency { count: 20, min_ns: p50 * 0.8, p50_ns: p50, p90_ns: p50 * 1.3, max_ns: p50 * 2.0 };
        let ping = |path: &str, p50| Outcome::of(PingFigure { path: path.into(), sent: 20, latency: latency(p50) });
        let summary = |v: f64| Summary::of(&[v]).expect("one value");
        let tcp = |url: &str, rate| Outcome::of(TcpFigure { url: url.into(), bytes: 1 << 20, bytes_per_second: summary(rate) });
        let mut report = NetReport {
            schema_version: SCHEMA_VERSION,
            kind: "network",
            host: HostDescription::detect(),
            load_average_start: parse_load_average("1.5 2.0 2.5 1/100 42"),
            load_average_end: None,
            quick: true,
            ping_host_to_guest: ping("hv -> 10.0.0.2", 2.6e6),
            ping_loopback: ping("hv -> 127.0.0.1", 30e3),
            ping_guest_to_guest: ping("g0 -> 10.0.0.3", 15e6),
            switch: vec![Outcome::of(SwitchRate { frame_bytes: 60, frames_per_rep: 6400, switch_ns_per_frame: summary(300.0), queue_ns_per_frame: summary(150.0) })],
            tcp_guest: tcp("http://10.0.0.2/big?bytes=1048576", 2e6),
            tcp_host: tcp("http://127.0.0.1:1/big?bytes=1048576", 1e9),
            balloon: Outcome::of(BalloonFigures { guest_mem_mib: 64, ballooned_mib: 32.0, seconds: 2.0, mib_per_second: 16.0, rss_before_mib: 90.0, rss_after_mib: 58.0 }),
            balloon_baseline: Outcome::of(MadviseFigures { mib: 32, seconds: 0.004, mib_per_second: 8000.0, rss_before_mib: 60.0, rss_after_mib: 28.0 }),
            comparisons: Vec::new(),
            wall_seconds: 40.0,
        };
        report.compute_comparisons();
        report
    }

    #[test]
    fn every_ratio_is_guest_cost_over_baseline_cost() {
        let r = sample();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6 * b.abs().max(1.0);
        assert!(close(r.ratio("ping host -> guest").expect("row"), 2.6e6 / 30e3));
        assert!(close(r.ratio("ping guest -> guest").expect("row"), 15e6 / 30e3));
        assert!(close(r.ratio("switch, 60-byte frames").expect("row"), 2.0));
        assert!(close(r.ratio("TCP through curl").expect("row"), 1e9 / 2e6), "a throughput ratio is the inverse of the rates");
        assert!(close(r.ratio("balloon reclaim").expect("row"), 8000.0 / 16.0));
        assert!(r.complete());
    }

    #[test]
    fn a_missing_figure_has_no_ratio_and_a_skip_is_not_a_failure() {
        let mut r = sample();
        r.tcp_guest = Outcome::skipped("curl is not installed");
        r.compute_comparisons();
        assert_eq!(r.ratio("TCP through curl"), None);
        assert!(r.complete(), "a skipped row is not a failure");
        r.balloon = Outcome::failed("no");
        assert!(!r.complete());
    }

    #[test]
    fn the_json_has_the_documented_keys() {
        let v: serde_json::Value = serde_json::from_str(&to_json(&sample())).expect("JSON");
        for key in ["schema_version", "kind", "host", "quick", "ping_host_to_guest", "ping_loopback", "ping_guest_to_guest", "switch", "tcp_guest", "tcp_host", "balloon", "balloon_baseline", "comparisons", "wall_seconds"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["kind"], "network");
        assert_eq!(v["ping_host_to_guest"]["measured"]["latency"]["p50_ns"], 2.6e6);
        assert_eq!(v["load_average_start"][2], 2.5);
    }
}
