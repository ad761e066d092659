//! Lab 3, the frontend: the completion path (`BlockFront::poll` and
//! `check::check_response`). The frontend is the real one; the backend is a forger
//! that answers with whatever the test says (and moves no data), so these tests need
//! none of the backend's part of the lab.

mod rig;

use frontend_drivers::block::BlockError;
use pv_abi::device::block::{BlockOp, BlockResponse, BlockStatus};
use rig::{data_frame, Rig};

#[test]
fn a_completed_read_revokes_its_grants_and_frees_its_slot() {
    let mut rig = Rig::new(64, false);
    let mut front = rig.front();
    let id = front.submit(BlockOp::Read, 0, 16, &[data_frame(0), data_frame(1)]).expect("a good read is queued");
    front.kick();
    // The frontend's grant table hands out the lowest free references: 1 and 2.
    assert!(rig.grant_flags(1) != 0 && rig.grant_flags(2) != 0, "the read's two frames are granted while it is in flight");
    rig.answer_with(|r| BlockResponse { id: r.id, status: 0 });
    let done = front.poll().expect("lab 3: a good response is no error");
    assert_eq!(done, Some((id, BlockStatus::Ok)), "lab 3: poll returns the completed request's id and status");
    assert_eq!((rig.grant_flags(1), rig.grant_flags(2)), (0, 0), "lab 3: a completed request's grants are revoked (GrantTableFront::revoke), so the backend can no longer reach its frames");
    assert_eq!(front.in_flight(), 0, "lab 3: a completed request leaves the in-flight table");
    assert_eq!(front.poll(), Ok(None), "lab 3: each response completes one request, once");
}

#[test]
fn poll_with_no_response_waiting_returns_none() {
    let rig = Rig::new(64, false);
    let mut front = rig.front();
    assert_eq!(front.poll(), Ok(None), "lab 3: with nothing on the ring, poll returns Ok(None)");
    front.submit(BlockOp::Read, 0, 8, &[data_frame(0)]).unwrap();
    front.kick();
    assert_eq!(front.poll(), Ok(None), "lab 3: a request not yet answered: poll returns Ok(None)");
    assert_eq!(front.in_flight(), 1, "lab 3: and the request stays in flight");
    assert!(rig.grant_flags(1) != 0, "lab 3: with its grant still given");
}

#[test]
fn one_transfer_after_another_reuses_revoked_grants() {
    let mut rig = Rig::new(64, false);
    let mut front = rig.front();
    for round in 0..40u64 {
        let sector = (round % 8) * 8;
        let id = front.submit(BlockOp::Read, sector, 8, &[data_frame(round % 3)]).unwrap();
        front.kick();
        rig.answer_with(|r| BlockResponse { id: r.id, status: 0 });
        assert_eq!(front.wait_for_completion(), Ok((id, BlockStatus::Ok)), "lab 3: round {round}: the read completes");
        assert_eq!(rig.grant_flags(1), 0, "lab 3: round {round}: the grant is revoked once the request completed");
    }
}

#[test]
fn hostile_response_to_a_request_not_in_flight_is_refused() {
    let mut rig = Rig::new(64, false);
    let mut front = rig.front();
    let id = front.submit(BlockOp::Read, 0, 8, &[data_frame(0)]).unwrap();
    front.kick();
    rig.answer_with(|r| BlockResponse { id: r.id + 1000, status: 0 });
    assert_eq!(
        front.poll(),
        Err(BlockError::UnexpectedResponse { id: id + 1000 }),
        "lab 3: the backend is not trusted either: a response whose id is not in flight is an error (check::check_response)"
    );
    assert_eq!(front.in_flight(), 1, "lab 3: a forged response completes nothing");
    assert!(rig.grant_flags(1) != 0, "lab 3: a forged response must not revoke another request's grants");
}

#[test]
fn hostile_unknown_status_counts_as_an_io_error() {
    let mut rig = Rig::new(64, false);
    let mut front = rig.front();
    let id = front.submit(BlockOp::Read, 0, 8, &[data_frame(0)]).unwrap();
    front.kick();
    rig.answer_with(|r| BlockResponse { id: r.id, status: 77 });
    assert_eq!(front.poll(), Ok(Some((id, BlockStatus::IoError))), "lab 3: a status the protocol does not define counts as an I/O error (BlockStatus::from_i32)");
    assert_eq!(rig.grant_flags(1), 0, "lab 3: a failed request is complete too: its grants are revoked");
    assert_eq!(front.in_flight(), 0);
}
