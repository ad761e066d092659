//! What a backend reports about its work, for hv's trace.
//!
//! Backends run on their own threads, so they record events through a sink that hv
//! provides (hv writes them into the same trace as the vCPU's exits). A backend records
//! an event *before* it signals the guest, so the trace shows cause before effect.

use pv_abi::addr::PseudoPhys;
use pv_abi::grant::{GrantAccess, GrantProblem, GrantRef};
use pv_abi::ring::RingError;

/// One thing a backend did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceEvent {
    /// The doorbell woke the backend; `count` doorbell writes since the last wake.
    Doorbell {
        /// Device name.
        device: &'static str,
        /// Doorbell writes coalesced into this wake-up.
        count: u64,
    },
    /// A request was taken off the ring.
    RequestPopped {
        /// Device name.
        device: &'static str,
        /// The request's id.
        id: u64,
        /// What it asks for, e.g. `read sector=8 sectors=8 segments=1`.
        summary: String,
    },
    /// A grant reference was checked.
    GrantCheck {
        /// Device name.
        device: &'static str,
        /// The reference.
        gref: GrantRef,
        /// The access asked for.
        access: GrantAccess,
        /// The frame's guest-physical address, or why it was refused.
        result: Result<PseudoPhys, GrantProblem>,
    },
    /// A response was put on the ring.
    ResponsePushed {
        /// Device name.
        device: &'static str,
        /// The request's id.
        id: u64,
        /// The status, as a name.
        status: String,
    },
    /// Responses were published; `notified` says whether the guest asked to be woken.
    Published {
        /// Device name.
        device: &'static str,
        /// Whether the backend signalled the upcall.
        notified: bool,
    },
    /// A request was refused for what it asked (a balloon frame not the guest's to give,
    /// say); its response carries the status too.
    Refused {
        /// Device name.
        device: &'static str,
        /// What was refused and why.
        reason: String,
    },
    /// The ring is corrupt (the guest wrote an impossible index); nothing was consumed.
    RingError {
        /// Device name.
        device: &'static str,
        /// What was wrong.
        what: RingError,
    },
}

/// Where backends record events. hv implements it over its trace; tests collect events.
pub trait DeviceEventSink: Send + Sync {
    /// Whether anyone records events (if not, backends skip building them).
    fn enabled(&self) -> bool;
    /// Records one event.
    fn record(&self, event: DeviceEvent);
}

/// A sink that drops everything.
pub struct NoEvents;

impl DeviceEventSink for NoEvents {
    fn enabled(&self) -> bool {
        false
    }
    fn record(&self, _: DeviceEvent) {}
}
