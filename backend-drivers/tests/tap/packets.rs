//! Just enough Ethernet, ARP, IPv4 and ICMP, written by hand, for a test thread to play a
//! guest that the host's kernel can ping: answer "who has my address?" and echo
//! requests, and send the odd request of its own.

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const IP_PROTOCOL_ICMP: u8 = 1;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
const ETH_HEADER: usize = 14;

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of
/// the data as big-endian 16-bit words. Over data that holds its own correct checksum,
/// it comes out as zero.
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_HEADER + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// The fields of an IPv4-over-Ethernet ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_mac: [u8; 6],
    pub target_ip: [u8; 4],
}

/// The ARP packet in `frame`, if it is one (Ethernet, IPv4, 28 bytes).
pub fn parse_arp(frame: &[u8]) -> Option<Arp> {
    let p = frame.get(ETH_HEADER..ETH_HEADER + 28)?;
    if be16(frame, 12) != ETHERTYPE_ARP || be16(p, 0) != 1 || be16(p, 2) != ETHERTYPE_IPV4 || p[4] != 6 || p[5] != 4 {
        return None;
    }
    Some(Arp {
        op: be16(p, 6),
        sender_mac: p[8..14].try_into().ok()?,
        sender_ip: p[14..18].try_into().ok()?,
        target_mac: p[18..24].try_into().ok()?,
        target_ip: p[24..28].try_into().ok()?,
    })
}

fn arp_frame(eth_dst: [u8; 6], arp: Arp) -> Vec<u8> {
    let mut p = Vec::with_capacity(28);
    p.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    p.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    p.extend_from_slice(&[6, 4]);
    p.extend_from_slice(&arp.op.to_be_bytes());
    p.extend_from_slice(&arp.sender_mac);
    p.extend_from_slice(&arp.sender_ip);
    p.extend_from_slice(&arp.target_mac);
    p.extend_from_slice(&arp.target_ip);
    ethernet(eth_dst, arp.sender_mac, ETHERTYPE_ARP, &p)
}

/// A broadcast "who has `target_ip`? tell `sender_ip`".
pub fn arp_request(sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    arp_frame([0xff; 6], Arp { op: ARP_REQUEST, sender_mac, sender_ip, target_mac: [0; 6], target_ip })
}

/// An ICMP echo message (`kind` request or reply) inside IPv4 inside Ethernet, both
/// checksums computed.
fn icmp_echo(kind: u8, eth: ([u8; 6], [u8; 6]), ip: ([u8; 4], [u8; 4]), id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![kind, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let sum = internet_checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ipv4 = vec![0x45, 0];
    ipv4.extend_from_slice(&total.to_be_bytes());
    ipv4.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, don't fragment
    ipv4.extend_from_slice(&[64, IP_PROTOCOL_ICMP, 0, 0]); // TTL, protocol, checksum slot
    ipv4.extend_from_slice(&ip.0);
    ipv4.extend_from_slice(&ip.1);
    let sum = internet_checksum(&ipv4);
    ipv4[10..12].copy_from_slice(&sum.to_be_bytes());
    ipv4.extend_from_slice(&icmp);
    ethernet(eth.1, eth.0, ETHERTYPE_IPV4, &ipv4)
}

/// An echo request from (`src_mac`, `src_ip`) to (`dst_mac`, `dst_ip`).
pub fn echo_request(src_mac: [u8; 6], src_ip: [u8; 4], dst_mac: [u8; 6], dst_ip: [u8; 4], id: u16, seq: u16) -> Vec<u8> {
    icmp_echo(ICMP_ECHO_REQUEST, (src_mac, dst_mac), (src_ip, dst_ip), id, seq, b"hv switch test payload")
}

/// An ICMP echo message found in a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Echo {
    pub request: bool,
    pub src_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub id: u16,
    pub seq: u16,
    pub payload: Vec<u8>,
}

/// The ICMP echo request or reply in `frame`, if it is one. Panics if a checksum is
/// wrong: the frames come from the host's kernel, whose checksums are right, so a
/// mismatch means [`internet_checksum`] is.
pub fn parse_echo(frame: &[u8]) -> Option<Echo> {
    if frame.len() < ETH_HEADER + 20 || be16(frame, 12) != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[ETH_HEADER..];
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || header_len < 20 || ip[9] != IP_PROTOCOL_ICMP {
        return None;
    }
    let total = usize::from(be16(ip, 2)).min(ip.len());
    let icmp = ip.get(header_len..total)?;
    if icmp.len() < 8 || (icmp[0] != ICMP_ECHO_REQUEST && icmp[0] != ICMP_ECHO_REPLY) {
        return None;
    }
    assert_eq!(internet_checksum(&ip[..header_len]), 0, "IPv4 header checksum of a frame from the kernel");
    assert_eq!(internet_checksum(icmp), 0, "ICMP checksum of a frame from the kernel");
    Some(Echo {
        request: icmp[0] == ICMP_ECHO_REQUEST,
        src_mac: frame[6..12].try_into().ok()?,
        src_ip: ip[12..16].try_into().ok()?,
        dst_ip: ip[16..20].try_into().ok()?,
        id: be16(icmp, 4),
        seq: be16(icmp, 6),
        payload: icmp[8..].to_vec(),
    })
}

/// What a hand-played guest at (`mac`, `ip`) says to `frame`, if anything: an ARP reply
/// to a request for its address, an echo reply to an echo request to it.
pub fn answer(frame: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Option<Vec<u8>> {
    if let Some(arp) = parse_arp(frame) {
        if arp.op == ARP_REQUEST && arp.target_ip == ip {
            let reply = Arp { op: ARP_REPLY, sender_mac: mac, sender_ip: ip, target_mac: arp.sender_mac, target_ip: arp.sender_ip };
            return Some(arp_frame(arp.sender_mac, reply));
        }
        return None;
    }
    let echo = parse_echo(frame)?;
    if !echo.request || echo.dst_ip != ip {
        return None;
    }
    Some(icmp_echo(ICMP_ECHO_REPLY, (mac, echo.src_mac), (ip, echo.src_ip), echo.id, echo.seq, &echo.payload))
}

/// Whether `frame` is an ARP reply.
pub fn is_arp_reply(arp: &Arp) -> bool {
    arp.op == ARP_REPLY
}

/// Whether `frame` is an ARP request.
pub fn is_arp_request(arp: &Arp) -> bool {
    arp.op == ARP_REQUEST
}

#[test]
fn the_checksum_matches_rfc_1071s_example() {
    // RFC 1071 section 3's words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement 220d).
    assert_eq!(internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
    let f = echo_request([2, 0, 0, 0, 0, 1], [10, 0, 0, 3], [2, 0, 0, 0, 0, 2], [10, 0, 0, 1], 7, 9);
    let e = parse_echo(&f).expect("an echo request");
    assert_eq!((e.id, e.seq, e.request), (7, 9, true));
}
