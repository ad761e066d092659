//! `net-selftest`: the network stack proves itself inside this kernel, no device needed.
//!
//! Two smoltcp interfaces, A (the guest's own address) and B (its peer), are joined
//! by the loopback wire. A pings B (ARP first, then ICMP echo: B's interface answers),
//! then fetches pages from B's HTTP server over TCP, then sends it requests no server
//! should accept, and puts malformed frames on the wire at B. Each check prints a line; the last line is
//! `net-selftest: N passed, M failed`, and the exit code is 0 only if none failed.

use smoltcp::iface::SocketStorage;

use super::pair::{self, loopback_get, LoopbackGetError};
use super::ping_series;
use crate::net::device::{FrameIo, MAX_FRAME};
use crate::net::http::{HttpServer, MAX_REQUEST_HEAD};
use crate::net::http_get::{HttpClient, HttpResponse, MAX_REQUEST};
use crate::net::ping::Pinger;
use crate::println;

/// Pings sent in the ping check.
const PINGS: u32 = 3;
/// Bytes asked of `/big`: several windows' worth, so TCP's flow control is exercised.
const BIG_BYTES: u64 = 48 * 1024;
/// How long one request may take, in microseconds (ring 0 may be emulated: generous).
const GET_TIMEOUT_US: u64 = 30_000_000;
/// A's first local port; each request takes the next, so none meets an old connection.
const FIRST_LOCAL_PORT: u16 = 49152;

/// Malformed frames sent at B.
const HOSTILE_FRAMES: usize = 7;

/// A frame of up to a full Ethernet frame's bytes.
struct RawFrame {
    bytes: [u8; MAX_FRAME],
    len: usize,
}

impl RawFrame {
    /// A frame starting with `head`, `len` bytes long (zeros after `head`).
    fn new(head: &[u8], len: usize) -> RawFrame {
        let mut bytes = [0u8; MAX_FRAME];
        let n = head.len().min(MAX_FRAME);
        bytes[..n].copy_from_slice(&head[..n]);
        RawFrame { bytes, len: len.min(MAX_FRAME) }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Frames that are broken at each layer a stack parses, addressed to `mac`.
fn hostile_frames(mac: &[u8]) -> [RawFrame; HOSTILE_FRAMES] {
    let mut eth = [0u8; 14];
    eth[..6].copy_from_slice(&mac[..6]);
    eth[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x66]);
    let with_type = |ethertype: [u8; 2], rest: &[u8], len: usize| {
        let mut head = [0u8; 64];
        head[..12].copy_from_slice(&eth[..12]);
        head[12..14].copy_from_slice(&ethertype);
        head[14..14 + rest.len()].copy_from_slice(rest);
        RawFrame::new(&head[..14 + rest.len()], len)
    };
    const IPV4: [u8; 2] = [0x08, 0x00];
    const ARP: [u8; 2] = [0x08, 0x06];
    [
        // Empty, and shorter than an Ethernet header.
        RawFrame::new(&[], 0),
        RawFrame::new(&eth[..13], 13),
        // IPv4 cut inside its header.
        with_type(IPV4, &[0x45, 0, 0], 17),
        // An IPv4 header claiming 1500 bytes in a 40-byte frame.
        with_type(IPV4, &[0x45, 0, 0x05, 0xdc, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 3], 40),
        // An ICMP echo request with a wrong header checksum.
        with_type(IPV4, &[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0xde, 0xad, 10, 0, 0, 2, 10, 0, 0, 3, 8, 0, 0, 0, 0, 1, 0, 1], 42),
        // ARP with impossible hardware and protocol lengths.
        with_type(ARP, &[0, 1, 8, 0, 0xff, 0xff, 0, 1], 42),
        // A full-size frame of ones: broadcast, unknown EtherType.
        RawFrame::new(&[0xff; 64], MAX_FRAME),
    ]
}

/// Counts and prints the checks.
struct Checks {
    passed: u32,
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: core::fmt::Arguments<'_>) {
        if ok {
            self.passed += 1;
            println!("net-selftest: ok: {name}");
        } else {
            self.failed += 1;
            println!("net-selftest: FAILED: {name}: {detail}");
        }
    }
}

/// A response's status, or 0 for a request that got none.
fn status(result: &Result<HttpResponse, LoopbackGetError>) -> u16 {
    result.as_ref().map_or(0, |r| r.status)
}

/// Whether `body` contains `needle`.
fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

/// `net-selftest`.
pub fn selftest(info: &pv_abi::BootInfo) -> u8 {
    let mut memory = pair::memory();
    let memory = &mut *memory;
    let mut storage_a = [SocketStorage::EMPTY; pair::SOCKETS];
    let mut storage_b = [SocketStorage::EMPTY; pair::SOCKETS];
    let Some((mut a, mut b)) = pair::loopback_stacks(info, &memory.wire, &mut storage_a, &mut storage_b) else { return 1 };
    let peer = b.iface.ipv4_addr().map_or([0; 4], |ip| ip.octets());
    let mut server = HttpServer::new(&mut b, &mut memory.server, crate::net::kernel_about);
    let pinger = Pinger::new(&mut a, &mut memory.ping, peer.into());
    let mut client = HttpClient::new(&mut a, &mut memory.client);
    let mut checks = Checks { passed: 0, failed: 0 };

    let series = ping_series(&mut a, &pinger, peer, PINGS, false, |a| {
        a.poll();
        pair::pump_peer(&mut b, &mut server);
    });
    checks.check("ping: every echo request over the loopback wire is answered", series.received == PINGS as usize, format_args!("{} of {PINGS} replies", series.received));

    // Frames no stack should choke on, straight onto the wire from A's end: B must
    // drop every one and still answer the next ping.
    let b_mac = b.iface.hardware_addr();
    let frames_before = b.device.counters.received;
    for frame in hostile_frames(b_mac.as_bytes()).iter().take(HOSTILE_FRAMES) {
        a.device.io.send(frame.bytes());
        pair::pump_peer(&mut b, &mut server);
    }
    let taken = b.device.counters.received - frames_before;
    let after = ping_series(&mut a, &pinger, peer, 1, false, |a| {
        a.poll();
        pair::pump_peer(&mut b, &mut server);
    });
    checks.check(
        "hostile_frames: malformed frames are taken in and dropped, and the peer still answers ping",
        taken == HOSTILE_FRAMES as u64 && after.received == 1,
        format_args!("{taken} of {HOSTILE_FRAMES} frames taken, {} ping replies after", after.received),
    );

    let mut port = FIRST_LOCAL_PORT;
    // One request from A to B's server, each from a fresh local port.
    macro_rules! get {
        ($request:expr) => {{
            port += 1;
            loopback_get(&mut a, &mut client, &mut b, &mut server, port, $request, GET_TIMEOUT_US)
        }};
    }

    let page = get!(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n");
    let page_ok = page.as_ref().is_ok_and(|r| r.status == 200 && contains(r.body(), b"page_faults ") && contains(r.body(), b"frames_received "));
    checks.check("http: GET / answers 200 with the guest's counters", page_ok, format_args!("{page:?}"));

    let big = get!(b"GET /big?bytes=49152 HTTP/1.0\r\n\r\n");
    let big_ok = big.as_ref().is_ok_and(|r| r.status == 200 && r.body_len == BIG_BYTES && r.is_pattern);
    checks.check(
        "http: GET /big?bytes=49152 answers exactly that many pattern bytes",
        big_ok,
        format_args!("status {}, {} bytes, pattern {}", status(&big), big.as_ref().map_or(0, |r| r.body_len), big.as_ref().is_ok_and(|r| r.is_pattern)),
    );

    let missing = get!(b"GET /nothing-here HTTP/1.0\r\n\r\n");
    checks.check("http: an unknown path answers 404", status(&missing) == 404, format_args!("status {}", status(&missing)));

    let post = get!(b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    checks.check("hostile_http_method: POST answers 405", status(&post) == 405, format_args!("status {}", status(&post)));

    let garbage = get!(b"\xff\xfe BREW /pot HTCPCP/1.0\r\n\r\n");
    checks.check("hostile_http_garbage_request_line: answers 400", status(&garbage) == 400, format_args!("status {}", status(&garbage)));

    let huge_size = get!(b"GET /big?bytes=99999999999999999999 HTTP/1.0\r\n\r\n");
    checks.check("hostile_http_big_size: a size beyond the bound answers 400", status(&huge_size) == 400, format_args!("status {}", status(&huge_size)));

    // A head longer than the server takes, with no end: the server must answer 431 and
    // close, not wait for ever or write past its buffer.
    let mut endless = [b'A'; MAX_REQUEST];
    endless[..4].copy_from_slice(b"GET ");
    let endless_result = get!(&endless[..MAX_REQUEST_HEAD + 512]);
    checks.check("hostile_http_endless_head: a head past the limit answers 431", status(&endless_result) == 431, format_args!("{endless_result:?}"));

    let again = get!(b"GET / HTTP/1.0\r\n\r\n");
    checks.check("http: the server still serves after the hostile requests", status(&again) == 200, format_args!("status {}", status(&again)));
    checks.check(
        "http: the server counted 3 pages served and 5 refusals",
        server.stats.ok == 3 && server.stats.refused == 5,
        format_args!("{:?}", server.stats),
    );

    println!("net-selftest: {} passed, {} failed", checks.passed, checks.failed);
    u8::from(checks.failed != 0)
}
