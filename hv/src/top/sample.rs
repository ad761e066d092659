//! One look at a running hv (its control socket's `status` and `stats`, and its resident
//! memory), and what changed between two looks: the rates `hv top` shows.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

/// A device's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceSample {
    /// Doorbells the guest rang.
    pub doorbells: u64,
    /// Requests the backend took off the ring.
    pub requests: u64,
    /// Upcalls the backend raised.
    pub upcalls: u64,
    /// Publishes that needed no upcall (event-index suppression).
    pub suppressed: u64,
    /// Requests published but not yet answered, read from the ring now.
    pub in_flight: u64,
}

/// Everything `hv top` reads at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When (this process's clock).
    pub at: Instant,
    /// VM exits by reason, since the guest started.
    pub exits: BTreeMap<String, u64>,
    /// Hypercalls by name.
    pub hypercalls: BTreeMap<String, u64>,
    /// Shadow mode: trapped page-table writes and shadow syncs (`None` in ept mode).
    pub trapped_pt_writes: Option<u64>,
    /// Shadow entries re-derived.
    pub shadow_syncs: Option<u64>,
    /// Times KVM was made to forget cached translations.
    pub flushes: u64,
    /// Each device, by name.
    pub devices: BTreeMap<String, DeviceSample>,
    /// hv's resident memory in KiB (VmRSS), if it could be read.
    pub rss_kib: Option<u64>,
    /// The balloon, if the VM has one: (pages held by the host, target pages, RAM pages).
    pub balloon: Option<(u64, u64, u64)>,
    /// A migration asked through the socket: a line saying how it goes.
    pub migration: Option<String>,
    /// The network device, if the VM has one: frames sent, frames received, frames
    /// dropped (no buffer posted, bad length) and requests refused.
    pub net: Option<NetSample>,
}

/// The network device's counters at one moment (`stats.net`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NetSample {
    /// Frames the guest sent.
    pub sent: u64,
    /// Frames delivered to the guest.
    pub received: u64,
    /// Frames dropped on the way to the guest.
    pub dropped: u64,
    /// Requests refused.
    pub refused: u64,
}

fn counts(value: &Value) -> BTreeMap<String, u64> {
    value.as_object().map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect()).unwrap_or_default()
}

impl Sample {
    /// Reads a sample from the `stats` reply's fields (`stats`, `rings_in_flight`) and
    /// hv's resident memory. Missing figures read as zero or absent: an older or newer hv
    /// still shows what it has.
    pub fn from_stats(at: Instant, fields: &serde_json::Map<String, Value>, rss_kib: Option<u64>) -> Sample {
        let stats = fields.get("stats").cloned().unwrap_or(Value::Null);
        let rings = fields.get("rings_in_flight").cloned().unwrap_or(Value::Null);
        let shadow = &stats["memory"]["shadow"];
        let devices = stats["devices"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, d)| {
                        let n = |k: &str| d[k].as_u64().unwrap_or(0);
                        let sample = DeviceSample {
                            doorbells: n("doorbells"),
                            requests: n("requests"),
                            upcalls: n("upcalls"),
                            suppressed: n("upcalls_suppressed"),
                            in_flight: rings[name.as_str()].as_u64().unwrap_or(0),
                        };
                        (name.clone(), sample)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Sample {
            at,
            exits: counts(&stats["exits"]["by_reason"]),
            hypercalls: counts(&stats["hypercalls"]["by_name"]),
            trapped_pt_writes: shadow["trapped_pt_writes"].as_u64(),
            shadow_syncs: shadow["shadow_syncs"].as_u64(),
            flushes: stats["memory"]["kvm_translation_flushes"].as_u64().unwrap_or(0),
            devices,
            rss_kib,
            migration: {
                let m = &fields.get("migration").cloned().unwrap_or(Value::Null);
                m["destination"].as_str().map(|to| {
                    let to = backend_drivers::console::sanitize_text(to);
                    format!(
                        "migration to {to}: {}, round {}, {} pages sent, {} dirtied in the last round",
                        m["state"].as_str().unwrap_or("?"),
                        m["rounds"].as_u64().unwrap_or(0),
                        m["pages_sent"].as_u64().unwrap_or(0),
                        m["last_dirtied"].as_u64().unwrap_or(0)
                    )
                })
            },
            net: {
                let n = &stats["net"];
                let get = |k: &str| n[k].as_u64().unwrap_or(0);
                n.is_object().then(|| NetSample {
                    sent: get("frames_sent"),
                    received: get("frames_received"),
                    dropped: get("dropped_no_buffer") + get("dropped_bad_frame"),
                    refused: get("refused"),
                })
            },
            balloon: {
                let b = &stats["balloon"];
                match (b["ballooned_pages"].as_u64(), b["target_pages"].as_u64(), b["mem_pages"].as_u64()) {
                    (Some(held), Some(target), Some(ram)) => Some((held, target, ram)),
                    _ => None,
                }
            },
        }
    }
}

/// Per-second rates between two samples, and the later sample's levels.
#[derive(Clone, Debug, PartialEq)]
pub struct Rates {
    /// Exits per second by reason.
    pub exits: BTreeMap<String, f64>,
    /// Hypercalls per second by name.
    pub hypercalls: BTreeMap<String, f64>,
    /// Trapped page-table writes per second (shadow mode).
    pub trapped_pt_writes: Option<f64>,
    /// Shadow syncs per second (shadow mode).
    pub shadow_syncs: Option<f64>,
    /// Translation flushes per second.
    pub flushes: f64,
    /// Per device: doorbells, requests, upcalls, suppressed upcalls per second, and
    /// requests in flight now.
    pub devices: BTreeMap<String, (f64, f64, f64, f64, u64)>,
    /// Resident memory now, KiB.
    pub rss_kib: Option<u64>,
    /// The balloon now: (pages held by the host, target pages, RAM pages).
    pub balloon: Option<(u64, u64, u64)>,
    /// A migration's progress, if one was asked for.
    pub migration: Option<String>,
    /// The network: frames sent and received per second, and drops and refusals so far.
    pub net: Option<(f64, f64, u64, u64)>,
}

impl Rates {
    /// What happened between `before` and `after`, per second. Counters never go back;
    /// one that seems to (a restarted hv) reads as zero.
    pub fn between(before: &Sample, after: &Sample) -> Rates {
        let secs = after.at.saturating_duration_since(before.at).as_secs_f64().max(1e-6);
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let map = |a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>| {
            b.iter().map(|(k, v)| (k.clone(), rate(a.get(k).copied().unwrap_or(0), *v))).collect()
        };
        let devices = after
            .devices
            .iter()
            .map(|(name, d)| {
                let p = before.devices.get(name).cloned().unwrap_or_default();
                (name.clone(), (rate(p.doorbells, d.doorbells), rate(p.requests, d.requests), rate(p.upcalls, d.upcalls), rate(p.suppressed, d.suppressed), d.in_flight))
            })
            .collect();
        Rates {
            exits: map(&before.exits, &after.exits),
            hypercalls: map(&before.hypercalls, &after.hypercalls),
            trapped_pt_writes: after.trapped_pt_writes.map(|b| rate(before.trapped_pt_writes.unwrap_or(0), b)),
            shadow_syncs: after.shadow_syncs.map(|b| rate(before.shadow_syncs.unwrap_or(0), b)),
            flushes: rate(before.flushes, after.flushes),
            devices,
            rss_kib: after.rss_kib,
            balloon: after.balloon,
            migration: after.migration.clone(),
            net: after.net.map(|n| {
                let p = before.net.unwrap_or_default();
                (rate(p.sent, n.sent), rate(p.received, n.received), n.dropped, n.refused)
            }),
        }
    }

    /// All exits per second.
    pub fn total_exits(&self) -> f64 {
        self.exits.values().sum()
    }
}

/// VmRSS of process `pid` in KiB, from `/proc/PID/status`.
pub fn resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}
