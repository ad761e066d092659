//! The inline runner: a backend served on the caller's thread, as hv does for a
//! recorded run. The frontend is the real ring code; "the guest" is this test.

use std::io::Write;
use std::sync::{Arc, Mutex};

use backend_drivers::console::ConsoleBackend;
use backend_drivers::event_channel::GuestNotifier;
use backend_drivers::events::{DeviceEvent, DeviceEventSink};
use backend_drivers::guest_page::GuestPage;
use backend_drivers::runner::{InlineBackend, InlineService, NotifyPolicy};
use backend_drivers::GuestMemory;
use pv_abi::addr::PseudoPhys;
use pv_abi::device::console::{ConsoleRequest, ConsoleResponse};
use pv_abi::event_channel::SHARED_INFO_PENDING_OFFSET;
use pv_abi::ring::{FrontRing, SharedPage};
use vm_memory::{Bytes, GuestAddress};

const SHARED_INFO: u64 = 0x3000;
const RING: u64 = 0x5000;
const CHANNEL: u32 = 1;

#[derive(Default)]
struct Collected(Mutex<Vec<DeviceEvent>>);
impl DeviceEventSink for Collected {
    fn enabled(&self) -> bool {
        true
    }
    fn record(&self, e: DeviceEvent) {
        self.0.lock().unwrap().push(e);
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);
impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn setup() -> (GuestMemory, InlineBackend<ConsoleBackend>, Captured, Arc<Collected>) {
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let out = Captured::default();
    let events = Arc::new(Collected::default());
    let page = GuestPage::new(memory.clone(), PseudoPhys::new(RING)).unwrap();
    let notifier = GuestNotifier::flag_only(memory.clone(), PseudoPhys::new(SHARED_INFO), CHANNEL).unwrap();
    let backend = InlineBackend::new(ConsoleBackend::new(Box::new(out.clone())), page, notifier, events.clone(), NotifyPolicy::EventIndex);
    (memory, backend, out, events)
}

fn pending_flag(memory: &GuestMemory) -> u8 {
    memory.read_obj(GuestAddress(SHARED_INFO + SHARED_INFO_PENDING_OFFSET as u64 + u64::from(CHANNEL))).unwrap()
}

#[test]
fn a_doorbell_is_served_on_the_callers_thread_and_the_caller_raises_the_upcall() {
    let (memory, mut backend, out, events) = setup();
    let mut front: FrontRing<GuestPage, ConsoleRequest, ConsoleResponse> = FrontRing::init(GuestPage::new(memory.clone(), PseudoPhys::new(RING)).unwrap());
    front.push_request(&ConsoleRequest::new(7, b"hello\n")).unwrap();
    assert!(front.publish_requests(), "a fresh ring wants its doorbell rung");
    front.final_check_for_responses(); // the frontend asks to be woken by the response
    let served = backend.serve_doorbell();
    assert!(served.notify && !served.ring_error, "{served:?}");
    assert_eq!(out.0.lock().unwrap().as_slice(), b"hello\n");
    assert_eq!(pending_flag(&memory), 1, "the flag is set; the interrupt is the caller's");
    let response = front.take_response().unwrap().expect("answered before serve_doorbell returned");
    assert_eq!((response.id, response.status), (7, 6));
    let stats = backend.stats();
    assert_eq!((stats.doorbells, stats.requests, stats.notifications), (1, 1, 1));
    let events = events.0.lock().unwrap();
    assert!(matches!(events.first(), Some(DeviceEvent::Doorbell { count: 1, .. })));
    assert!(matches!(events.last(), Some(DeviceEvent::Published { notified: true, .. })));
}

#[test]
fn hostile_corrupt_ring_served_inline_is_counted_not_fatal() {
    let (memory, mut backend, out, _) = setup();
    let page = GuestPage::new(memory, PseudoPhys::new(RING)).unwrap();
    // req_prod far ahead of anything the ring can hold.
    page.store_u32(0, 1_000_000);
    let served = backend.serve_doorbell();
    assert!(served.ring_error && !served.notify, "{served:?}");
    assert_eq!(backend.stats().ring_errors, 1);
    assert!(out.0.lock().unwrap().is_empty());
}
