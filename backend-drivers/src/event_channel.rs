//! The backend's end of an event channel: waking the guest.
//!
//! To tell the guest "look at your ring", a backend sets its channel's pending flag in
//! the shared-info page (so the guest's upcall handler knows which device fired) and
//! then signals its irqfd, an eventfd that KVM turns into an MSI to the guest's upcall
//! vector (see `pv_abi::event_channel`). The order matters: flag first, then interrupt,
//! so the handler that the interrupt starts always finds the flag.
//!
//! A backend served inline on the vCPU thread (`runner::inline`, for a recorded run)
//! has no irqfd: its notifier only sets the flag ([`GuestNotifier::flag_only`]) and the
//! caller raises the interrupt itself, synchronously, once the service is over.

use std::sync::atomic::Ordering;

use pv_abi::addr::PseudoPhys;
use pv_abi::event_channel::{MAX_CHANNELS, SHARED_INFO_PENDING_OFFSET};
use crate::GuestMemory;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use crate::guest_page::host_view;

/// Wakes the guest for one channel.
pub struct GuestNotifier {
    memory: GuestMemory,
    pending_flag: GuestAddress,
    /// `None` for a flag-only notifier: the caller raises the interrupt.
    irqfd: Option<EventFd>,
}

/// Why a notifier cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The channel number is out of range.
    #[error("event channel {0} does not exist (there are {MAX_CHANNELS})")]
    NoSuchChannel(u32),
    /// The channel's pending flag would lie past the end of the address space.
    #[error("a shared-info page at {0:#x} has no room for the pending flags")]
    SharedInfoTooHigh(PseudoPhys),
}

impl GuestNotifier {
    /// A notifier for `channel`, whose pending flag lives in the shared-info page at
    /// `shared_info`, and which raises the upcall through `irqfd`.
    pub fn new(memory: GuestMemory, shared_info: PseudoPhys, channel: u32, irqfd: EventFd) -> Result<Self, NotifierError> {
        Self::with_signal(memory, shared_info, channel, Some(irqfd))
    }

    /// A notifier that only sets the pending flag: whoever served the ring raises the
    /// upcall afterwards (hv does, from the vCPU thread, when it serves devices inline).
    pub fn flag_only(memory: GuestMemory, shared_info: PseudoPhys, channel: u32) -> Result<Self, NotifierError> {
        Self::with_signal(memory, shared_info, channel, None)
    }

    fn with_signal(memory: GuestMemory, shared_info: PseudoPhys, channel: u32, irqfd: Option<EventFd>) -> Result<Self, NotifierError> {
        if channel as usize >= MAX_CHANNELS {
            return Err(NotifierError::NoSuchChannel(channel));
        }
        let pending_flag = shared_info
            .checked_add((SHARED_INFO_PENDING_OFFSET + channel as usize) as u64)
            .ok_or(NotifierError::SharedInfoTooHigh(shared_info))?;
        Ok(GuestNotifier { memory, pending_flag: host_view(pending_flag), irqfd })
    }

    /// Sets the pending flag, then signals the upcall (a flag-only notifier leaves the
    /// signal to its caller).
    pub fn notify(&self) {
        // Release: the responses the backend just published are visible to a guest that
        // sees the flag.
        let _ = self.memory.store(1u8, self.pending_flag, Ordering::Release);
        // An eventfd write fails only if the counter would overflow (2^64 - 1 pending
        // signals); the guest is then certainly going to be woken anyway.
        if let Some(irqfd) = &self.irqfd {
            let _ = irqfd.write(1);
        }
    }
}
