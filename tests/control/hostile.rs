//! Hostile clients of the control socket. Each test runs a counting guest, attacks the
//! socket, and then checks that the guest did not notice: `status` still answers, and the
//! guest counts to the end without a gap and exits with 0.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::running_hv::{assert_counted, closed_by_server, read_reply, RunningHv};
use crate::{common, require_kvm};

/// Lines the guest prints in these tests, one every [`TICK_MS`]: long enough to outlast
/// the attacks (3 s; [`LINES_LONG`], 8 s, where the test waits for the server's 5 s
/// request timeout).
const LINES: u64 = 150;
const LINES_LONG: u64 = 400;
const TICK_MS: &str = "20";

fn counting_guest() -> RunningHv {
    counting_guest_of(LINES)
}

fn counting_guest_of(lines: u64) -> RunningHv {
    RunningHv::start(&[], &["count", &lines.to_string(), TICK_MS])
}

/// The guest is unharmed: the socket still answers (once the attack's connections are
/// gone: a client that hung up holds its connection thread until its command is done),
/// and the guest counts to the end.
fn assert_unharmed(hv: RunningHv) {
    assert_unharmed_after(hv, LINES);
}

fn assert_unharmed_after(hv: RunningHv, lines: u64) {
    let status = status_when_served(&hv);
    assert_eq!(status["state"], "running");
    let ended = hv.finish();
    assert_eq!(ended.code, 0, "the guest ends normally; stderr: {}", ended.stderr);
    assert!(!ended.stderr.contains("panicked"), "{}", ended.stderr);
    assert_counted(&ended.stdout, lines);
}

/// `status`, retried while every connection thread is busy.
fn status_when_served(hv: &RunningHv) -> Value {
    let start = Instant::now();
    loop {
        let reply = hv.request(r#"{"v":1,"cmd":"status"}"#);
        if reply["ok"] == true {
            return reply;
        }
        assert!(reply["error"].as_str().unwrap_or("").contains("too many control connections"), "status fails: {reply}");
        assert!(start.elapsed() < Duration::from_secs(10), "never served again: {reply}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `bytes` and a newline on `stream`, and returns the error the reply carries.
fn error_for(stream: &mut UnixStream, bytes: &[u8]) -> String {
    stream.write_all(bytes).unwrap();
    stream.write_all(b"\n").unwrap();
    let reply = read_reply(stream);
    assert_eq!(reply["ok"], false, "refused: {reply}");
    reply["error"].as_str().expect("an error message").to_string()
}

#[test]
fn hostile_garbage_wrong_versions_and_wrong_fields_get_errors_on_a_connection_that_stays_open() {
    require_kvm!();
    let hv = counting_guest();
    let mut s = hv.connect();
    let cases: &[(&[u8], &str)] = &[
        (b"hello", "not valid JSON"),
        (b"\xff\xfe{\"v\":1}", "not UTF-8"),
        (b"", "empty request line"),
        (b"[1,2,3]", "must be a JSON object, not an array"),
        (b"{}", "no \"v\" field"),
        (br#"{"v":2,"cmd":"status"}"#, "unsupported protocol version 2 (this hv speaks version 1)"),
        (br#"{"v":"1","cmd":"status"}"#, "unsupported protocol version"),
        (br#"{"v":1}"#, "no \"cmd\" field"),
        (br#"{"v":1,"cmd":42}"#, "\"cmd\" must be a string, not a number"),
        (br#"{"v":1,"cmd":"reboot"}"#, "unknown command 'reboot' (known: pause, resume, status, stats, snapshot, migrate, balloon)"),
        (br#"{"v":1,"cmd":"status","verbose":true}"#, "'status' has no argument \"verbose\" (it takes no arguments)"),
        (br#"{"v":1,"cmd":"pause","for_ms":"soon"}"#, "'pause' has no argument \"for_ms\""),
        (b"{\"v\":1,\"cmd\":\"status\"", "not valid JSON"),
        (b"\x00\x01\x02\x1b[2J", "not valid JSON"),
    ];
    for (bytes, want) in cases {
        let error = error_for(&mut s, bytes);
        assert!(error.contains(want), "for {:?}: {error:?} should say {want:?}", String::from_utf8_lossy(bytes));
    }
    // A long command name is not echoed whole.
    let long = format!("{{\"v\":1,\"cmd\":\"{}\"}}", "x".repeat(10_000));
    assert!(error_for(&mut s, long.as_bytes()).len() < 200);
    // And the same connection still takes a good request.
    s.write_all(b"{\"v\":1,\"cmd\":\"status\"}\n").unwrap();
    assert_eq!(read_reply(&mut s)["ok"], true);
    drop(s);
    assert_unharmed(hv);
}

#[test]
fn hostile_line_over_64_kib_gets_an_error_then_the_connection_closes() {
    require_kvm!();
    let hv = counting_guest();
    let mut s = hv.connect();
    // 1 MiB without a newline: the server must answer long before it could read it all.
    let huge = vec![b'{'; 1 << 20];
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = w.write_all(&huge); // fails once the server closes: that is the point
        })
    };
    let reply = read_reply(&mut s);
    assert_eq!(reply["ok"], false);
    assert!(reply["error"].as_str().unwrap().contains("longer than 65536 bytes"), "{reply}");
    assert!(closed_by_server(&mut s), "the connection is closed after a line over the bound");
    writer.join().unwrap();
    assert_unharmed(hv);
}

#[test]
fn hostile_silent_and_half_line_clients_time_out_while_others_are_served() {
    require_kvm!();
    let hv = counting_guest_of(LINES_LONG);
    let mut silent = hv.connect();
    let mut half = hv.connect();
    half.write_all(br#"{"v":1,"cmd":"sta"#).unwrap();
    // A trickling client: one byte a second never completes a line within the deadline.
    let mut trickle = hv.connect();
    let trickler = {
        let mut t = trickle.try_clone().unwrap();
        std::thread::spawn(move || {
            for b in br#"{"v":1,"cmd":"status"}"# {
                if t.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let start = Instant::now();
    // Meanwhile another client is served at once.
    assert_eq!(hv.request(r#"{"v":1,"cmd":"status"}"#)["ok"], true);
    assert!(start.elapsed() < Duration::from_secs(4), "served while the others wait");
    for stream in [&mut silent, &mut half, &mut trickle] {
        let reply = read_reply(stream);
        assert!(reply["error"].as_str().unwrap().contains("no complete request line within 5 s"), "{reply}");
        assert!(closed_by_server(stream));
    }
    trickler.join().unwrap();
    assert_unharmed_after(hv, LINES_LONG);
}

#[test]
fn hostile_more_clients_than_threads_are_refused_and_the_rest_served() {
    require_kvm!();
    let hv = counting_guest();
    // Eight idle connections hold every connection thread.
    let holders: Vec<UnixStream> = (0..8).map(|_| hv.connect()).collect();
    std::thread::sleep(Duration::from_millis(100)); // let the server accept them all
    let mut ninth = hv.connect();
    let reply = read_reply(&mut ninth);
    assert_eq!(reply["ok"], false);
    assert!(reply["error"].as_str().unwrap().contains("too many control connections (at most 8 at once)"), "{reply}");
    assert!(closed_by_server(&mut ninth));
    // A held connection still works.
    let mut holders = holders.into_iter();
    let mut first = holders.next().unwrap();
    let holders_rest: Vec<UnixStream> = holders.collect();
    first.write_all(b"{\"v\":1,\"cmd\":\"status\"}\n").unwrap();
    assert_eq!(read_reply(&mut first)["ok"], true);
    drop(first);
    // Once they hang up, new clients are served again.
    drop(holders_rest);
    assert_unharmed(hv);
}

#[test]
fn hostile_clients_that_hang_up_mid_command() {
    require_kvm!();
    let hv = counting_guest();
    for i in 0..40 {
        let mut s = hv.connect();
        match i % 4 {
            // A whole request, then gone before the reply.
            0 => s.write_all(b"{\"v\":1,\"cmd\":\"stats\"}\n").unwrap(),
            1 => s.write_all(b"{\"v\":1,\"cmd\":\"status\"}\n").unwrap(),
            // Half a request, then gone.
            2 => s.write_all(br#"{"v":1,"cmd":"sta"#).unwrap(),
            // Connected, then gone.
            _ => {}
        }
        drop(s);
    }
    assert_unharmed(hv);
}

#[test]
fn hostile_many_clients_at_once() {
    require_kvm!();
    let hv = counting_guest();
    let socket = hv.socket.clone();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let (mut answered, mut refused) = (0, 0);
                for _ in 0..10 {
                    let mut s = UnixStream::connect(&socket).expect("connect");
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    let cmd = if i % 2 == 0 { "status" } else { "stats" };
                    // A refused client may find the connection closed before it writes.
                    let _ = s.write_all(format!("{{\"v\":1,\"cmd\":\"{cmd}\"}}\n").as_bytes());
                    let reply: Value = read_reply(&mut s);
                    if reply["ok"] == true {
                        answered += 1;
                    } else {
                        assert!(reply["error"].as_str().unwrap().contains("too many control connections"), "{reply}");
                        refused += 1;
                    }
                }
                (answered, refused)
            })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for c in clients {
        let (a, r) = c.join().expect("client thread");
        answered += a;
        refused += r;
    }
    assert_eq!(answered + refused, 160);
    assert!(answered >= 8, "most clients are served ({answered} answered, {refused} refused)");
    eprintln!("many clients: {answered} answered, {refused} refused (over the limit of 8 at once)");
    assert_unharmed(hv);
}

#[test]
fn hostile_ctl_arguments_never_reach_the_server() {
    require_kvm!();
    let hv = counting_guest();
    let socket = hv.socket.display().to_string();
    for args in [vec!["stats", "--all"], vec!["pause", "now"], vec!["--json", "reboot"]] {
        let mut all = vec!["ctl", socket.as_str()];
        all.extend(args.iter().copied());
        let out = common::hv(&all);
        out.expect_code(1);
        out.expect(out.stderr.starts_with("hv ctl: error: "), "one error line");
    }
    // A command the server refuses: with --json, the reply itself on stdout, and exit 1.
    let out = common::hv(&["ctl", "--json", socket.as_str(), "snapshot", "/nonexistent-dir/x.snap"]);
    out.expect_code(1);
    let reply: Value = serde_json::from_str(out.stdout.trim()).expect("the JSON reply");
    assert_eq!(reply["ok"], false);
    out.expect(out.stderr.starts_with("hv ctl: error: snapshot: "), "and the error on stderr");
    assert_unharmed(hv);
}

#[test]
fn hostile_snapshot_requests_fail_and_the_guest_runs_on() {
    require_kvm!();
    let hv = counting_guest();
    let mut s = hv.connect();
    let cases: &[(&[u8], &str)] = &[
        (br#"{"v":1,"cmd":"snapshot"}"#, "'snapshot' needs \"file\""),
        (br#"{"v":1,"cmd":"snapshot","file":7}"#, "\"file\" must be a string (a file name), not a number"),
        (br#"{"v":1,"cmd":"snapshot","file":"/x","stop":"yes"}"#, "\"stop\" must be a boolean, not a string"),
        (br#"{"v":1,"cmd":"snapshot","file":"/nonexistent-dir/x.snap"}"#, "snapshot: "),
        (br#"{"v":1,"cmd":"snapshot","file":"/nonexistent-dir/x.snap","stop":true}"#, "snapshot: "),
    ];
    for (bytes, want) in cases {
        let error = error_for(&mut s, bytes);
        assert!(error.contains(want), "for {:?}: {error:?} should say {want:?}", String::from_utf8_lossy(bytes));
    }
    drop(s);
    // A snapshot that failed with --stop does not stop the guest.
    assert_unharmed(hv);
}
