//! Workloads to migrate: a tunable writable working set, and a checksum whose result
//! shows whether anything was lost on the way.
//!
//! - `dirty-loop MIB PAGES_PER_S [SECONDS]` writes one word of a page of a MIB-sized
//!   buffer, PAGES_PER_S pages a second (paced by the TSC), cycling through the buffer,
//!   for SECONDS (default 5). Its *writable working set* is the buffer, its dirtying rate
//!   PAGES_PER_S: a class migrates it with small and large values and watches the
//!   pre-copy rounds shrink (converge) or not (fall back to stop-and-copy). PAGES_PER_S 0
//!   writes as fast as the guest can. It prints when it starts and when it ends.
//! - `checksum-loop MIB STEPS [MS_PER_STEP]` runs STEPS deterministic steps over a
//!   MIB-sized buffer, each reading and rewriting words of 64 of its pages, MS_PER_STEP
//!   apart (default 10), so the work is spread over a migration; with a disk it also
//!   writes one page of the disk per step and reads them all back at the end. It prints
//!   its progress and a final checksum of the buffer (and the disk pages) that depends on
//!   every step: a migrated run must print the same result as an unmigrated one.
//!
//! Both run in ring 0 (which some hosts emulate instruction by instruction, see
//! docs/bench.md): still fast enough for tens of thousands of pages a second, which is
//! what a class needs to see rounds converge or not.

use pv_abi::addr::{PseudoFrame, PAGE_SIZE};
use pv_abi::device::block::{BlockOp, BlockStatus, SECTORS_PER_SEGMENT};
use pv_abi::paging::LARGE_PAGE_SIZE;
use pv_abi::BootInfo;

use crate::arch::cpu;
use crate::hv::drivers;
use crate::mm::frames;
use crate::println;

/// Exit code for bad arguments.
const EXIT_USAGE: u8 = 2;
/// Most MiB a buffer may have (the guest's RAM is the real limit).
const MAX_BUFFER_MIB: u64 = 1024;
/// 2 MiB chunks in the largest buffer.
const MAX_CHUNKS: usize = (MAX_BUFFER_MIB * (1 << 20) / LARGE_PAGE_SIZE) as usize;
/// Frames in a 2 MiB chunk.
const FRAMES_PER_CHUNK: u64 = LARGE_PAGE_SIZE / PAGE_SIZE;
/// Words of each page the checksum reads and writes (the first 64 bytes).
const WORDS_PER_PAGE: u64 = 8;
/// Pages one checksum step touches.
const PAGES_PER_STEP: u64 = 64;
/// Disk pages the checksum cycles through (one written per step).
const DISK_PAGES: u64 = 64;

/// FNV-1a over a 64-bit word.
fn mix(hash: u64, word: u64) -> u64 {
    word.to_le_bytes().iter().fold(hash, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

fn parse(word: Option<&str>) -> Option<u64> {
    word?.parse().ok()
}

/// A buffer of 2 MiB chunks (not necessarily contiguous), owned until dropped.
struct Buffer {
    chunks: [u64; MAX_CHUNKS],
    count: usize,
}

impl Buffer {
    fn new(mib: u64) -> Option<Buffer> {
        let mut b = Buffer { chunks: [0; MAX_CHUNKS], count: 0 };
        let want = (mib * (1 << 20) / LARGE_PAGE_SIZE) as usize;
        while b.count < want.min(MAX_CHUNKS) {
            b.chunks[b.count] = frames::alloc_large()?.raw();
            b.count += 1;
        }
        Some(b)
    }

    fn pages(&self) -> u64 {
        self.count as u64 * FRAMES_PER_CHUNK
    }

    /// Page `i` of the buffer (`i < pages()`).
    fn frame(&self, i: u64) -> PseudoFrame {
        PseudoFrame::new(self.chunks[(i / FRAMES_PER_CHUNK) as usize] + i % FRAMES_PER_CHUNK)
    }

    /// Word `w` of page `i`.
    fn word(&self, i: u64, w: u64) -> *mut u64 {
        // SAFETY: the buffer owns the frame (from `alloc_large`, freed only on drop), and
        // no reference to it is kept: the pointer is used for one volatile access.
        let bytes = unsafe { frames::bytes(self.frame(i)) };
        bytes[(w * 8) as usize..].as_mut_ptr().cast()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        for &chunk in &self.chunks[..self.count] {
            frames::free_large(PseudoFrame::new(chunk));
        }
    }
}

/// TSC cycles per millisecond (0 if the TSC rate is unknown).
fn cycles_per_ms(info: &BootInfo) -> u64 {
    info.tsc_khz
}

/// `dirty-loop MIB PAGES_PER_S [SECONDS]`.
pub fn dirty_loop<'a>(info: &BootInfo, mut args: impl Iterator<Item = &'a str>) -> u8 {
    let (Some(mib), Some(rate)) = (parse(args.next()), parse(args.next())) else {
        println!("dirty-loop: usage: dirty-loop MIB PAGES_PER_S [SECONDS]");
        return EXIT_USAGE;
    };
    let seconds = match args.next() {
        None => 5,
        Some(w) => match w.parse::<u64>() {
            Ok(s) if (1..=3600).contains(&s) => s,
            _ => {
                println!("dirty-loop: SECONDS must be 1..=3600");
                return EXIT_USAGE;
            }
        },
    };
    if !(2..=MAX_BUFFER_MIB).contains(&mib) || mib % 2 != 0 {
        println!("dirty-loop: MIB must be an even number of MiB, 2..={MAX_BUFFER_MIB}");
        return EXIT_USAGE;
    }
    let khz = cycles_per_ms(info);
    if khz == 0 {
        println!("dirty-loop: the TSC rate is unknown: cannot pace the writes");
        return 1;
    }
    let Some(buffer) = Buffer::new(mib) else {
        println!("dirty-loop: not enough free memory for {mib} MiB");
        return 1;
    };
    let pages = buffer.pages();
    println!("dirty-loop: writing {pages} pages ({mib} MiB) at {rate} pages/s for {seconds} s");
    let start = cpu::rdtsc();
    let end = start + seconds * 1000 * khz;
    let (mut written, mut next_page) = (0u64, 0u64);
    loop {
        let now = cpu::rdtsc();
        if now >= end {
            break;
        }
        // Pages due by now at `rate` (cycles * pages/s / cycles-per-s); all of them at 0.
        let due = if rate == 0 { written + 64 } else { ((now - start) as u128 * rate as u128 / (khz as u128 * 1000)) as u64 };
        while written < due {
            // SAFETY: `word` points into a page the buffer owns.
            unsafe { buffer.word(next_page, 0).write_volatile(written) };
            written += 1;
            next_page = if next_page + 1 == pages { 0 } else { next_page + 1 };
        }
    }
    println!("dirty-loop: done: {written} page writes");
    0
}

/// `checksum-loop MIB STEPS [MS_PER_STEP]`.
pub fn checksum_loop<'a>(info: &BootInfo, mut args: impl Iterator<Item = &'a str>) -> u8 {
    let (Some(mib), Some(steps)) = (parse(args.next()), parse(args.next())) else {
        println!("checksum-loop: usage: checksum-loop MIB STEPS [MS_PER_STEP]");
        return EXIT_USAGE;
    };
    let ms_per_step = match args.next() {
        None => 10,
        Some(w) => match w.parse::<u64>() {
            Ok(ms) if ms <= 10_000 => ms,
            _ => {
                println!("checksum-loop: MS_PER_STEP must be 0..=10000");
                return EXIT_USAGE;
            }
        },
    };
    if !(2..=MAX_BUFFER_MIB).contains(&mib) || mib % 2 != 0 || !(1..=1_000_000).contains(&steps) {
        println!("checksum-loop: MIB must be an even number 2..={MAX_BUFFER_MIB}, STEPS 1..=1000000");
        return EXIT_USAGE;
    }
    let Some(buffer) = Buffer::new(mib) else {
        println!("checksum-loop: not enough free memory for {mib} MiB");
        return 1;
    };
    let pages = buffer.pages();
    for i in 0..pages {
        for w in 0..WORDS_PER_PAGE {
            // SAFETY: `word` points into a page the buffer owns.
            unsafe { buffer.word(i, w).write_volatile(0) };
        }
    }
    let mut disk = Disk::open();
    println!("checksum-loop: {steps} steps over {pages} pages{}, {ms_per_step} ms apart", if disk.is_some() { " and the disk" } else { "" });
    let khz = cycles_per_ms(info);
    let mut hash = FNV_OFFSET_BASIS;
    for step in 0..steps {
        let deadline = cpu::rdtsc() + ms_per_step * khz;
        // Each step reads what earlier steps wrote: a page lost or stale on the way
        // changes every hash after it.
        for k in 0..PAGES_PER_STEP {
            let page = (step * PAGES_PER_STEP + k * 7) % pages;
            let word = buffer.word(page, step % WORDS_PER_PAGE);
            // SAFETY: `word` points into a page the buffer owns.
            let old = unsafe { word.read_volatile() };
            hash = mix(hash, old ^ step);
            // SAFETY: the same `word`, in a page the buffer owns; the read above has ended.
            unsafe { word.write_volatile(hash) };
        }
        if let Some(d) = disk.as_mut() {
            if let Err(code) = d.write(step, hash) {
                return code;
            }
        }
        if (step + 1) % (steps / 10).max(1) == 0 {
            println!("checksum-loop: step {} of {steps}", step + 1);
        }
        while cpu::rdtsc() < deadline {}
    }
    let mut result = FNV_OFFSET_BASIS;
    for i in 0..pages {
        for w in 0..WORDS_PER_PAGE {
            // SAFETY: `word` points into a page the buffer owns.
            result = mix(result, unsafe { buffer.word(i, w).read_volatile() });
        }
    }
    if let Some(d) = disk.as_mut() {
        match d.sum(steps.min(DISK_PAGES)) {
            Ok(sum) => result = mix(result, sum),
            Err(code) => return code,
        }
    }
    println!("checksum-loop: result {result:016x}");
    0
}

/// The disk pages the checksum writes, through one frame.
struct Disk {
    frame: PseudoFrame,
}

impl Disk {
    fn open() -> Option<Disk> {
        drivers::block().as_ref()?;
        Some(Disk { frame: frames::alloc()? })
    }

    fn transfer(&mut self, op: BlockOp, page: u64) -> Result<(), u8> {
        let mut device = drivers::block();
        let blk = device.as_mut().ok_or(1u8)?;
        let sectors = u64::from(SECTORS_PER_SEGMENT);
        match blk.transfer(op, page * sectors, SECTORS_PER_SEGMENT, &[self.frame]) {
            Ok(BlockStatus::Ok) => Ok(()),
            Ok(status) => {
                println!("checksum-loop: the disk answered {}", status.name());
                Err(1)
            }
            Err(e) => {
                println!("checksum-loop: block frontend error: {e:?}");
                Err(1)
            }
        }
    }

    /// Writes disk page `step % DISK_PAGES` filled with `value`.
    fn write(&mut self, step: u64, value: u64) -> Result<(), u8> {
        // SAFETY: this command owns the frame, and no request using it is in flight.
        let bytes = unsafe { frames::bytes(self.frame) };
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        self.transfer(BlockOp::Write, step % DISK_PAGES)
    }

    /// Reads the first `count` disk pages back and hashes their first words.
    fn sum(&mut self, count: u64) -> Result<u64, u8> {
        let mut hash = FNV_OFFSET_BASIS;
        for page in 0..count {
            self.transfer(BlockOp::Read, page)?;
            // SAFETY: the read completed; this command owns the frame.
            let bytes = unsafe { frames::bytes(self.frame) };
            let first = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
            let last = u64::from_le_bytes(bytes[PAGE_SIZE as usize - 8..].try_into().unwrap_or_default());
            hash = mix(mix(hash, first), last);
        }
        Ok(hash)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        frames::free(self.frame);
    }
}
