//! `hv bench --network`: the real binary, `--quick`, checked for every row with plausible
//! figures and its baseline where the baseline must be the cheaper one, and for cleaning
//! up its network namespace, also when interrupted. No timing is asserted beyond "the
//! host alone is faster than the host plus a guest", which holds by orders of magnitude.
//!
//! These need /dev/kvm, root and iproute2 (the command makes a namespace with a TAP);
//! elsewhere they print `SKIPPED: …` and pass.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Whether this machine can make a namespace with a TAP; says why not.
fn can_make_a_namespace() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok();
    let tun = std::path::Path::new("/dev/net/tun").exists();
    if !(root && ip && tun) {
        eprintln!("SKIPPED: hv bench --network needs root, iproute2's `ip` and /dev/net/tun (root {root}, ip {ip}, /dev/net/tun {tun})");
    }
    root && ip && tun
}

fn curl_installed() -> bool {
    Command::new("curl").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The namespace a run named in its progress lines (`making namespace NAME with …`).
fn namespace_of(stderr: &str) -> Option<String> {
    let after = stderr.split("making namespace ").nth(1)?;
    after.split_whitespace().next().map(str::to_string)
}

fn namespace_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(name))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A latency object's figures are positive and in order.
fn check_latency(what: &str, l: &Value) {
    let (min, p50, p90, max) = (f(&l["min_ns"]), f(&l["p50_ns"]), f(&l["p90_ns"]), f(&l["max_ns"]));
    assert!(l["count"].as_u64().is_some_and(|n| n > 0), "{what}: round trips measured: {l}");
    assert!(0.0 < min && min <= p50 && p50 <= p90 && p90 <= max, "{what}: 0 < min <= p50 <= p90 <= max: {l}");
}

#[test]
fn a_quick_network_run_measures_every_row_against_its_baseline_and_removes_its_namespace() {
    if !common::kvm_available() || !can_make_a_namespace() {
        return;
    }
    let json_path = common::temp_path("netbench.json");
    let out = common::hv(&["bench", "--network", "--quick", "--json", json_path.to_str().expect("utf-8 path")]);
    let json = std::fs::read_to_string(&json_path);
    let _ = std::fs::remove_file(&json_path);
    out.expect_code(0);
    let report: Value = serde_json::from_str(&json.expect("the JSON file")).expect("it parses");
    assert_eq!(report["kind"], "network");
    assert_eq!(report["quick"], true);

    // Every row is in the table, and the host is named: nobody should quote these figures
    // as hardware virtualization's.
    for row in ["ping host -> guest", "ping guest -> guest", "switch, 60-byte frames", "switch, 1514-byte frames", "TCP through curl", "balloon reclaim"] {
        out.expect(out.stdout.lines().any(|l| l.trim_start().starts_with(row)), &format!("the {row} row"));
    }
    out.expect(out.stdout.contains(&format!("host: {}", report["host"]["cpu"].as_str().unwrap_or("?"))), "the host is named");
    if report["host"]["hardware_two_dimensional_paging"] == false {
        out.expect(out.stdout.contains("not hardware virtualization's"), "a software-virtualized host says so");
    }

    // Pings: the host alone (loopback) is cheaper than any path through a guest.
    let loopback = &report["ping_loopback"]["measured"]["latency"];
    let host_guest = &report["ping_host_to_guest"]["measured"]["latency"];
    let guest_guest = &report["ping_guest_to_guest"]["measured"]["latency"];
    check_latency("loopback ping", loopback);
    check_latency("host -> guest ping", host_guest);
    check_latency("guest -> guest ping", guest_guest);
    assert!(f(&loopback["p50_ns"]) < f(&host_guest["p50_ns"]), "loopback p50 below host -> guest: {loopback} / {host_guest}");
    assert!(f(&loopback["p50_ns"]) < f(&guest_guest["p50_ns"]), "loopback p50 below guest -> guest");

    // The switch: both sizes, both paths, every figure positive (which of the two is
    // cheaper is what is being measured, and noise on a shared host can blur close ones).
    let switch = report["switch"].as_array().expect("switch rows");
    assert_eq!(switch.len(), 2);
    for s in switch {
        let m = &s["measured"];
        assert!(f(&m["switch_ns_per_frame"]["median"]) > 0.0 && f(&m["queue_ns_per_frame"]["median"]) > 0.0, "{s}");
    }

    // TCP: the host's own server is faster than the guest's stack.
    if curl_installed() {
        let (guest, host) = (&report["tcp_guest"]["measured"], &report["tcp_host"]["measured"]);
        let (g, h) = (f(&guest["bytes_per_second"]["median"]), f(&host["bytes_per_second"]["median"]));
        assert!(g > 0.0 && h > g, "host server {h} B/s above the guest's {g} B/s");
        assert_eq!(guest["bytes"], host["bytes"], "the same size from both");
    } else {
        eprintln!("SKIPPED (part): curl is not installed; the TCP rows must say so");
        assert_eq!(report["tcp_guest"]["skipped"], true);
        out.expect(out.stdout.contains("SKIPPED"), "the table says the row was skipped");
    }

    // Balloon: 32 MiB given back, hv's RSS down by most of it, madvise alone faster.
    let balloon = &report["balloon"]["measured"];
    let madvise = &report["balloon_baseline"]["measured"];
    assert_eq!(f(&balloon["ballooned_mib"]), 32.0, "{balloon}");
    assert!(f(&balloon["rss_before_mib"]) - f(&balloon["rss_after_mib"]) >= 24.0, "hv's RSS fell by 24 MiB or more: {balloon}");
    assert!(f(&balloon["mib_per_second"]) > 0.0 && f(&madvise["mib_per_second"]) > f(&balloon["mib_per_second"]), "{balloon} / {madvise}");
    assert_eq!(madvise["mib"], 32);

    // Every ratio positive; the five rows with a baseline that must be cheaper are above 1.
    let comparisons = report["comparisons"].as_array().expect("comparisons");
    let expected = if curl_installed() { 6 } else { 5 };
    assert_eq!(comparisons.len(), expected, "{comparisons:?}");
    for c in comparisons {
        assert!(f(&c["ratio"]) > 0.0, "{c}");
        if !c["figure"].as_str().unwrap_or("").starts_with("switch") {
            assert!(f(&c["ratio"]) > 1.0, "the guest's path costs more than the host's alone: {c}");
        }
    }

    let ns = namespace_of(&out.stderr).expect("the progress names the namespace");
    assert!(!namespace_exists(&ns), "namespace {ns} removed at the end");
}

#[test]
fn ctrl_c_stops_the_guests_and_removes_the_namespace() {
    if !common::kvm_available() || !can_make_a_namespace() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_hv"))
        .args(["bench", "--network", "--quick"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hv starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
    let mut namespace = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Once the guest serves and the pings start, the namespace and a guest both exist.
    while Instant::now() < deadline {
        match stderr.next() {
            Some(Ok(line)) => {
                if namespace.is_none() {
                    namespace = namespace_of(&line);
                }
                if line.contains(" pings to ") {
                    break;
                }
            }
            _ => break,
        }
    }
    let namespace = namespace.expect("the run named its namespace");
    assert!(namespace_exists(&namespace), "{namespace} exists while the run goes on");
    // SAFETY: kill(2) with a live child's pid and a standard signal.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let status = child.wait().expect("hv ends");
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "exit code 130 after Ctrl-C; stderr:\n{}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("interrupted")), "it says it was interrupted: {rest:?}");
    assert!(!namespace_exists(&namespace), "{namespace} removed after Ctrl-C");
}

#[test]
fn the_network_figures_do_not_take_memory_mode_options() {
    let out = common::hv(&["bench", "--network", "--workload", "hypercall"]);
    out.expect_code(2);
    out.expect(out.stderr.contains("cannot be used with"), "clap names the conflict");
}
