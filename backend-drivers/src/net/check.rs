//! Checking the network frontend's requests before acting on them.
//!
//! Each request was copied out of the ring, so it cannot change under us; but every
//! field came from the guest. Checked here, before any byte moves:
//!
//! - a transmit request: `len` within `NET_MIN_FRAME..=NET_MAX_FRAME`, and `offset + len`
//!   inside the 4 KiB frame (computed without overflow, `len` being 32 bits); then its
//!   grant, for reading;
//! - a receive buffer: its grant, for **writing** (a read-only grant would let the
//!   backend write where the guest said it may not).
//!
//! The grant checks go through [`GrantTable::check`], which reads the guest's grant entry
//! once and checks it against the frames a backend may touch.

use pv_abi::addr::PAGE_SIZE;
use pv_abi::device::net::{NetRxRequest, NetTxRequest, NET_MAX_FRAME, NET_MIN_FRAME, NET_STATUS_BAD_GRANT, NET_STATUS_BAD_REQUEST};
use pv_abi::grant::{GrantAccess, GrantProblem};

use crate::grant_table::{GrantTable, GrantedFrame};

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The length is not a frame's.
    #[error("a frame of {len} bytes (a frame has {NET_MIN_FRAME}..={NET_MAX_FRAME})")]
    BadLength {
        /// The length asked for.
        len: u32,
    },
    /// The bytes leave the granted frame.
    #[error("{len} bytes at offset {offset} run past the 4 KiB frame")]
    OutOfFrame {
        /// The offset asked for.
        offset: u16,
        /// The length asked for.
        len: u32,
    },
    /// The grant does not allow the access.
    #[error("grant {gref}: {problem}")]
    Grant {
        /// The reference.
        gref: u32,
        /// What was wrong with it.
        problem: GrantProblem,
    },
}

impl Refusal {
    /// The status the guest is answered with.
    pub const fn status(self) -> i32 {
        match self {
            Refusal::BadLength { .. } | Refusal::OutOfFrame { .. } => NET_STATUS_BAD_REQUEST,
            Refusal::Grant { .. } => NET_STATUS_BAD_GRANT,
        }
    }
}

/// Checks a transmit request's length and placement (no grant yet): the byte range of
/// the granted frame that holds the frame to send.
pub fn check_tx_shape(request: &NetTxRequest) -> Result<core::ops::Range<usize>, Refusal> {
    let len = request.len;
    if !(NET_MIN_FRAME as u64..=NET_MAX_FRAME as u64).contains(&u64::from(len)) {
        return Err(Refusal::BadLength { len });
    }
    // Both fit in u64 with room to spare: no overflow, whatever the guest wrote.
    let start = u64::from(request.offset);
    let end = start + u64::from(len);
    if end > PAGE_SIZE {
        return Err(Refusal::OutOfFrame { offset: request.offset, len });
    }
    Ok(start as usize..end as usize)
}

/// Checks a whole transmit request: its shape, then its grant for reading.
pub fn check_tx<'g>(request: &NetTxRequest, grants: &'g GrantTable) -> Result<(GrantedFrame<'g>, core::ops::Range<usize>), Refusal> {
    let bytes = check_tx_shape(request)?;
    let frame = grants.check(request.gref, GrantAccess::Read).map_err(|problem| Refusal::Grant { gref: request.gref, problem })?;
    Ok((frame, bytes))
}

/// Checks a posted receive buffer: its grant, for writing.
pub fn check_rx<'g>(request: &NetRxRequest, grants: &'g GrantTable) -> Result<GrantedFrame<'g>, Refusal> {
    grants.check(request.gref, GrantAccess::Write).map_err(|problem| Refusal::Grant { gref: request.gref, problem })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(offset: u16, len: u32) -> NetTxRequest {
        NetTxRequest { id: 1, gref: 1, offset, flags: 0, len }
    }

    #[test]
    fn frames_of_every_legal_length_and_place_pass() {
        assert_eq!(check_tx_shape(&tx(0, 14)), Ok(0..14));
        assert_eq!(check_tx_shape(&tx(0, 1514)), Ok(0..1514));
        assert_eq!(check_tx_shape(&tx(4096 - 1514, 1514)), Ok(2582..4096), "ending exactly at the frame's end");
    }

    #[test]
    fn hostile_netif_lengths_are_refused() {
        for len in [0, 13, 1515, 4096, u32::MAX] {
            assert_eq!(check_tx_shape(&tx(0, len)), Err(Refusal::BadLength { len }), "{len}");
            assert_eq!(check_tx_shape(&tx(0, len)).unwrap_err().status(), NET_STATUS_BAD_REQUEST);
        }
    }

    #[test]
    fn hostile_netif_offset_past_the_frame_is_refused() {
        for (offset, len) in [(4096 - 1513, 1514), (4095, 14), (u16::MAX, 14), (u16::MAX, 1514)] {
            assert_eq!(check_tx_shape(&tx(offset, len)), Err(Refusal::OutOfFrame { offset, len }), "{offset}+{len}");
        }
    }
}
