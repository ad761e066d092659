//! The block device: a disk of 512-byte sectors, backed by an image file on the host.
//!
//! A request names an operation, a first sector, a sector count, and up to
//! [`BLOCK_MAX_SEGMENTS`] grant references. Segment `i` is one whole 4 KiB guest frame
//! holding sectors `sector + 8*i ..` of the transfer (the last one may be partly used).
//! So one request moves at most 64 KiB, and the request is 88 bytes: 32 of them fit in
//! one ring page, which gives 32 requests in flight.
//!
//! ```text
//!  offset  0: id u64          chosen by the frontend, echoed in the response
//!          8: sector u64      first sector
//!         16: op u8           BLOCK_OP_READ / WRITE / FLUSH
//!         17: nr_segments u8  grant references used (<= 16)
//!         18: reserved u16
//!         20: nr_sectors u32  sectors to transfer (<= 8 * nr_segments)
//!         24: grefs [u32; 16]
//! ```
//!
//! The backend checks everything before it touches the disk: the operation, the
//! segment and sector counts, that `sector + nr_sectors` neither overflows nor passes
//! the end of the disk, that a write is not aimed at a read-only disk, and each grant.
//! A flush completes only once everything written before it is durable on the host.

use super::{le_u32, le_u64};
use crate::grant::GrantRef;
use crate::ring::RingEntry;

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;

bitflags::bitflags! {
    /// What the boot-info page says about the disk ([`crate::BootInfo::block_flags`]).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct BlockFlags: u32 {
        /// The disk refuses writes (`hv run --disk PATH,ro`).
        const READ_ONLY = 1 << 0;
    }
}
/// Sectors per 4 KiB segment.
pub const SECTORS_PER_SEGMENT: u32 = 8;
/// Grant references one request can carry.
pub const BLOCK_MAX_SEGMENTS: usize = 16;

/// Read sectors into the granted frames.
pub const BLOCK_OP_READ: u8 = 0;
/// Write sectors from the granted frames.
pub const BLOCK_OP_WRITE: u8 = 1;
/// Make every completed write durable.
pub const BLOCK_OP_FLUSH: u8 = 2;

/// The operation in a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOp {
    /// [`BLOCK_OP_READ`].
    Read,
    /// [`BLOCK_OP_WRITE`].
    Write,
    /// [`BLOCK_OP_FLUSH`].
    Flush,
}

impl BlockOp {
    /// Decodes an operation byte.
    pub fn from_u8(op: u8) -> Option<Self> {
        match op {
            BLOCK_OP_READ => Some(BlockOp::Read),
            BLOCK_OP_WRITE => Some(BlockOp::Write),
            BLOCK_OP_FLUSH => Some(BlockOp::Flush),
            _ => None,
        }
    }

    /// The byte that encodes it.
    pub const fn to_u8(self) -> u8 {
        match self {
            BlockOp::Read => BLOCK_OP_READ,
            BlockOp::Write => BLOCK_OP_WRITE,
            BlockOp::Flush => BLOCK_OP_FLUSH,
        }
    }

    /// Name for traces.
    pub const fn name(self) -> &'static str {
        match self {
            BlockOp::Read => "read",
            BlockOp::Write => "write",
            BlockOp::Flush => "flush",
        }
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum BlockStatus {
    /// Done.
    Ok = 0,
    /// The host could not read or write the image.
    IoError = -5,
    /// A grant reference was not granted, revoked, read-only for a read, or out of range.
    BadGrant = -14,
    /// Malformed: unknown op, bad counts, or sectors past the end of the disk.
    BadRequest = -22,
    /// A write to a read-only disk.
    ReadOnly = -30,
}

impl BlockStatus {
    /// Decodes a status (unknown values read as IoError).
    pub fn from_i32(v: i32) -> Self {
        match v {
            0 => BlockStatus::Ok,
            -14 => BlockStatus::BadGrant,
            -22 => BlockStatus::BadRequest,
            -30 => BlockStatus::ReadOnly,
            _ => BlockStatus::IoError,
        }
    }

    /// Name for traces.
    pub const fn name(self) -> &'static str {
        match self {
            BlockStatus::Ok => "ok",
            BlockStatus::IoError => "EIO",
            BlockStatus::BadGrant => "EFAULT(grant)",
            BlockStatus::BadRequest => "EINVAL",
            BlockStatus::ReadOnly => "EROFS",
        }
    }
}

/// One block request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockRequest {
    /// Echoed in the response.
    pub id: u64,
    /// First sector.
    pub sector: u64,
    /// Operation byte (see [`BlockOp`]); kept raw so a bad value can be reported.
    pub op: u8,
    /// Grant references used.
    pub nr_segments: u8,
    /// Sectors to transfer.
    pub nr_sectors: u32,
    /// The granted frames.
    pub grefs: [GrantRef; BLOCK_MAX_SEGMENTS],
}

/// The answer to a [`BlockRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockResponse {
    /// The request's id.
    pub id: u64,
    /// A [`BlockStatus`] value.
    pub status: i32,
}

impl RingEntry for BlockRequest {
    const SIZE: usize = 24 + 4 * BLOCK_MAX_SEGMENTS;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..16].copy_from_slice(&self.sector.to_le_bytes());
        out[16] = self.op;
        out[17] = self.nr_segments;
        out[18..20].fill(0);
        out[20..24].copy_from_slice(&self.nr_sectors.to_le_bytes());
        for (i, g) in self.grefs.iter().enumerate() {
            out[24 + 4 * i..28 + 4 * i].copy_from_slice(&g.to_le_bytes());
        }
    }

    fn decode(b: &[u8]) -> Self {
        let mut grefs = [0; BLOCK_MAX_SEGMENTS];
        for (i, g) in grefs.iter_mut().enumerate() {
            *g = le_u32(b, 24 + 4 * i);
        }
        BlockRequest {
            id: le_u64(b, 0),
            sector: le_u64(b, 8),
            op: b[16],
            nr_segments: b[17],
            nr_sectors: le_u32(b, 20),
            grefs,
        }
    }
}

impl RingEntry for BlockResponse {
    const SIZE: usize = 16;

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..12].copy_from_slice(&self.status.to_le_bytes());
        out[12..16].fill(0);
    }

    fn decode(b: &[u8]) -> Self {
        BlockResponse { id: le_u64(b, 0), status: le_u32(b, 8) as i32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_88_bytes_and_round_trips() {
        assert_eq!(BlockRequest::SIZE, 88);
        let mut grefs = [0; BLOCK_MAX_SEGMENTS];
        grefs[0] = 7;
        grefs[15] = 0xdead;
        let r = BlockRequest { id: 1, sector: u64::MAX, op: BLOCK_OP_WRITE, nr_segments: 16, nr_sectors: 128, grefs };
        let mut buf = [0u8; BlockRequest::SIZE];
        r.encode(&mut buf);
        assert_eq!(BlockRequest::decode(&buf), r);
    }

    #[test]
    fn statuses_and_ops_decode() {
        for s in [BlockStatus::Ok, BlockStatus::IoError, BlockStatus::BadGrant, BlockStatus::BadRequest, BlockStatus::ReadOnly] {
            assert_eq!(BlockStatus::from_i32(s as i32), s);
        }
        assert_eq!(BlockOp::from_u8(3), None);
    }
}
