//! What the kernel hands the ring-3 network task (`pv-netd`) when it lends it the
//! network device: where its rings and buffers are mapped, the grant reference of every
//! buffer, the doorbell ports, the guest's network identity, and what to do.
//!
//! The kernel writes one [`Handoff`] into a page mapped read-only at [`HANDOFF_VA`] and
//! starts the task with that address in `rdi`. Everything else the task may touch is
//! mapped by the kernel at these addresses, user read-write:
//!
//! ```text
//!  HANDOFF_VA         the Handoff (read-only)
//!  RINGS_VA           the transmit ring's page, then the receive ring's
//!  HANDBACK_VA        the Handback the task fills in when it exits (read-write)
//!  BUFFERS_VA         TX_BUFFERS transmit buffer frames, then RX_BUFFERS receive ones
//!  (transmit first)
//! ```
//!
//! The task cannot write the grant table (the kernel keeps it, since a grant names any
//! frame of the guest): the kernel grants every buffer once, before the task starts,
//! and the task's frontend uses those references for good (`frontend-drivers`'
//! `NetFront::with_persistent_grants`). It rings the backend's doorbells itself: the
//! kernel opens the two ports in the TSS's I/O permission bitmap while the task runs.
//!
//! **Handing the device on.** The rings' private indices (which receive buffers are
//! posted, which frames were taken) live with whoever drives them. So when the task
//! exits it writes where it left the rings into the [`Handback`] page
//! (`NetFront::handover`), and the kernel gives that to the next holder
//! (`NetFront::resume_persistent`): another task, in [`Handoff::left`], or its own stack.
//! A task that dies without writing it takes the device with it, for the rest of the boot.

/// Transmit buffers (one frame each), in the kernel's frontend and the task's alike.
pub const TX_BUFFERS: usize = 16;
/// Receive buffers: enough for a burst of frames between two polls of the stack.
pub const RX_BUFFERS: usize = 32;

pub use super::{BUFFERS_VA, HANDOFF_VA, RINGS_VA};
pub use frontend_drivers::net::NetHandover;

/// Where the [`Handback`] page is mapped (after the two rings; inside the device window,
/// so it stays the kernel's when the task ends).
pub const HANDBACK_VA: u64 = RINGS_VA + 0x2000;
/// A [`Handback`] the task wrote: "netd left" plus a version.
pub const HANDBACK_MAGIC: u64 = 0x6e64_6c65_6674_0001;

/// What the task writes when it exits: where it left the rings.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Handback {
    /// [`HANDBACK_MAGIC`] once written (the kernel maps the page zeroed).
    pub magic: u64,
    /// Where the rings are.
    pub left: NetHandover,
}
/// The end of the window the kernel maps for the device; the task's image must lie
/// outside `HANDOFF_VA..DEVICE_WINDOW_END`.
pub const DEVICE_WINDOW_END: u64 = BUFFERS_VA + ((TX_BUFFERS + RX_BUFFERS) as u64) * 0x1000;

/// "netd" plus a version: a task started with anything else stops at once.
pub const HANDOFF_MAGIC: u64 = 0x6e65_7464_0000_0002;

/// What the task is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum NetTaskCommand {
    /// `net-serve`: answer ping and HTTP for `args[0]` seconds.
    Serve = 1,
    /// `net-ping`: ping the IPv4 address `args[0]` (its four bytes, first byte lowest)
    /// `args[1]` times.
    Ping = 2,
}

/// The page the kernel hands the task (`repr(C)`: the kernel and the task are built
/// separately, and this is their contract).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Handoff {
    /// [`HANDOFF_MAGIC`].
    pub magic: u64,
    /// [`NetTaskCommand`] as a number (checked by the task before use).
    pub command: u64,
    /// The command's arguments.
    pub args: [u64; 2],
    /// The TSC's rate in kHz (from the boot-info page).
    pub tsc_khz: u64,
    /// The guest's Ethernet address.
    pub mac: [u8; 6],
    /// The guest's IPv4 address.
    pub ipv4: [u8; 4],
    /// Its prefix length.
    pub prefix_len: u8,
    /// Padding (zero).
    pub _pad: u8,
    /// The transmit ring's doorbell port.
    pub tx_doorbell_port: u16,
    /// The receive ring's doorbell port.
    pub rx_doorbell_port: u16,
    /// Padding (zero).
    pub _pad2: u32,
    /// The frame number of each transmit buffer (pseudo-physical).
    pub tx_frames: [u64; TX_BUFFERS],
    /// The frame number of each receive buffer.
    pub rx_frames: [u64; RX_BUFFERS],
    /// The grant reference naming each transmit buffer, read-only.
    pub tx_grants: [u32; TX_BUFFERS],
    /// The grant reference naming each receive buffer, writable.
    pub rx_grants: [u32; RX_BUFFERS],
    /// 1: the rings were driven before, and [`Handoff::left`] says where they are (go on
    /// from there); 0: they are fresh (initialise them).
    pub resume: u32,
    /// Padding (zero).
    pub _pad3: u32,
    /// Where the previous holder left the rings (when `resume` is 1).
    pub left: NetHandover,
}

impl NetTaskCommand {
    /// The command a handoff's number names, if any.
    pub fn from_raw(raw: u64) -> Option<Self> {
        match raw {
            1 => Some(NetTaskCommand::Serve),
            2 => Some(NetTaskCommand::Ping),
            _ => None,
        }
    }
}

/// Checked at compile time: the handoff fits its page.
const _: () = assert!(core::mem::size_of::<Handoff>() <= 4096);
