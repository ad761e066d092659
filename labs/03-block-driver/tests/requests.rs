//! Lab 3, the backend: checking each request (`check::check_request`) and each grant
//! (`BlockBackend::check_grants`) before any data moves. Every request here is hand-made
//! by a hostile frontend and sent through the real ring to the real backend.

mod rig;

use pv_abi::device::block::{BlockResponse, BlockStatus, BLOCK_OP_FLUSH, BLOCK_OP_READ, BLOCK_OP_WRITE};
use pv_abi::grant::GrantAccess;
use rig::{image_byte, request, Rig, SECTOR};

fn status(r: BlockResponse) -> BlockStatus {
    BlockStatus::from_i32(r.status)
}

#[test]
fn hostile_sector_overflow_is_refused() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let gref = guest.grant(0, false);
    rig.fill_frame(0, 0xee);
    for sector in [u64::MAX - 3, u64::MAX - 7, u64::MAX] {
        let r = rig.send(&mut guest, request(BLOCK_OP_READ, sector, 8, &[gref]));
        assert_eq!(
            status(r),
            BlockStatus::BadRequest,
            "lab 3: sector + nr_sectors must be computed without overflow (checked_add) and compared with the disk size: a read of 8 sectors at sector {sector} wraps around u64"
        );
    }
    assert_eq!(rig.frame_bytes(0, 4096), vec![0xee; 4096], "lab 3: a refused request moves no data");
}

#[test]
fn hostile_read_past_the_end_of_the_disk_is_refused() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let gref = guest.grant(0, false);
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, 57, 8, &[gref]));
    assert_eq!(status(r), BlockStatus::BadRequest, "lab 3: sectors 57..65 of a 64-sector disk: the last sector is past the end of the disk");
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, 64, 1, &[gref]));
    assert_eq!(status(r), BlockStatus::BadRequest, "lab 3: sector 64 of a 64-sector disk (sectors 0..63) does not exist");
}

#[test]
fn hostile_too_many_segments_are_refused() {
    let mut rig = Rig::new(256, false);
    let mut guest = rig.hand_made();
    let grefs: Vec<u32> = (0..16).map(|i| guest.grant(i, false)).collect();
    let mut r = request(BLOCK_OP_READ, 0, 136, &grefs);
    r.nr_segments = 17;
    assert_eq!(status(rig.send(&mut guest, r)), BlockStatus::BadRequest, "lab 3: a request carries at most BLOCK_MAX_SEGMENTS (16) segments: nr_segments = 17 must be refused");
    let r = request(BLOCK_OP_READ, 0, 8, &[]);
    assert_eq!(status(rig.send(&mut guest, r)), BlockStatus::BadRequest, "lab 3: a read with no segments has nowhere to put its data");
}

#[test]
fn hostile_sector_counts_that_do_not_fit_the_segments_are_refused() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let (a, b) = (guest.grant(0, false), guest.grant(1, false));
    for (sectors, grefs, what) in [
        (9, vec![a], "9 sectors do not fit in one 4 KiB segment (8 sectors)"),
        (0, vec![a], "a read of zero sectors"),
        (8, vec![a, b], "8 sectors in two segments leave one segment unused"),
    ] {
        let r = rig.send(&mut guest, request(BLOCK_OP_READ, 0, sectors, &grefs));
        assert_eq!(status(r), BlockStatus::BadRequest, "lab 3: the sector count must exactly fill the segments: {what}");
    }
}

#[test]
fn hostile_unknown_op_and_flush_with_data_are_refused() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let gref = guest.grant(0, false);
    assert_eq!(status(rig.send(&mut guest, request(9, 0, 8, &[gref]))), BlockStatus::BadRequest, "lab 3: op 9 is no operation the protocol defines");
    assert_eq!(status(rig.send(&mut guest, request(BLOCK_OP_FLUSH, 0, 8, &[gref]))), BlockStatus::BadRequest, "lab 3: a flush carries no data, so no sectors and no segments");
    assert_eq!(status(rig.send(&mut guest, request(BLOCK_OP_FLUSH, 0, 0, &[]))), BlockStatus::Ok, "lab 3: a flush with no data is a good request");
}

#[test]
fn hostile_write_to_a_read_only_disk_is_refused() {
    let mut rig = Rig::new(64, true);
    let before = rig.image.bytes();
    let mut guest = rig.hand_made();
    let gref = guest.grant(0, true);
    rig.fill_frame(0, 0x11);
    let r = rig.send(&mut guest, request(BLOCK_OP_WRITE, 0, 8, &[gref]));
    assert_eq!(status(r), BlockStatus::ReadOnly, "lab 3: a write to a read-only disk (`--disk PATH,ro`) gets ReadOnly (EROFS)");
    assert_eq!(rig.image.bytes(), before, "lab 3: a read-only disk keeps its bytes");
}

#[test]
fn hostile_ungranted_frame_is_refused() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made(); // every grant entry revoked
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, 0, 8, &[5]));
    assert_eq!(status(r), BlockStatus::BadGrant, "lab 3: grant reference 5 was never granted: check it with GrantTable::check and answer BadGrant");
    assert_eq!(rig.stats.bytes_to_guest, 0, "lab 3: no data moves through a grant that failed its check");
    assert_eq!(rig.stats.grant_refusals, 1, "lab 3: a refused grant is counted in the backend's stats (grant_refusals; `hv run --stats` shows it)");
    assert_eq!(rig.grant_checks(), vec![(5, GrantAccess::Write, false)], "lab 3: each grant check is traced (BlockBackend::trace_grant_check): (gref, access, passed)");
}

#[test]
fn hostile_read_only_grant_is_not_written_through() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let gref = guest.grant(0, true);
    rig.fill_frame(0, 0x33);
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, 0, 8, &[gref]));
    assert_eq!(status(r), BlockStatus::BadGrant, "lab 3: a read-only grant must not be written through: a read writes into guest memory, so it needs GrantAccess::Write");
    assert_eq!(rig.frame_bytes(0, 4096), vec![0x33; 4096], "lab 3: a read-only grant must not be written through: the frame changed");
    assert_eq!(rig.grant_checks(), vec![(gref, GrantAccess::Write, false)], "lab 3: a read checks its grants for GrantAccess::Write");
}

#[test]
fn a_good_read_moves_exactly_the_image_bytes() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let grefs = [guest.grant(0, false), guest.grant(1, false)];
    rig.fill_frame(1, 0x77);
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, 3, 12, &grefs));
    assert_eq!(status(r), BlockStatus::Ok, "lab 3: a read of 12 sectors at sector 3 into two writable grants is a good request");
    assert_eq!(r.id, 42, "lab 3: the response carries the request's id");
    let image = rig.image.bytes();
    assert!(rig.frame_bytes(0, 4096) == image[3 * SECTOR..11 * SECTOR], "lab 3: segment 0 holds sectors 3..11 of the image");
    let second = rig.frame_bytes(1, 4096);
    assert!(second[..4 * SECTOR] == image[11 * SECTOR..15 * SECTOR], "lab 3: segment 1 holds sectors 11..15 of the image");
    assert!(second[4 * SECTOR..].iter().all(|b| *b == 0x77), "lab 3: only the 4 sectors asked for land in the last segment");
    assert_eq!(rig.grant_checks(), vec![(grefs[0], GrantAccess::Write, true), (grefs[1], GrantAccess::Write, true)], "lab 3: every grant of a read is checked for GrantAccess::Write, in order");
    let last = guest.grant(2, false);
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, 56, 8, &[last]));
    assert_eq!(status(r), BlockStatus::Ok, "lab 3: sectors 56..64 of a 64-sector disk are its last eight: a request may end exactly at the end of the disk");
    assert!(rig.frame_bytes(2, 4096) == image[56 * SECTOR..], "lab 3: the disk's last 8 sectors land in the frame");
}

#[test]
fn a_good_write_moves_exactly_the_frame_bytes() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let grefs = [guest.grant(0, true), guest.grant(1, true)];
    rig.fill_frame(0, 0xa1);
    rig.fill_frame(1, 0xb2);
    let r = rig.send(&mut guest, request(BLOCK_OP_WRITE, 20, 10, &grefs));
    assert_eq!(status(r), BlockStatus::Ok, "lab 3: a write only reads guest memory, so read-only grants are enough for it");
    let image = rig.image.bytes();
    assert!(image[20 * SECTOR..28 * SECTOR].iter().all(|b| *b == 0xa1), "lab 3: sectors 20..28 come from segment 0");
    assert!(image[28 * SECTOR..30 * SECTOR].iter().all(|b| *b == 0xb2), "lab 3: sectors 28..30 come from segment 1");
    let untouched = |i: usize| image[i] == image_byte(i as u64);
    assert!((0..20 * SECTOR).chain(30 * SECTOR..64 * SECTOR).all(untouched), "lab 3: a write of sectors 20..30 leaves every other sector as it was");
    assert_eq!(rig.grant_checks(), vec![(grefs[0], GrantAccess::Read, true), (grefs[1], GrantAccess::Read, true)], "lab 3: a write checks its grants for GrantAccess::Read");
}
