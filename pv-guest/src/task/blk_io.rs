//! Block I/O straight into a ring-3 task's own memory: zero copy, persistent grants,
//! and one system call per batch.
//!
//! The kernel's own block commands (`commands/blk.rs`) grant frames per request and wait
//! per completion. That is simple, but every step runs in ring 0, which some hosts
//! emulate an instruction at a time (PVM: about 250 ns each, see
//! shared/docs/kvm-platform.md). Here a task does the work the way Linux's `io_uring`
//! or a user-space driver over an IOMMU would:
//!
//! 1. **Register a buffer once** (`blk_setup`, nr 6): `buffers` buffers of
//!    `frames_per_buffer` pages each, contiguous in the task's memory. The kernel walks
//!    the task's page tables for every page (faulting demand-zero pages in), takes only
//!    pages mapped *user and writable* in that task's own space, and grants each frame
//!    to the backend. These are **persistent grants** (Xen blkif has them too): they
//!    stay until the task lets go of the buffer, so no request grants or revokes
//!    anything.
//! 2. **Submit and reap in one trap** (`blk_io`, nr 7): the task passes an array of
//!    up to 32 requests (buffer number, sector, sector count, operation); the kernel
//!    checks them all, puts each on the ring with the buffer's grants, rings the
//!    doorbell once, then hands back every completion there is (sleeping until the
//!    first if none is ready) as (buffer, status) pairs. The backend reads the disk
//!    *into the task's frames*: no byte of data is copied by the guest kernel.
//! 3. **Let go** (`blk_release`, nr 8, and at task exit): wait for the requests still in
//!    flight, then revoke every grant. Only then may the frames be freed.
//!
//! ## Why the persistent grants are safe
//!
//! A grant lets the backend write a frame; a frame the backend may write must never be
//! reused for anything else. Three rules keep that true:
//!
//! - only frames mapped user-writable in the calling task's own page tables are
//!   granted: a kernel address, the task's code, or an address the task has not mapped
//!   is refused with `EFAULT`, so a task can never make the backend write a frame that is
//!   not already its own to write;
//! - while the buffer is registered the task cannot unmap it (`unmap` of an overlapping
//!   region fails with `EBUSY`), so the frames stay the task's;
//! - release waits for every request in flight to complete before it revokes, and task
//!   exit releases *before* the address space is destroyed and its frames freed.
//!
//! One task at a time owns the registration (the device has one ring); the others get
//! `EBUSY`. Every argument is copied from the task before it is checked, and every loop
//! is bounded by the 32 buffers and 16 frames a buffer may have.

use frontend_drivers::block::MAX_IN_FLIGHT;
use pv_abi::addr::{GuestVirt, PAGE_SIZE};
use pv_abi::device::block::{BlockOp, BLOCK_MAX_SEGMENTS, SECTORS_PER_SEGMENT};
use pv_abi::grant::GrantRef;

use super::demand_paging::TaskMemory;
use crate::arch::cpu_local::VcpuCell;
use crate::hv::drivers;
use crate::mm::writer::PageTableWriter;

/// Most buffers one registration may have: one per request in flight.
pub const MAX_BUFFERS: u64 = MAX_IN_FLIGHT as u64;
/// Most pages one buffer may have: one request's segments.
pub const MAX_FRAMES_PER_BUFFER: u64 = BLOCK_MAX_SEGMENTS as u64;
/// Bytes of one request in `blk_io`'s array: sector u64, nr_sectors u32, buffer u16,
/// op u8 (0 read, 1 write), one reserved byte.
pub const SUBMIT_ENTRY_BYTES: usize = 16;
/// Bytes of one completion `blk_io` writes back: buffer u32, status i32 (0 = ok, else
/// a negative `pv_abi::device::block::BlockStatus`).
pub const COMPLETION_ENTRY_BYTES: usize = 8;

/// Why a call failed (a negated errno goes back to the task).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkIoError {
    /// A bad count, alignment, buffer number, operation or sector count.
    Invalid,
    /// A page that is not the task's to give (kernel, code, not mapped).
    Fault,
    /// Another registration exists, or a buffer is already in flight, or the region is pinned.
    Busy,
    /// More requests in one call than a ring holds.
    TooBig,
    /// Not enough grant entries for the buffer.
    NoGrants,
    /// No block device, or the calling task has no registration.
    NoDevice,
    /// The block frontend failed (the backend corrupted the ring).
    Io,
}

impl BlkIoError {
    /// The negated errno the task sees.
    pub fn errno(self) -> u64 {
        let e: i64 = match self {
            BlkIoError::Invalid => -22,
            BlkIoError::Fault => -14,
            BlkIoError::Busy => -16,
            BlkIoError::TooBig => -7,
            BlkIoError::NoGrants => -28,
            BlkIoError::NoDevice => -19,
            BlkIoError::Io => -5,
        };
        e as u64
    }
}

/// A task's registered buffer.
struct Registration {
    /// The scheduler slot of the task that owns it.
    task: usize,
    /// The pinned range of the task's memory.
    start: GuestVirt,
    end: GuestVirt,
    buffers: usize,
    frames_per_buffer: usize,
    /// Each buffer's persistent grants, one per page.
    grefs: [[GrantRef; BLOCK_MAX_SEGMENTS]; MAX_IN_FLIGHT],
    /// Buffers with a request in flight (bit per buffer).
    busy: u32,
    /// The id of each busy buffer's request.
    request_of: [u64; MAX_IN_FLIGHT],
}

/// The one registration (the device has one ring). Used only from system calls and
/// task exit, never from an interrupt handler.
static REGISTRATION: VcpuCell<Option<Registration>> = VcpuCell::new(None);

/// `blk_setup(buffer, buffers, frames_per_buffer)` for the running task `task`, whose
/// memory is `memory` (the scheduler lends it, with its page-table writer `w`).
pub fn setup(task: usize, memory: &mut TaskMemory, w: &mut PageTableWriter, start: GuestVirt, buffers: u64, frames_per_buffer: u64) -> Result<(), BlkIoError> {
    if !(1..=MAX_BUFFERS).contains(&buffers) || !(1..=MAX_FRAMES_PER_BUFFER).contains(&frames_per_buffer) || !start.is_aligned(PAGE_SIZE) {
        return Err(BlkIoError::Invalid);
    }
    let pages = buffers * frames_per_buffer;
    let end = start.checked_add(pages * PAGE_SIZE).ok_or(BlkIoError::Fault)?;
    let mut registration = REGISTRATION.borrow_mut();
    if registration.is_some() {
        return Err(BlkIoError::Busy);
    }
    let mut device = drivers::block();
    let blk = device.as_mut().ok_or(BlkIoError::NoDevice)?;
    if u64::from(blk.grants_free()) < pages {
        return Err(BlkIoError::NoGrants);
    }
    let mut grefs = [[0; BLOCK_MAX_SEGMENTS]; MAX_IN_FLIGHT];
    let mut granted = 0usize;
    let mut result = Ok(());
    'pages: for (b, buffer) in grefs.iter_mut().enumerate().take(buffers as usize) {
        for (f, gref) in buffer.iter_mut().enumerate().take(frames_per_buffer as usize) {
            let va = GuestVirt::new(start.raw() + (b as u64 * frames_per_buffer + f as u64) * PAGE_SIZE);
            let Some(frame) = memory.user_writable_frame(w, va) else {
                result = Err(BlkIoError::Fault);
                break 'pages;
            };
            match blk.grant_persistent(frame, false) {
                Ok(g) => *gref = g,
                Err(_) => {
                    result = Err(BlkIoError::NoGrants);
                    break 'pages;
                }
            }
            granted += 1;
        }
    }
    if let Err(e) = result {
        // Undo: nothing was submitted with these grants yet.
        for g in grefs.iter().flatten().take(granted) {
            blk.revoke_persistent(*g);
        }
        return Err(e);
    }
    *registration = Some(Registration {
        task,
        start,
        end,
        buffers: buffers as usize,
        frames_per_buffer: frames_per_buffer as usize,
        grefs,
        busy: 0,
        request_of: [0; MAX_IN_FLIGHT],
    });
    Ok(())
}

/// One request of a `blk_io` batch, decoded from the task's copy.
#[derive(Clone, Copy)]
struct Submission {
    sector: u64,
    nr_sectors: u32,
    buffer: usize,
    op: BlockOp,
}

/// Decodes one entry of a `blk_io` request array (`None`: an unknown operation).
#[inline]
fn decode(entry: &[u8]) -> Option<Submission> {
    let word = |at: usize| u64::from_le_bytes([entry[at], entry[at + 1], entry[at + 2], entry[at + 3], entry[at + 4], entry[at + 5], entry[at + 6], entry[at + 7]]);
    let (sector, rest) = (word(0), word(8));
    let op = match (rest >> 48) as u8 {
        0 => BlockOp::Read,
        1 => BlockOp::Write,
        _ => return None,
    };
    Some(Submission { sector, nr_sectors: rest as u32, buffer: usize::from((rest >> 32) as u16), op })
}

/// `blk_io(submissions, count, completions)` for the running task `task`: queues
/// `count` requests, then reaps. Returns the number of completions written.
pub fn io(task: usize, memory: &mut TaskMemory, w: &mut PageTableWriter, submissions: GuestVirt, count: u64, completions: GuestVirt) -> Result<u64, BlkIoError> {
    if count > MAX_BUFFERS {
        return Err(BlkIoError::TooBig);
    }
    let mut guard = REGISTRATION.borrow_mut();
    let reg = guard.as_mut().filter(|r| r.task == task).ok_or(BlkIoError::NoDevice)?;
    // Copy the whole batch first, then check the copy: the task cannot change it after.
    let mut raw = [0u8; MAX_IN_FLIGHT * SUBMIT_ENTRY_BYTES];
    let raw = &mut raw[..count as usize * SUBMIT_ENTRY_BYTES];
    if !raw.is_empty() && !memory.copy_from_user(w, submissions, raw) {
        return Err(BlkIoError::Fault);
    }
    // Check all of them before submitting any: a bad entry fails the whole call.
    let mut claimed = reg.busy;
    for entry in raw.chunks_exact(SUBMIT_ENTRY_BYTES) {
        let s = decode(entry).ok_or(BlkIoError::Invalid)?;
        if s.buffer >= reg.buffers || s.nr_sectors == 0 || s.nr_sectors > reg.frames_per_buffer as u32 * SECTORS_PER_SEGMENT {
            return Err(BlkIoError::Invalid);
        }
        // A buffer already in flight, or named twice in this batch.
        if claimed & (1 << s.buffer) != 0 {
            return Err(BlkIoError::Busy);
        }
        claimed |= 1 << s.buffer;
    }
    let mut device = drivers::block();
    let blk = device.as_mut().ok_or(BlkIoError::NoDevice)?;
    // The kernel's own copy, checked above: decoding it again gives the same entries.
    for s in raw.chunks_exact(SUBMIT_ENTRY_BYTES).filter_map(decode) {
        let segments = s.nr_sectors.div_ceil(SECTORS_PER_SEGMENT) as usize;
        let id = blk.submit_granted(s.buffer, s.op, s.sector, s.nr_sectors, &reg.grefs[s.buffer][..segments]).map_err(|_| BlkIoError::Io)?;
        reg.busy |= 1 << s.buffer;
        reg.request_of[s.buffer] = id;
    }
    if count > 0 {
        blk.kick();
    }
    // Reap everything there is; sleep only if nothing is ready and something is in flight.
    let mut done = [0u8; MAX_IN_FLIGHT * COMPLETION_ENTRY_BYTES];
    let mut reaped = 0usize;
    while reg.busy != 0 {
        match blk.take_completion() {
            Ok(Some((id, buffer, status))) => {
                let Some(buffer) = buffer.filter(|&b| owns(reg, b, id)) else { continue };
                reg.busy &= !(1 << buffer);
                let entry = &mut done[reaped * COMPLETION_ENTRY_BYTES..(reaped + 1) * COMPLETION_ENTRY_BYTES];
                entry[..4].copy_from_slice(&(buffer as u32).to_le_bytes());
                entry[4..].copy_from_slice(&(status as i32).to_le_bytes());
                reaped += 1;
            }
            Ok(None) if reaped > 0 => break,
            Ok(None) => blk.wait_for_responses(),
            Err(_) => return Err(BlkIoError::Io),
        }
    }
    drop(device);
    drop(guard);
    let out = &done[..reaped * COMPLETION_ENTRY_BYTES];
    if !out.is_empty() && !memory.copy_to_user(w, completions, out) {
        return Err(BlkIoError::Fault);
    }
    Ok(reaped as u64)
}

/// Whether buffer `buffer` of the registration has request `id` in flight.
fn owns(reg: &Registration, buffer: usize, id: u64) -> bool {
    buffer < MAX_IN_FLIGHT && reg.busy & (1 << buffer) != 0 && reg.request_of[buffer] == id
}

/// `blk_release()`, and task exit: waits for the task's requests in flight, then revokes
/// every grant of its buffer. Does nothing for a task without a registration.
pub fn release(task: usize) -> Result<(), BlkIoError> {
    let mut guard = REGISTRATION.borrow_mut();
    let Some(reg) = guard.as_mut().filter(|r| r.task == task) else {
        return Err(BlkIoError::NoDevice);
    };
    let mut device = drivers::block();
    let blk = device.as_mut().ok_or(BlkIoError::NoDevice)?;
    while reg.busy != 0 {
        match blk.take_completion() {
            Ok(Some((id, buffer, _))) => {
                if let Some(b) = buffer.filter(|&b| owns(reg, b, id)) {
                    reg.busy &= !(1 << b);
                }
            }
            Ok(None) => blk.wait_for_responses(),
            // The backend broke the ring: no completion will come. Revoke anyway, so
            // that no later request can use these frames.
            Err(_) => break,
        }
    }
    for buffer in &reg.grefs[..reg.buffers] {
        for g in &buffer[..reg.frames_per_buffer] {
            blk.revoke_persistent(*g);
        }
    }
    let drained = reg.busy == 0;
    *guard = None;
    if drained {
        Ok(())
    } else {
        Err(BlkIoError::Io)
    }
}

/// Whether `start..start+len` of task `task` overlaps its registered buffer (such an
/// unmap is refused while the buffer is registered).
pub fn pins(task: usize, start: GuestVirt, len: u64) -> bool {
    let end = start.checked_add(len).unwrap_or(GuestVirt::new(u64::MAX));
    REGISTRATION.borrow_mut().as_ref().is_some_and(|r| r.task == task && start < r.end && r.start < end)
}
