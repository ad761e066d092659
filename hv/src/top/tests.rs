use std::time::{Duration, Instant};

use serde_json::json;

use super::dashboard::View;
use super::sample::{Rates, Sample};
use super::*;

/// A `stats` reply as hv sends it (the fields `hv top` reads): exits (io-out, mmio-write),
/// hypercalls (nop, set_cr3), trapped writes, and the console's doorbells, upcalls and
/// suppressed upcalls.
fn stats_reply([io_out, mmio]: [u64; 2], [nop, set_cr3]: [u64; 2], trapped: u64, [doorbells, upcalls, suppressed]: [u64; 3]) -> Map<String, Value> {
    let reply = json!({
        "stats": {
            "exits": {"total": io_out + mmio, "by_reason": {"io-out": io_out, "mmio-write": mmio}},
            "hypercalls": {"total": nop + set_cr3, "by_name": {"nop": nop, "set_cr3": set_cr3}, "refused": 0},
            "memory": {"mode": "shadow", "kvm_translation_flushes": trapped / 2,
                       "shadow": {"trapped_pt_writes": trapped, "shadow_syncs": trapped * 3}},
            "devices": {"console": {"doorbells": doorbells, "requests": doorbells, "upcalls": upcalls, "upcalls_suppressed": suppressed}},
            "balloon": {"ballooned_pages": trapped * 10, "target_pages": 8192, "mem_pages": 16384}
        },
        "rings_in_flight": {"console": 2}
    });
    reply.as_object().unwrap().clone()
}

fn two_samples() -> (Sample, Sample) {
    let t0 = Instant::now();
    let before = Sample::from_stats(t0, &stats_reply([1000, 100], [500, 50], 100, [40, 10, 30]), Some(20_480));
    let after = Sample::from_stats(t0 + Duration::from_secs(2), &stats_reply([4000, 700], [2500, 250], 700, [240, 60, 180]), Some(22_528));
    (before, after)
}

#[test]
fn rates_are_differences_per_second() {
    let (before, after) = two_samples();
    let r = Rates::between(&before, &after);
    assert_eq!(r.exits["io-out"], 1500.0);
    assert_eq!(r.exits["mmio-write"], 300.0);
    assert_eq!(r.total_exits(), 1800.0);
    assert_eq!(r.hypercalls["set_cr3"], 100.0);
    assert_eq!(r.trapped_pt_writes, Some(300.0));
    assert_eq!(r.shadow_syncs, Some(900.0));
    assert_eq!(r.devices["console"], (100.0, 100.0, 25.0, 75.0, 2));
    assert_eq!(r.rss_kib, Some(22_528));
    assert_eq!(r.balloon, Some((7000, 8192, 16384)));
}

#[test]
fn hostile_counters_that_go_back_read_as_zero_not_as_huge_rates() {
    let (before, after) = two_samples();
    let r = Rates::between(&after, &before);
    assert_eq!(r.total_exits(), 0.0);
    assert_eq!(r.trapped_pt_writes, Some(0.0));
}

#[test]
fn a_reply_missing_figures_still_makes_a_sample() {
    let s = Sample::from_stats(Instant::now(), &Map::new(), None);
    assert!(s.exits.is_empty() && s.devices.is_empty() && s.trapped_pt_writes.is_none());
}

fn view(rates: Option<Rates>) -> View {
    View {
        socket: "/tmp/hv.sock".into(),
        pid: Some(4242),
        mmu: "shadow".into(),
        ram_mib: 64,
        guest_args: "count-user 1000 20".into(),
        rates,
        history: vec![1200, 1500, 1800, 1700, 1800, 2100, 1800],
        interval_secs: 1.0,
    }
}

#[test]
fn the_dashboard_renders_every_panel_with_its_meaning() {
    let (before, after) = two_samples();
    let text = render_text(&view(Some(Rates::between(&before, &after))), ONCE_SIZE);
    insta::assert_snapshot!("dashboard_shadow", text);
}

#[test]
fn before_the_second_sample_the_dashboard_says_it_waits() {
    let text = render_text(&view(None), (100, 24));
    assert!(text.contains("waiting for a second sample"));
}

#[test]
fn hostile_guest_words_in_the_header_are_shown_sanitised() {
    let mut v = view(None);
    v.guest_args = backend_drivers::console::sanitize_text("echo \u{1b}]0;owned\u{7}");
    let text = render_text(&v, (100, 24));
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'));
}

#[test]
fn a_migration_in_flight_is_shown_in_the_header() {
    let mut fields = stats_reply([10, 0], [1, 0], 0, [1, 1, 0]);
    fields.insert("migration".into(), json!({"destination": "10.0.0.9:7000\u{1b}[2J", "rounds": 2, "pages_sent": 1234, "last_dirtied": 56, "state": "running"}));
    let t0 = Instant::now();
    let r = Rates::between(&Sample::from_stats(t0, &fields, None), &Sample::from_stats(t0 + Duration::from_secs(1), &fields, None));
    let line = r.migration.clone().expect("a migration line");
    assert!(line.contains("running, round 2, 1234 pages sent, 56 dirtied"), "{line}");
    assert!(!line.contains('\u{1b}'), "the destination is shown sanitised");
    let text = render_text(&view(Some(r)), ONCE_SIZE);
    assert!(text.contains("migration to 10.0.0.9:7000"), "the header shows it:\n{text}");
}

#[test]
fn a_network_device_is_shown_as_frames_per_second_with_its_drops() {
    let with_net = |sent: u64, received: u64| {
        let mut fields = stats_reply([10, 0], [1, 0], 0, [1, 1, 0]);
        fields["stats"]["net"] = json!({"frames_sent": sent, "frames_received": received, "dropped_no_buffer": 3, "dropped_bad_frame": 1, "refused": 2});
        fields
    };
    let t0 = Instant::now();
    let r = Rates::between(&Sample::from_stats(t0, &with_net(100, 50), None), &Sample::from_stats(t0 + Duration::from_secs(2), &with_net(300, 450), None));
    assert_eq!(r.net, Some((100.0, 200.0, 4, 2)));
    let text = render_text(&view(Some(r)), ONCE_SIZE);
    assert!(text.contains("net frames: 100 out/s, 200 in/s; 4 lost, 2 bad"), "the devices panel shows it:\n{text}");
    let (before, after) = two_samples();
    assert_eq!(Rates::between(&before, &after).net, None, "no network device, no line");
}
