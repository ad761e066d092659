//! Attaching a host TAP device to hv's virtual switch (what `--tap NAME` does): the
//! TAP becomes one more port, served by a thread of its own under its own seccomp
//! filter, so the host's `ping` and `curl` reach the guests.
//!
//! The TAP is opened here, on the calling thread, before any filter: opening
//! `/dev/net/tun` and the `TUNSETIFF` ioctl are exactly what the TAP thread must not be
//! able to do later (with them, an exploited thread could attach other interfaces).
//! The thread then confines itself (`sandbox::ThreadKind::TapPort`) before it moves
//! a frame; its list is the waits, `read`, `write` and `epoll_ctl`
//! (`hv/src/sandbox/filters.rs`). The switch and the TAP thread are explained in
//! `backend_drivers::switch` and `backend_drivers::switch::tap`.

use backend_drivers::runner::ThreadSetup;
use backend_drivers::switch::tap::{TapDevice, TapError, TapPort};
use backend_drivers::switch::Switch;

use crate::sandbox::{confine_current_thread, ThreadKind};

/// Why a TAP could not be attached to the switch.
#[derive(Debug, thiserror::Error)]
pub enum AttachTapError {
    /// The TAP itself: missing, not a TAP, not allowed, in use (the message says what to do).
    #[error(transparent)]
    Tap(#[from] TapError),
    /// The port's eventfd or the thread could not be created.
    #[error("cannot start the port of the TAP device {name}: {source}")]
    Start {
        /// The TAP's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Attaches the existing TAP device `name` (in hv's network namespace) to `switch` as a
/// port named `tap:NAME`, and starts its thread; with `seccomp`, the thread confines
/// itself before it serves (call `sandbox::prepare` first, as `hv run` does: it keeps
/// the allocator from reading a file on the confined thread). Stopping or dropping the
/// returned [`TapPort`] detaches it.
pub fn attach_tap(switch: &Switch, name: &str, seccomp: bool) -> Result<TapPort, AttachTapError> {
    let tap = TapDevice::open(name)?;
    let start_error = |source| AttachTapError::Start { name: name.to_string(), source };
    let port = switch.add_port(format!("tap:{name}")).map_err(start_error)?;
    let setup = seccomp.then(|| Box::new(|| confine_current_thread(ThreadKind::TapPort).map_err(|e| e.to_string())) as ThreadSetup);
    TapPort::start(tap, port, setup).map_err(start_error)
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::{Duration, Instant};

    use backend_drivers::frame_port::FramePort;
    use backend_drivers::switch::SwitchConfig;

    use super::*;

    /// A network namespace with a TAP `hvtap0` at 10.0.0.1/24, removed when dropped.
    struct Netns(String);

    impl Netns {
        fn ip(&self, args: &[&str]) {
            let out = Command::new("ip").args(["netns", "exec", &self.0, "ip"]).args(args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }

    /// The seccomp mode of the thread named `hv-tap` (2: filtered).
    fn tap_thread_seccomp_mode() -> Option<String> {
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == "hv-tap" {
                let status = std::fs::read_to_string(task.path().join("status")).ok()?;
                return status.lines().find_map(|l| l.strip_prefix("Seccomp:")).map(|m| m.trim().to_string());
            }
        }
        None
    }

    /// Whether a namespace with a TAP can be made here; says why not.
    fn can_make_a_tap() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let can = root && Command::new("ip").arg("-V").output().is_ok() && std::path::Path::new("/dev/net/tun").exists();
        if !can {
            eprintln!("SKIPPED: needs root, `ip` and /dev/net/tun to make a namespace with a TAP");
        }
        can
    }

    const CONFINED_TEST: &str = "devices::tap::tests::a_confined_tap_thread_carries_frames_both_ways";

    #[test]
    fn a_confined_tap_thread_carries_frames_both_ways() {
        if !can_make_a_tap() {
            return;
        }
        crate::sandbox::prepare().expect("seccomp is available");
        let ns = Netns(format!("hv-devtap-{}", std::process::id()));
        assert!(Command::new("ip").args(["netns", "add", &ns.0]).status().expect("ip").success());
        ns.ip(&["tuntap", "add", "dev", "hvtap0", "mode", "tap"]);
        ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "hvtap0"]);
        ns.ip(&["link", "set", "hvtap0", "up"]);

        let switch = Switch::new(SwitchConfig::default());
        let guest = switch.add_port("guest").expect("eventfd");
        let path = format!("/run/netns/{}", ns.0);
        let tap_port = std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).expect("namespace file");
                use std::os::unix::io::AsRawFd;
                // SAFETY: `file` is an open namespace file; only this thread moves.
                assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
                attach_tap(&switch, "hvtap0", true)
            })
            .join()
            .expect("attach thread")
        })
        .expect("attach the TAP");

        // A broadcast ARP request "who has 10.0.0.1? tell 10.0.0.2" from the guest port:
        // the kernel's reply comes back through the confined thread.
        let guest_mac = [0x52, 0x54, 0, 0, 0, 2];
        let mut who_has = vec![0xff; 6];
        who_has.extend_from_slice(&guest_mac);
        who_has.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        who_has.extend_from_slice(&guest_mac);
        who_has.extend_from_slice(&[10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut next_send = Instant::now();
        let reply = loop {
            // Again every quarter second: the kernel drops what it sends for a moment
            // after the TAP is attached (its queueing discipline starts a little later).
            if Instant::now() >= next_send {
                guest.transmit(&who_has);
                next_send = Instant::now() + Duration::from_millis(250);
            }
            if let Some(frame) = guest.receive() {
                if frame.len() >= 42 && frame[12..14] == [0x08, 0x06] && frame[20..22] == [0, 2] {
                    break frame;
                }
            }
            assert!(Instant::now() < deadline, "no ARP reply from the kernel: {:?}", tap_port.stats());
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(reply[28..32], [10, 0, 0, 1], "the host answers for its own address");
        assert_eq!(tap_thread_seccomp_mode().as_deref(), Some("2"), "the TAP thread runs under its filter");
        let stats = tap_port.stop();
        assert!(stats.to_tap_frames >= 1 && stats.from_tap_frames >= 1, "{stats:?}");
        assert_eq!(switch.stats().ports.len(), 1, "only the guest port is left");
    }

    #[test]
    fn hostile_a_tap_thread_making_a_forbidden_call_ends_the_process_with_a_clear_report() {
        if !cfg!(debug_assertions) {
            eprintln!("SKIPPED: the violation hook exists in debug builds only");
            return;
        }
        if !can_make_a_tap() {
            return;
        }
        // The test above, in a child process whose TAP thread opens a socket right after
        // confining itself (the debug-build hook): the filter must end the child.
        let exe = std::env::current_exe().expect("the test binary");
        let child = Command::new(exe)
            .args(["--exact", CONFINED_TEST, "--nocapture", "--test-threads=1"])
            .env("HV_TEST_SECCOMP_VIOLATION", "tap-port")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the child");
        // The child dies before its namespace guard runs: remove the namespace for it.
        let leftover = Netns(format!("hv-devtap-{}", child.id()));
        let out = child.wait_with_output().expect("the child ends");
        drop(leftover);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(i32::from(crate::sandbox::EXIT_SECCOMP)), "{stderr}");
        assert!(stderr.contains("hv: seccomp: the tap port thread made a forbidden system call 41 (socket)"), "{stderr}");
    }
}
