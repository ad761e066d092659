//! Block-device commands whose results can be checked from outside the guest.
//!
//! - `blk-read-sum LBA COUNT`: reads COUNT sectors from LBA and prints their FNV-1a
//!   64-bit hash, which a test compares with one computed on the host from the image.
//!   Reads are pipelined: up to a ring's worth of 64 KiB requests in flight, hashed in
//!   disk order as they complete.
//! - `blk-fill LBA COUNT BYTE`: writes COUNT sectors filled with BYTE, then flushes, so
//!   the bytes are on the host's disk when it prints `blk-fill: ok`.

use frontend_drivers::block::{BlockError, MAX_IN_FLIGHT};
use pv_abi::device::block::{BlockOp, BlockStatus, BLOCK_MAX_SEGMENTS, SECTOR_SIZE, SECTORS_PER_SEGMENT};
use pv_abi::addr::{PseudoFrame, PAGE_SIZE};

use crate::hv::{clock, drivers};
use crate::mm::frames;
use crate::println;

/// Exit code for bad arguments or a missing device.
const EXIT_USAGE: u8 = 2;
/// Sectors one request carries at most (16 frames of 8 sectors: 64 KiB).
const MAX_REQUEST_SECTORS: u64 = BLOCK_MAX_SEGMENTS as u64 * SECTORS_PER_SEGMENT as u64;

/// FNV-1a, 64-bit: offset basis and prime.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

fn parse_u64(word: Option<&str>) -> Option<u64> {
    let w = word?;
    match w.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => w.parse().ok(),
    }
}

/// Says there is no block device; returns the exit code for that.
fn no_device(command: &str) -> u8 {
    println!("{command}: no block device (start hv with --disk PATH)");
    EXIT_USAGE
}

/// A read in flight, in submission (= disk) order.
#[derive(Clone, Copy)]
struct PendingRead {
    id: u64,
    sectors: u64,
    frames: [u64; BLOCK_MAX_SEGMENTS],
    done: bool,
}

/// `blk-read-sum LBA COUNT`.
pub fn read_sum<'a>(mut args: impl Iterator<Item = &'a str>) -> u8 {
    let (Some(lba), Some(count)) = (parse_u64(args.next()), parse_u64(args.next())) else {
        println!("blk-read-sum: usage: blk-read-sum LBA COUNT");
        return EXIT_USAGE;
    };
    let mut device = drivers::block();
    let Some(blk) = device.as_mut() else { return no_device("blk-read-sum") };
    let mut window: [Option<PendingRead>; MAX_IN_FLIGHT] = [None; MAX_IN_FLIGHT];
    let (mut head, mut tail) = (0usize, 0usize); // window[head..tail] (mod size) in flight
    let (mut next_lba, mut remaining, mut hash) = (lba, count, FNV_OFFSET_BASIS);
    loop {
        // Fill the window.
        while tail - head < MAX_IN_FLIGHT && remaining > 0 {
            let sectors = remaining.min(MAX_REQUEST_SECTORS);
            let nframes = sectors.div_ceil(u64::from(SECTORS_PER_SEGMENT)) as usize;
            let mut frame_list = [0u64; BLOCK_MAX_SEGMENTS];
            for f in frame_list.iter_mut().take(nframes) {
                let Some(frame) = frames::alloc() else {
                    println!("blk-read-sum: out of memory for buffers");
                    return 1;
                };
                *f = frame.raw();
            }
            let id = match blk.submit(BlockOp::Read, next_lba, sectors as u32, &frame_list.map(pv_abi::addr::PseudoFrame::new)[..nframes]) {
                Ok(id) => id,
                // Out of ring slots or grant entries (32 requests of 16 frames need more
                // than the table's 255): wait for a completion, which frees both.
                Err(BlockError::RingFull | BlockError::NoGrants) if head != tail => {
                    frame_list.iter().take(nframes).for_each(|f| frames::free(PseudoFrame::new(*f)));
                    break;
                }
                Err(e) => return report_error("blk-read-sum", e),
            };
            window[tail % MAX_IN_FLIGHT] = Some(PendingRead { id, sectors, frames: frame_list, done: false });
            tail += 1;
            next_lba += sectors;
            remaining -= sectors;
        }
        blk.kick();
        if head == tail {
            break;
        }
        let (id, status) = match blk.wait_for_completion() {
            Ok(done) => done,
            Err(e) => return report_error("blk-read-sum", e),
        };
        if status != BlockStatus::Ok {
            println!("blk-read-sum: the disk answered {}", status.name());
            return 1;
        }
        if let Some(p) = window.iter_mut().flatten().find(|p| p.id == id) {
            p.done = true;
        }
        // Hash, in disk order, every completed read at the head of the window.
        while let Some(p) = window[head % MAX_IN_FLIGHT].filter(|p| p.done) {
            let mut left = p.sectors * SECTOR_SIZE;
            for &frame in p.frames.iter().take(p.sectors.div_ceil(u64::from(SECTORS_PER_SEGMENT)) as usize) {
                let n = left.min(PAGE_SIZE);
                // SAFETY: this command allocated the frame, and the device's write into
                // it completed (the response arrived); nothing else refers to it.
                let data = unsafe { frames::bytes(PseudoFrame::new(frame)) };
                hash = fnv1a(hash, &data[..n as usize]);
                left -= n;
                frames::free(PseudoFrame::new(frame));
            }
            window[head % MAX_IN_FLIGHT] = None;
            head += 1;
            if head == tail {
                break;
            }
        }
    }
    println!("blk-read-sum: {hash:016x}");
    0
}

/// `blk-fill LBA COUNT BYTE`.
pub fn fill<'a>(mut args: impl Iterator<Item = &'a str>) -> u8 {
    let (Some(lba), Some(count), Some(byte)) = (parse_u64(args.next()), parse_u64(args.next()), parse_u64(args.next()))
    else {
        println!("blk-fill: usage: blk-fill LBA COUNT BYTE");
        return EXIT_USAGE;
    };
    let Ok(byte) = u8::try_from(byte) else {
        println!("blk-fill: BYTE must be 0..=255");
        return EXIT_USAGE;
    };
    let mut device = drivers::block();
    let Some(blk) = device.as_mut() else { return no_device("blk-fill") };
    // One set of frames filled with BYTE serves every request: the data is the same.
    let mut frame_list = [0u64; BLOCK_MAX_SEGMENTS];
    for f in frame_list.iter_mut() {
        let Some(frame) = frames::alloc() else {
            println!("blk-fill: out of memory for buffers");
            return 1;
        };
        // SAFETY: the frame was just allocated, and this is the only reference to it.
        unsafe { frames::bytes(frame) }.fill(byte);
        *f = frame.raw();
    }
    let (mut next_lba, mut remaining) = (lba, count);
    while remaining > 0 {
        while blk.in_flight() < MAX_IN_FLIGHT && remaining > 0 {
            let sectors = remaining.min(MAX_REQUEST_SECTORS);
            let nframes = sectors.div_ceil(u64::from(SECTORS_PER_SEGMENT)) as usize;
            match blk.submit(BlockOp::Write, next_lba, sectors as u32, &frame_list.map(pv_abi::addr::PseudoFrame::new)[..nframes]) {
                Ok(_) => {}
                // Out of slots or grants: drain what is in flight, then go on.
                Err(BlockError::RingFull | BlockError::NoGrants) if blk.in_flight() > 0 => break,
                Err(e) => return report_error("blk-fill", e),
            }
            next_lba += sectors;
            remaining -= sectors;
        }
        blk.kick();
        if let Some(code) = drain(blk, "blk-fill") {
            return code;
        }
    }
    // Durable only once the flush completes.
    match blk.transfer(BlockOp::Flush, 0, 0, &[]) {
        Ok(BlockStatus::Ok) => {}
        Ok(status) => {
            println!("blk-fill: the flush failed: {}", status.name());
            return 1;
        }
        Err(e) => return report_error("blk-fill", e),
    }
    for f in frame_list {
        frames::free(PseudoFrame::new(f));
    }
    println!("blk-fill: ok");
    0
}

/// Waits for every request in flight; `Some(exit code)` on failure.
fn drain(blk: &mut drivers::Block, command: &str) -> Option<u8> {
    while blk.in_flight() > 0 {
        match blk.wait_for_completion() {
            Ok((_, BlockStatus::Ok)) => {}
            Ok((_, status)) => {
                println!("{command}: the disk answered {}", status.name());
                return Some(1);
            }
            Err(e) => return Some(report_error(command, e)),
        }
    }
    None
}

fn report_error(command: &str, e: BlockError) -> u8 {
    println!("{command}: block frontend error: {e:?}");
    1
}

/// `blk-bench SECTORS COUNT [always]`: COUNT reads of SECTORS sectors each, sequential
/// over the disk (wrapping at its end), keeping a ring's worth in flight; prints the
/// TSC cycles it took and the frontend's counters, for `hv blk-bench` to read. With
/// `always`, the frontend rings the doorbell on every publish, ignoring the backend's
/// event index (hv sets the backend to match), to show what suppression saves.
pub fn bench<'a>(info: &pv_abi::BootInfo, mut args: impl Iterator<Item = &'a str>) -> u8 {
    let (Some(sectors), Some(count)) = (parse_u64(args.next()), parse_u64(args.next())) else {
        println!("blk-bench: usage: blk-bench SECTORS COUNT [always]");
        return EXIT_USAGE;
    };
    let always = args.next() == Some("always");
    if sectors == 0 || sectors > MAX_REQUEST_SECTORS || count == 0 || sectors > info.block_sectors {
        println!("blk-bench: SECTORS must be 1..={MAX_REQUEST_SECTORS} and fit the disk; COUNT at least 1");
        return EXIT_USAGE;
    }
    let mut device = drivers::block();
    let Some(blk) = device.as_mut() else { return no_device("blk-bench") };
    blk.set_always_ring(always);
    // One set of frames per slot in flight, allocated before the clock starts.
    let nframes = sectors.div_ceil(u64::from(SECTORS_PER_SEGMENT)) as usize;
    let mut slot_frames = [[0u64; BLOCK_MAX_SEGMENTS]; MAX_IN_FLIGHT];
    for slot in slot_frames.iter_mut() {
        for f in slot.iter_mut().take(nframes) {
            let Some(frame) = frames::alloc() else {
                println!("blk-bench: out of memory for buffers");
                return 1;
            };
            *f = frame.raw();
        }
    }
    let mut slot_of_id = [0u64; MAX_IN_FLIGHT];
    let mut free_slots: u32 = u32::MAX >> (32 - MAX_IN_FLIGHT);
    let (mut submitted, mut completed, mut lba) = (0u64, 0u64, 0u64);
    let start = clock::read();
    while completed < count {
        while submitted < count && free_slots != 0 {
            let slot = free_slots.trailing_zeros() as usize;
            if lba + sectors > info.block_sectors {
                lba = 0;
            }
            match blk.submit(BlockOp::Read, lba, sectors as u32, &slot_frames[slot].map(pv_abi::addr::PseudoFrame::new)[..nframes]) {
                Ok(id) => slot_of_id[slot] = id,
                // Wait for a completion to free ring slots or grant entries.
                Err(BlockError::RingFull | BlockError::NoGrants) if submitted > completed => break,
                Err(e) => return report_error("blk-bench", e),
            }
            free_slots &= !(1 << slot);
            submitted += 1;
            lba += sectors;
        }
        blk.kick();
        match blk.wait_for_completion() {
            Ok((id, BlockStatus::Ok)) => {
                if let Some(slot) = slot_of_id.iter().position(|s| *s == id) {
                    free_slots |= 1 << slot;
                    slot_of_id[slot] = 0;
                }
                completed += 1;
            }
            Ok((_, status)) => {
                println!("blk-bench: the disk answered {}", status.name());
                return 1;
            }
            Err(e) => return report_error("blk-bench", e),
        }
    }
    let cycles = clock::read() - start;
    let s = blk.stats();
    println!(
        "blk-bench: requests={count} sectors={sectors} tsc_cycles={cycles} tsc_khz={} doorbells={} waits={}",
        info.tsc_khz, s.doorbells, s.waits
    );
    for slot in slot_frames {
        for f in slot.iter().take(nframes) {
            frames::free(PseudoFrame::new(*f));
        }
    }
    0
}
