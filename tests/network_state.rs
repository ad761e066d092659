//! The network forms of `hv run` (`--tap`, `--guests`, `--guest`) are whole VMs: no option
//! is silently ignored, every guest gets a control socket with the network's counters, and
//! a guest serving the network is snapshotted, restored and migrated, answering the host's
//! `curl` after each move. The host's side is a TAP device in a network namespace the test
//! makes and always removes (a migration goes between two namespaces joined by a veth
//! pair: two "hosts" on one machine), so no traffic leaves them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hv;
use common::namespace::Namespace;
use serde_json::Value;

/// How long a guest may take to start serving, or hv to answer, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn the_network_forms_refuse_by_name_what_they_cannot_do() {
    let cases: [(&[&str], &str); 6] = [
        (&["run", "--tap", "hvnone0", "--record", "/tmp/hv-never.log"], "--record cannot be used with --tap"),
        (&["run", "--guests", "2", "--record", "/tmp/hv-never.log"], "--record cannot be used with --guests"),
        (&["run", "--guests", "2", "--disk", "/tmp/hv-never.img"], "--disk cannot be used with --guests: the guests would share one image"),
        (&["run", "--guest", "count 1", "--guest", "count 1", "--incoming", "127.0.0.1:1"], "--incoming receives one guest: use it with --tap NAME, not --guest"),
        (&["run", "--guests", "2", "--migrate-to", "127.0.0.1:1"], "--migrate-to sends one guest"),
        // What only a migration uses, given without one, was silently ignored before.
        (&["run", "--max-rounds", "3"], "--migrate-to"),
    ];
    for (args, why) in cases {
        let r = hv(args);
        r.expect_code(2);
        r.expect(r.stderr.contains(why), &format!("hv {args:?} says why: {why}"));
    }
}

#[test]
fn a_destination_whose_tap_cannot_be_attached_fails_before_it_accepts_a_guest() {
    // Once a destination confirms, the source has ended: a TAP that cannot be attached
    // must be found before anything is received.
    let r = hv(&["run", "--incoming", "127.0.0.1:0", "--tap", "hvnosuchtap0"]);
    r.expect_code(1);
    r.expect(r.stderr.contains("hvnosuchtap0"), "the error names the TAP");
    r.expect(!r.stderr.contains("waiting for a migrating guest"), "hv never listened");
}

/// An hv process in the background, its output collected line by line as it comes.
struct Background {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Background {
    fn spawn(command: &mut Command) -> Background {
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("hv starts");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().expect("piped")));
        let stderr = collect(Box::new(child.stderr.take().expect("piped")));
        Background { child, stdout, stderr }
    }

    /// Waits for a line of standard output (`err`: standard error) containing `text`.
    fn wait_for(&mut self, text: &str, err: bool) {
        let start = Instant::now();
        loop {
            let lines = if err { &self.stderr } else { &self.stdout };
            if lines.lock().unwrap().iter().any(|l| l.contains(text)) {
                return;
            }
            if start.elapsed() > PATIENCE || self.child.try_wait().ok().flatten().is_some() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("hv never printed {text:?}\n--- stdout:\n{}\n--- stderr:\n{}", self.stdout.lock().unwrap().join("\n"), self.stderr.lock().unwrap().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end (killing it after [`PATIENCE`]); its exit code.
    fn end(mut self) -> (i32, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > PATIENCE {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(100));
        (status.code().unwrap_or(-1), self.stderr.lock().unwrap().join("\n"))
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill").args(["-s", signal, &self.child.id().to_string()]).status();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hv ctl SOCKET ARGS --json`: the reply, which must say ok.
fn ctl_json(socket: &Path, args: &[&str]) -> Value {
    let socket = socket.display().to_string();
    let mut all = vec!["ctl", "--json", socket.as_str()];
    all.extend_from_slice(args);
    let r = hv(&all);
    r.expect_code(0);
    let line = r.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn each_guest_of_a_group_has_a_control_socket_with_its_network_counters() {
    if !common::kvm_available() {
        return;
    }
    let base = common::temp_path("group.sock");
    let name = |guest: &str| {
        let stem = base.file_stem().unwrap().to_string_lossy().into_owned();
        base.with_file_name(format!("{stem}.{guest}.sock"))
    };
    let mut group = Background::spawn(Command::new(env!("CARGO_BIN_EXE_hv")).args([
        "run",
        "--control",
        &base.display().to_string(),
        "--guest",
        "net-serve 40",
        "--guest",
        "net-ping 10.0.0.2 3 ; count 400 100",
    ]));
    group.wait_for(&format!("g0: control socket listening at {}", name("g0").display()), true);
    group.wait_for(&format!("g1: control socket listening at {}", name("g1").display()), true);
    group.wait_for("g1 | net-ping: 3 sent, 3 received", false);

    let stats = ctl_json(&name("g0"), &["stats"]);
    let net = &stats["stats"]["net"];
    assert!(net["frames_received"].as_u64().unwrap() >= 3 && net["frames_sent"].as_u64().unwrap() >= 3, "g0 answered three pings: {net}");
    assert_eq!(net["refused"], 0, "{net}");
    assert!(stats["stats"]["devices"]["net-rx"]["requests"].as_u64().unwrap() >= 3, "the receive ring's line is there: {stats}");
    let ports: Vec<&str> = stats["switch"]["ports"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(ports, ["g0", "g1"], "the switch's ports: {stats}");
    assert!(stats["text"].as_str().unwrap().contains("network: sent"), "the text has the network's line: {stats}");

    // The other commands work on a network guest too.
    assert_eq!(ctl_json(&name("g1"), &["pause"])["state"], "paused");
    assert_eq!(ctl_json(&name("g1"), &["status"])["state"], "paused");
    assert_eq!(ctl_json(&name("g1"), &["resume"])["state"], "running");
    assert_eq!(ctl_json(&name("g0"), &["balloon", "48"])["target_mib"], 48);

    // One SIGTERM stops every guest of the group through its socket, cleanly.
    group.signal("TERM");
    let (code, stderr) = group.end();
    assert_eq!(code, 128 + 15, "hv ends as a shell expects after SIGTERM:\n{stderr}");
    assert!(!name("g0").exists() && !name("g1").exists(), "both sockets are removed");
}

/// Whether the machine can run these tests: KVM, curl, root for namespaces. Says why not.
fn network_tests_possible() -> bool {
    if !common::kvm_available() {
        return false;
    }
    if Command::new("curl").arg("--version").stdout(Stdio::null()).status().is_err() {
        eprintln!("SKIPPED: this test needs curl (apt-get install curl)");
        return false;
    }
    true
}

fn looks_served(page: &str) -> bool {
    page.contains("pv-guest") && page.contains("frames_received")
}

#[test]
fn a_serving_guest_is_snapshotted_and_restored_onto_a_tap_and_answers_curl_again() {
    if !network_tests_possible() {
        return;
    }
    let tap = "hvtaps0";
    let ns = match Namespace::make("snap", tap) {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("SKIPPED: this test needs root and iproute2 to make a network namespace: {why}");
            return;
        }
    };
    let socket = common::temp_path("netsnap.sock");
    let file = common::temp_path("net.snap");
    let mut first = Background::spawn(ns.command(env!("CARGO_BIN_EXE_hv")).args(["run", "--tap", tap, "--control", &socket.display().to_string(), "--", "net-serve", "300"]));
    first.wait_for("net-serve: answering", false);
    assert!(looks_served(&ns.curl()), "curl fetched the page before the snapshot");

    // A snapshot that lets the guest go on: the drain froze the network backend while
    // memory was written, and the job thawed it after.
    let on_the_way = common::temp_path("net-on.snap");
    assert_eq!(ctl_json(&socket, &["snapshot", &on_the_way.display().to_string()])["stopped"], false);
    let _ = std::fs::remove_file(&on_the_way);
    assert!(looks_served(&ns.curl()), "the guest serves on after a snapshot without --stop");

    let taken = ctl_json(&socket, &["snapshot", &file.display().to_string(), "--stop"]);
    assert_eq!(taken["stopped"], true, "{taken}");
    let (code, stderr) = first.end();
    assert_eq!(code, 0, "the first hv ends after its snapshot:\n{stderr}");

    // Without a network the guest is not restored: the error says what to add.
    let r = hv(&["restore", &file.display().to_string()]);
    r.expect_code(1);
    r.expect(r.stderr.contains("network device (address 10.0.0.2/24)") && r.stderr.contains("--tap NAME"), "restore without --tap names it");

    let socket2 = common::temp_path("netsnap2.sock");
    let mut restored =
        Background::spawn(ns.command(env!("CARGO_BIN_EXE_hv")).args(["restore", "--tap", tap, "--control", &socket2.display().to_string(), &file.display().to_string()]));
    restored.wait_for("control socket listening", true);
    let page = ns.curl();
    assert!(looks_served(&page), "the restored guest serves curl again:\n{page}");
    let net = &ctl_json(&socket2, &["stats"])["stats"]["net"];
    assert!(net["frames_received"].as_u64().unwrap() > 0 && net["frames_sent"].as_u64().unwrap() > 0, "the restored device moved frames: {net}");
    restored.signal("TERM");
    let _ = restored.end();
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_serving_guest_migrates_between_two_hosts_and_answers_curl_at_the_destination() {
    if !network_tests_possible() {
        return;
    }
    let (tap_a, tap_b) = ("hvtapma", "hvtapmb");
    let namespaces = Namespace::make("srca", tap_a).and_then(|a| Namespace::make("dstb", tap_b).map(|b| (a, b)));
    let (a, b) = match namespaces.and_then(|(a, b)| a.link(&b).map(|()| (a, b))) {
        Ok(pair) => pair,
        Err(why) => {
            eprintln!("SKIPPED: this test needs root and iproute2 to make network namespaces: {why}");
            return;
        }
    };
    let port = 40_000 + std::process::id() % 20_000;
    let destination = format!("192.168.231.2:{port}");
    let mut there = Background::spawn(b.command(env!("CARGO_BIN_EXE_hv")).args(["run", "--incoming", &destination, "--tap", tap_b]));
    there.wait_for("waiting for a migrating guest", true);
    let socket = common::temp_path("netmig.sock");
    let mut here = Background::spawn(a.command(env!("CARGO_BIN_EXE_hv")).args(["run", "--tap", tap_a, "--control", &socket.display().to_string(), "--", "net-serve", "300"]));
    here.wait_for("net-serve: answering", false);
    assert!(looks_served(&a.curl()), "curl fetched the page at the source");

    let moved = ctl_json(&socket, &["migrate", &destination]);
    assert!(moved["report"]["downtime_ms"].as_f64().is_some(), "{moved}");
    let (code, stderr) = here.end();
    assert_eq!(code, 0, "the source ends once the destination runs the guest:\n{stderr}");
    there.wait_for("received a guest from", true);
    let page = b.curl();
    assert!(looks_served(&page), "the migrated guest serves curl at the destination:\n{page}");
    there.signal("TERM");
    let _ = there.end();
}

#[test]
fn a_refused_migration_leaves_the_network_guest_serving_at_the_source() {
    if !network_tests_possible() {
        return;
    }
    let tap = "hvtapr0";
    let ns = match Namespace::make("refuse", tap) {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("SKIPPED: this test needs root and iproute2 to make a network namespace: {why}");
            return;
        }
    };
    // A destination with no network for the guest: it must refuse it, and say why.
    let port = 40_000 + (std::process::id() + 7) % 20_000;
    let destination = format!("127.0.0.1:{port}");
    let mut there = Background::spawn(ns.command(env!("CARGO_BIN_EXE_hv")).args(["run", "--incoming", &destination]));
    there.wait_for("waiting for a migrating guest", true);
    let socket = common::temp_path("netrefused.sock");
    let mut here = Background::spawn(ns.command(env!("CARGO_BIN_EXE_hv")).args(["run", "--tap", tap, "--control", &socket.display().to_string(), "--", "net-serve", "300"]));
    here.wait_for("net-serve: answering", false);

    let r = hv(&["ctl", &socket.display().to_string(), "migrate", &destination]);
    r.expect_code(1);
    r.expect(r.stderr.contains("--tap NAME") && r.stderr.contains("the guest runs on here"), "the source hears why, and that its guest runs on");
    let (code, stderr) = there.end();
    assert_eq!(code, 1, "the destination refused the guest:\n{stderr}");
    // The pause job drained and froze the network backend; the failure thawed it.
    let page = ns.curl();
    assert!(looks_served(&page), "the source's guest still serves curl:\n{page}");
    assert_eq!(ctl_json(&socket, &["status"])["state"], "running");
    here.signal("TERM");
    let _ = here.end();
}

#[test]
fn one_guest_of_a_group_migrates_through_its_own_socket_and_the_others_run_on() {
    if !network_tests_possible() {
        return;
    }
    let tap = "hvtapg0";
    let ns = match Namespace::make("group", tap) {
        Ok(ns) => ns,
        Err(why) => {
            eprintln!("SKIPPED: this test needs root and iproute2 to make a network namespace: {why}");
            return;
        }
    };
    let port = 40_000 + (std::process::id() + 13) % 20_000;
    let destination = format!("127.0.0.1:{port}");
    let mut there = Background::spawn(ns.command(env!("CARGO_BIN_EXE_hv")).args(["run", "--incoming", &destination, "--tap", tap]));
    there.wait_for("waiting for a migrating guest", true);
    let base = common::temp_path("mgroup.sock");
    let socket = |guest: &str| base.with_file_name(format!("{}.{guest}.sock", base.file_stem().unwrap().to_string_lossy()));
    let mut group = Background::spawn(ns.command(env!("CARGO_BIN_EXE_hv")).args([
        "run",
        "--control",
        &base.display().to_string(),
        "--guest",
        "net-serve 300",
        "--guest",
        "count 3000 100",
    ]));
    group.wait_for("g0 | net-serve: answering", false);
    group.wait_for("g1: control socket listening", true);

    let moved = ctl_json(&socket("g0"), &["migrate", &destination]);
    assert!(moved["report"]["total_pages"].as_u64().unwrap() > 0, "{moved}");
    there.wait_for("received a guest from", true);
    let page = ns.curl();
    assert!(looks_served(&page), "g0, migrated onto the destination's TAP, serves curl there:\n{page}");
    assert_eq!(ctl_json(&socket("g1"), &["status"])["state"], "running", "g1 runs on in the group");
    group.signal("TERM");
    let (code, stderr) = group.end();
    assert!(stderr.contains("g0: the guest migrated to"), "the group says where g0 went:\n{stderr}");
    assert_eq!(code, 128 + 15, "{stderr}");
    there.signal("TERM");
    let _ = there.end();
}
