//! A host TAP device as one more switch port: how the host's own network stack, and its
//! ordinary tools (`ping`, `curl`), reach hv's guests.
//!
//! A **TAP** device is a network interface whose "wire" is a file descriptor: every
//! Ethernet frame the host's kernel sends out of the interface can be read from the
//! descriptor, and every frame written to the descriptor arrives at the kernel as if the
//! interface had received it. (A TUN device is the same one layer up, carrying IP
//! packets; a switch needs whole frames, so TAP.) In Xen's picture, the TAP plays the
//! part of the physical NIC plugged into dom0's bridge.
//!
//! hv **attaches an existing TAP**, created by the user beforehand (`ip tuntap add dev
//! NAME mode tap`), rather than creating one: creating interfaces needs `CAP_NET_ADMIN`,
//! which hv must not have (docs/security.md), while a TAP created with `user NAME` may be
//! attached by that user without privileges. [`TapDevice::open`] opens `/dev/net/tun`
//! and binds the descriptor to the device with the `TUNSETIFF` ioctl, asking for a TAP
//! without the 4-byte packet-information prefix (`IFF_TAP | IFF_NO_PI`), non-blocking.
//! `TUNSETIFF` would *create* a missing device if it could, so the device is looked up
//! first, and again after attaching, to be sure it is the one that was there.
//!
//! [`TapPort`] is the thread that carries frames both ways. It sleeps in `epoll` on the
//! TAP's descriptor, the switch port's `ready` eventfd and a stop eventfd; per wake-up
//! it moves at most [`FRAMES_PER_WAKE`] frames each way, so a busy direction cannot
//! starve the other or the stop request. The host's kernel is trusted more than a guest
//! but its frames are still checked: one larger than 1514 bytes (a TAP whose MTU was
//! raised) is dropped and counted, not truncated.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::frame_port::{FramePort, MAX_FRAME_BYTES, MIN_FRAME_BYTES};
use crate::runner::ThreadSetup;

/// Frames moved each way per wake-up of the TAP thread.
pub const FRAMES_PER_WAKE: usize = 64;

/// The largest frame a TAP can hand over: its MTU is at most 65535, plus the Ethernet
/// header and a VLAN tag. Reading into a smaller buffer would truncate an oversized
/// frame silently instead of letting it be counted.
const READ_BUFFER_BYTES: usize = 65_535 + 14 + 4;

/// The clone device every TUN/TAP descriptor is opened from.
const TUN_CLONE_DEVICE: &str = "/dev/net/tun";

/// Why a TAP device could not be attached. Each message names the device and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error("{name:?} is not a network interface name: it must be 1 to 15 bytes, without '/', ':', spaces or NUL, and not \".\" or \"..\"")]
    BadName {
        /// The name given.
        name: String,
    },
    /// No interface of that name in this network namespace.
    #[error("there is no network interface named {name} here; create the TAP first with `ip tuntap add dev {name} mode tap user $USER` and `ip link set {name} up` (in the network namespace hv runs in)")]
    NoSuchDevice {
        /// The name given.
        name: String,
    },
    /// The interface exists but is not a TAP device.
    #[error("the network interface {name} is not a TAP device (it is a TUN device or another kind of interface); give the name of a device made with `ip tuntap add dev NAME mode tap`")]
    NotATap {
        /// The name given.
        name: String,
    },
    /// The user may not attach it.
    #[error("permission denied attaching the TAP device {name}: create it for hv's user (`ip tuntap add dev {name} mode tap user $USER`), or run with CAP_NET_ADMIN")]
    PermissionDenied {
        /// The name given.
        name: String,
    },
    /// Another program has it attached.
    #[error("the TAP device {name} is in use by another program (only one may attach it); stop that program or make another TAP")]
    Busy {
        /// The name given.
        name: String,
    },
    /// The TUN/TAP driver is not there.
    #[error("{TUN_CLONE_DEVICE} is missing, so TAP devices cannot be opened: load the tun module (`modprobe tun`)")]
    NoTunDriver,
    /// Anything else, with the step that failed.
    #[error("cannot attach the TAP device {name}: {what}: {source}")]
    Io {
        /// The name given.
        name: String,
        /// The step that failed.
        what: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// An attached TAP device: a non-blocking descriptor that reads and writes its frames.
pub struct TapDevice {
    file: File,
    name: String,
}

/// The interface index of `name` in this thread's network namespace, if it exists.
fn interface_index(name: &CString) -> Option<u32> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the function
    // only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Linux's rule for interface names (`dev_valid_name`).
fn valid_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

impl TapDevice {
    /// Attaches the existing TAP device `name` (in the calling thread's network
    /// namespace), non-blocking, frames without a packet-information prefix.
    pub fn open(name: &str) -> Result<TapDevice, TapError> {
        if !valid_interface_name(name) {
            return Err(TapError::BadName { name: name.to_string() });
        }
        let c_name = CString::new(name).map_err(|_| TapError::BadName { name: name.to_string() })?;
        let Some(index_before) = interface_index(&c_name) else {
            return Err(TapError::NoSuchDevice { name: name.to_string() });
        };
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(TUN_CLONE_DEVICE).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => TapError::NoTunDriver,
            io::ErrorKind::PermissionDenied => TapError::PermissionDenied { name: name.to_string() },
            _ => TapError::Io { name: name.to_string(), what: "opening /dev/net/tun", source: e },
        })?;

        // SAFETY: `ifreq` is plain data (bytes, integers, pointers in a union) for which
        // all zeros is a valid value: an empty name and no flags.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // The name is shorter than IFNAMSIZ (checked above), so the last byte stays NUL.
        request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, and `request` is one, live
        // and exclusively borrowed for the call; the descriptor is ours and open.
        let result = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut request as *mut libc::ifreq) };
        if result < 0 {
            let e = io::Error::last_os_error();
            let name = name.to_string();
            return Err(match e.raw_os_error() {
                // The kernel's answer when the interface exists but is not a TAP.
                Some(libc::EINVAL) => TapError::NotATap { name },
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::PermissionDenied { name },
                Some(libc::EBUSY) => TapError::Busy { name },
                _ => TapError::Io { name, what: "TUNSETIFF", source: e },
            });
        }
        // If the device vanished between the lookup and the ioctl, a privileged caller has
        // just created a new one of that name (it goes away when `file` closes). Refuse it.
        if interface_index(&c_name) != Some(index_before) {
            return Err(TapError::NoSuchDevice { name: name.to_string() });
        }
        Ok(TapDevice { file, name: name.to_string() })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for TapDevice {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.file.as_raw_fd()
    }
}

/// A TAP port's counters. "From the TAP" is what the host's kernel sent toward the
/// guests; "to the TAP" what the switch delivered to the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames read from the TAP and handed to the switch.
    pub from_tap_frames: u64,
    /// Bytes of those frames.
    pub from_tap_bytes: u64,
    /// Frames written to the TAP.
    pub to_tap_frames: u64,
    /// Bytes of those frames.
    pub to_tap_bytes: u64,
    /// Frames read from the TAP and dropped: longer than 1514 bytes.
    pub dropped_oversize: u64,
    /// Frames read from the TAP and dropped: shorter than an Ethernet header.
    pub dropped_runt: u64,
    /// Frames for the TAP its descriptor refused (the interface is down, or gone).
    pub write_errors: u64,
    /// Reads that failed other than for lack of a frame.
    pub read_errors: u64,
}

#[derive(Default)]
struct TapCounters {
    from_tap_frames: AtomicU64,
    from_tap_bytes: AtomicU64,
    to_tap_frames: AtomicU64,
    to_tap_bytes: AtomicU64,
    dropped_oversize: AtomicU64,
    dropped_runt: AtomicU64,
    write_errors: AtomicU64,
    read_errors: AtomicU64,
}

impl TapCounters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TapStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TapStats {
            from_tap_frames: get(&self.from_tap_frames),
            from_tap_bytes: get(&self.from_tap_bytes),
            to_tap_frames: get(&self.to_tap_frames),
            to_tap_bytes: get(&self.to_tap_bytes),
            dropped_oversize: get(&self.dropped_oversize),
            dropped_runt: get(&self.dropped_runt),
            write_errors: get(&self.write_errors),
            read_errors: get(&self.read_errors),
        }
    }
}

/// The thread that joins a TAP device to a switch port. Stopping it (or dropping it)
/// ends the thread and drops the port, which leaves the switch.
pub struct TapPort {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
    counters: Arc<TapCounters>,
    name: String,
}

const TOKEN_TAP: u64 = 0;
const TOKEN_PORT: u64 = 1;
const TOKEN_STOP: u64 = 2;

impl TapPort {
    /// Starts the thread (named `hv-tap`) carrying frames between `tap` and `port`.
    /// `setup` runs first on that thread, before it touches a frame: the place for hv to
    /// install the thread's seccomp filter. If it fails, the thread says so and ends
    /// (the port then carries nothing).
    pub fn start<P: FramePort + 'static>(tap: TapDevice, port: P, setup: Option<ThreadSetup>) -> io::Result<TapPort> {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let stop_for_thread = stop.try_clone()?;
        let epoll = Epoll::new()?;
        epoll.ctl(ControlOperation::Add, tap.as_raw_fd(), EpollEvent::new(EventSet::IN, TOKEN_TAP))?;
        epoll.ctl(ControlOperation::Add, port.ready().as_raw_fd(), EpollEvent::new(EventSet::IN, TOKEN_PORT))?;
        epoll.ctl(ControlOperation::Add, stop_for_thread.as_raw_fd(), EpollEvent::new(EventSet::IN, TOKEN_STOP))?;
        let counters = Arc::new(TapCounters::default());
        let name = tap.name().to_string();
        let serving = TapLoop { tap, port, epoll, counters: counters.clone(), buffer: vec![0; READ_BUFFER_BYTES], tap_failed: false };
        let thread = std::thread::Builder::new().name("hv-tap".into()).spawn(move || {
            if let Some(Err(e)) = setup.map(|setup| setup()) {
                eprintln!("hv: TAP {}: {e}; the TAP port carries nothing", serving.tap.name);
                return;
            }
            serving.run();
            // The stop eventfd is kept open until the loop ends, so a stop is never lost.
            drop(stop_for_thread);
        })?;
        Ok(TapPort { stop, thread: Some(thread), counters, name })
    }

    /// The TAP device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counters now.
    pub fn stats(&self) -> TapStats {
        self.counters.snapshot()
    }

    /// Ends the thread and returns the final counters.
    pub fn stop(mut self) -> TapStats {
        self.shut_down();
        self.counters.snapshot()
    }

    fn shut_down(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A failed write leaves the counter readable anyway (it is at its maximum).
            let _ = self.stop.write(1);
            // The thread never panics on frames; if it panicked for a bug, hv goes on
            // without the TAP and the message is already on stderr.
            let _ = thread.join();
        }
    }
}

impl Drop for TapPort {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// What the thread owns.
struct TapLoop<P: FramePort> {
    tap: TapDevice,
    port: P,
    epoll: Epoll,
    counters: Arc<TapCounters>,
    buffer: Vec<u8>,
    /// The TAP's descriptor failed for good (the interface was deleted): no more reads.
    tap_failed: bool,
}

impl<P: FramePort> TapLoop<P> {
    fn run(mut self) {
        let mut events = [EpollEvent::default(); 3];
        // Frames left for the TAP after a full burst: poll without sleeping.
        let mut backlog = false;
        loop {
            let ready = match self.epoll.wait(if backlog { 0 } else { -1 }, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("hv: TAP {}: epoll_wait failed ({e}); the TAP port stops", self.tap.name);
                    return;
                }
            };
            for event in &events[..ready] {
                match event.data() {
                    TOKEN_STOP => return,
                    TOKEN_TAP => self.tap_to_switch(),
                    // Reset the signal before taking frames: one queued after this read
                    // signals again.
                    _ => drop(self.port.ready().read()),
                }
            }
            backlog = self.switch_to_tap();
        }
    }

    /// Reads up to [`FRAMES_PER_WAKE`] frames from the TAP into the switch.
    fn tap_to_switch(&mut self) {
        let c = &self.counters;
        for _ in 0..FRAMES_PER_WAKE {
            match (&self.tap.file).read(&mut self.buffer) {
                Ok(n) if n > MAX_FRAME_BYTES => TapCounters::add(&c.dropped_oversize, 1),
                Ok(n) if n < MIN_FRAME_BYTES => TapCounters::add(&c.dropped_runt, 1),
                Ok(n) => {
                    self.port.transmit(&self.buffer[..n]);
                    TapCounters::add(&c.from_tap_frames, 1);
                    TapCounters::add(&c.from_tap_bytes, n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    TapCounters::add(&c.read_errors, 1);
                    // Level-triggered epoll would report the broken descriptor forever:
                    // stop watching it, say so once, and keep serving the stop request.
                    if !self.tap_failed {
                        self.tap_failed = true;
                        eprintln!("hv: TAP {}: reading failed ({e}); no more frames from it", self.tap.name);
                        let _ = self.epoll.ctl(ControlOperation::Delete, self.tap.as_raw_fd(), EpollEvent::default());
                    }
                    return;
                }
            }
        }
    }

    /// Writes up to [`FRAMES_PER_WAKE`] frames from the switch to the TAP; true if more
    /// may be waiting.
    fn switch_to_tap(&mut self) -> bool {
        let c = &self.counters;
        for _ in 0..FRAMES_PER_WAKE {
            let Some(frame) = self.port.receive() else { return false };
            // A TAP takes a whole frame per write or refuses it (down, or deleted): the
            // frame is lost either way, as on a wire with nothing at the other end.
            match (&self.tap.file).write(&frame) {
                Ok(n) if n == frame.len() => {
                    TapCounters::add(&c.to_tap_frames, 1);
                    TapCounters::add(&c.to_tap_bytes, frame.len() as u64);
                }
                Ok(_) | Err(_) => TapCounters::add(&c.write_errors, 1),
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_linuxs_rule() {
        for good in ["tap0", "hv-tap", "a", "fifteen_chars__"] {
            assert!(valid_interface_name(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a\tb", "sixteen_chars___", "x\0y"] {
            assert!(!valid_interface_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn hostile_tap_names_are_refused_before_anything_is_opened() {
        for bad in ["../../etc", "tap0\0evil", "", "a-name-far-too-long-for-linux"] {
            match TapDevice::open(bad) {
                Err(TapError::BadName { name }) => assert_eq!(name, bad),
                other => panic!("{bad:?}: expected BadName, got {:?}", other.map(|t| t.name().to_string())),
            }
        }
    }

    #[test]
    fn a_missing_device_is_named_with_the_command_that_makes_it() {
        let err = TapDevice::open("hvnosuchtap9").err().expect("no such device here");
        let text = err.to_string();
        assert!(matches!(err, TapError::NoSuchDevice { .. }), "{text}");
        assert!(text.contains("hvnosuchtap9") && text.contains("ip tuntap add dev hvnosuchtap9 mode tap"), "{text}");
    }

    #[test]
    fn an_interface_that_is_not_a_tap_is_refused() {
        // Every network namespace has a loopback interface.
        match TapDevice::open("lo") {
            Err(TapError::NotATap { name }) => assert_eq!(name, "lo"),
            Err(TapError::PermissionDenied { .. }) => eprintln!("SKIPPED: not allowed to try TUNSETIFF here"),
            Err(TapError::NoTunDriver) => eprintln!("SKIPPED: no /dev/net/tun here"),
            Err(other) => panic!("expected NotATap, got: {other}"),
            Ok(_) => panic!("lo was attached as a TAP"),
        }
    }
}
