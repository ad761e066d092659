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
use pv_abi::layout::PAGE_SIZE;

use crate::{drivers, frames, println};

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

fn device(command: &str) -> Option<&'static mut drivers::Block> {
    let blk = drivers::block();
    if blk.is_none() {
        println!("{command}: no block device (start hv with --disk PATH)");
    }
    blk
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
    let Some(blk) = device("blk-read-sum") else { return EXIT_USAGE };
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
                let Some(gpa) = frames::alloc() else {
                    println!("blk-read-sum: out of memory for buffers");
                    return 1;
                };
                *f = gpa / PAGE_SIZE;
            }
            let id = match blk.submit(BlockOp::Read, next_lba, sectors as u32, &frame_list[..nframes]) {
                Ok(id) => id,
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
                hash = fnv1a(hash, &frames::bytes(frame * PAGE_SIZE)[..n as usize]);
                left -= n;
                frames::free(frame * PAGE_SIZE);
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
    let Some(blk) = device("blk-fill") else { return EXIT_USAGE };
    // One set of frames filled with BYTE serves every request: the data is the same.
    let mut frame_list = [0u64; BLOCK_MAX_SEGMENTS];
    for f in frame_list.iter_mut() {
        let Some(gpa) = frames::alloc() else {
            println!("blk-fill: out of memory for buffers");
            return 1;
        };
        frames::bytes(gpa).fill(byte);
        *f = gpa / PAGE_SIZE;
    }
    let (mut next_lba, mut remaining) = (lba, count);
    while remaining > 0 {
        while blk.in_flight() < MAX_IN_FLIGHT && remaining > 0 {
            let sectors = remaining.min(MAX_REQUEST_SECTORS);
            let nframes = sectors.div_ceil(u64::from(SECTORS_PER_SEGMENT)) as usize;
            if let Err(e) = blk.submit(BlockOp::Write, next_lba, sectors as u32, &frame_list[..nframes]) {
                return report_error("blk-fill", e);
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
        frames::free(f * PAGE_SIZE);
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
