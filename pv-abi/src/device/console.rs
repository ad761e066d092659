//! The console device: text from the guest to hv's standard output.
//!
//! Each request carries up to [`CONSOLE_CHUNK`] bytes inline (no grants: the data is
//! in the ring slot itself). A chunk holds a whole line of the guest's console buffer,
//! so a printed line is exactly one request: one doorbell, one response, one upcall. The backend writes them out in ring order, so output order
//! is preserved across requests, and answers each with a response carrying the same
//! `id` and the number of bytes written. A frontend with more to say than the ring holds
//! waits for responses to free slots: nothing is dropped.

use super::{le_u32, le_u64};
use crate::ring::RingEntry;

/// Bytes of text one request carries: a request is then 256 bytes, the ring's largest
/// entry, and the console ring has 8 slots.
pub const CONSOLE_CHUNK: usize = 240;

/// One chunk of console output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleRequest {
    /// Chosen by the frontend, echoed in the response.
    pub id: u64,
    /// Valid bytes in `bytes` (a hostile frontend may send more than CONSOLE_CHUNK).
    pub len: u32,
    /// The text.
    pub bytes: [u8; CONSOLE_CHUNK],
}

/// The answer to a [`ConsoleRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsoleResponse {
    /// The request's id.
    pub id: u64,
    /// Bytes written (>= 0), or a negative error: [`CONSOLE_EINVAL`].
    pub status: i32,
}

/// Status for a request whose `len` is larger than [`CONSOLE_CHUNK`].
pub const CONSOLE_EINVAL: i32 = -22;

impl RingEntry for ConsoleRequest {
    // id (8) + len (4) + reserved (4) + bytes.
    const SIZE: usize = 16 + CONSOLE_CHUNK;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.len.to_le_bytes());
        out[12..16].fill(0);
        out[16..16 + CONSOLE_CHUNK].copy_from_slice(&self.bytes);
    }

    fn decode(b: &[u8]) -> Self {
        let mut bytes = [0u8; CONSOLE_CHUNK];
        bytes.copy_from_slice(&b[16..16 + CONSOLE_CHUNK]);
        ConsoleRequest { id: le_u64(b, 0), len: le_u32(b, 8), bytes }
    }
}

impl RingEntry for ConsoleResponse {
    const SIZE: usize = 16;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.status.to_le_bytes());
        out[12..16].fill(0);
    }

    fn decode(b: &[u8]) -> Self {
        ConsoleResponse { id: le_u64(b, 0), status: le_u32(b, 8) as i32 }
    }
}

impl ConsoleRequest {
    /// A request for up to CONSOLE_CHUNK bytes of `text` (the rest is ignored).
    pub fn new(id: u64, text: &[u8]) -> Self {
        let n = text.len().min(CONSOLE_CHUNK);
        let mut bytes = [0u8; CONSOLE_CHUNK];
        bytes[..n].copy_from_slice(&text[..n]);
        ConsoleRequest { id, len: n as u32, bytes }
    }

    /// The text, or `None` if `len` is out of range.
    pub fn text(&self) -> Option<&[u8]> {
        self.bytes.get(..self.len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_request_lengths_are_caught_and_requests_round_trip() {
        let r = ConsoleRequest::new(9, b"hello");
        let mut buf = [0u8; ConsoleRequest::SIZE];
        r.encode(&mut buf);
        let d = ConsoleRequest::decode(&buf);
        assert_eq!(d, r);
        assert_eq!(d.text(), Some(&b"hello"[..]));
        buf[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(ConsoleRequest::decode(&buf).text(), None);
    }
}
