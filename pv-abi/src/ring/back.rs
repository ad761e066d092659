//! The backend's end of the ring: hv's device thread, which takes requests and pushes
//! responses. Xen's `BACK_RING_INIT`, `RING_REQUEST_PROD_OVERFLOW`,
//! `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY` and `RING_FINAL_CHECK_FOR_REQUESTS` are its
//! methods here. The protocol is described in the [module documentation](super).

use core::marker::PhantomData;

use super::{
    must_notify, Geometry, HeaderField, RingEntry, RingError, SharedPage, REQ_EVENT_OFFSET, REQ_PROD_OFFSET,
    RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};

/// The backend's end of a ring in page `P`, receiving `Req`s and sending `Rsp`s.
pub struct BackRing<P, Req, Rsp> {
    page: P,
    /// Requests taken: the next request is at this index.
    req_cons: u32,
    /// Responses pushed, published or not: the next response goes into this index's
    /// slot, which is the slot of the oldest request not yet answered.
    rsp_prod_pvt: u32,
    /// The `rsp_prod` we last published (kept here, not read back from the page).
    rsp_prod_published: u32,
    entries: PhantomData<(Req, Rsp)>,
}

impl<P: SharedPage, Req: RingEntry, Rsp: RingEntry> BackRing<P, Req, Rsp> {
    /// Number of slots, N.
    pub const SLOTS: u32 = Geometry::<Req, Rsp>::SLOTS;

    /// Attaches to the ring in `page` with every index at 0, as
    /// [`FrontRing::init`](super::FrontRing::init) leaves it. Writes nothing: the
    /// frontend owns the page's initialisation, and may do it after the backend attaches.
    pub fn attach(page: P) -> Self {
        Self::attach_at(page, 0)
    }

    /// Attaches with every index at `start`, to pair with
    /// [`FrontRing::init_at`](super::FrontRing::init_at).
    pub fn attach_at(page: P, start: u32) -> Self {
        // Naming SLOTS makes the compiler evaluate it for these entry types, which
        // rejects entries too large for a slot at compile time.
        let _ = Self::SLOTS;
        BackRing { page, req_cons: start, rsp_prod_pvt: start, rsp_prod_published: start, entries: PhantomData }
    }

    /// Takes the next published request, if there is one, as a copy: check the copy,
    /// and use only the copy, since the frontend can rewrite the slot at any time.
    ///
    /// Reads `req_prod` once. Returns [`RingError::CorruptProducer`] (taking nothing) if
    /// it claims more requests than there are free slots for: more than N, or so many
    /// that the frontend would have written over slots still waiting for this backend's
    /// responses (Xen's `RING_REQUEST_PROD_OVERFLOW`; it also keeps the backend from
    /// ever holding more than N unanswered requests, `RING_REQUEST_CONS_OVERFLOW`).
    pub fn take_request(&mut self) -> Result<Option<Req>, RingError> {
        // LAB 2 BEGIN: take the next published request, reading req_prod once and checking it
        // Acquire: the requests before req_prod are visible. Read once, judged once.
        let req_prod = self.page.load_u32(REQ_PROD_OFFSET);
        let waiting = req_prod.wrapping_sub(self.req_cons);
        // Requests we took but have not answered still own their slots, so at most the
        // other slots can hold new requests. (unanswered <= N: we never take past that.)
        let unanswered = self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        let limit = Self::SLOTS - unanswered;
        if waiting > limit {
            return Err(RingError::CorruptProducer {
                field: HeaderField::ReqProd,
                value: req_prod,
                consumer: self.req_cons,
                limit,
            });
        }
        if waiting == 0 {
            return Ok(None);
        }
        let request = Geometry::<Req, Rsp>::read_slot(&self.page, self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(request))
        // LAB 2 STUB: let _ = (HeaderField::ReqProd, REQ_PROD_OFFSET);
        // LAB 2 STUB: todo!("lab 2: read req_prod once, refuse a producer past the free slots, copy the request out: BackRing::take_request")
        // LAB 2 END
    }

    /// Writes `response` into the slot of the oldest request not yet answered. The
    /// frontend cannot see it until [`publish_responses`](Self::publish_responses).
    /// [`RingError::NothingToAnswer`] if every request taken is already answered.
    pub fn push_response(&mut self, response: &Rsp) -> Result<(), RingError> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::NothingToAnswer { req_cons: self.req_cons });
        }
        Geometry::<Req, Rsp>::write_slot(&self.page, self.rsp_prod_pvt, response);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes every pushed response and says whether the frontend asked to be
    /// notified (then the caller raises its upcall). Xen's
    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`.
    pub fn publish_responses(&mut self) -> bool {
        let old = self.rsp_prod_published;
        let new = self.rsp_prod_pvt;
        if new == old {
            return false;
        }
        // The responses' bytes were written before this Release store.
        self.page.store_u32(RSP_PROD_OFFSET, new);
        self.rsp_prod_published = new;
        // rsp_prod must be visible before we read rsp_event (the frontend's half of this
        // handshake is in final_check_for_responses).
        self.page.full_fence();
        let event = self.page.load_u32(RSP_EVENT_OFFSET);
        must_notify(old, new, event)
    }

    /// The last step before sleeping: asks to be notified of the next request, then
    /// looks once more. Returns `true` if a request is there after all (take it instead
    /// of sleeping; a corrupt `req_prod` also answers `true`, so that `take_request`
    /// reports it). Xen's `RING_FINAL_CHECK_FOR_REQUESTS`.
    pub fn final_check_for_requests(&mut self) -> bool {
        // LAB 2 BEGIN: re-arm req_event, full fence, then look at req_prod once more
        self.page.store_u32(REQ_EVENT_OFFSET, self.req_cons.wrapping_add(1));
        // req_event must be visible before we re-read req_prod: then either the frontend
        // sees our request to be notified, or we see its request.
        self.page.full_fence();
        self.page.load_u32(REQ_PROD_OFFSET) != self.req_cons
        // LAB 2 STUB: let _ = REQ_EVENT_OFFSET;
        // LAB 2 STUB: todo!("lab 2: set req_event = req_cons + 1, full fence, re-read req_prod: BackRing::final_check_for_requests")
        // LAB 2 END
    }

    /// Where the ring stands when the backend is idle: `Some(index)` when every request
    /// taken was answered and published (then `req_cons`, `rsp_prod_pvt` and the
    /// published `rsp_prod` are one number), `None` while responses are outstanding.
    /// A VM snapshot saves this index and a restored backend attaches there
    /// ([`BackRing::attach_at`]).
    pub fn idle_position(&self) -> Option<u32> {
        let idle = self.req_cons == self.rsp_prod_pvt && self.rsp_prod_pvt == self.rsp_prod_published;
        idle.then_some(self.req_cons)
    }
}
