//! `balloon-status`, `balloon-wait` and `touch-mem`: the guest's side of the balloon
//! (`mm::balloon`), shown and exercised.
//!
//! - `balloon-status` prints one line: hv's target, the floor, the balloon's size as the
//!   guest and as hv count it (KiB), and the frames taken back and how many of them did
//!   not read as zeros.
//! - `balloon-wait [MIB [SECONDS]]` services the balloon, sleeping until hv answers,
//!   until hv's target is MIB (if given: a test sets it with `hv ctl` meanwhile) and the
//!   balloon is as large as the target asks (or cannot grow: free memory ran out), at
//!   most SECONDS (default 30); then prints the status.
//! - `balloon-hostile` sends the backend batches it must refuse (a frame given twice,
//!   outside RAM, in the page-table pool, in hv's reserved area, of the kernel image, a
//!   frame taken back that was never given, counts of 0 and 1000, an unknown operation)
//!   and prints what each got; exit code 0 only if every one was refused as it should.
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

/// `balloon-wait [MIB [SECONDS]]`.
pub fn wait<'a>(info: &pv_abi::BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let target_pages = words.next().and_then(|w| w.parse::<u64>().ok()).map(|mib| mib * (1 << 20) / PAGE_SIZE);
    let seconds = words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(30);
    let limit = info.tsc_khz.saturating_mul(1000).saturating_mul(seconds);
    let start = clock::read();
    loop {
        balloon::service();
        let Some(s) = balloon::status() else {
            println!("balloon: no balloon device");
            return 1;
        };
        if s.settled && target_pages.is_none_or(|t| t == s.target_pages) {
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
        // SAFETY: `frame` was allocated by the loop above and is freed only after this read;
        // nothing else refers to it meanwhile.
        let link = u64::from_le_bytes(unsafe { frames::bytes(frame) }[..8].try_into().unwrap_or([0; 8]));
        frames::free(frame);
        chain = (link != 0).then_some(pv_abi::addr::PseudoFrame::new(link));
    }
    if taken < pages {
        println!("touch-mem: only {} of {mib} MiB free", (taken * PAGE_SIZE) >> 20);
        return 1;
    }
    println!("touch-mem: {mib} MiB touched");
    0
}

/// `balloon-hostile`.
pub fn hostile(info: &pv_abi::BootInfo) -> u8 {
    use frontend_drivers::balloon::BalloonOp;
    use pv_abi::device::balloon::{BalloonStatus, BALLOON_OP_DEFLATE, BALLOON_OP_INFLATE};
    let mut guard = crate::hv::drivers::balloon();
    let Some(front) = guard.as_mut() else {
        println!("balloon-hostile: no balloon device");
        return 1;
    };
    if front.in_flight() != 0 {
        println!("balloon-hostile: the balloon is busy; run it with an empty balloon");
        return 1;
    }
    // Waits for the one batch in flight and returns its status.
    let answer = |front: &mut crate::hv::drivers::Balloon| -> Result<BalloonStatus, frontend_drivers::balloon::BalloonError> {
        front.kick();
        loop {
            if let Some(done) = front.poll()? {
                return Ok(done.status);
            }
            event_channel::wait_for_event();
        }
    };
    let (Some(mine), Some(never_given)) = (frames::alloc(), frames::alloc()) else {
        println!("balloon-hostile: no free frames");
        return 1;
    };
    let mem_pages = info.mem_bytes / PAGE_SIZE;
    let cases: [(&str, u8, u32, u64, BalloonStatus); 9] = [
        ("double return", BALLOON_OP_INFLATE, 1, mine.raw(), BalloonStatus::AlreadyBallooned),
        ("outside RAM", BALLOON_OP_INFLATE, 1, mem_pages + 1, BalloonStatus::OutsideRam),
        ("page-table pool", BALLOON_OP_INFLATE, 1, info.pt_pool_start / PAGE_SIZE, BalloonStatus::PageTablePool),
        ("reserved area", BALLOON_OP_INFLATE, 1, 5, BalloonStatus::Reserved),
        ("kernel frame", BALLOON_OP_INFLATE, 1, info.kernel_start / PAGE_SIZE, BalloonStatus::Kernel),
        ("deflate never given", BALLOON_OP_DEFLATE, 1, never_given.raw(), BalloonStatus::NotBallooned),
        ("huge count", BALLOON_OP_INFLATE, 1000, never_given.raw(), BalloonStatus::BadRequest),
        ("zero count", BALLOON_OP_INFLATE, 0, never_given.raw(), BalloonStatus::BadRequest),
        ("unknown operation", 77, 1, never_given.raw(), BalloonStatus::BadRequest),
    ];
    // Give `mine` once, honestly, so that giving it again is a double return.
    let given = front.submit(BalloonOp::Inflate, &[mine]).map_err(|_| ()).and_then(|_| answer(front).map_err(|_| ()));
    if given != Ok(BalloonStatus::Ok) {
        println!("balloon-hostile: the honest inflate failed: {given:?}");
        return 1;
    }
    let mut failures = 0;
    let mut right = 0;
    for (name, op, count, frame, expected) in cases {
        let got = front.submit_unchecked(op, count, &[frame]).map_err(|_| ()).and_then(|_| answer(front).map_err(|_| ()));
        let ok = got == Ok(expected);
        failures += u32::from(!ok);
        right += u32::from(ok);
        match got {
            Ok(status) => println!("balloon-hostile: {name}: {} ({})", status.name(), if ok { "refused as it should" } else { "WRONG" }),
            Err(()) => println!("balloon-hostile: {name}: the backend's answer was not a refusal (WRONG)"),
        }
    }
    // Take `mine` back, honestly: the guest goes on with its memory whole.
    let back = front.submit(BalloonOp::Deflate, &[mine]).map_err(|_| ()).and_then(|_| answer(front).map_err(|_| ()));
    drop(guard);
    frames::free(never_given);
    if back == Ok(BalloonStatus::Ok) {
        frames::free(mine);
    } else {
        failures += 1;
        println!("balloon-hostile: taking the frame back failed: {back:?}");
    }
    println!("balloon-hostile: {right} of {} refused as they should, {failures} wrong", cases.len());
    u8::from(failures != 0)
}
