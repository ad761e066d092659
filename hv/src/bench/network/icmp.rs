//! hv's own `ping`: ICMP echo requests sent on a raw socket, each round trip timed from
//! the `sendto` to the matching reply (RFC 792's echo, the oldest network benchmark).
//!
//! Why not the system's `ping`: it may be missing, its output is for people (and rounds
//! to microseconds in some versions), and spawning it per series adds a process start
//! to nothing but the first ping. A raw socket (`SOCK_RAW`, `IPPROTO_ICMP`: needs
//! `CAP_NET_RAW`, which the namespace already asks for) gets every ICMP datagram the
//! host receives, IPv4 header included, so the reply is picked out by its identifier,
//! sequence number and payload.
//!
//! A socket belongs to the network namespace of the thread that created it, so
//! [`Pinger::open`] must be called on a thread that entered the benchmark's namespace
//! (`super::namespace`); the socket can be used from any thread afterwards.
//!
//! **The replies are hostile input**: a guest answers the pings, and it chooses every byte
//! of its reply. [`parse_echo_reply`] checks each length before it reads (IPv4 header
//! length, total length, ICMP checksum) and anything else is not a reply. The wait for one
//! reply is bounded by its deadline and by [`MAX_DATAGRAMS_PER_PING`], so a guest that
//! floods the host with ICMP cannot keep the pinger for ever.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// ICMP message types (RFC 792).
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;
/// IP protocol number of ICMP.
const PROTOCOL_ICMP: u8 = 1;
/// An ICMP echo message's header: type, code, checksum, identifier, sequence number.
const ICMP_HEADER: usize = 8;
/// The payload `ping` sends by default (64 bytes with the header).
pub const PAYLOAD_BYTES: usize = 56;
/// Datagrams looked at while waiting for one reply, at most (a guest could flood).
pub const MAX_DATAGRAMS_PER_PING: usize = 10_000;
/// The largest datagram read: an Ethernet frame's worth; longer ones are cut and then fail
/// the length check.
const RECEIVE_BYTES: usize = 2048;

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of
/// the 16-bit big-endian words, an odd last byte padded with zero.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
        // Fold the carry at once: the sum never overflows, however long `bytes` is.
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The payload of request `seq`: a pattern that changes with the sequence number, so a
/// stale reply to an earlier request cannot pass for this one.
pub fn payload(seq: u16) -> [u8; PAYLOAD_BYTES] {
    let mut bytes = [0u8; PAYLOAD_BYTES];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i as u16).wrapping_mul(31).wrapping_add(seq) as u8;
    }
    bytes
}

/// An ICMP echo request (the ICMP message alone: the kernel adds the IPv4 header).
pub fn echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ICMP_HEADER + payload.len());
    message.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(payload);
    let sum = internet_checksum(&message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    message
}

/// An echo reply, as [`parse_echo_reply`] found it.
#[derive(Debug, PartialEq, Eq)]
pub struct EchoReply<'a> {
    /// Who sent it.
    pub from: Ipv4Addr,
    /// The identifier of the request it answers.
    pub id: u16,
    /// Its sequence number.
    pub seq: u16,
    /// The payload it echoes.
    pub payload: &'a [u8],
}

/// The echo reply in `datagram` (an IPv4 datagram as a raw socket delivers it, header
/// included), or `None` if it is anything else or malformed: too short, not IPv4, a header
/// length out of range, a total length past what arrived, another protocol, a fragment,
/// another ICMP type, a bad checksum.
pub fn parse_echo_reply(datagram: &[u8]) -> Option<EchoReply<'_>> {
    let first = *datagram.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || datagram.len() < header_len {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    // More fragments, or a fragment offset: only whole datagrams are echo replies here.
    let fragment = u16::from_be_bytes([datagram[6], datagram[7]]) & 0x3fff;
    if total_len < header_len + ICMP_HEADER || total_len > datagram.len() || datagram[9] != PROTOCOL_ICMP || fragment != 0 {
        return None;
    }
    let message = &datagram[header_len..total_len];
    if message[0] != ECHO_REPLY || message[1] != 0 || internet_checksum(message) != 0 {
        return None;
    }
    Some(EchoReply {
        from: Ipv4Addr::new(datagram[12], datagram[13], datagram[14], datagram[15]),
        id: u16::from_be_bytes([message[4], message[5]]),
        seq: u16::from_be_bytes([message[6], message[7]]),
        payload: &message[ICMP_HEADER..],
    })
}

/// Why a series of pings stopped.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The raw socket could not be made (not root: it needs `CAP_NET_RAW`).
    #[error("cannot open a raw ICMP socket (needs root, CAP_NET_RAW): {0}")]
    Socket(io::Error),
    /// Sending or waiting failed.
    #[error("ping {to}: {source}")]
    Io {
        /// The address pinged.
        to: Ipv4Addr,
        /// What the kernel said.
        source: io::Error,
    },
    /// Stopped by Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

/// A raw ICMP socket and the identifier its requests carry.
pub struct Pinger {
    socket: OwnedFd,
    id: u16,
    next_seq: u16,
}

/// One series: the round trips of the replies received, and how many requests went out.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Round trips, in nanoseconds, in the order measured.
    pub round_trips_ns: Vec<f64>,
    /// Requests sent (those without a reply before their deadline are lost).
    pub sent: usize,
}

impl Pinger {
    /// Opens the socket, in the calling thread's network namespace.
    pub fn open() -> Result<Pinger, PingError> {
        // SAFETY: socket(2) takes no pointers; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
        if fd < 0 {
            return Err(PingError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a descriptor socket(2) just returned, owned by nobody else.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        // Two pingers in one process (or two hv) must not take each other's replies.
        let id = (std::process::id() as u16) ^ (fd as u16).rotate_left(8);
        Ok(Pinger { socket, id, next_seq: 0 })
    }

    /// `count` pings to `to`, one after the other, each waiting up to `timeout` for its
    /// reply; `interrupted` is asked before each.
    pub fn series(&mut self, to: Ipv4Addr, count: usize, timeout: Duration, interrupted: &dyn Fn() -> bool) -> Result<Series, PingError> {
        let mut series = Series { round_trips_ns: Vec::with_capacity(count), sent: 0 };
        for _ in 0..count {
            if interrupted() {
                return Err(PingError::Interrupted);
            }
            series.sent += 1;
            if let Some(rtt) = self.ping(to, timeout)? {
                series.round_trips_ns.push(rtt.as_nanos() as f64);
            }
        }
        Ok(series)
    }

    /// One ping: its round trip, or `None` if no reply came within `timeout`.
    pub fn ping(&mut self, to: Ipv4Addr, timeout: Duration) -> Result<Option<Duration>, PingError> {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let expected = payload(seq);
        let request = echo_request(self.id, seq, &expected);
        let io_error = |source| PingError::Io { to, source };
        let started = Instant::now();
        self.send(&request, to).map_err(io_error)?;
        let deadline = started + timeout;
        let mut buffer = [0u8; RECEIVE_BYTES];
        for _ in 0..MAX_DATAGRAMS_PER_PING {
            let Some(len) = self.receive(&mut buffer, deadline).map_err(io_error)? else { return Ok(None) };
            let arrived = started.elapsed();
            let ours = parse_echo_reply(&buffer[..len]).is_some_and(|r| r.from == to && r.id == self.id && r.seq == seq && r.payload == expected);
            if ours {
                return Ok(Some(arrived));
            }
        }
        Ok(None)
    }

    fn send(&self, message: &[u8], to: Ipv4Addr) -> io::Result<()> {
        // SAFETY: sockaddr_in is plain data; all-zero is a valid value to fill in.
        let mut address: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        address.sin_family = libc::AF_INET as libc::sa_family_t;
        address.sin_addr.s_addr = u32::from_ne_bytes(to.octets());
        // SAFETY: `message` and `address` are live for the call and their lengths are
        // theirs; the kernel only reads them.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&address as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        match sent {
            n if n < 0 => Err(io::Error::last_os_error()),
            n if n as usize != message.len() => Err(io::Error::other(format!("sent {n} of {} bytes", message.len()))),
            _ => Ok(()),
        }
    }

    /// The next datagram into `buffer` (its length), or `None` at `deadline`.
    fn receive(&self, buffer: &mut [u8], deadline: Instant) -> io::Result<Option<usize>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut poll = libc::pollfd { fd: self.socket.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // Rounded up: a wait of 0 ms would spin until the deadline.
            let millis = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd, live for the call.
            let ready = unsafe { libc::poll(&mut poll, 1, millis) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if ready == 0 {
                continue;
            }
            // SAFETY: `buffer` is writable for its length for the duration of the call.
            let got = unsafe { libc::recv(self.socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), libc::MSG_DONTWAIT) };
            if got < 0 {
                let e = io::Error::last_os_error();
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
                    continue;
                }
                return Err(e);
            }
            return Ok(Some(got as usize));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 datagram from `from` carrying `message` (checksum of the IP header left 0:
    /// the parser does not need it, the kernel checked it).
    fn datagram(from: [u8; 4], message: &[u8]) -> Vec<u8> {
        let total = (20 + message.len()) as u16;
        let mut d = vec![0x45, 0];
        d.extend_from_slice(&total.to_be_bytes());
        d.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTOCOL_ICMP, 0, 0]);
        d.extend_from_slice(&from);
        d.extend_from_slice(&[10, 0, 0, 1]);
        d.extend_from_slice(message);
        d
    }

    /// The reply a correct peer sends to `request`: type 0, checksum redone.
    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut r = request.to_vec();
        r[0] = ECHO_REPLY;
        r[2..4].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&r);
        r[2..4].copy_from_slice(&sum.to_be_bytes());
        r
    }

    #[test]
    fn the_checksum_is_rfc_1071s() {
        // RFC 1071's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
        // An odd length is padded with a zero byte.
        assert_eq!(internet_checksum(&[0x01]), !0x0100);
        // A message with its checksum filled in sums to zero.
        assert_eq!(internet_checksum(&echo_request(7, 9, &payload(9))), 0);
    }

    #[test]
    fn a_reply_to_our_request_parses_back() {
        let request = echo_request(0x1234, 5, &payload(5));
        let d = datagram([10, 0, 0, 2], &reply_to(&request));
        let reply = parse_echo_reply(&d).expect("a reply");
        assert_eq!(reply.from, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!((reply.id, reply.seq), (0x1234, 5));
        assert_eq!(reply.payload, &payload(5)[..]);
        assert_ne!(payload(5), payload(6), "each request's payload is its own");
    }

    #[test]
    fn our_own_request_is_not_a_reply() {
        // On loopback the raw socket sees the request too.
        let d = datagram([127, 0, 0, 1], &echo_request(1, 1, &payload(1)));
        assert_eq!(parse_echo_reply(&d), None);
    }

    #[test]
    fn hostile_replies_that_lie_about_their_lengths_are_not_replies() {
        let good = datagram([10, 0, 0, 2], &reply_to(&echo_request(1, 2, &payload(2))));
        assert!(parse_echo_reply(&good).is_some());
        assert_eq!(parse_echo_reply(&[]), None);
        assert_eq!(parse_echo_reply(&good[..19]), None, "shorter than an IPv4 header");
        let mut d = good.clone();
        d[0] = 0x4f; // a 60-byte header: past the end of a 20-byte one, into the ICMP bytes
        assert_eq!(parse_echo_reply(&d[..40]), None);
        d[0] = 0x44; // 16 bytes: below IPv4's minimum
        assert_eq!(parse_echo_reply(&d), None);
        let mut d = good.clone();
        d[2..4].copy_from_slice(&u16::MAX.to_be_bytes()); // total length past what arrived
        assert_eq!(parse_echo_reply(&d), None);
        d[2..4].copy_from_slice(&27u16.to_be_bytes()); // shorter than an ICMP header
        assert_eq!(parse_echo_reply(&d), None);
        let mut d = good.clone();
        d[0] = 0x65; // IPv6's version in an IPv4 field
        assert_eq!(parse_echo_reply(&d), None);
    }

    #[test]
    fn hostile_replies_with_a_bad_checksum_or_type_or_protocol_are_not_replies() {
        let good = datagram([10, 0, 0, 2], &reply_to(&echo_request(1, 2, &payload(2))));
        let mut d = good.clone();
        d[30] ^= 0xff; // a payload byte changed, checksum not
        assert_eq!(parse_echo_reply(&d), None);
        let mut d = good.clone();
        d[9] = 6; // TCP
        assert_eq!(parse_echo_reply(&d), None);
        let mut d = good.clone();
        d[6] = 0x20; // more fragments
        assert_eq!(parse_echo_reply(&d), None);
        let mut message = reply_to(&echo_request(1, 2, &payload(2)));
        message[0] = 3; // destination unreachable
        message[2..4].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(parse_echo_reply(&datagram([10, 0, 0, 2], &message)), None);
    }

    #[test]
    fn a_datagram_with_trailing_bytes_is_read_to_its_total_length() {
        // Ethernet pads short frames; the IPv4 total length says where the message ends.
        let mut d = datagram([10, 0, 0, 2], &reply_to(&echo_request(1, 2, &payload(2))));
        d.extend_from_slice(&[0; 6]);
        assert_eq!(parse_echo_reply(&d).expect("a reply").payload.len(), PAYLOAD_BYTES);
    }
}
