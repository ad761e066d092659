//! # pv-blkd: block I/O straight through the ring, from ring 3
//!
//! The kernel (`pv-guest`, `task::blk_task`) lends this program the block device: the
//! ring (quiet at an index the handoff gives), buffer frames mapped into the task and
//! granted writable once, and the doorbell port opened in the TSS's I/O bitmap. The task
//! then reads the disk with no system call and no interrupt per request: it puts
//! requests on the ring naming its grants (`frontend-drivers`' `DirectQueue`), rings the
//! doorbell with an `out` when the backend asked for one, and polls for responses, every
//! buffer kept in flight. This is a user-level storage driver (SPDK's idea, or io_uring
//! with registered buffers and polling); the kernel path it replaces (`task::blk_io`,
//! one system call per batch) costs hundreds of ring-0 instructions a request, which a
//! host that emulates guest ring 0 makes expensive.
//!
//! It runs `hv bench`'s `blk-direct` workload: `reps` timed repetitions of `ops` reads
//! of `sectors` sectors each, sequential from sector 0 (back to 0 at `wrap_sectors`),
//! each reported as (TSC cycles, reads completed) with the `bench_report` system call;
//! then a read of the first `verify_sectors` sectors into the buffers in order, reported
//! as (0, FNV-1a 64 of those bytes), for hv to compare with the disk image. Exit code 0,
//! or 1 if a read failed or the backend went silent.
//!
//! It leaves the ring quiet (every request answered and taken) so the kernel can take
//! it back.

#![no_std]
#![no_main]

use frontend_drivers::block::direct::DirectQueue;
use pv_abi::device::block::{BlockOp, BlockStatus};
use pv_user::doorbell::PortDoorbell;
use pv_user::handoff::blk::{BlkHandoff, BLK_HANDOFF_MAGIC, BUFFERS_VA, MAX_BUFFERS, MAX_PAGES_PER_BUFFER, RINGS_VA};
use pv_user::page::{MappedPage, PAGE};
use pv_user::{println, sys};

pv_user::task_entry!(blkd_main);

/// The queue over the lent ring.
type Queue = DirectQueue<MappedPage, PortDoorbell, MAX_BUFFERS>;

/// Bytes in a sector.
const SECTOR: u64 = 512;
/// How long the task waits for a response before it gives up on the backend.
const SILENCE_LIMIT_US: u64 = 10_000_000;

/// FNV-1a, 64-bit (as hv's `checks` and the kernel's `blk-read-sum`).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Why the run stopped.
enum Failure {
    /// The handoff is not one this program understands, or its sizes are out of range.
    BadHandoff,
    /// A read came back with an error status.
    Read(BlockStatus),
    /// The queue refused a request or the backend broke the ring.
    Queue(frontend_drivers::block::BlockError),
    /// No response for [`SILENCE_LIMIT_US`].
    Silent,
    /// The kernel's report record is full.
    ReportsFull,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::BadHandoff => f.write_str("the kernel's handoff is not one this program understands"),
            Failure::Read(status) => write!(f, "a read failed: {status:?}"),
            Failure::Queue(e) => write!(f, "{e}"),
            Failure::Silent => write!(f, "the block backend did not answer for {} s", SILENCE_LIMIT_US / 1_000_000),
            Failure::ReportsFull => f.write_str("the kernel's report record is full"),
        }
    }
}

/// The task's state: its handoff, its queue, and where the next read goes.
struct Reader {
    h: BlkHandoff,
    queue: Queue,
    next_sector: u64,
}

impl Reader {
    /// The grants of buffer `b`'s first `pages` pages.
    fn grants(&self, b: usize, pages: usize) -> &[u32] {
        let first = b * self.h.pages_per_buffer as usize;
        &self.h.grants[first..first + pages]
    }

    /// Queues a read of `sectors` sectors at `sector` into buffer `b`.
    fn read(&mut self, b: usize, sector: u64, sectors: u64) -> Result<(), Failure> {
        let pages = sectors.div_ceil(8) as usize;
        let grants: [u32; MAX_PAGES_PER_BUFFER] = core::array::from_fn(|i| if i < pages { self.grants(b, pages)[i] } else { 0 });
        self.queue.submit(b, BlockOp::Read, sector, sectors as u32, &grants[..pages]).map(|_| ()).map_err(Failure::Queue)
    }

    /// The sector the next timed read starts at (sequential, wrapping at the disk's end).
    fn next(&mut self) -> u64 {
        if self.next_sector + self.h.sectors > self.h.wrap_sectors {
            self.next_sector = 0;
        }
        let sector = self.next_sector;
        self.next_sector += self.h.sectors;
        sector
    }

    /// Waits for the next response (publishing queued requests first); the buffer it completes.
    fn completion(&mut self) -> Result<usize, Failure> {
        let limit = self.h.tsc_khz.max(1).saturating_mul(SILENCE_LIMIT_US / 1000);
        let start = pv_user::entry::rdtsc();
        loop {
            match self.queue.take_completion().map_err(Failure::Queue)? {
                Some((b, BlockStatus::Ok)) => return Ok(b),
                Some((_, status)) => return Err(Failure::Read(status)),
                None if pv_user::entry::rdtsc().wrapping_sub(start) > limit => return Err(Failure::Silent),
                None => core::hint::spin_loop(),
            }
        }
    }

    /// One timed repetition: `ops` reads with every buffer in flight. Returns cycles.
    ///
    /// The doorbell is the expensive part (an `out` from ring 3 exits to the
    /// hypervisor); the backend asks for one only when it has gone to sleep. So a freed
    /// buffer's next read is queued at once but published in batches: when half the
    /// buffers are waiting to be published, or when the backend has nothing left to do.
    /// A sleeping backend then wakes to half a ring of work, one doorbell for many reads.
    fn repetition(&mut self) -> Result<u64, Failure> {
        let (ops, buffers) = (self.h.ops, u64::from(self.h.buffers));
        let start = pv_user::entry::rdtsc();
        let mut submitted = 0;
        for b in 0..buffers.min(ops) as usize {
            let sector = self.next();
            self.read(b, sector, self.h.sectors)?;
            submitted += 1;
        }
        self.queue.kick();
        let (mut completed, mut unpublished) = (0, 0);
        while completed < ops {
            let b = self.completion()?;
            completed += 1;
            if submitted < ops {
                let sector = self.next();
                self.read(b, sector, self.h.sectors)?;
                submitted += 1;
                unpublished += 1;
            }
            let backend_idle = submitted - completed == unpublished;
            if unpublished > 0 && (2 * unpublished >= buffers || backend_idle) {
                self.queue.kick();
                unpublished = 0;
            }
        }
        Ok(pv_user::entry::rdtsc().wrapping_sub(start))
    }

    /// Reads the first `verify_sectors` sectors into the buffers in order and hashes them.
    fn verify(&mut self) -> Result<u64, Failure> {
        let per_buffer = self.h.sectors;
        let mut left = self.h.verify_sectors;
        let mut used = 0;
        while left > 0 {
            let n = left.min(per_buffer);
            self.read(used, (used as u64) * per_buffer, n)?;
            left -= n;
            used += 1;
        }
        self.queue.kick();
        for _ in 0..used {
            self.completion()?;
        }
        let mut hash = FNV_OFFSET_BASIS;
        let mut left = self.h.verify_sectors * SECTOR;
        for b in 0..used {
            let base = BUFFERS_VA + (b as u64) * u64::from(self.h.pages_per_buffer) * PAGE as u64;
            for page in 0..self.h.pages_per_buffer as u64 {
                if left == 0 {
                    break;
                }
                // SAFETY: the kernel maps every page of every buffer at these addresses
                // for the task's whole life (pv_user::handoff::blk); no read is in flight.
                let mapped = unsafe { MappedPage::at(base + page * PAGE as u64) };
                let bytes = mapped.bytes();
                let take = left.min(PAGE as u64) as usize;
                for byte in &bytes[..take] {
                    hash = (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
                }
                left -= take as u64;
            }
        }
        Ok(hash)
    }
}

/// Checks the handoff's sizes before anything is built on them.
fn check(h: &BlkHandoff) -> Result<(), Failure> {
    let pages = u64::from(h.pages_per_buffer);
    let sane = h.magic == BLK_HANDOFF_MAGIC
        && (1..=MAX_BUFFERS as u32).contains(&h.buffers)
        && (1..=MAX_PAGES_PER_BUFFER as u64).contains(&pages)
        && h.sectors > 0
        && h.sectors.is_multiple_of(8)
        && h.sectors <= pages * 8
        && h.wrap_sectors >= h.sectors
        && h.verify_sectors.is_multiple_of(8)
        && h.verify_sectors <= u64::from(h.buffers) * h.sectors;
    if sane {
        Ok(())
    } else {
        Err(Failure::BadHandoff)
    }
}

fn run(h: BlkHandoff) -> Result<(), Failure> {
    check(&h)?;
    // SAFETY: the kernel maps the block ring at RINGS_VA for the task's whole life.
    let ring = unsafe { MappedPage::at(RINGS_VA) };
    let mut reader = Reader { queue: Queue::adopt(ring, h.ring_index, PortDoorbell::new(h.doorbell_port)), h, next_sector: 0 };
    let reps = if h.ops == 0 { 0 } else { h.reps };
    for _ in 0..reps {
        let cycles = reader.repetition()?;
        if !sys::bench_report(cycles, h.ops) {
            return Err(Failure::ReportsFull);
        }
    }
    let hash = reader.verify()?;
    if !sys::bench_report(0, hash) {
        return Err(Failure::ReportsFull);
    }
    Ok(())
}

/// The Rust entry (from `_start`).
extern "C" fn blkd_main(handoff: *const BlkHandoff) -> ! {
    // SAFETY: the kernel maps the handoff page (read-only, holding one BlkHandoff) at the
    // address it passes, for the task's whole life; it is copied once, here.
    let h = unsafe { core::ptr::read_unaligned(handoff) };
    match run(h) {
        Ok(()) => sys::exit(0),
        Err(failure) => {
            println!("pv-blkd: stopped: {failure}");
            sys::exit(1)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("pv-blkd: panic: {info}");
    sys::exit(101)
}
