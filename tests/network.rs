//! The network end to end: guests on hv's virtual switch reach each other, and the host
//! reaches a guest through a TAP device with its own tools (`ping`, `curl`), in a network
//! namespace the test makes and always removes, so no traffic leaves it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hv;
use common::namespace::Namespace;

#[test]
fn two_guests_ping_each_other_through_the_virtual_switch() {
    if !common::kvm_available() {
        return;
    }
    let r = hv(&["run", "--stats", "--guest", "net-serve 6", "--guest", "net-ping 10.0.0.2 3"]);
    r.expect_code(0);
    let replies = r.stdout.lines().filter(|l| l.starts_with("g1 | net-ping: reply from 10.0.0.2")).count();
    r.expect(replies == 3, "g1 got three replies from g0 through the switch");
    r.expect(r.stdout.contains("g1 | net-ping: 3 sent, 3 received"), "and says so");
    r.expect(r.stdout.contains("g0 | net-serve: answering ping and HTTP on port 80 for 6 s (the stack in a ring-3 task, pv-netd)"), "the stack runs in the ring-3 network task by default");
    r.expect(r.stderr.contains("virtual switch:"), "--stats shows the switch's counters");
    r.expect(r.stderr.contains("device net-tx") && r.stderr.contains("device net-rx"), "and each guest's network rings");
}

#[test]
fn the_kernels_own_stack_still_answers_with_ring0() {
    if !common::kvm_available() {
        return;
    }
    let r = hv(&["run", "--guest", "net-serve 8 --ring0", "--guest", "net-ping 10.0.0.2 2 --ring0"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("g0 | net-serve: answering ping and HTTP on port 80 for 8 s (the stack in the kernel, ring 0)"), "g0's stack runs in the kernel");
    r.expect(r.stdout.contains("g1 | net-ping: 2 sent, 2 received"), "and answers g1's kernel stack");
}

#[test]
fn the_network_device_passes_from_task_to_task_and_back_to_the_kernel() {
    if !common::kvm_available() {
        return;
    }
    // Each ring-3 network task leaves the rings where the next holder can go on from:
    // g0 serves from a task, then pings from a second task, then serves from the kernel;
    // g1 pings, serves, and pings from the kernel.
    let r = hv(&["run", "--guest", "net-serve 4 ; net-ping 10.0.0.3 2 ; net-serve 3 --ring0", "--guest", "net-ping 10.0.0.2 2 ; net-serve 5 ; net-ping 10.0.0.2 2 --ring0"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("g1 | net-ping: 2 sent, 2 received"), "g1's first task reached g0's");
    r.expect(r.stdout.contains("g0 | net-ping: 2 sent, 2 received"), "g0's second task, on the rings its first left, reached g1's second");
    r.expect(r.stdout.matches("g1 | net-ping: 2 sent, 2 received").count() == 2, "g1's kernel, on the rings its task left, reached g0's kernel");
    r.expect(r.stdout.contains("g0 | net-serve: answering ping and HTTP on port 80 for 3 s (the stack in the kernel, ring 0)"), "g0's kernel took the device back");
}

#[test]
fn a_ring3_stack_answers_a_ring0_one() {
    if !common::kvm_available() {
        return;
    }
    let r = hv(&["run", "--guest", "net-serve 8 --ring0", "--guest", "net-ping 10.0.0.2 2"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("g1 | net-ping: 2 sent, 2 received"), "the two stacks, in different rings, talk");
}

fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

#[test]
fn the_hosts_curl_and_ping_reach_a_guest_through_a_tap() {
    if !common::kvm_available() {
        return;
    }
    if !installed("curl") {
        eprintln!("SKIPPED: this test needs curl (apt-get install curl)");
        return;
    }
    let tap = "hvtap0";
    let ns = match Namespace::make("test", tap) {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("SKIPPED: this test needs root and iproute2 to make a network namespace: {why}");
            return;
        }
    };
    let mut guest = ns
        .command(env!("CARGO_BIN_EXE_hv"))
        .args(["run", "--tap", tap, "--", "net-serve", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hv starts in the namespace");
    let mut lines = BufReader::new(guest.stdout.take().expect("piped")).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut serving = false;
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) if line.contains("net-serve: answering") => {
                serving = true;
                break;
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    let fetch = ns.command("curl").args(["-s", "-m", "30", "http://10.0.0.2/"]).output().expect("curl runs");
    let ping = installed("ping").then(|| ns.command("ping").args(["-c", "3", "-W", "5", "10.0.0.2"]).output().expect("ping runs"));
    let _ = guest.kill();
    let _ = guest.wait();
    assert!(serving, "the guest started serving");
    let page = String::from_utf8_lossy(&fetch.stdout);
    assert!(fetch.status.success() && page.contains("pv-guest") && page.contains("frames_received"), "curl fetched the guest's page:\n{page}");
    assert!(page.contains("stack: in a ring-3 task (pv-netd)"), "served by the ring-3 network task:\n{page}");
    match ping {
        Some(out) => assert!(out.status.success(), "the host's ping got answers: {}", String::from_utf8_lossy(&out.stdout)),
        None => eprintln!("SKIPPED (part): `ping` is not installed (apt-get install iputils-ping)"),
    }
    drop(ns);
}
