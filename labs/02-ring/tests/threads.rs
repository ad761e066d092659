//! Lab 2, part c: the ring between two real threads, each sleeping on an event channel
//! when it has nothing to do, as the guest and hv's backend thread do.
//!
//! An event channel here is a pending flag and a condition variable: a signal sets the
//! flag (so a signal sent just before the other side sleeps is not lost), a wait sleeps
//! until the flag is set and clears it. If the ring's notification rule or final check
//! is wrong, one side sleeps while the other waits for it: a lost wake-up, which this
//! test sees as a wait that lasts far longer than any real one.

mod rig;

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use pv_abi::ring::{BackRing, FrontRing};
use rig::{AtomicPage, Msg};

/// A wait this long means nobody is coming: the other side is asleep too.
const LOST: Duration = Duration::from_secs(10);
const REQUESTS: u64 = 20_000;

#[derive(Default)]
struct Channel {
    pending: Mutex<bool>,
    wake: Condvar,
}

impl Channel {
    fn signal(&self) {
        *self.pending.lock().unwrap() = true;
        self.wake.notify_one();
    }
    /// Sleeps until signalled; false if nobody signalled within [`LOST`].
    fn wait(&self) -> bool {
        let mut pending = self.pending.lock().unwrap();
        while !*pending {
            let (p, timeout) = self.wake.wait_timeout(pending, LOST).unwrap();
            pending = p;
            if timeout.timed_out() && !*pending {
                return false;
            }
        }
        *pending = false;
        true
    }
}

#[test]
fn two_threads_pass_every_request_with_no_lost_wake_up() {
    let page = AtomicPage::new();
    let doorbell = Arc::new(Channel::default());
    let upcall = Arc::new(Channel::default());
    let mut front: FrontRing<AtomicPage, Msg, Msg> = FrontRing::init(page.clone());

    let backend = {
        let (doorbell, upcall) = (doorbell.clone(), upcall.clone());
        let mut back: BackRing<AtomicPage, Msg, Msg> = BackRing::attach(page);
        thread::spawn(move || -> Result<(u64, u64), String> {
            let (mut served, mut rearms) = (0u64, 0u64);
            while served < REQUESTS {
                match back.take_request() {
                    Ok(Some(req)) => {
                        if req != Msg::new(served) {
                            return Err(format!("lab 2: the backend took request {} with its body, expected request {served}: requests come out in order, each once, as pushed", req.id));
                        }
                        served += 1;
                        back.push_response(&req).map_err(|e| e.to_string())?;
                        if back.publish_responses() {
                            upcall.signal();
                        }
                    }
                    Ok(None) => {
                        rearms += 1;
                        if !back.final_check_for_requests() && !doorbell.wait() {
                            return Err(format!("lab 2: lost wake-up: the backend has slept {LOST:?} after its final check with {served} of {REQUESTS} requests served: the frontend published a request without ringing the doorbell although req_event asked for it (publish_requests), or the final check did not see a request published before it (final_check_for_requests)"));
                        }
                    }
                    Err(e) => return Err(format!("lab 2: take_request refused an honest frontend's ring after {served} requests: {e}")),
                }
            }
            Ok((served, rearms))
        })
    };

    let (mut sent, mut received, mut doorbells) = (0u64, 0u64, 0u64);
    let mut burst = 1u64;
    while received < REQUESTS {
        // Bursts of 1 to 40 requests, as many as fit.
        burst = burst * 7 % 41 + 1;
        let mut pushed = 0;
        while pushed < burst && sent < REQUESTS && front.push_request(&Msg::new(sent)).is_ok() {
            sent += 1;
            pushed += 1;
        }
        if front.publish_requests() {
            doorbells += 1;
            doorbell.signal();
        }
        let mut got = 0;
        while let Some(rsp) = front.take_response().expect("lab 2: the test's backend answers honestly") {
            assert_eq!(rsp.id, received, "lab 2: responses come back in request order");
            received += 1;
            got += 1;
        }
        if got == 0 && sent > received && !front.final_check_for_responses() && !upcall.wait() {
            // The backend's own message says more, if it has one.
            let why = match backend.join() {
                Ok(Err(message)) => message,
                Err(_) => "lab 2: the backend thread panicked (a todo! in BackRing?): its message is above".to_string(),
                Ok(Ok(_)) => "the backend finished".to_string(),
            };
            panic!("lab 2: lost wake-up: the frontend waited {LOST:?} for a response with {} requests outstanding and no upcall came.\n{why}", sent - received);
        }
    }
    let (served, rearms) = match backend.join() {
        Ok(Ok(counts)) => counts,
        Ok(Err(message)) => panic!("{message}"),
        Err(_) => panic!("lab 2: the backend thread panicked (a todo! in BackRing?): its message is above"),
    };
    assert_eq!(served, REQUESTS);
    assert!(
        doorbells <= rearms + 1,
        "lab 2: the frontend rang {doorbells} doorbells, but the backend re-armed req_event only {rearms} times: each re-arm (plus the initial req_event) can be crossed by at most one publish, so publish_requests notified when req_event did not ask for it"
    );
}
