//! What the kernel hands the ring-3 block task (`pv-blkd`) when it lends it the block
//! device: the ring, quiet at [`BlkHandoff::ring_index`]; the task's buffers, granted
//! writable once; the doorbell port; and the reads to make.
//!
//! ```text
//!  HANDOFF_VA         the BlkHandoff (read-only)
//!  RINGS_VA           the block ring's page
//!  BUFFERS_VA         `buffers` buffers of `pages_per_buffer` pages each, one after the
//!                     other; page p of buffer b is granted as grants[b * pages_per_buffer + p]
//! ```
//!
//! The task drives the ring itself (`frontend-drivers`' `block::direct::DirectQueue`)
//! and leaves it quiet when it exits; the kernel waits until the backend has answered
//! everything the task published, then takes the ring back at that index.

pub use super::{BUFFERS_VA, HANDOFF_VA, RINGS_VA};

/// The most buffers (and so requests in flight) a task gets: the block frontend's.
pub const MAX_BUFFERS: usize = 32;
/// The most pages per buffer: one request's worth (64 KiB).
pub const MAX_PAGES_PER_BUFFER: usize = 16;
/// The most grants a handoff carries.
pub const MAX_GRANTS: usize = MAX_BUFFERS * MAX_PAGES_PER_BUFFER;
/// The end of the window the kernel maps for the device.
pub const DEVICE_WINDOW_END: u64 = BUFFERS_VA + (MAX_GRANTS as u64) * 0x1000;

/// "blkd" plus a version.
pub const BLK_HANDOFF_MAGIC: u64 = 0x626c_6b64_0000_0001;

/// The page the kernel hands `pv-blkd` (`repr(C)`: the two are built separately).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BlkHandoff {
    /// [`BLK_HANDOFF_MAGIC`].
    pub magic: u64,
    /// The ring index the kernel left the ring quiet at.
    pub ring_index: u32,
    /// The block ring's doorbell port.
    pub doorbell_port: u16,
    /// Padding (zero).
    pub _pad: u16,
    /// Buffers mapped (1..=[`MAX_BUFFERS`]).
    pub buffers: u32,
    /// Pages in each (1..=[`MAX_PAGES_PER_BUFFER`]).
    pub pages_per_buffer: u32,
    /// Timed repetitions.
    pub reps: u64,
    /// Reads per repetition.
    pub ops: u64,
    /// Sectors per read (a multiple of 8, at most `pages_per_buffer * 8`).
    pub sectors: u64,
    /// Where reading wraps back to sector 0 (the disk's size, in sectors).
    pub wrap_sectors: u64,
    /// Sectors to read from sector 0 and hash after the timed repetitions.
    pub verify_sectors: u64,
    /// The TSC's rate in kHz (the task gives up on a backend silent for 10 s).
    pub tsc_khz: u64,
    /// The grant of each buffer page, buffer by buffer.
    pub grants: [u32; MAX_GRANTS],
}

/// Checked at compile time: the handoff fits its page.
const _: () = assert!(core::mem::size_of::<BlkHandoff>() <= 4096);
