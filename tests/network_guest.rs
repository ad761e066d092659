//! The guest's TCP/IP stack (smoltcp, `pv-guest/src/net/`) in a real VM, before any
//! network device exists: `net-selftest` runs two interfaces inside the guest on a
//! loopback wire (ARP, ping, HTTP over TCP, hostile requests), `net-bench loopback`
//! prints what the stack costs in the guest's ring 0, and `net-ring3-probe` shows
//! whether a ring-3 task could ring a doorbell itself (the question behind where the
//! stack runs). Figures are printed by the guest and checked for shape only: speed is
//! never asserted here.

mod common;

use common::{hv, Outcome};

/// The counts in the guest's `net-selftest: N passed, M failed` line.
fn net_selftest_counts(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout.lines().rev().find(|l| l.starts_with("net-selftest: ") && l.contains(" passed, "))?;
    let (passed, rest) = line.strip_prefix("net-selftest: ")?.split_once(" passed, ")?;
    Some((passed.parse().ok()?, rest.strip_suffix(" failed")?.parse().ok()?))
}

fn net_selftest() -> Outcome {
    hv(&["run", "--timeout", "50", "--", "net-selftest"])
}

#[test]
fn net_selftest_pings_and_fetches_pages_between_two_in_guest_interfaces() {
    require_kvm!();
    let r = net_selftest();
    r.expect_code(0);
    let counts = net_selftest_counts(&r.stdout);
    r.expect(matches!(counts, Some((passed, 0)) if passed >= 11), "net-selftest: at least 11 checks, none failed");
    for check in ["ok: ping:", "ok: http: GET / answers 200", "ok: http: GET /big?bytes=49152"] {
        r.expect(r.stdout.contains(check), &format!("the guest printed `{check}`"));
    }
}

#[test]
fn hostile_frames_and_http_requests_are_refused_and_the_guest_stack_serves_on() {
    require_kvm!();
    let r = net_selftest();
    r.expect_code(0);
    for check in [
        "ok: hostile_frames",
        "ok: hostile_http_method",
        "ok: hostile_http_garbage_request_line",
        "ok: hostile_http_big_size",
        "ok: hostile_http_endless_head",
        "ok: http: the server still serves after the hostile requests",
    ] {
        r.expect(r.stdout.contains(check), &format!("the guest printed `{check}`"));
    }
}

#[test]
fn net_bench_loopback_prints_the_ring0_cost_of_a_ping_and_the_tcp_throughput() {
    require_kvm!();
    let r = hv(&["run", "--timeout", "50", "--", "net-bench", "loopback", "20"]);
    r.expect_code(0);
    for line in [
        "net-bench: ring 0 here: ",
        "net-bench: one idle poll: ",
        "net-bench: loopback ping: 20 sent, 20 received, 0% loss; round trip min ",
        "net-bench: the peer's stack per ping answered (echo request in, reply out): ",
        "net-bench: http GET /big: 262144 bytes in ",
    ] {
        r.expect(r.stdout.contains(line), &format!("net-bench printed a line starting `{line}`"));
    }
    eprintln!("{}", r.stdout);
}

#[test]
fn net_ring3_probe_finds_ring3_port_io_refused_without_permission() {
    require_kvm!();
    let r = hv(&["run", "--timeout", "50", "--", "net-ring3-probe", "100"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("ring 3 without I/O permission") && r.stdout.contains("(#GP, as the architecture says)"), "an unpermitted out from ring 3 is a #GP");
    r.expect(r.stdout.contains("net-ring3-probe: verdict: a ring-3 task "), "the probe gives its verdict");
    eprintln!("{}", r.stdout);
}

#[test]
fn network_commands_without_a_device_or_with_bad_words_are_usage_errors() {
    require_kvm!();
    let r = hv(&["run", "--", "net-ping", "10.0.0.300"]);
    r.expect_code(2);
    r.expect(r.stdout.contains("net-ping: usage: net-ping IP [COUNT]"), "a bad address is a usage error");
    let r = hv(&["run", "--", "net-bench"]);
    r.expect_code(2);
    r.expect(r.stdout.contains("net-bench: usage: net-bench loopback|IP [COUNT]"), "net-bench needs a target");
}
