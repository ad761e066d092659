//! The network device: Ethernet frames between the guest and a virtual network, in the
//! style of Xen's `io/netif.h`.
//!
//! ## Two rings, one per direction
//!
//! ```text
//!                       transmit ring (NET_TX_RING_GPA, channel NET_TX_CHANNEL)
//!   guest netfront ── NetTxRequest {id, gref, offset, len} ──────────► netback ──► network port
//!                  ◄── NetTxResponse {id, status} ─────────────────────
//!
//!                       receive ring (NET_RX_RING_GPA, channel NET_RX_CHANNEL)
//!   guest netfront ── NetRxRequest {id, gref}: "here is an empty buffer" ─► netback
//!                  ◄── NetRxResponse {id, offset, status = len or error} ─  ◄── network port
//! ```
//!
//! **Transmit.** The frontend copies a frame into a frame of its own, grants it
//! *read-only*, and sends a [`NetTxRequest`] naming the grant and the bytes inside it
//! (`offset`, `len`). The backend copies the bytes out of the granted frame and hands
//! them to the network; the [`NetTxResponse`] (same `id`) tells the frontend the frame
//! is free again. `status` is [`NET_STATUS_OK`] once the network has the frame: whether
//! it then reaches anybody is the network's business (Ethernet promises nothing).
//!
//! **Receive.** The guest cannot know when a frame will come, so it *posts empty
//! buffers* ahead of time: each [`NetRxRequest`] grants one whole frame *writable*. When
//! a frame arrives the backend takes the next posted buffer, **copies** the frame into it
//! and answers with a [`NetRxResponse`]: the buffer's `id`, where the frame starts
//! (`offset`) and its length in `status` (a negative `status` is an error and the buffer
//! holds nothing). Copying, not mapping or flipping pages, is what modern Xen does on
//! this path too: the guest's buffer never changes owner, and the backend never keeps a
//! mapping of guest memory. Requests on this ring are answered out of order in time (a
//! buffer waits for a frame), but always in ring order.
//!
//! A frame arriving while no buffer is posted waits in a small queue in the backend, and
//! is dropped (and counted) once that queue is full: the guest learns nothing, exactly
//! as on a real wire whose receiver is too slow.
//!
//! ## Frames
//!
//! An Ethernet frame without preamble and frame check sequence: 6 bytes destination MAC,
//! 6 bytes source MAC, 2 bytes type, then the payload: [`NET_MIN_FRAME`]`..=`
//! [`NET_MAX_FRAME`] bytes (a 1500-byte MTU). One frame per request: no scatter-gather,
//! no offloads, no frames larger than one 4 KiB grant.
//!
//! ## Entries
//!
//! ```text
//!  NetTxRequest  (16 bytes)            NetTxResponse (8 bytes)
//!   0: id u32                           0: id u32
//!   4: gref u32                         4: status i32
//!   8: offset u16
//!  10: flags u16 (reserved, zero)
//!  12: len u32
//!
//!  NetRxRequest  (8 bytes)             NetRxResponse (12 bytes)
//!   0: id u32                           0: id u32
//!   4: gref u32                         4: offset u16
//!                                       6: flags u16 (reserved, zero)
//!                                       8: status i32 (frame length, or < 0: error)
//! ```
//!
//! Slots are 16 bytes on both rings, so each ring has 128 slots. Ids are the
//! frontend's: the backend only echoes them. `len` is 32 bits although a frame fits
//! in 16, so that a hostile length cannot be silently truncated into a plausible one.
//!
//! ## What the backend checks (on a copy of the request)
//!
//! | request | check | status if not |
//! | --- | --- | --- |
//! | tx | `NET_MIN_FRAME <= len <= NET_MAX_FRAME` | [`NET_STATUS_BAD_REQUEST`] |
//! | tx | `offset + len <= 4096` (the bytes stay in the granted frame) | [`NET_STATUS_BAD_REQUEST`] |
//! | tx | `gref` grants a frame the backend may read | [`NET_STATUS_BAD_GRANT`] |
//! | rx | `gref` grants a frame the backend may **write** (not read-only) | [`NET_STATUS_BAD_GRANT`] |
//!
//! ## What the frontend checks (on a copy of the response)
//!
//! The `id` names a request in flight (a tx buffer sent, an rx buffer posted, not yet
//! answered); for rx, a non-negative `status` is a length in
//! `NET_MIN_FRAME..=NET_MAX_FRAME` and `offset + status <= 4096`.
//!
//! ## Notification
//!
//! Event indices, as on every ring (`pv_abi::ring`): the frontend rings the tx doorbell
//! only if the backend asked for it, and the rx doorbell when it posts buffers the
//! backend is waiting for; the backend raises the upcall on either channel only if the
//! frontend asked. A backend that is busy with a burst is not woken for each frame.
//!
//! ## A worked example: one ping
//!
//! 1. Boot: the frontend grants its 32 receive frames writable and posts them: 32
//!    `NetRxRequest {id: 0..31, gref}`, one publish. The fresh ring's `req_event` is 1,
//!    so it rings the rx doorbell once; the backend finds no frame yet and goes back to
//!    sleep without re-arming `req_event` (it does not need to hear about buffers while
//!    it has some).
//! 2. The guest sends an echo request: copies the 98-byte frame into tx buffer 0, grants
//!    it read-only, pushes `NetTxRequest {id 0, gref, offset 0, len 98}`, publishes,
//!    and rings the tx doorbell (the backend asked for it).
//! 3. The backend copies the request out of the slot, checks `len` and `offset + len`,
//!    checks the grant for reading, copies the 98 bytes out of the frame, hands them to
//!    the port, and answers `NetTxResponse {id 0, status 0}`. Whether that raises the
//!    tx upcall depends on the frontend's `rsp_event`: a frontend that is not waiting
//!    for a free buffer has not asked, and reaps the response the next time it sends.
//! 4. The reply arrives at the port. The backend takes the next posted buffer (id 0),
//!    checks its grant for writing, copies the frame in and answers
//!    `NetRxResponse {id 0, offset 0, status 98}`, raising the rx upcall because the
//!    sleeping frontend re-armed `rsp_event` before it slept.
//! 5. The frontend checks the response (id 0 is posted; 98 is a frame's length and fits
//!    at offset 0), copies the frame out, revokes the grant and posts buffer 0 again.
//!
//! ## What the protocol does not do
//!
//! No link state, no feature negotiation, no checksum offload, no multicast filter: the
//! backend hands the guest every frame the network sends to its port. The backend bounds
//! the work it does per wake-up (frames per pass on each ring), so one busy guest cannot
//! keep the backend's thread to itself.

use super::le_u32;
use crate::ring::RingEntry;

/// Smallest frame: the 14-byte Ethernet header (destination, source, type).
pub const NET_MIN_FRAME: usize = 14;
/// Largest frame: the header and a 1500-byte payload (no frame check sequence).
pub const NET_MAX_FRAME: usize = 1514;

/// The frame went to the network (tx), or arrived (rx: then `status` is its length).
pub const NET_STATUS_OK: i32 = 0;
/// The grant reference is not granted, revoked, out of range, names a frame the backend
/// may not touch, or is read-only where the backend must write (Linux's `EFAULT`).
pub const NET_STATUS_BAD_GRANT: i32 = -14;
/// The length is out of bounds or the bytes run past the granted frame (`EINVAL`).
pub const NET_STATUS_BAD_REQUEST: i32 = -22;

/// The name of a status for traces: `ok`, an error's name, or (rx) `len=N`.
pub fn status_name(status: i32) -> &'static str {
    match status {
        NET_STATUS_OK => "ok",
        NET_STATUS_BAD_GRANT => "EFAULT(grant)",
        NET_STATUS_BAD_REQUEST => "EINVAL",
        s if s > 0 => "frame",
        _ => "unknown-error",
    }
}

pub use crate::boot_info::{guest_mac, is_local_unicast};

/// One frame to send: `len` bytes at `offset` in the frame granted by `gref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetTxRequest {
    /// Chosen by the frontend, echoed in the response.
    pub id: u32,
    /// The grant of the frame holding the bytes (read access is enough).
    pub gref: u32,
    /// Where the frame's bytes start in the granted frame.
    pub offset: u16,
    /// Reserved: zero (no flags are defined; the backend ignores them).
    pub flags: u16,
    /// The frame's length in bytes.
    pub len: u32,
}

/// The answer to a [`NetTxRequest`]: its buffer may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetTxResponse {
    /// The request's id.
    pub id: u32,
    /// [`NET_STATUS_OK`] or a negative error.
    pub status: i32,
}

/// An empty buffer for one received frame: the whole frame granted by `gref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRxRequest {
    /// Chosen by the frontend, echoed in the response.
    pub id: u32,
    /// The grant of the buffer frame (it must be writable).
    pub gref: u32,
}

/// The answer to a [`NetRxRequest`]: a frame arrived in that buffer, or the buffer was
/// refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRxResponse {
    /// The request's id.
    pub id: u32,
    /// Where the frame starts in the buffer.
    pub offset: u16,
    /// Reserved: zero.
    pub flags: u16,
    /// The frame's length (> 0), or a negative error (the buffer holds no frame).
    pub status: i32,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl RingEntry for NetTxRequest {
    const SIZE: usize = 16;

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.id.to_le_bytes());
        out[4..8].copy_from_slice(&self.gref.to_le_bytes());
        out[8..10].copy_from_slice(&self.offset.to_le_bytes());
        out[10..12].copy_from_slice(&self.flags.to_le_bytes());
        out[12..16].copy_from_slice(&self.len.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        NetTxRequest { id: le_u32(b, 0), gref: le_u32(b, 4), offset: le_u16(b, 8), flags: le_u16(b, 10), len: le_u32(b, 12) }
    }
}

impl RingEntry for NetTxResponse {
    const SIZE: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.id.to_le_bytes());
        out[4..8].copy_from_slice(&self.status.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        NetTxResponse { id: le_u32(b, 0), status: le_u32(b, 4) as i32 }
    }
}

impl RingEntry for NetRxRequest {
    const SIZE: usize = 8;

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.id.to_le_bytes());
        out[4..8].copy_from_slice(&self.gref.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        NetRxRequest { id: le_u32(b, 0), gref: le_u32(b, 4) }
    }
}

impl RingEntry for NetRxResponse {
    const SIZE: usize = 12;

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.id.to_le_bytes());
        out[4..6].copy_from_slice(&self.offset.to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..12].copy_from_slice(&self.status.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Self {
        NetRxResponse { id: le_u32(b, 0), offset: le_u16(b, 4), flags: le_u16(b, 6), status: le_u32(b, 8) as i32 }
    }
}

/// Slots on each network ring (16-byte slots).
pub const NET_RING_SLOTS: usize = crate::ring::ring_size(crate::ring::slot_size(NetTxRequest::SIZE, NetTxResponse::SIZE));
const _: () = assert!(NET_RING_SLOTS == 128);
const _: () = assert!(crate::ring::ring_size(crate::ring::slot_size(NetRxRequest::SIZE, NetRxResponse::SIZE)) == NET_RING_SLOTS);
const _: () = assert!(NET_MAX_FRAME <= crate::layout::PAGE_SIZE as usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<E: RingEntry + PartialEq + core::fmt::Debug>(e: E) {
        let mut buf = [0u8; 16];
        e.encode(&mut buf[..E::SIZE]);
        assert_eq!(E::decode(&buf[..E::SIZE]), e);
    }

    #[test]
    fn entries_round_trip_at_their_extremes() {
        round_trip(NetTxRequest { id: u32::MAX, gref: 7, offset: 4095, flags: 0, len: u32::MAX });
        round_trip(NetTxResponse { id: 3, status: NET_STATUS_BAD_GRANT });
        round_trip(NetRxRequest { id: 0, gref: u32::MAX });
        round_trip(NetRxResponse { id: 9, offset: u16::MAX, flags: 0, status: 1514 });
        round_trip(NetRxResponse { id: 9, offset: 0, flags: 0, status: i32::MIN });
    }

    #[test]
    fn hostile_bytes_decode_without_panicking() {
        let all_ones = [0xffu8; 16];
        assert_eq!(NetTxRequest::decode(&all_ones).len, u32::MAX);
        assert_eq!(NetRxResponse::decode(&all_ones[..12]).status, -1);
        assert_eq!(status_name(-1), "unknown-error");
        assert_eq!(status_name(60), "frame");
    }

    #[test]
    fn guest_macs_are_local_unicast_and_distinct() {
        for i in [0, 1, 255, u32::MAX] {
            assert!(is_local_unicast(guest_mac(i)), "{i}");
        }
        assert_ne!(guest_mac(0), guest_mac(1));
        assert!(!is_local_unicast([0xff; 6]), "broadcast is multicast");
    }
}
