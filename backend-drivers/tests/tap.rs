//! The switch with a real TAP device and the host kernel's real network stack.
//!
//! Each test makes its own network namespace with a TAP in it (10.0.0.1/24), attaches the
//! TAP from inside the namespace as a switch port, and plays a guest on another port by
//! hand: a thread that answers ARP and ICMP echo with frames built in `tap/packets.rs`.
//! Nothing leaves the namespace, and the namespace is removed even when a test fails.
//! Needs root and `ip` (and `ping` for the ping test); skips loudly otherwise.

#[path = "tap/netns.rs"]
mod netns;
#[path = "tap/packets.rs"]
mod packets;

use std::net::UdpSocket;
use std::os::unix::io::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use backend_drivers::frame_port::{FramePort, MAX_FRAME_BYTES};
use backend_drivers::switch::tap::{TapDevice, TapError, TapPort};
use backend_drivers::switch::{Switch, SwitchConfig, SwitchPort};
use netns::{Netns, HOST_IP, TAP};
use packets::{answer, arp_request, echo_request, is_arp_reply, is_arp_request, parse_arp, parse_echo};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x02];
const GUEST_IP: [u8; 4] = [10, 0, 0, 2];
/// Long enough for the slowest loaded CI machine; the tests normally take milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

/// A guest played by a test thread on one switch port: it records every frame it
/// receives and answers ARP and echo requests for its address.
struct PlayedGuest {
    port: Arc<SwitchPort>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PlayedGuest {
    fn start(port: SwitchPort, mac: [u8; 6], ip: [u8; 4]) -> PlayedGuest {
        let port = Arc::new(port);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, st) = (port.clone(), seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let epoll = Epoll::new().expect("epoll");
            epoll.ctl(ControlOperation::Add, p.ready().as_raw_fd(), EpollEvent::new(EventSet::IN, 0)).expect("watch the port");
            let mut events = [EpollEvent::default(); 1];
            while !st.load(Ordering::Relaxed) {
                if epoll.wait(50, &mut events).unwrap_or(0) > 0 {
                    let _ = p.ready().read();
                }
                while let Some(frame) = p.receive() {
                    if let Some(reply) = answer(&frame, mac, ip) {
                        p.transmit(&reply);
                    }
                    s.lock().unwrap().push(frame);
                }
            }
        });
        PlayedGuest { port, seen, stop, thread: Some(thread) }
    }

    fn send(&self, frame: &[u8]) {
        self.port.transmit(frame);
    }

    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }

    /// The first frame received that `wanted` accepts, waiting up to [`PATIENCE`].
    fn wait_for(&self, what: &str, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        self.ask(None, what, wanted)
    }

    /// Sends `question` (again every quarter second: Ethernet may lose a frame, and the
    /// kernel does when it has just brought the TAP up) until a frame that `wanted`
    /// accepts arrives, within [`PATIENCE`].
    fn ask(&self, question: Option<&[u8]>, what: &str, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + PATIENCE;
        let mut next_send = Instant::now();
        loop {
            if let Some(q) = question.filter(|_| Instant::now() >= next_send) {
                self.send(q);
                next_send = Instant::now() + Duration::from_millis(250);
            }
            if let Some(f) = self.seen().into_iter().find(|f| wanted(f)) {
                return f;
            }
            assert!(Instant::now() < deadline, "the guest port never received {what}; it received {} frames: {:02x?}", self.seen().len(), self.seen());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for PlayedGuest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A namespace with its TAP attached to a new switch's port `tap`.
fn switch_with_tap() -> (Netns, Switch, TapPort) {
    let ns = Netns::with_tap();
    let switch = Switch::new(SwitchConfig::default());
    let tap = ns.inside(|| TapDevice::open(TAP)).unwrap_or_else(|e| panic!("attach {TAP}: {e}"));
    let port = TapPort::start(tap, switch.add_port("tap").expect("eventfd"), None).expect("start the TAP thread");
    ns.wait_until_tap_is_up();
    (ns, switch, port)
}

/// Frames waiting on a port that nobody serves.
fn drain(port: &SwitchPort) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| port.receive()).collect()
}

#[test]
fn host_ping_through_the_tap_is_answered_by_a_guest_port() {
    require_netns!();
    if Command::new("ping").arg("-V").output().is_err() {
        eprintln!("SKIPPED: `ping` is not installed (apt-get install iputils-ping)");
        return;
    }
    let (ns, switch, tap_port) = switch_with_tap();
    let guest = PlayedGuest::start(switch.add_port("guest").expect("eventfd"), GUEST_MAC, GUEST_IP);

    let ping = ns.exec(&["ping", "-c", "3", "-W", "2", "10.0.0.2"]);
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.status.success(), "ping failed:\n{text}{}", String::from_utf8_lossy(&ping.stderr));
    assert!(text.contains("3 received"), "{text}");
    println!("{text}");

    // What the guest saw: the kernel's ARP request, then three echo requests, all from
    // the TAP's address.
    let tap_mac = ns.tap_mac();
    let seen = guest.seen();
    assert!(seen.iter().filter_map(|f| parse_arp(f)).any(|a| is_arp_request(&a) && a.target_ip == GUEST_IP && a.sender_mac == tap_mac));
    let requests: Vec<_> = seen.iter().filter_map(|f| parse_echo(f)).filter(|e| e.request && e.src_ip == HOST_IP && e.src_mac == tap_mac).collect();
    assert_eq!(requests.len(), 3, "{requests:?}");
    let stats = tap_port.stats();
    assert!(stats.from_tap_frames >= 4 && stats.to_tap_frames >= 4, "{stats:?}");
    assert_eq!(stats.write_errors + stats.read_errors + stats.dropped_oversize, 0, "{stats:?}");
    println!("{}", switch.stats());

    // Stopping the TAP port takes it off the switch.
    drop(guest);
    let final_stats = tap_port.stop();
    assert_eq!(final_stats.to_tap_frames, stats.to_tap_frames.max(final_stats.to_tap_frames));
    let names: Vec<String> = switch.stats().ports.into_iter().map(|p| p.name).collect();
    assert_eq!(names, Vec::<String>::new(), "the guest and the TAP ports are gone");
}

#[test]
fn frames_from_the_tap_reach_a_guest_port() {
    require_netns!();
    let (ns, switch, tap_port) = switch_with_tap();
    let guest = PlayedGuest::start(switch.add_port("guest").expect("eventfd"), GUEST_MAC, GUEST_IP);
    let idle = switch.add_port("idle").expect("eventfd");
    // A datagram for an address nobody has: the kernel asks for it with a broadcast.
    ns.inside(|| UdpSocket::bind("10.0.0.1:0").and_then(|s| s.send_to(b"anyone?", "10.0.0.9:9"))).expect("send from the namespace");
    let tap_mac = ns.tap_mac();
    let request = guest.wait_for("the kernel's ARP request for 10.0.0.9", |f| {
        parse_arp(f).is_some_and(|a| is_arp_request(&a) && a.target_ip == [10, 0, 0, 9] && a.sender_ip == HOST_IP && a.sender_mac == tap_mac)
    });
    assert_eq!(request[..6], [0xff; 6], "sent to everyone");
    assert!(drain(&idle).contains(&request), "a broadcast from the TAP is flooded to every guest port");
    assert!(tap_port.stats().from_tap_frames >= 1);
}

#[test]
fn frames_flooded_by_the_switch_reach_the_tap() {
    require_netns!();
    let (ns, switch, tap_port) = switch_with_tap();
    let tap_mac = ns.tap_mac();
    let me = [10, 0, 0, 3];
    let guest = PlayedGuest::start(switch.add_port("guest").expect("eventfd"), GUEST_MAC, me);
    let idle = switch.add_port("idle").expect("eventfd");

    // 1. An unknown unicast destination: the switch has not heard from the TAP's address
    //    (the namespace's TAP speaks IPv4 only and has sent nothing), so the echo request
    //    is flooded: the idle port gets a copy, and the kernel answers it.
    let request = echo_request(GUEST_MAC, me, tap_mac, HOST_IP, 0x4856, 1);
    let reply = guest.ask(Some(&request), "the kernel's echo reply", |f| parse_echo(f).is_some_and(|e| !e.request && e.id == 0x4856 && e.seq == 1 && e.src_mac == tap_mac));
    assert_eq!(reply[..6], GUEST_MAC);
    assert!(drain(&idle).contains(&request), "a frame for an unknown address is flooded");

    // 2. A broadcast: an ARP request for the host's address, answered by the kernel.
    let who_has = arp_request(GUEST_MAC, me, HOST_IP);
    let arp = guest.ask(Some(&who_has), "the kernel's ARP reply", |f| parse_arp(f).is_some_and(|a| is_arp_reply(&a) && a.sender_ip == HOST_IP));
    assert_eq!(parse_arp(&arp).map(|a| a.sender_mac), Some(tap_mac));
    assert!(drain(&idle).contains(&who_has), "a broadcast is flooded");
    let stats = tap_port.stats();
    assert!(stats.to_tap_frames >= 3, "the request, the ARP reply for 10.0.0.3, the ARP request: {stats:?}");
}

#[test]
fn hostile_frames_larger_than_1514_bytes_from_the_tap_are_dropped_and_counted() {
    require_netns!();
    let (ns, switch, tap_port) = switch_with_tap();
    ns.run(&["ip", "link", "set", TAP, "mtu", "9000"]);
    let guest = PlayedGuest::start(switch.add_port("guest").expect("eventfd"), GUEST_MAC, GUEST_IP);
    ns.inside(|| UdpSocket::bind("10.0.0.1:0").and_then(|s| s.send_to(&[0x5a; 8000], "10.0.0.2:9"))).expect("send from the namespace");
    let deadline = Instant::now() + PATIENCE;
    while tap_port.stats().dropped_oversize == 0 {
        assert!(Instant::now() < deadline, "the 8042-byte frame was never dropped: {:?}", tap_port.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(guest.seen().iter().all(|f| f.len() <= MAX_FRAME_BYTES));
    assert!(guest.seen().iter().any(|f| parse_arp(f).is_some()), "the ARP exchange before it went through");
}

#[test]
fn hostile_a_tap_deleted_under_its_port_is_reported_once_and_the_thread_does_not_spin() {
    require_netns!();
    let (ns, switch, tap_port) = switch_with_tap();
    let guest = switch.add_port("guest").expect("eventfd");
    ns.run(&["ip", "link", "del", TAP]);
    // The descriptor now fails every read; epoll reports it as long as it is watched.
    let deadline = Instant::now() + PATIENCE;
    while tap_port.stats().read_errors == 0 {
        assert!(Instant::now() < deadline, "the deleted TAP was never noticed: {:?}", tap_port.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(tap_port.stats().read_errors, 1, "the broken descriptor is no longer watched (no busy loop)");
    // Frames for it are counted as lost; the switch and the thread go on.
    guest.transmit(&arp_request(GUEST_MAC, GUEST_IP, HOST_IP));
    while tap_port.stats().write_errors == 0 {
        assert!(Instant::now() < deadline, "a frame for the deleted TAP was not counted: {:?}", tap_port.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = Instant::now();
    tap_port.stop();
    assert!(stopped.elapsed() < PATIENCE, "the thread stops on request");
    assert_eq!(switch.stats().ports.len(), 1);
}

#[test]
fn a_tun_device_or_a_tap_already_attached_is_refused_with_a_clear_error() {
    require_netns!();
    let (ns, _switch, _tap_port) = switch_with_tap();
    ns.run(&["ip", "tuntap", "add", "dev", "hvtun0", "mode", "tun"]);
    let (tun, busy, missing) = ns.inside(|| (TapDevice::open("hvtun0").err(), TapDevice::open(TAP).err(), TapDevice::open("hvnotap0").err()));
    let tun = tun.expect("a TUN device is not a TAP");
    assert!(matches!(tun, TapError::NotATap { .. }), "{tun}");
    assert!(tun.to_string().contains("hvtun0 is not a TAP device"), "{tun}");
    let busy = busy.expect("the TAP is attached already");
    assert!(matches!(busy, TapError::Busy { .. }), "{busy}");
    assert!(busy.to_string().contains(TAP), "{busy}");
    assert!(matches!(missing, Some(TapError::NoSuchDevice { .. })), "{missing:?}");
}

#[test]
fn without_cap_net_admin_a_tap_made_for_hvs_user_attaches_and_another_users_is_refused() {
    require_netns!();
    let ns = Netns::with_tap();
    ns.run(&["ip", "tuntap", "add", "dev", "hvtapu", "mode", "tap", "user", "65534"]);
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() }.to_string();
    ns.run(&["ip", "tuntap", "add", "dev", "hvtapme", "mode", "tap", "user", &me]);
    let (mine, refused) = ns.inside(|| {
        netns::drop_effective_capabilities();
        (TapDevice::open("hvtapme").map(|t| t.name().to_string()), TapDevice::open("hvtapu").err())
    });
    assert_eq!(mine.expect("a TAP made for this user attaches without privileges"), "hvtapme");
    let refused = refused.expect("root without CAP_NET_ADMIN may not attach another user's TAP");
    assert!(matches!(refused, TapError::PermissionDenied { .. }), "{refused}");
    assert!(refused.to_string().contains("permission denied attaching the TAP device hvtapu"), "{refused}");
}

/// The `rtt min/avg/max/mdev` figures of a `ping -q` summary, in milliseconds.
fn ping_rtt(summary: &str) -> Option<Vec<f64>> {
    let line = summary.lines().find(|l| l.starts_with("rtt") || l.starts_with("round-trip"))?;
    let figures = line.split('=').nth(1)?.trim().trim_end_matches(" ms");
    figures.split('/').map(|f| f.parse().ok()).collect()
}

#[test]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
fn ping_round_trip_through_the_tap_against_loopback() {
    require_netns!();
    let (ns, switch, tap_port) = switch_with_tap();
    let _guest = PlayedGuest::start(switch.add_port("guest").expect("eventfd"), GUEST_MAC, GUEST_IP);
    let ping = |target: &str| {
        let out = ns.run(&["ping", "-q", "-c", "200", "-i", "0.005", "-W", "2", target]);
        ping_rtt(&out).unwrap_or_else(|| panic!("no rtt line in {out}"))
    };
    let loopback = ping("127.0.0.1");
    let tap = ping("10.0.0.2");
    println!(
        "ping, 200 echoes: loopback avg {:.3} ms (min {:.3}); through the TAP, the switch and a port thread answering by hand avg {:.3} ms (min {:.3}): {:.1}x loopback",
        loopback[1], loopback[0], tap[1], tap[0], tap[1] / loopback[1]
    );
    println!("{}", switch.stats());
    println!("{:?}", tap_port.stats());
}
