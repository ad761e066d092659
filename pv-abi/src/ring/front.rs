//! The frontend's end of the ring: the guest driver, which pushes requests and takes
//! responses. Xen's `FRONT_RING_INIT`, `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` and
//! `RING_FINAL_CHECK_FOR_RESPONSES` are its methods here. The protocol is described in
//! the [module documentation](super).

use core::marker::PhantomData;

use super::{
    must_notify, Geometry, HeaderField, RingEntry, RingError, RingFull, SharedPage, HEADER_SIZE, REQ_EVENT_OFFSET,
    REQ_PROD_OFFSET, RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};

/// The frontend's end of a ring in page `P`, sending `Req`s and receiving `Rsp`s.
pub struct FrontRing<P, Req, Rsp> {
    page: P,
    /// Requests pushed, published or not: the next request goes into this index's slot.
    req_prod_pvt: u32,
    /// The `req_prod` we last published. Kept here rather than read back from the page,
    /// where the backend could have changed it.
    req_prod_published: u32,
    /// Responses taken: the next response is at this index.
    rsp_cons: u32,
    entries: PhantomData<(Req, Rsp)>,
}

impl<P: SharedPage, Req: RingEntry, Rsp: RingEntry> FrontRing<P, Req, Rsp> {
    /// Number of slots, N: the most requests that can be outstanding at once.
    pub const SLOTS: u32 = Geometry::<Req, Rsp>::SLOTS;

    /// Initialises the ring in `page` (the frontend owns the page's initialisation) with
    /// every index at 0, the start [`BackRing::attach`](super::BackRing::attach) assumes.
    pub fn init(page: P) -> Self {
        Self::init_at(page, 0)
    }

    /// Initialises the ring with every index at `start`; the backend must attach with
    /// [`BackRing::attach_at`](super::BackRing::attach_at) and the same `start`. Starting
    /// near `u32::MAX` makes the indices wrap soon, which is what the tests use it for.
    pub fn init_at(page: P, start: u32) -> Self {
        // Naming SLOTS makes the compiler evaluate it for these entry types, which
        // rejects entries too large for a slot at compile time.
        let _ = Self::SLOTS;
        // Zero the whole header, padding included, then set the indices. Only here does
        // the frontend write the backend's req_event: the backend is not looking yet.
        page.write_bytes(0, &[0u8; HEADER_SIZE]);
        page.store_u32(REQ_PROD_OFFSET, start);
        page.store_u32(RSP_PROD_OFFSET, start);
        // Each side asks to be told about the first entry coming its way.
        page.store_u32(REQ_EVENT_OFFSET, start.wrapping_add(1));
        page.store_u32(RSP_EVENT_OFFSET, start.wrapping_add(1));
        FrontRing { page, req_prod_pvt: start, req_prod_published: start, rsp_cons: start, entries: PhantomData }
    }

    /// Takes over a ring another frontend left **quiet** at `index` (every request it
    /// published answered and every response taken: `req_prod == rsp_prod == index`),
    /// writing nothing. This is how a driver hands its ring to another (the guest kernel
    /// lending the block device to a ring-3 task, and taking it back): the new owner
    /// goes on from the same index, so the backend, which keeps its own copies of the
    /// indices, never sees a change. Adopting a ring that is not quiet at `index` makes
    /// this end's view wrong; the next response check catches a gross mismatch.
    pub fn adopt(page: P, index: u32) -> Self {
        Self::resume(page, index, index)
    }

    /// Takes over a ring another frontend left with requests outstanding: it published
    /// every request up to `req_prod` and took every response before `rsp_cons`
    /// ([`FrontRing::outstanding`]). Writes nothing; the responses still to come are this
    /// end's to take. A receive ring is never quiet (its posted buffers wait for frames),
    /// so it is handed over this way.
    pub fn resume(page: P, req_prod: u32, rsp_cons: u32) -> Self {
        let _ = Self::SLOTS;
        FrontRing { page, req_prod_pvt: req_prod, req_prod_published: req_prod, rsp_cons, entries: PhantomData }
    }

    /// Where this end is, for [`FrontRing::resume`]: `(req_prod, rsp_cons)`, or `None`
    /// while requests are pushed but not published.
    pub fn outstanding(&self) -> Option<(u32, u32)> {
        (self.req_prod_pvt == self.req_prod_published).then_some((self.req_prod_pvt, self.rsp_cons))
    }

    /// The index this ring is quiet at (nothing pushed but unpublished, nothing
    /// published without its response taken), or `None` if it is not quiet: what a
    /// frontend hands over with [`FrontRing::adopt`].
    pub fn quiet_index(&self) -> Option<u32> {
        (self.req_prod_pvt == self.req_prod_published && self.req_prod_pvt == self.rsp_cons).then_some(self.rsp_cons)
    }

    /// [`FrontRing::adopt`] in place: this end goes on from `index`, where another
    /// frontend left the ring quiet (the guest kernel taking its ring back from a task).
    pub fn take_back(&mut self, index: u32) {
        self.req_prod_pvt = index;
        self.req_prod_published = index;
        self.rsp_cons = index;
    }

    /// The index the shared page says the ring is quiet at, whoever drove it: `Some`
    /// when the backend has answered every request published (`rsp_prod == req_prod`).
    /// How a frontend that lent its ring finds where to take it back
    /// ([`FrontRing::take_back`]) without trusting the borrower's word.
    pub fn answered_index(&self) -> Option<u32> {
        let req_prod = self.page.load_u32(REQ_PROD_OFFSET);
        (self.page.load_u32(RSP_PROD_OFFSET) == req_prod).then_some(req_prod)
    }

    /// Slots free for new requests: N minus the requests whose responses have not been
    /// taken yet.
    pub fn free_slots(&self) -> u32 {
        Self::SLOTS - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes `request` into the next free slot. The backend cannot see it until
    /// [`publish_requests`](Self::publish_requests): push several, publish once.
    pub fn push_request(&mut self, request: &Req) -> Result<(), RingFull> {
        // LAB 2 BEGIN: push a request into the next free slot
        if self.free_slots() == 0 {
            return Err(RingFull);
        }
        Geometry::<Req, Rsp>::write_slot(&self.page, self.req_prod_pvt, request);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
        // LAB 2 STUB: let _ = request;
        // LAB 2 STUB: todo!("lab 2: write the request into the slot of req_prod_pvt, unless the ring is full: FrontRing::push_request")
        // LAB 2 END
    }

    /// [`push_request`](Self::push_request) for a hot path: `write(page, offset)`
    /// stores the request's fields straight into the next free slot, which starts at
    /// `offset` (every field of `Req`'s layout, reserved bytes included, must be
    /// written: the slot holds an old request). No intermediate copy: on a host that
    /// emulates the guest kernel an instruction at a time, each byte copied costs.
    #[inline]
    pub fn push_request_with(&mut self, write: impl FnOnce(&P, usize)) -> Result<(), RingFull> {
        if self.free_slots() == 0 {
            return Err(RingFull);
        }
        write(&self.page, Geometry::<Req, Rsp>::slot_offset(self.req_prod_pvt));
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes every pushed request and says whether the backend asked to be notified
    /// (then the caller rings its doorbell). Xen's `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`.
    pub fn publish_requests(&mut self) -> bool {
        // LAB 2 BEGIN: publish the pushed requests, fence, and apply the event-index rule
        let old = self.req_prod_published;
        let new = self.req_prod_pvt;
        if new == old {
            return false;
        }
        // The requests' bytes were written before this Release store, so a backend that
        // sees the new req_prod also sees them.
        self.page.store_u32(REQ_PROD_OFFSET, new);
        self.req_prod_published = new;
        // req_prod must be visible before we read req_event. Otherwise the backend could,
        // at the same moment, re-arm req_event and re-read the old req_prod, and we read
        // the old req_event: it sleeps, we do not ring, the requests wait forever.
        self.page.full_fence();
        let event = self.page.load_u32(REQ_EVENT_OFFSET);
        must_notify(old, new, event)
        // LAB 2 STUB: let _ = (must_notify, REQ_PROD_OFFSET, REQ_EVENT_OFFSET, self.req_prod_published);
        // LAB 2 STUB: todo!("lab 2: publish req_prod, full fence, then notify iff req_event is in (old, new]: FrontRing::publish_requests")
        // LAB 2 END
    }

    /// Takes the next response, if one has been published. Reads `rsp_prod` once; if it
    /// claims more responses than requests the backend has seen, returns
    /// [`RingError::CorruptProducer`] and takes nothing. The response is a copy: the
    /// backend cannot change it any more.
    pub fn take_response(&mut self) -> Result<Option<Rsp>, RingError> {
        self.take_response_with(|page, offset| {
            let mut buf = [0u8; super::MAX_ENTRY_SIZE];
            let bytes = &mut buf[..Rsp::SIZE];
            page.read_bytes(offset, bytes);
            Rsp::decode(bytes)
        })
    }

    /// [`take_response`](Self::take_response) for a hot path: `read(page, offset)` reads
    /// the next response's fields straight from the slot at `offset` and returns them.
    /// It must load each field once and decide nothing from the page afterwards: what
    /// it returns is the copy that is checked, as `take_response`'s is.
    #[inline]
    pub fn take_response_with<T>(&mut self, read: impl FnOnce(&P, usize) -> T) -> Result<Option<T>, RingError> {
        // Acquire: the responses before rsp_prod are visible. Read once, judged once.
        let rsp_prod = self.page.load_u32(RSP_PROD_OFFSET);
        let waiting = rsp_prod.wrapping_sub(self.rsp_cons);
        // Only requests we published and have no answer for yet can be answered, and
        // there are never more than N of them.
        let limit = self.req_prod_published.wrapping_sub(self.rsp_cons);
        if waiting > limit {
            return Err(RingError::CorruptProducer {
                field: HeaderField::RspProd,
                value: rsp_prod,
                consumer: self.rsp_cons,
                limit,
            });
        }
        if waiting == 0 {
            return Ok(None);
        }
        let response = read(&self.page, Geometry::<Req, Rsp>::slot_offset(self.rsp_cons));
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(response))
    }

    /// The last step before sleeping: asks to be notified of the next response, then
    /// looks once more. Returns `true` if a response is there after all (take it
    /// instead of sleeping; a corrupt `rsp_prod` also answers `true`, so that
    /// `take_response` reports it). Xen's `RING_FINAL_CHECK_FOR_RESPONSES`.
    pub fn final_check_for_responses(&mut self) -> bool {
        self.page.store_u32(RSP_EVENT_OFFSET, self.rsp_cons.wrapping_add(1));
        // rsp_event must be visible before we re-read rsp_prod: then either the backend
        // sees our request to be notified, or we see its response (the fence in
        // publish_responses is the other half).
        self.page.full_fence();
        self.page.load_u32(RSP_PROD_OFFSET) != self.rsp_cons
    }
}
