//! Lab 3, hidden tests: the hostile cases a check that is almost right lets through.

mod rig;

use frontend_drivers::block::BlockError;
use pv_abi::device::block::{BlockOp, BlockResponse, BlockStatus, BLOCK_OP_READ, BLOCK_OP_WRITE};
use pv_abi::grant::GrantAccess;
use rig::{data_frame, request, Rig};

fn status(r: BlockResponse) -> BlockStatus {
    BlockStatus::from_i32(r.status)
}

#[test]
fn hostile_sector_count_that_wraps_to_zero_is_refused() {
    // u64::MAX - 7 + 8 wraps to 0, which is "inside" any disk: a wrapping add accepts it.
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let gref = guest.grant(0, false);
    rig.fill_frame(0, 0x5c);
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, u64::MAX - 7, 8, &[gref]));
    assert_eq!(status(r), BlockStatus::BadRequest, "lab 3: a lying sector: u64::MAX - 7 + 8 wraps to 0; use checked_add, not a wrapping or saturating add that hides the overflow");
    assert_eq!(rig.frame_bytes(0, 4096), vec![0x5c; 4096], "lab 3: a refused request moves no data");
}

#[test]
fn hostile_one_bad_grant_among_good_ones_moves_no_data() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let (a, c) = (guest.grant(0, false), guest.grant(2, false));
    rig.fill_frame(0, 0x44);
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, 0, 24, &[a, 200, c]));
    assert_eq!(status(r), BlockStatus::BadGrant, "lab 3: grant reference 200 (segment 1) was never granted");
    assert_eq!(rig.frame_bytes(0, 4096), vec![0x44; 4096], "lab 3: every grant is checked before any data moves: segment 0's frame was written although segment 1's grant is bad");
    assert_eq!(rig.stats.bytes_to_guest, 0, "lab 3: a request with one bad grant does nothing at all");
}

#[test]
fn hostile_read_only_grant_in_the_last_segment_moves_no_data() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let grefs = [guest.grant(0, false), guest.grant(1, false), guest.grant(2, true)];
    for i in 0..3 {
        rig.fill_frame(i, 0x66);
    }
    let r = rig.send(&mut guest, request(BLOCK_OP_READ, 0, 24, &grefs));
    assert_eq!(status(r), BlockStatus::BadGrant, "lab 3: a read-only grant must not be written through, even in the last segment");
    for i in 0..3 {
        assert_eq!(rig.frame_bytes(i, 4096), vec![0x66; 4096], "lab 3: check every grant for GrantAccess::Write before moving data: frame {i} was written");
    }
    let checks = rig.grant_checks();
    assert!(checks.iter().all(|(_, access, _)| *access == GrantAccess::Write), "lab 3: a read checks its grants for GrantAccess::Write: {checks:?}");
}

#[test]
fn hostile_revoked_and_reserved_frame_grants_are_refused() {
    let mut rig = Rig::new(64, false);
    let mut guest = rig.hand_made();
    let gone = guest.grant(0, false);
    guest.grants.revoke(gone);
    assert_eq!(status(rig.send(&mut guest, request(BLOCK_OP_READ, 0, 8, &[gone]))), BlockStatus::BadGrant, "lab 3: a revoked grant is no grant");
    let reserved = guest.grants.grant(pv_abi::addr::PseudoFrame::new(3), false).unwrap();
    assert_eq!(status(rig.send(&mut guest, request(BLOCK_OP_READ, 0, 8, &[reserved]))), BlockStatus::BadGrant, "lab 3: a grant of a frame in the VMM's reserved area (the grant window's check) is refused");
    assert_eq!(rig.stats.grant_refusals, 2, "lab 3: each refused grant is counted");
}

#[test]
fn hostile_write_from_an_ungranted_frame_leaves_the_disk_alone() {
    let mut rig = Rig::new(64, false);
    let before = rig.image.bytes();
    let mut guest = rig.hand_made();
    let good = guest.grant(0, true);
    let r = rig.send(&mut guest, request(BLOCK_OP_WRITE, 8, 16, &[good, 77]));
    assert_eq!(status(r), BlockStatus::BadGrant, "lab 3: grant reference 77 was never granted");
    assert_eq!(rig.image.bytes(), before, "lab 3: every grant is checked before any data moves: the disk changed although segment 1's grant is bad");
}

#[test]
fn hostile_duplicate_response_is_refused() {
    let mut rig = Rig::new(64, false);
    let mut front = rig.front();
    let first = front.submit(BlockOp::Read, 0, 8, &[data_frame(0)]).unwrap();
    let second = front.submit(BlockOp::Read, 8, 8, &[data_frame(1)]).unwrap();
    front.kick();
    rig.answer_with(|_| BlockResponse { id: first, status: 0 });
    assert_eq!(front.poll(), Ok(Some((first, BlockStatus::Ok))), "lab 3: the first answer completes the first request");
    assert_eq!(front.poll(), Err(BlockError::UnexpectedResponse { id: first }), "lab 3: an id already answered is no longer in flight: a second answer to it is an error");
    assert_eq!(front.in_flight(), 1, "lab 3: the second request ({second}) is still in flight");
    assert!(rig.grant_flags(2) != 0, "lab 3: and keeps its grant");
}

#[test]
fn thirty_two_responses_in_reverse_order_complete_their_own_requests() {
    let mut rig = Rig::new(512, false);
    let mut front = rig.front();
    let ids: Vec<u64> = (0..32).map(|i| front.submit(BlockOp::Read, i * 8, 8, &[data_frame(i)]).unwrap()).collect();
    front.kick();
    let mut reversed = ids.clone();
    rig.answer_with(|_| BlockResponse { id: reversed.pop().unwrap(), status: 0 });
    for expected in ids.iter().rev() {
        assert_eq!(front.poll(), Ok(Some((*expected, BlockStatus::Ok))), "lab 3: responses may come in any order: each completes the request its id names");
    }
    assert_eq!(front.in_flight(), 0, "lab 3: all 32 requests completed");
    assert!((1..=32).all(|g| rig.grant_flags(g) == 0), "lab 3: all 32 requests' grants are revoked");
}
