//! A network namespace made for one test and always removed, with a TAP device in it.
//!
//! Everything the tests send stays inside the namespace: its only interfaces are its own
//! loopback and the TAP, whose other end is the switch in this process.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The TAP's name inside each test's namespace.
pub const TAP: &str = "hvtap0";
/// The host's address on the TAP.
pub const HOST_IP: [u8; 4] = [10, 0, 0, 1];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace that `ip netns del` removes when this is dropped, even if the test fails.
pub struct Netns {
    pub name: String,
}

/// Why the TAP tests cannot run here, or `None` if they can.
pub fn missing_requirement() -> Option<String> {
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the `ip` command (iproute2) is not installed".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (no tun module)".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("creating a network namespace and a TAP device needs root".into());
    }
    None
}

/// Skips the test (returns from it, loudly) if the TAP tests cannot run here.
#[macro_export]
macro_rules! require_netns {
    () => {
        if let Some(why) = netns::missing_requirement() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

impl Netns {
    /// A fresh namespace with the loopback up and the TAP [`TAP`] created, given
    /// 10.0.0.1/24 and brought up.
    pub fn with_tap() -> Netns {
        let name = format!("hv-tap-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let created = Command::new("ip").args(["netns", "add", &name]).output().expect("run ip");
        assert!(created.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&created.stderr));
        // From here on, the guard removes it whatever happens.
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns.run(&["ip", "tuntap", "add", "dev", TAP, "mode", "tap"]);
        // IPv4 only: without IPv6 the kernel sends nothing on its own (no router
        // solicitations, no multicast reports), so the switch learns the TAP's address
        // only when a test makes the kernel speak.
        ns.run(&["sh", "-c", &format!("f=/proc/sys/net/ipv6/conf/{TAP}/disable_ipv6; [ ! -e $f ] || echo 1 > $f")]);
        ns.run(&["ip", "addr", "add", "10.0.0.1/24", "dev", TAP]);
        ns.run(&["ip", "link", "set", TAP, "up"]);
        ns
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.name]).args(args).output().expect("run ip netns exec")
    }

    /// Runs a command inside the namespace and fails the test if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(out.status.success(), "in {}: {args:?} failed: {}{}", self.name, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The TAP's own MAC address, as the host's kernel uses it.
    pub fn tap_mac(&self) -> [u8; 6] {
        let text = self.run(&["cat", &format!("/sys/class/net/{TAP}/address")]);
        let mut mac = [0u8; 6];
        let parts: Vec<u8> = text.trim().split(':').map(|h| u8::from_str_radix(h, 16).expect("hex")).collect();
        mac.copy_from_slice(&parts);
        mac
    }

    /// Waits until the TAP is up with its carrier on (`operstate` up), which the kernel
    /// notes shortly after a program attaches the TAP. Until then the kernel drops what
    /// it sends out of the interface (the queueing discipline is not yet started).
    pub fn wait_until_tap_is_up(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let state = self.run(&["cat", &format!("/sys/class/net/{TAP}/operstate")]);
            if state.trim() == "up" {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{TAP} never came up: operstate {}", state.trim());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Runs `f` on a thread that has entered the namespace (`setns`): what it opens,
    /// it opens in there. Only that thread moves; the test's own threads stay put.
    pub fn inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                use std::os::unix::io::AsRawFd;
                // SAFETY: `ns` is an open namespace file for the whole call; setns changes
                // only this thread's network namespace, which no other code relies on.
                let entered = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(entered, 0, "setns into {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("the thread inside the namespace panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match Command::new("ip").args(["netns", "del", &self.name]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("could not remove the network namespace {}: {}", self.name, String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("could not remove the network namespace {}: {e}", self.name),
        }
    }
}

/// The header of `capget`/`capset` (`struct __user_cap_header_struct`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// One 32-bit half of a thread's capability sets (`struct __user_cap_data_struct`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, as two `CapData`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the calling thread's effective capabilities (the permitted set is kept, and
/// only this thread changes): root then acts as an ordinary user towards the kernel.
pub fn drop_effective_capabilities() {
    let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes one header and two data structs, both live and ours.
    let got = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    assert_eq!(got, 0, "capget: {}", std::io::Error::last_os_error());
    for half in &mut data {
        half.effective = 0;
    }
    // SAFETY: capset reads one header and two data structs, both live and ours; pid 0
    // is the calling thread.
    let set = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    assert_eq!(set, 0, "capset: {}", std::io::Error::last_os_error());
}
