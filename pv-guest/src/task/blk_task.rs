//! The ring-3 block task: the kernel lends the block ring to `pv-blkd`, which reads the
//! disk straight through it, and takes the ring back when the task ends.
//!
//! [`super::blk_io`] already lets a task read into its own frames, with one system call
//! per batch of requests; the ring-0 work per request is what is left, a few hundred
//! instructions, and a host that emulates guest ring 0 makes each of them cost. Here
//! the kernel is not on the request path at all. Before the task starts it:
//!
//! - checks that its own block frontend is **quiet** (nothing in flight, every
//!   response taken) and notes the ring index (`BlockFront::quiet_index`);
//! - allocates the task's buffer frames and **grants each writable once** (the task must
//!   never write the grant table);
//! - maps the ring page, the buffers and a read-only [`BlkHandoff`] page into the task,
//!   and opens the ring's doorbell port in the TSS's I/O bitmap.
//!
//! When the task ends, however it ends, the kernel closes the port, waits (bounded)
//! until the backend has answered every request the task published, and takes the ring
//! back at that index, read from the shared page rather than from the task
//! (`BlockFront::take_back`). Only then are the grants revoked and the frames freed:
//! a read still in flight would otherwise land in a frame that belongs to someone else.
//! If the backend never catches up, the frames stay allocated and the ring stays lent,
//! and the kernel says so: lost memory, never corrupted memory.
//!
//! The task is trusted as a driver domain is: it could name any grant reference in a
//! request, the kernel's own block buffers' included. `docs/bench.md` measures the path.

use pv_abi::addr::{GuestVirt, PseudoFrame, PAGE_SHIFT};
use pv_user::handoff::blk::{BlkHandoff, BLK_HANDOFF_MAGIC, BUFFERS_VA, DEVICE_WINDOW_END, HANDOFF_VA, MAX_BUFFERS, MAX_GRANTS, MAX_PAGES_PER_BUFFER, RINGS_VA};

use super::scheduler::{self, SpawnError, TaskExit};
use super::user_image::{ImageError, UserImage};
use crate::arch::{cpu, gdt};
use crate::hv::drivers;
use crate::mm::address_space::AddressSpace;
use crate::mm::writer::PageTableWriter;
use crate::mm::{frames, MmuError, PageSize, Protection};

/// `pv-blkd`, built by this crate's build script before the kernel and embedded here.
static BLKD_IMAGE: &[u8] = include_bytes!(env!("PV_BLKD_ELF"));

/// The program's name in messages.
const NAME: &str = "pv-blkd";

/// How long the kernel waits, after the task, for the backend to answer what the task
/// published, in TSC cycles per kHz (so: milliseconds).
const TAKE_BACK_LIMIT_MS: u64 = 10_000;

/// The reads the task is asked to make (see `pv-guest/blkd`).
#[derive(Clone, Copy, Debug)]
pub struct BlkTaskReads {
    /// Timed repetitions.
    pub reps: u64,
    /// Reads per repetition.
    pub ops: u64,
    /// Sectors per read (a multiple of 8, at most 128).
    pub sectors: u64,
    /// Sectors read from sector 0 and hashed afterwards.
    pub verify_sectors: u64,
}

/// Why the task could not run, or the ring could not be taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkTaskError {
    /// hv gave this guest no block device.
    NoDevice,
    /// The kernel's block frontend has requests in flight.
    Busy,
    /// Sectors per read are not a multiple of 8 up to 128, or the verification read does
    /// not fit the buffers.
    BadShape,
    /// Not one buffer's worth of grant entries or frames is free.
    NoGrants,
    /// The embedded program is not a loadable image.
    Image(ImageError),
    /// No task slot, frame or page table.
    NoMemory,
    /// The doorbell port lies outside the TSS's I/O bitmap.
    PortNotOpenable,
    /// The backend did not answer everything the task published: the ring stays lent
    /// and the buffers allocated.
    RingNotReturned,
}

/// The task's buffers: frames and their grants, buffer by buffer.
struct Buffers {
    frames: [PseudoFrame; MAX_GRANTS],
    grants: [u32; MAX_GRANTS],
    count: usize,
}

impl Buffers {
    /// Revokes the grants and frees the frames.
    fn release(&self) {
        if let Some(block) = drivers::block().as_mut() {
            for gref in &self.grants[..self.count] {
                block.revoke_persistent(*gref);
            }
        }
        for frame in &self.frames[..self.count] {
            frames::free(*frame);
        }
    }
}

/// Lends the block ring to `pv-blkd`, runs it with `reads`, takes the ring back, and
/// says how the task ended.
pub fn run(info: &pv_abi::BootInfo, reads: BlkTaskReads) -> Result<TaskExit, BlkTaskError> {
    let pages_per_buffer = reads.sectors / 8;
    if reads.sectors == 0 || !reads.sectors.is_multiple_of(8) || pages_per_buffer > MAX_PAGES_PER_BUFFER as u64 || !reads.verify_sectors.is_multiple_of(8) {
        return Err(BlkTaskError::BadShape);
    }
    let image = UserImage::parse(BLKD_IMAGE, GuestVirt::new(HANDOFF_VA)..GuestVirt::new(DEVICE_WINDOW_END)).map_err(BlkTaskError::Image)?;
    let (ring_index, buffers) = {
        let mut guard = drivers::block();
        let block = guard.as_mut().ok_or(BlkTaskError::NoDevice)?;
        let index = block.quiet_index().ok_or(BlkTaskError::Busy)?;
        let count = (u64::from(block.grants_free()) / pages_per_buffer).min(MAX_BUFFERS as u64);
        if count == 0 || reads.verify_sectors > count * reads.sectors {
            return Err(BlkTaskError::NoGrants);
        }
        (index, grant_buffers(block, (count * pages_per_buffer) as usize)?)
    };
    let buffer_count = (buffers.count as u64 / pages_per_buffer) as u32;
    let handoff = BlkHandoff {
        magic: BLK_HANDOFF_MAGIC,
        ring_index,
        doorbell_port: info.block.doorbell_port,
        _pad: 0,
        buffers: buffer_count,
        pages_per_buffer: pages_per_buffer as u32,
        reps: reads.reps,
        ops: reads.ops,
        sectors: reads.sectors,
        wrap_sectors: info.block_sectors,
        verify_sectors: reads.verify_sectors,
        tsc_khz: info.tsc_khz,
        grants: buffers.grants,
    };
    let ring = PseudoFrame::new(info.block.ring_gpa >> PAGE_SHIFT);
    let port = info.block.doorbell_port;
    // The port first: a task that could not ring its doorbell must not be started.
    if !gdt::allow_user_port(port, true) {
        buffers.release();
        return Err(BlkTaskError::PortNotOpenable);
    }
    let borrowed = GuestVirt::new(RINGS_VA)..GuestVirt::new(DEVICE_WINDOW_END);
    let spawned = scheduler::spawn_image(NAME, image.entry, [HANDOFF_VA, 0, 0], borrowed, |space, w| {
        image.load(space, w).map_err(BlkTaskError::Image)?;
        map_device(space, w, ring, &buffers, &handoff).map_err(|_| BlkTaskError::NoMemory)
    });
    let slot = match spawned {
        Ok(slot) => slot,
        Err(e) => {
            // Nothing was published: the ring is still the kernel's, quiet.
            gdt::allow_user_port(port, false);
            buffers.release();
            return Err(match e {
                SpawnError::Mmu(_) => BlkTaskError::NoMemory,
                SpawnError::Build(e) => e,
            });
        }
    };
    let results = scheduler::run_all();
    gdt::allow_user_port(port, false);
    let result = Ok(results[slot].unwrap_or(TaskExit::Exited(1)));
    take_back(info)?;
    buffers.release();
    result
}

/// Allocates `pages` frames and grants each writable, for good; undoes it all on failure.
fn grant_buffers(block: &mut drivers::Block, pages: usize) -> Result<Buffers, BlkTaskError> {
    let mut buffers = Buffers { frames: [PseudoFrame::new(0); MAX_GRANTS], grants: [0; MAX_GRANTS], count: 0 };
    for i in 0..pages.min(MAX_GRANTS) {
        let Some(frame) = frames::alloc() else {
            release_partial(block, &buffers);
            return Err(BlkTaskError::NoGrants);
        };
        let Ok(gref) = block.grant_persistent(frame, false) else {
            frames::free(frame);
            release_partial(block, &buffers);
            return Err(BlkTaskError::NoGrants);
        };
        buffers.frames[i] = frame;
        buffers.grants[i] = gref;
        buffers.count = i + 1;
    }
    Ok(buffers)
}

/// [`Buffers::release`] while the caller holds the block frontend.
fn release_partial(block: &mut drivers::Block, buffers: &Buffers) {
    for i in 0..buffers.count {
        block.revoke_persistent(buffers.grants[i]);
        frames::free(buffers.frames[i]);
    }
}

/// Waits (bounded) for the backend to answer everything the task published, then takes
/// the ring back where the shared page says it is quiet.
fn take_back(info: &pv_abi::BootInfo) -> Result<(), BlkTaskError> {
    let limit = info.tsc_khz.max(1).saturating_mul(TAKE_BACK_LIMIT_MS);
    let start = cpu::rdtsc();
    loop {
        let taken = drivers::block().as_mut().is_some_and(|block| block.take_back());
        if taken {
            return Ok(());
        }
        if cpu::rdtsc().wrapping_sub(start) > limit {
            crate::println!("{NAME}: the block backend did not answer everything the task published; the ring and the task's buffers stay lent");
            return Err(BlkTaskError::RingNotReturned);
        }
        core::hint::spin_loop();
    }
}

/// Maps the handoff page (a fresh frame, the task's), the ring and every buffer page
/// (lent) into the task's space.
fn map_device(space: &mut AddressSpace, w: &mut PageTableWriter, ring: PseudoFrame, buffers: &Buffers, handoff: &BlkHandoff) -> Result<(), MmuError> {
    let page = frames::alloc().ok_or(MmuError::NoTables)?;
    // SAFETY: the frame was just allocated and nothing else refers to it.
    let bytes = unsafe { frames::bytes(page) };
    bytes.fill(0);
    // SAFETY: a frame is 4096 bytes and BlkHandoff fits in it (checked at compile time
    // in pv_user::handoff::blk); write_unaligned needs no alignment.
    unsafe { core::ptr::write_unaligned(bytes.as_mut_ptr() as *mut BlkHandoff, *handoff) };
    space.map(w, GuestVirt::new(HANDOFF_VA), page, Protection::USER_READ_ONLY, PageSize::Small)?;
    space.map(w, GuestVirt::new(RINGS_VA), ring, Protection::USER_DATA, PageSize::Small)?;
    for (i, frame) in buffers.frames[..buffers.count].iter().enumerate() {
        space.map(w, GuestVirt::new(BUFFERS_VA + (i as u64) * 4096), *frame, Protection::USER_DATA, PageSize::Small)?;
    }
    w.flush()
}
