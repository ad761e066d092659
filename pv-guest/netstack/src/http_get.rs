//! A tiny HTTP/1.0 client: sends one request and reads the response to its end.
//!
//! It exists to test and measure the server (`net::http`) from a second interface in
//! the same kernel (`net-selftest`, `net-bench loopback`), so it sends whatever request
//! bytes it is given, malformed ones included, and reports what came back: the status,
//! the body's length, its first bytes, and whether the body is `/big`'s pattern. The
//! response is read as carefully as any input from a network: the head must fit its
//! buffer, and a status line that does not parse is an error.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, Ipv4Address};

use crate::device::FrameIo;
use crate::http::{HTTP_PORT, PATTERN_BLOCK};
use crate::stack::NetStack;

/// The largest request this client sends.
pub const MAX_REQUEST: usize = 2048;
/// The largest response head it accepts.
const MAX_RESPONSE_HEAD: usize = 1024;
/// Body bytes kept for the caller to look at.
pub const BODY_START_BYTES: usize = 1024;
const RX_BUFFER_BYTES: usize = 16384;
const TX_BUFFER_BYTES: usize = MAX_REQUEST;

/// The memory of the client's socket.
pub struct HttpGetBuffers {
    rx: [u8; RX_BUFFER_BYTES],
    tx: [u8; TX_BUFFER_BYTES],
}

impl HttpGetBuffers {
    /// Empty buffers.
    pub const fn new() -> Self {
        HttpGetBuffers { rx: [0; RX_BUFFER_BYTES], tx: [0; TX_BUFFER_BYTES] }
    }
}

impl Default for HttpGetBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetError {
    /// The connection ended before a whole response head arrived.
    NoResponse,
    /// The response head is too long or its status line does not parse.
    BadResponse,
}

/// What came back.
#[derive(Clone, Copy, Debug)]
pub struct HttpResponse {
    /// The status code (200, 404, ...).
    pub status: u16,
    /// Body bytes received.
    pub body_len: u64,
    /// The first body bytes (up to [`BODY_START_BYTES`]).
    pub body_start: [u8; BODY_START_BYTES],
    /// Whether every body byte is `/big`'s pattern at its offset.
    pub is_pattern: bool,
}

impl HttpResponse {
    /// The kept start of the body.
    pub fn body(&self) -> &[u8] {
        &self.body_start[..(self.body_len as usize).min(BODY_START_BYTES)]
    }
}

/// Why a request could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The request is longer than [`MAX_REQUEST`].
    RequestTooLong,
    /// The previous connection has not ended yet.
    Busy,
    /// The connection could not be opened (a bad address or port).
    Connect,
}

/// A client socket and the request it is working on (one at a time).
pub struct HttpClient {
    handle: SocketHandle,
    request: [u8; MAX_REQUEST],
    request_len: usize,
    request_sent: usize,
    head: [u8; MAX_RESPONSE_HEAD],
    head_len: usize,
    response: Option<HttpResponse>,
    /// Whether a request is in progress.
    active: bool,
}

impl HttpClient {
    /// A client on `stack`, with its socket memory in `buffers`.
    pub fn new<'s, F: FrameIo>(stack: &mut NetStack<'s, F>, buffers: &'s mut HttpGetBuffers) -> HttpClient {
        let socket = tcp::Socket::new(tcp::SocketBuffer::new(&mut buffers.rx[..]), tcp::SocketBuffer::new(&mut buffers.tx[..]));
        HttpClient {
            handle: stack.sockets.add(socket),
            request: [0; MAX_REQUEST],
            request_len: 0,
            request_sent: 0,
            head: [0; MAX_RESPONSE_HEAD],
            head_len: 0,
            response: None,
            active: false,
        }
    }

    /// Opens a connection from `local_port` to `server`'s port 80 and queues `request`
    /// (any bytes: a test may send a malformed request on purpose).
    pub fn start<F: FrameIo>(&mut self, stack: &mut NetStack<'_, F>, server: Ipv4Address, local_port: u16, request: &[u8]) -> Result<(), StartError> {
        let to = self.request.get_mut(..request.len()).ok_or(StartError::RequestTooLong)?;
        let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
        if self.active || socket.is_open() {
            return Err(StartError::Busy);
        }
        to.copy_from_slice(request);
        socket.connect(stack.iface.context(), (IpAddress::Ipv4(server), HTTP_PORT), local_port).map_err(|_| StartError::Connect)?;
        self.request_len = request.len();
        self.request_sent = 0;
        self.head_len = 0;
        self.response = None;
        self.active = true;
        Ok(())
    }

    /// Moves the request on; once the connection has ended, returns the response (or
    /// the error that ended it). Call after each poll.
    pub fn step<F: FrameIo>(&mut self, stack: &mut NetStack<'_, F>) -> Option<Result<HttpResponse, GetError>> {
        if !self.active {
            return None;
        }
        let socket = stack.sockets.get_mut::<tcp::Socket>(self.handle);
        if socket.may_send() && self.request_sent < self.request_len {
            self.request_sent += socket.send_slice(&self.request[self.request_sent..self.request_len]).unwrap_or(0);
        }
        // Twice at most: the socket's ring buffer may hand its bytes over in two pieces.
        for _ in 0..2 {
            if !socket.can_recv() {
                break;
            }
            if let Err(e) = self.receive(socket) {
                socket.abort();
                self.active = false;
                return Some(Err(e));
            }
        }
        if socket.state() == tcp::State::CloseWait && !socket.can_recv() {
            // The server has sent all and closed its side, and all of it is read: close ours.
            socket.close();
        }
        if socket.is_open() {
            return None;
        }
        self.active = false;
        Some(self.response.ok_or(GetError::NoResponse))
    }

    /// Takes what the socket has received: the head first, then body bytes.
    fn receive(&mut self, socket: &mut tcp::Socket<'_>) -> Result<(), GetError> {
        let Some(response) = self.response.as_mut() else {
            // Still reading the head: take what fits and look for its end.
            let n = socket.recv_slice(&mut self.head[self.head_len..]).unwrap_or(0);
            self.head_len += n;
            let Some(end) = self.head[..self.head_len].windows(4).position(|w| w == b"\r\n\r\n") else {
                return if self.head_len == MAX_RESPONSE_HEAD { Err(GetError::BadResponse) } else { Ok(()) };
            };
            let status = parse_status(&self.head[..end]).ok_or(GetError::BadResponse)?;
            let mut response = HttpResponse { status, body_len: 0, body_start: [0; BODY_START_BYTES], is_pattern: true };
            take_body(&mut response, &self.head[end + 4..self.head_len]);
            self.response = Some(response);
            return Ok(());
        };
        // The body: consumed in place, as much as the socket holds.
        let _ = socket.recv(|bytes| {
            take_body(response, bytes);
            (bytes.len(), ())
        });
        Ok(())
    }
}

/// Adds `bytes`, the next piece of the body, to `response`.
fn take_body(response: &mut HttpResponse, bytes: &[u8]) {
    let offset = response.body_len;
    if let Ok(start) = usize::try_from(offset) {
        if start < BODY_START_BYTES {
            let n = bytes.len().min(BODY_START_BYTES - start);
            response.body_start[start..start + n].copy_from_slice(&bytes[..n]);
        }
    }
    if response.is_pattern {
        response.is_pattern = matches_pattern(bytes, offset);
    }
    response.body_len += bytes.len() as u64;
}

/// Whether `bytes` is `/big`'s pattern from body offset `offset` on (compared a slice
/// of the repeated pattern at a time).
fn matches_pattern(bytes: &[u8], offset: u64) -> bool {
    let mut done = 0;
    while done < bytes.len() {
        let phase = ((offset + done as u64) % 26) as usize;
        let chunk = (bytes.len() - done).min(PATTERN_BLOCK.len() - phase);
        if bytes[done..done + chunk] != PATTERN_BLOCK[phase..phase + chunk] {
            return false;
        }
        done += chunk;
    }
    true
}

/// The code in a status line `HTTP/1.x NNN reason`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = core::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}
