//! Event channels: how the two halves of a split driver wake each other.
//!
//! A ring (see `ring`) carries the data; an event channel only says "look at the ring".
//!
//! ```text
//!   guest frontend ──doorbell: out DOORBELL_PORT_BASE+ch──► KVM ioeventfd ──► backend thread wakes
//!                                                           (no exit reaches hv's vCPU loop)
//!   backend ──pending[ch] = 1 in the shared-info page──┐
//!           ──write irqfd ──► KVM: MSI to UPCALL_VECTOR ──► guest upcall handler
//!                                                            scans pending[], calls drivers
//! ```
//!
//! **Guest → backend.** The guest writes any byte to port `DOORBELL_PORT_BASE + channel`.
//! hv registers that port with KVM_IOEVENTFD, so KVM itself turns the write into an
//! eventfd signal and resumes the guest at once: the backend thread wakes without the
//! vCPU ever leaving the kernel.
//!
//! **Backend → guest.** The backend sets `pending[channel]` in the shared-info page and
//! signals an irqfd that KVM routes (GSI routing, an MSI) to the guest's local APIC as
//! vector [`UPCALL_VECTOR`]. One vector serves every channel, as Xen's single upcall
//! does; the handler learns which channels fired from the pending flags.
//!
//! Unlike Xen's pending *bits*, hv uses one pending *byte* per channel: each backend
//! thread writes only its own byte with a plain store, so no atomic read-modify-write on
//! shared memory is needed and no two writers can lose each other's update. The guest
//! clears a flag with an atomic swap before it looks at that channel's ring, so an event
//! that arrives while it works sets the flag again and is not lost.

/// Number of event channels.
pub const MAX_CHANNELS: usize = 8;

/// The console device's channel.
pub const CONSOLE_CHANNEL: u32 = 0;
/// The block device's channel.
pub const BLOCK_CHANNEL: u32 = 1;
/// The network device's transmit ring's channel.
pub const NET_TX_CHANNEL: u32 = 2;
/// The network device's receive ring's channel.
pub const NET_RX_CHANNEL: u32 = 3;
/// The balloon device's channel.
pub const BALLOON_CHANNEL: u32 = 4;

/// First doorbell port: the doorbell of channel `c` is port `DOORBELL_PORT_BASE + c`.
/// Above the legacy PC range, like the hypercall port, so no emulated device claims it.
pub const DOORBELL_PORT_BASE: u16 = 0x0700;

/// The interrupt vector of the upcall. Vectors below 32 are CPU exceptions; 0x40 leaves
/// room for legacy device vectors below it.
pub const UPCALL_VECTOR: u8 = 0x40;
/// The local APIC's spurious-interrupt vector (the guest must have a handler for it).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Byte offset of `pending[0]` in the shared-info page; `pending[c]` is at `+ c`.
pub const SHARED_INFO_PENDING_OFFSET: usize = 0;

/// Byte offset, in the shared-info page, of the guest's **CR3 section** flag: non-zero
/// while the guest loads CR3 the way its memory mode asks (`mov cr3` in ept mode, the
/// `set_cr3` hypercall in shadow mode; it reads the mode from the boot-info page each
/// time). hv takes no snapshot and no migration's last step at a kick that lands inside
/// that section, because the guest would finish its CR3 load the old mode's way after
/// being resumed in the other mode (hv's `vcpu::control` explains). Past the pending
/// bytes, in a cache line of its own.
pub const SHARED_INFO_CR3_SECTION_OFFSET: usize = 64;

/// The doorbell port of channel `channel`.
pub const fn doorbell_port(channel: u32) -> u16 {
    DOORBELL_PORT_BASE + channel as u16
}

const _: () = assert!(DOORBELL_PORT_BASE >= 0x400 && MAX_CHANNELS <= 64 && SHARED_INFO_CR3_SECTION_OFFSET >= MAX_CHANNELS);
