//! Checking a block request before acting on it.
//!
//! The request was copied out of the ring, so it cannot change under us; but every
//! field came from the guest and may be anything. Checked here, in this order: the
//! operation; for reads and writes, the segment count (1..=16), the sector count (at
//! least one, and exactly filling the segments: no segment unused), that the last
//! sector neither overflows u64 nor passes the end of the disk, and that a write is not
//! aimed at a read-only disk. A flush carries no data and must say so.

use pv_abi::device::block::{BlockOp, BlockRequest, BlockStatus, BLOCK_MAX_SEGMENTS, SECTOR_SIZE, SECTORS_PER_SEGMENT};
use pv_abi::grant::GrantRef;

/// A request whose fields have all been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedRequest {
    /// The operation.
    pub op: BlockOp,
    /// First sector.
    pub sector: u64,
    /// Sectors to move.
    pub nr_sectors: u32,
    /// One grant per segment, in order.
    pub grefs: Vec<GrantRef>,
}

impl CheckedRequest {
    /// Byte offset on the disk and byte length of segment `i`.
    pub fn segment_span(&self, i: usize) -> (u64, usize) {
        let first = i as u32 * SECTORS_PER_SEGMENT;
        let sectors = (self.nr_sectors - first).min(SECTORS_PER_SEGMENT);
        let offset = (self.sector + u64::from(first)) * SECTOR_SIZE;
        (offset, (u64::from(sectors) * SECTOR_SIZE) as usize)
    }
}

/// Checks `req` against a disk of `disk_sectors` sectors.
pub fn check_request(req: &BlockRequest, disk_sectors: u64, read_only: bool) -> Result<CheckedRequest, BlockStatus> {
    // LAB 3 BEGIN: check every field of the request before touching the disk
    let op = BlockOp::from_u8(req.op).ok_or(BlockStatus::BadRequest)?;
    let segments = usize::from(req.nr_segments);
    if op == BlockOp::Flush {
        if segments != 0 || req.nr_sectors != 0 {
            return Err(BlockStatus::BadRequest);
        }
        return Ok(CheckedRequest { op, sector: 0, nr_sectors: 0, grefs: Vec::new() });
    }
    if segments == 0 || segments > BLOCK_MAX_SEGMENTS {
        return Err(BlockStatus::BadRequest);
    }
    // The sectors must fill every segment but the last, which holds 1..=8 of them.
    let max_sectors = segments as u32 * SECTORS_PER_SEGMENT;
    if req.nr_sectors == 0 || req.nr_sectors > max_sectors || req.nr_sectors <= max_sectors - SECTORS_PER_SEGMENT {
        return Err(BlockStatus::BadRequest);
    }
    match req.sector.checked_add(u64::from(req.nr_sectors)) {
        Some(end) if end <= disk_sectors => {}
        _ => return Err(BlockStatus::BadRequest),
    }
    if op == BlockOp::Write && read_only {
        return Err(BlockStatus::ReadOnly);
    }
    Ok(CheckedRequest { op, sector: req.sector, nr_sectors: req.nr_sectors, grefs: req.grefs[..segments].to_vec() })
    // LAB 3 STUB: let _ = (req, disk_sectors, read_only, BLOCK_MAX_SEGMENTS);
    // LAB 3 STUB: todo!("lab 3: check the request (op, segments, sector range, read-only disk) before touching the disk: check::check_request")
    // LAB 3 END
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_abi::device::block::{BLOCK_OP_FLUSH, BLOCK_OP_READ, BLOCK_OP_WRITE};

    const DISK: u64 = 1000;

    fn req(op: u8, sector: u64, nr_sectors: u32, nr_segments: u8) -> BlockRequest {
        BlockRequest { id: 1, sector, op, nr_segments, nr_sectors, grefs: [1; BLOCK_MAX_SEGMENTS] }
    }

    #[test]
    fn well_formed_requests_pass_and_segments_cover_the_sectors() {
        let r = check_request(&req(BLOCK_OP_READ, 10, 20, 3), DISK, false).unwrap();
        assert_eq!(r.segment_span(0), (10 * 512, 4096));
        assert_eq!(r.segment_span(1), (18 * 512, 4096));
        assert_eq!(r.segment_span(2), (26 * 512, 4 * 512));
        assert!(check_request(&req(BLOCK_OP_WRITE, DISK - 1, 1, 1), DISK, false).is_ok(), "last sector");
        assert!(check_request(&req(BLOCK_OP_FLUSH, 0, 0, 0), DISK, true).is_ok(), "flush on a read-only disk");
    }

    #[test]
    fn hostile_sector_near_u64_max_is_refused_without_overflow() {
        for sector in [u64::MAX, u64::MAX - 7, DISK, DISK - 7] {
            assert_eq!(check_request(&req(BLOCK_OP_READ, sector, 8, 1), DISK, false), Err(BlockStatus::BadRequest), "{sector}");
        }
    }

    #[test]
    fn hostile_zero_length_oversized_and_ill_fitting_requests_are_refused() {
        let bad = [
            req(BLOCK_OP_READ, 0, 0, 1),   // zero sectors
            req(BLOCK_OP_READ, 0, 8, 0),   // zero segments
            req(BLOCK_OP_READ, 0, 136, 17), // 17 segments
            req(BLOCK_OP_READ, 0, 9, 1),   // more sectors than segments hold
            req(BLOCK_OP_READ, 0, 8, 2),   // a segment left unused
            req(BLOCK_OP_FLUSH, 0, 8, 1),  // a flush with data
            req(9, 0, 8, 1),               // unknown op
        ];
        for r in bad {
            assert_eq!(check_request(&r, DISK, false), Err(BlockStatus::BadRequest), "{r:?}");
        }
    }

    #[test]
    fn hostile_write_to_a_read_only_disk_is_erofs() {
        assert_eq!(check_request(&req(BLOCK_OP_WRITE, 0, 8, 1), DISK, true), Err(BlockStatus::ReadOnly));
        assert!(check_request(&req(BLOCK_OP_READ, 0, 8, 1), DISK, true).is_ok());
    }
}
