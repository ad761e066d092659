//! `balloon-status`, `balloon-wait` and `touch-mem`: the guest's side of the balloon
//! (`mm::balloon`), shown and exercised.
//!
//! - `balloon-status` prints one line: hv's target, the floor, the balloon's size as the
//!   guest and as hv count it (KiB), and the frames taken back and how many of them did
//!   not read as zeros.
//! - `balloon-wait [SECONDS]` services the balloon, sleeping until hv answers, until it
//!   is as large as the target asks (or cannot grow: free memory ran out), at most
//!   SECONDS (default 30); then prints the status. A test runs it after setting a target.
//! - `touch-mem MIB` takes MIB of frames from the allocator, writes every one (so the
//!   host backs each with memory), and gives them back: a guest whose free memory is
//!   resident, for a balloon to release. Fails if the allocator has fewer.

use pv_abi::addr::PAGE_SIZE;

use crate::hv::{clock, event_channel};
use crate::mm::{balloon, frames};
use crate::println;

/// `balloon-status`.
pub fn status() -> u8 {
    balloon::service();
    match balloon::status() {
        Some(s) => {
            let kib = |pages: u64| pages * (PAGE_SIZE / 1024);
            println!(
                "balloon: target {} KiB, floor {} KiB, current {} KiB, host {} KiB, taken back {} KiB, not zero {}, refused {}, lost {}",
                kib(s.target_pages),
                kib(s.floor_pages),
                kib(s.current_pages),
                kib(s.host_pages),
                kib(s.taken_back),
                s.not_zero,
                s.refused,
                s.lost
            );
            0
        }
        None => {
            println!("balloon: no balloon device");
            1
        }
    }
}

/// `balloon-wait [SECONDS]`.
pub fn wait<'a>(info: &pv_abi::BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let seconds = words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(30);
    let limit = info.tsc_khz.saturating_mul(1000).saturating_mul(seconds);
    let start = clock::read();
    loop {
        balloon::service();
        let Some(s) = balloon::status() else {
            println!("balloon: no balloon device");
            return 1;
        };
        if s.settled {
            return status();
        }
        if info.tsc_khz != 0 && clock::read().wrapping_sub(start) > limit {
            println!("balloon-wait: not settled after {seconds} s");
            status();
            return 1;
        }
        // hv answers with an upcall (a request in flight always gets one).
        event_channel::wait_for_event();
    }
}

/// `touch-mem MIB`.
pub fn touch_mem<'a>(mut words: impl Iterator<Item = &'a str>) -> u8 {
    let Some(mib) = words.next().and_then(|w| w.parse::<u64>().ok()) else {
        println!("pv-guest: touch-mem needs a number: touch-mem MIB");
        return 2;
    };
    balloon::service();
    let pages = mib * (1 << 20) / PAGE_SIZE;
    // The frames are chained through their own first word, so no memory is needed to
    // remember them: each holds the number of the one taken before it.
    let mut chain: Option<pv_abi::addr::PseudoFrame> = None;
    let mut taken = 0;
    while taken < pages {
        let Some(frame) = frames::alloc() else { break };
        // SAFETY: the frame is ours (just allocated) and nothing else refers to it.
        let bytes = unsafe { frames::bytes(frame) };
        bytes[8..16].copy_from_slice(&0x5a5a_5a5a_5a5a_5a5au64.to_le_bytes());
        bytes[..8].copy_from_slice(&chain.map_or(0, |f| f.raw()).to_le_bytes());
        chain = Some(frame);
        taken += 1;
    }
    while let Some(frame) = chain {
        // SAFETY: as above: the frame is still ours until freed just below.
        let link = u64::from_le_bytes(unsafe { frames::bytes(frame) }[..8].try_into().unwrap_or([0; 8]));
        frames::free(frame);
        chain = (link != 0).then_some(pv_abi::addr::PseudoFrame::new(link));
    }
    if taken < pages {
        println!("touch-mem: only {} of {mib} MiB free", taken * PAGE_SIZE >> 20);
        return 1;
    }
    println!("touch-mem: {mib} MiB touched");
    0
}
