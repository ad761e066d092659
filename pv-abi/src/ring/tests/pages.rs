//! Test implementations of [`SharedPage`] and a test entry type.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;

use crate::ring::{HeaderField, RingEntry, SharedPage, RING_PAGE_SIZE};

/// A ring page in ordinary memory, for single-threaded tests. Clones share the page, so
/// the frontend, the backend and the test (playing a hostile peer) can each hold one.
#[derive(Clone)]
pub struct CellPage(Rc<RefCell<[u8; RING_PAGE_SIZE]>>);

impl CellPage {
    /// A page of zeros.
    pub fn new() -> Self {
        Self::filled(0)
    }

    /// A page with every byte `byte`.
    pub fn filled(byte: u8) -> Self {
        CellPage(Rc::new(RefCell::new([byte; RING_PAGE_SIZE])))
    }

    /// A page holding exactly `bytes`.
    pub fn from_bytes(bytes: &[u8; RING_PAGE_SIZE]) -> Self {
        CellPage(Rc::new(RefCell::new(*bytes)))
    }

    /// A copy of every byte.
    pub fn snapshot(&self) -> [u8; RING_PAGE_SIZE] {
        *self.0.borrow()
    }

    /// Reads one header index.
    pub fn get(&self, field: HeaderField) -> u32 {
        self.load_u32(field.offset())
    }

    /// Writes one header index, as the peer (honest or not) would.
    pub fn set(&self, field: HeaderField, value: u32) {
        self.store_u32(field.offset(), value);
    }

    /// The four indices: `[req_prod, req_event, rsp_prod, rsp_event]`.
    pub fn header(&self) -> [u32; 4] {
        [HeaderField::ReqProd, HeaderField::ReqEvent, HeaderField::RspProd, HeaderField::RspEvent].map(|f| self.get(f))
    }
}

impl SharedPage for CellPage {
    fn load_u32(&self, offset: usize) -> u32 {
        let page = self.0.borrow();
        u32::from_ne_bytes(page[offset..offset + 4].try_into().unwrap())
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

    fn full_fence(&self) {
        // One thread: every access is already seen in program order.
    }
}

/// A ring page two threads can share: 1024 atomic words, as the host sees guest RAM.
/// Index loads and stores use the orderings the trait asks for; entry bytes use
/// Relaxed accesses, which the index's Release/Acquire pair orders.
#[derive(Clone)]
pub struct AtomicPage(Arc<[AtomicU32; RING_PAGE_SIZE / 4]>);

impl AtomicPage {
    /// A page of zeros.
    pub fn new() -> Self {
        AtomicPage(Arc::new(std::array::from_fn(|_| AtomicU32::new(0))))
    }

    /// The word holding byte `at`, and the shift of that byte in it (byte 0 of the page
    /// is the low byte of word 0, as on a little-endian machine).
    fn word(&self, at: usize) -> (&AtomicU32, usize) {
        (&self.0[at / 4], 8 * (at % 4))
    }
}

impl SharedPage for AtomicPage {
    fn load_u32(&self, offset: usize) -> u32 {
        assert_eq!(offset % 4, 0, "index offsets are aligned");
        self.0[offset / 4].load(Ordering::Acquire)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        assert_eq!(offset % 4, 0, "index offsets are aligned");
        self.0[offset / 4].store(value, Ordering::Release);
    }

    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        for (i, byte) in buf.iter_mut().enumerate() {
            let (word, shift) = self.word(offset + i);
            *byte = (word.load(Ordering::Relaxed) >> shift) as u8;
        }
    }

    fn write_bytes(&self, offset: usize, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            let (word, shift) = self.word(offset + i);
            // A plain read-modify-write is enough: a slot belongs to one side at a time
            // (slots start 8-byte aligned, so no word is shared by two slots).
            let old = word.load(Ordering::Relaxed);
            word.store((old & !(0xff << shift)) | u32::from(byte) << shift, Ordering::Relaxed);
        }
    }

    fn full_fence(&self) {
        fence(Ordering::SeqCst);
    }
}

/// A request or response for the tests: an id, a value, and filler up to `SIZE` bytes
/// that depends on the id, so that an entry read from the wrong slot, or torn, shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe<const SIZE: usize> {
    /// Numbers the requests 0, 1, 2, … in the order they are pushed.
    pub id: u64,
    /// The payload.
    pub value: u64,
    /// Whether the filler read back was the filler for `id`.
    pub filler_ok: bool,
}

impl<const SIZE: usize> Probe<SIZE> {
    /// An entry with a correct filler.
    pub fn new(id: u64, value: u64) -> Self {
        Probe { id, value, filler_ok: true }
    }

    fn filler(id: u64, i: usize) -> u8 {
        (id as u8) ^ (i as u8).wrapping_mul(31)
    }
}

impl<const SIZE: usize> RingEntry for Probe<SIZE> {
    const SIZE: usize = {
        assert!(SIZE >= 16, "a Probe needs 16 bytes for id and value");
        SIZE
    };

    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..16].copy_from_slice(&self.value.to_le_bytes());
        for (i, byte) in out.iter_mut().enumerate().skip(16) {
            *byte = Self::filler(self.id, i);
        }
    }

    fn decode(bytes: &[u8]) -> Self {
        let id = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
        let value = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let filler_ok = bytes.iter().enumerate().skip(16).all(|(i, &b)| b == Self::filler(id, i));
        Probe { id, value, filler_ok }
    }
}

/// The payload of request `id`: a scrambled number (splitmix64), so that sums catch
/// swapped or repeated entries.
pub fn payload(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value the backend answers a request's payload with.
pub fn answer(value: u64) -> u64 {
    !value.rotate_left(7)
}
