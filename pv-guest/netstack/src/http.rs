//! A tiny HTTP/1.0 server: `GET /` answers a page of the guest's own counters (the
//! link's and the server's, then whatever lines its owner adds: [`AboutPage`]),
//! `GET /big?bytes=N` answers N bytes of a known pattern (the throughput benchmark's
//! large response), anything else an error status. One connection at a time.
//!
//! HTTP/1.0 is the simplest protocol a real client speaks: the client sends a request
//! head (a request line, header lines, an empty line), the server sends a status line,
//! headers, an empty line and the body, then closes the connection. No keep-alive, no
//! chunking: `Content-Length` and the close say where the body ends.
//!
//! The request comes from the network, so the server assumes nothing about it: the
//! head must fit [`MAX_REQUEST_HEAD`] bytes (else 431), the request line must have three
//! parts and a version `HTTP/1.x` (else 400), the method must be GET (else 405), the
//! size asked of `/big` is bounded by [`MAX_BIG_BYTES`] (else 400). Every answer ends
//! the connection, so a client cannot hold the server with a slow endless request.

use core::fmt::Write;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;

use crate::device::FrameIo;
use crate::stack::NetStack;

/// The port the server listens on.
pub const HTTP_PORT: u16 = 80;
/// The largest request head accepted, in bytes.
pub const MAX_REQUEST_HEAD: usize = 1024;
/// The most bytes `/big` serves in one response (1 GiB).
pub const MAX_BIG_BYTES: u64 = 1 << 30;
/// The path prefix of the large response.
const BIG_PREFIX: &str = "/big?bytes=";
/// Room for a response's status line, headers and, for `/`, its page.
const MAX_RESPONSE_HEAD: usize = 2048;
/// The TCP socket's receive and send buffers: the send buffer bounds the bytes in
/// flight (TCP's window), the receive buffer only ever holds a request head.
const RX_BUFFER_BYTES: usize = 2048;
const TX_BUFFER_BYTES: usize = 16384;
/// How long a client may take to send its request head, from the connection's start:
/// a client that connects and says nothing must not hold the one connection for ever.
const REQUEST_TIMEOUT_US: u64 = 5_000_000;
/// How long TCP waits for an acknowledgement of data sent before giving the
/// connection up (a client that stops reading mid-response).
const ACK_TIMEOUT_S: u64 = 10;

/// `/big`'s body: byte i is `BIG_PATTERN[i % 26]`, so a client can check every byte.
pub const BIG_PATTERN: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
/// The pattern repeated, to fill send buffers by copying slices (ring-0 code pays per
/// instruction: one copy per chunk, not a loop per byte).
const PATTERN_REPEATS: usize = 64;
pub(super) const PATTERN_BLOCK: [u8; 26 * PATTERN_REPEATS] = {
    let mut block = [0u8; 26 * PATTERN_REPEATS];
    let mut i = 0;
    while i < block.len() {
        block[i] = BIG_PATTERN[i % 26];
        i += 1;
    }
    block
};

/// The memory of the server's socket (kept outside the stack so it can live in a static).
pub struct HttpBuffers {
    rx: [u8; RX_BUFFER_BYTES],
    tx: [u8; TX_BUFFER_BYTES],
}

impl HttpBuffers {
    /// Empty buffers.
    pub const fn new() -> Self {
        HttpBuffers { rx: [0; RX_BUFFER_BYTES], tx: [0; TX_BUFFER_BYTES] }
    }
}

impl Default for HttpBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the current connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Collecting the request head.
    Reading,
    /// Sending the response head, then `body_left` bytes of pattern.
    Sending,
    /// Response sent and the connection closed from our side; waiting for it to end.
    Closing,
}

/// What the server has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Responses with status 200.
    pub ok: u64,
    /// Responses with an error status (a bad, unknown or oversized request).
    pub refused: u64,
}

/// Writes the lines the owner of a server adds to its `GET /` page (the kernel adds
/// its own counters; the ring-3 network task says where it runs).
pub type AboutPage = fn(&mut dyn Write) -> core::fmt::Result;

/// The server: one listening TCP socket and the state of its connection.
pub struct HttpServer {
    handle: SocketHandle,
    about: AboutPage,
    phase: Phase,
    head: [u8; MAX_REQUEST_HEAD],
    head_len: usize,
    out: [u8; MAX_RESPONSE_HEAD],
    out_len: usize,
    out_sent: usize,
    body_left: u64,
    body_offset: u64,
    /// TSC when the current connection was first seen established (0: none yet).
    connected_at: u64,
    /// Responses so far.
    pub stats: HttpStats,
}

impl HttpServer {
    /// A server on `stack`'s port 80, with its socket memory in `buffers`; `about`
    /// writes the last lines of its `GET /` page.
    pub fn new<'s, F: FrameIo>(stack: &mut NetStack<'s, F>, buffers: &'s mut HttpBuffers, about: AboutPage) -> HttpServer {
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(&mut buffers.rx[..]), tcp::SocketBuffer::new(&mut buffers.tx[..]));
        socket.set_timeout(Some(Duration::from_secs(ACK_TIMEOUT_S)));
        HttpServer {
            handle: stack.sockets.add(socket),
            about,
            phase: Phase::Reading,
            head: [0; MAX_REQUEST_HEAD],
            head_len: 0,
            out: [0; MAX_RESPONSE_HEAD],
            out_len: 0,
            out_sent: 0,
            body_left: 0,
            body_offset: 0,
            connected_at: 0,
            stats: HttpStats::default(),
        }
    }

    /// Moves the connection on as far as the socket allows now; call after each poll.
    pub fn step<F: FrameIo>(&mut self, stack: &mut NetStack<'_, F>) {
        let link = stack.device.counters;
        let clock = stack.clock;
        let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
        if !socket.is_open() {
            // Closed (or in TIME-WAIT): listen for the next client.
            self.phase = Phase::Reading;
            self.head_len = 0;
            self.connected_at = 0;
            // Listening on a fixed port of a closed socket cannot fail.
            let _ = socket.listen(HTTP_PORT);
            return;
        }
        if self.phase == Phase::Reading && socket.is_active() {
            let now = clock.ticks();
            if self.connected_at == 0 {
                self.connected_at = now;
            } else if now.saturating_sub(self.connected_at) > clock.ticks_in(REQUEST_TIMEOUT_US) {
                socket.abort();
                self.stats.refused += 1;
                return;
            }
        }
        if self.phase == Phase::Reading && socket.can_recv() {
            let room = &mut self.head[self.head_len..];
            self.head_len += socket.recv_slice(room).unwrap_or(0);
            let head = &self.head[..self.head_len];
            if head.windows(4).any(|w| w == b"\r\n\r\n") {
                let counters_page = CountersPage { frames_sent: link.sent, frames_received: link.received, stats: self.stats, about: self.about };
                self.respond(&counters_page);
            } else if self.head_len == MAX_REQUEST_HEAD {
                self.error(431, "Request Header Fields Too Large");
            }
        } else if self.phase == Phase::Reading && socket.state() == tcp::State::CloseWait {
            // The client closed its side before finishing its request. (Not
            // `!may_recv()`: that is also true while listening and in SYN-RECEIVED.)
            socket.close();
            self.phase = Phase::Closing;
            return;
        }
        if self.phase == Phase::Sending {
            self.send_some(socket);
        }
    }

    /// Builds the response to the request head in `self.head`.
    fn respond(&mut self, page: &CountersPage) {
        let Some(target) = parse_get(&self.head[..self.head_len]) else {
            return self.error(400, "Bad Request");
        };
        let Ok(target) = target else { return self.error(405, "Method Not Allowed") };
        if target == "/" {
            let mut body = [0u8; MAX_RESPONSE_HEAD / 2];
            let mut w = SliceWriter::new(&mut body);
            let _ = page.write_to(&mut w);
            let body_len = w.len;
            self.head_then(200, "OK", "text/plain", body_len as u64);
            let end = (self.out_len + body_len).min(MAX_RESPONSE_HEAD);
            self.out[self.out_len..end].copy_from_slice(&body[..end - self.out_len]);
            self.out_len = end;
        } else if let Some(count) = target.strip_prefix(BIG_PREFIX) {
            match count.parse::<u64>() {
                Ok(n) if n <= MAX_BIG_BYTES => {
                    self.head_then(200, "OK", "application/octet-stream", n);
                    self.body_left = n;
                }
                _ => return self.error(400, "Bad Request"),
            }
        } else {
            return self.error(404, "Not Found");
        }
        self.stats.ok += 1;
    }

    /// Answers with an error status and a one-line body.
    fn error(&mut self, code: u16, reason: &str) {
        let body_len = reason.len() as u64 + 1;
        self.head_then(code, reason, "text/plain", body_len);
        let mut w = SliceWriter::new(&mut self.out[self.out_len..]);
        let _ = writeln!(w, "{reason}");
        self.out_len += w.len;
        self.stats.refused += 1;
    }

    /// Writes the status line and headers into `out` and starts sending.
    fn head_then(&mut self, code: u16, reason: &str, content_type: &str, content_length: u64) {
        let mut w = SliceWriter::new(&mut self.out);
        let _ = write!(
            w,
            "HTTP/1.0 {code} {reason}\r\nServer: pv-guest\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
        );
        self.out_len = w.len;
        self.out_sent = 0;
        self.body_left = 0;
        self.body_offset = 0;
        self.phase = Phase::Sending;
    }

    /// Sends as much of the response as the socket takes; closes when all is sent.
    fn send_some(&mut self, socket: &mut tcp::Socket<'_>) {
        if self.out_sent < self.out_len {
            self.out_sent += socket.send_slice(&self.out[self.out_sent..self.out_len]).unwrap_or(0);
        }
        while self.out_sent == self.out_len && self.body_left > 0 && socket.can_send() {
            let offset = self.body_offset;
            let left = self.body_left;
            let sent = socket.send(|buffer| {
                let n = fill_pattern(buffer, offset, left);
                (n, n)
            });
            match sent {
                Ok(n) if n > 0 => {
                    self.body_offset += n as u64;
                    self.body_left -= n as u64;
                }
                _ => break,
            }
        }
        if self.out_sent == self.out_len && self.body_left == 0 {
            socket.close();
            self.phase = Phase::Closing;
        }
    }
}

/// Fills the start of `buffer` with up to `left` pattern bytes starting at body offset
/// `offset`; returns how many it wrote.
fn fill_pattern(buffer: &mut [u8], offset: u64, left: u64) -> usize {
    let want = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
    let mut done = 0;
    while done < want {
        let phase = ((offset + done as u64) % 26) as usize;
        let chunk = (want - done).min(PATTERN_BLOCK.len() - phase);
        buffer[done..done + chunk].copy_from_slice(&PATTERN_BLOCK[phase..phase + chunk]);
        done += chunk;
    }
    want
}

/// The target of a `GET` request head: `None` for a malformed request, `Some(Err(()))`
/// for a well-formed one with another method.
fn parse_get(head: &[u8]) -> Option<Result<&str, ()>> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = core::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    Some(if method == "GET" { Ok(target) } else { Err(()) })
}

/// The page `GET /` answers: the link's and the server's counters, then its owner's lines.
struct CountersPage {
    frames_sent: u64,
    frames_received: u64,
    stats: HttpStats,
    about: AboutPage,
}

impl CountersPage {
    fn write_to(&self, w: &mut impl Write) -> core::fmt::Result {
        writeln!(w, "pv-guest: the guest's own counters")?;
        writeln!(w, "frames_sent {}", self.frames_sent)?;
        writeln!(w, "frames_received {}", self.frames_received)?;
        writeln!(w, "http_ok {}", self.stats.ok)?;
        writeln!(w, "http_refused {}", self.stats.refused)?;
        (self.about)(w)
    }
}

/// `core::fmt::Write` into a byte slice; output that does not fit is an error (and cut).
pub struct SliceWriter<'a> {
    buffer: &'a mut [u8],
    /// Bytes written so far.
    pub len: usize,
}

impl<'a> SliceWriter<'a> {
    /// A writer at the start of `buffer`.
    pub fn new(buffer: &'a mut [u8]) -> Self {
        SliceWriter { buffer, len: 0 }
    }
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buffer.len() - self.len;
        let n = s.len().min(room);
        self.buffer[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(core::fmt::Error)
        } else {
            Ok(())
        }
    }
}
