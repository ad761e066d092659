//! The host rig of lab 2 (not a test file: `mod rig;` in each test file).
//!
//! Everything here uses only pv-abi's public ring API, so any correct ring passes:
//! two pages ([`CellPage`] for one thread, where the test can also play a hostile peer
//! by writing the header directly; [`AtomicPage`] for two threads, as the host sees
//! guest RAM), and a 64-byte test message (so a ring has 32 slots).

#![allow(dead_code)] // each test file uses a part of the rig

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;

use pv_abi::ring::{BackRing, FrontRing, HeaderField, RingEntry, SharedPage, RING_PAGE_SIZE};

/// A test request or response: an id and a body derived from it, so a torn or
/// misplaced slot shows up as a body that does not match its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    pub id: u64,
    pub body: [u8; 56],
}

impl Msg {
    pub fn new(id: u64) -> Self {
        let mut body = [0u8; 56];
        for (i, b) in body.iter_mut().enumerate() {
            *b = (id as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        Msg { id, body }
    }
}

impl RingEntry for Msg {
    const SIZE: usize = 64;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..].copy_from_slice(&self.body);
    }
    fn decode(bytes: &[u8]) -> Self {
        Msg { id: u64::from_le_bytes(bytes[..8].try_into().unwrap()), body: bytes[8..64].try_into().unwrap() }
    }
}

/// A ring page in ordinary memory for one thread. Clones share the page: the frontend,
/// the backend and the test (reading the header, or playing a hostile peer) each hold one.
#[derive(Clone)]
pub struct CellPage(Rc<RefCell<[u8; RING_PAGE_SIZE]>>);

impl CellPage {
    pub fn new() -> Self {
        CellPage(Rc::new(RefCell::new([0; RING_PAGE_SIZE])))
    }
    /// One header index, as the other side would read it.
    pub fn get(&self, field: HeaderField) -> u32 {
        self.load_u32(field.offset())
    }
    /// Writes one header index, as the peer (honest or not) would.
    pub fn set(&self, field: HeaderField, value: u32) {
        self.store_u32(field.offset(), value);
    }
    pub fn snapshot(&self) -> [u8; RING_PAGE_SIZE] {
        *self.0.borrow()
    }
}

impl SharedPage for CellPage {
    fn load_u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.0.borrow()[offset..offset + 4].try_into().unwrap())
    }
    fn store_u32(&self, offset: usize, value: u32) {
        self.0.borrow_mut()[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0.borrow()[offset..offset + buf.len()]);
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.0.borrow_mut()[offset..offset + data.len()].copy_from_slice(data);
    }
    fn full_fence(&self) {}
}

/// A ring page two threads share: 1024 atomic words. Indices use the orderings the
/// trait asks for, entry bytes Relaxed accesses (ordered by the indices).
#[derive(Clone)]
pub struct AtomicPage(Arc<Vec<AtomicU32>>);

impl AtomicPage {
    pub fn new() -> Self {
        AtomicPage(Arc::new((0..RING_PAGE_SIZE / 4).map(|_| AtomicU32::new(0)).collect()))
    }
}

impl SharedPage for AtomicPage {
    fn load_u32(&self, offset: usize) -> u32 {
        self.0[offset / 4].load(Ordering::Acquire)
    }
    fn store_u32(&self, offset: usize, value: u32) {
        self.0[offset / 4].store(value, Ordering::Release)
    }
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset + i;
            *b = self.0[at / 4].load(Ordering::Relaxed).to_ne_bytes()[at % 4];
        }
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        // Whole words are written here (entries and the header are 4-byte aligned and
        // a multiple of 4 long), one byte at a time would race with nothing: one writer.
        for (i, chunk) in data.chunks(4).enumerate() {
            let word = offset / 4 + i;
            let mut bytes = self.0[word].load(Ordering::Relaxed).to_ne_bytes();
            bytes[..chunk.len()].copy_from_slice(chunk);
            self.0[word].store(u32::from_ne_bytes(bytes), Ordering::Relaxed);
        }
    }
    fn full_fence(&self) {
        fence(Ordering::SeqCst);
    }
}

pub type Front = FrontRing<CellPage, Msg, Msg>;
pub type Back = BackRing<CellPage, Msg, Msg>;

/// A fresh ring in one page with every index at `start`: the frontend, the backend, and
/// the page for the test.
pub fn ring_at(start: u32) -> (Front, Back, CellPage) {
    let page = CellPage::new();
    let front = FrontRing::init_at(page.clone(), start);
    let back = BackRing::attach_at(page.clone(), start);
    (front, back, page)
}

pub fn ring() -> (Front, Back, CellPage) {
    ring_at(0)
}

/// Slots in the test ring.
pub const N: u32 = Front::SLOTS;

/// The frontend pushes `ids`, then publishes once: whether it must ring the doorbell.
pub fn send(front: &mut Front, ids: impl IntoIterator<Item = u64>) -> bool {
    for id in ids {
        front.push_request(&Msg::new(id)).unwrap_or_else(|_| panic!("lab 2: push_request: request {id} refused, but the ring has free slots (free_slots() = {})", front.free_slots()));
    }
    front.publish_requests()
}

/// The backend takes one request, failing the test if it finds none or a wrong one.
pub fn take_expecting(back: &mut Back, id: u64, rule: &str) {
    match back.take_request() {
        Ok(Some(m)) if m == Msg::new(id) => {}
        Ok(Some(m)) if m.id == id => panic!("lab 2: {rule}: request {id} came out of the ring with a body that is not the one pushed (a slot written or read at the wrong offset?)"),
        Ok(Some(m)) => panic!("lab 2: {rule}: expected request {id}, took request {} (requests come out in the order they were pushed, each exactly once)", m.id),
        Ok(None) => panic!("lab 2: {rule}: expected request {id}, but take_request found no request published"),
        Err(e) => panic!("lab 2: {rule}: expected request {id}, but take_request refused the ring: {e}"),
    }
}

/// The backend answers every request it took (so their slots can be reused), publishes,
/// and the frontend takes the responses.
pub fn answer_all(front: &mut Front, back: &mut Back, ids: impl IntoIterator<Item = u64>) {
    for id in ids {
        back.push_response(&Msg::new(id)).expect("the rig answers only requests the backend took");
    }
    back.publish_responses();
    while let Some(_) = front.take_response().expect("the rig's responses are well formed") {}
}
