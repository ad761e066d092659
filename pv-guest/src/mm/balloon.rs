//! The balloon driver: gives free frames back to hv when it asks for memory, and takes
//! them back when it gives memory again (Xen's balloon driver; course notes:
//! reclaiming memory from a virtual machine).
//!
//! hv says how much RAM it wants the guest to keep (the target, in the balloon ring
//! page's control block; `pv_abi::device::balloon`). The balloon's wanted size is
//! `mem_pages - max(target, floor)`: the **floor** is what this kernel announces it
//! keeps at least (everything that is not free memory, plus [`FLOOR_MARGIN_PAGES`]).
//!
//! - **Inflate**: take frames from the frame allocator ([`frames::alloc`]), so nothing in
//!   the guest uses them, and send them in batches; an accepted batch's frames go on the
//!   balloon's list, a refused one's back to the allocator.
//! - **Deflate**: take frames off the list and ask for them back; an accepted batch's
//!   frames are checked to read as zeros (sampled: every ring-0 instruction may be
//!   emulated) and go back to the allocator. A refused deflate's frames are left out of
//!   both (they are not known to be usable), and counted as lost.
//!
//! The list of ballooned frames lives in **list pages**, frames taken from the allocator
//! too: each holds a link to the previous list page, a count, and up to
//! [`ENTRIES_PER_PAGE`] frame numbers. One spare list page is kept before any inflate is
//! sent, so an accepted batch always has room (at most 240 frames are in flight, fewer
//! than a page holds).
//!
//! **When it runs.** [`service`] never waits: it takes the answers that are there,
//! compares the target with the balloon, sends what fits in the ring, and returns. The
//! kernel calls it where it holds nothing and has time: between commands, in the
//! commands that wait (`count`'s pauses, `balloon-wait`), and `touch-mem`. Not in the
//! upcall handler: an upcall can arrive whenever the kernel waits for an event, possibly
//! inside a driver or the frame allocator, whose state it would then change under them
//! (the allocator is a `VcpuCell`, which would refuse the second borrow). The upcall
//! hv raises with a new target only marks the channel; the target itself is re-read
//! from the control block each time [`service`] runs.

use frontend_drivers::balloon::{BalloonOp, Completed};
use pv_abi::addr::{PseudoFrame, PseudoPhys, PAGE_SHIFT, PAGE_SIZE};
use pv_abi::device::balloon::{BalloonStatus, BALLOON_BATCH};
use pv_abi::BootInfo;

use crate::arch::cpu_local::VcpuCell;
use crate::arch::kernel_map;
use crate::hv::drivers;

use super::frames;

/// Frame numbers one list page holds (its first two words are the link and the count).
pub const ENTRIES_PER_PAGE: u64 = PAGE_SIZE / 8 - 2;
/// What the floor keeps above everything that is not free memory: 4 MiB, for the
/// kernel's own allocations (tasks, buffers) while the balloon is large.
pub const FLOOR_MARGIN_PAGES: u64 = 1024;

/// The driver's state.
struct Driver {
    /// RAM in pages (from the boot-info page).
    mem_pages: u64,
    /// The floor announced, in pages.
    floor_pages: u64,
    /// The top list page, if any.
    top: Option<PseudoFrame>,
    /// Frames on the list (accepted by hv).
    listed: u64,
    /// A list page kept ready for the next accepted batch.
    spare: Option<PseudoFrame>,
    /// Frames in inflate batches in flight.
    inflating: u64,
    /// Frames in deflate batches in flight.
    deflating: u64,
    /// Batches refused by hv.
    refused: u64,
    /// Frames a refused deflate left unusable.
    lost: u64,
    /// Frames taken back that did not read as zeros.
    not_zero: u64,
    /// Frames taken back, in all.
    taken_back: u64,
    /// The allocator had no frame for the latest inflate (cleared by a full batch).
    short: bool,
}

static DRIVER: VcpuCell<Driver> = VcpuCell::new(Driver {
    mem_pages: 0,
    floor_pages: 0,
    top: None,
    listed: 0,
    spare: None,
    inflating: 0,
    deflating: 0,
    refused: 0,
    lost: 0,
    not_zero: 0,
    taken_back: 0,
    short: false,
});

/// What `balloon-status` shows.
#[derive(Clone, Copy, Debug)]
pub struct Status {
    /// hv's target, in pages of RAM to keep.
    pub target_pages: u64,
    /// The floor, in pages.
    pub floor_pages: u64,
    /// Frames in the balloon (accepted), as the guest counts them.
    pub current_pages: u64,
    /// Frames hv says it holds.
    pub host_pages: u64,
    /// Batches refused.
    pub refused: u64,
    /// Frames taken back that did not read as zeros.
    pub not_zero: u64,
    /// Frames taken back.
    pub taken_back: u64,
    /// Frames lost to refused deflates.
    pub lost: u64,
    /// Whether the balloon is as large as it should be now (or cannot grow further).
    pub settled: bool,
}

/// Announces the floor (if hv serves a balloon).
pub fn init(info: &BootInfo) {
    let mem_pages = info.mem_bytes >> PAGE_SHIFT;
    let free_pages = (info.free_mem_end - info.free_mem_start) >> PAGE_SHIFT;
    let floor = (mem_pages - free_pages + FLOOR_MARGIN_PAGES).min(mem_pages);
    let mut d = DRIVER.borrow_mut();
    d.mem_pages = mem_pages;
    d.floor_pages = floor;
    if let Some(front) = drivers::balloon().as_mut() {
        front.set_floor_pages(floor);
    }
}

/// Word `i` of list page `page`.
fn list_word(page: PseudoFrame, i: u64) -> *mut u64 {
    kernel_map::direct_map::<u64>(PseudoPhys::new((page.raw() << PAGE_SHIFT) + 8 * i))
}

impl Driver {
    /// The size the balloon should have now.
    fn wanted(&self, target_pages: u64) -> u64 {
        // LAB 8 BEGIN: the balloon's size: RAM minus the target, never below the floor
        self.mem_pages.saturating_sub(target_pages.max(self.floor_pages))
        // LAB 8 STUB: let _ = (target_pages, self.mem_pages, self.floor_pages);
        // LAB 8 STUB: 0 // lab 8: the balloon should hold mem_pages - max(target, floor) pages: Driver::wanted
        // LAB 8 END
    }

    /// Frames the balloon will hold once every batch in flight is answered as sent
    /// (frames being taken back are off the list already).
    fn committed(&self) -> u64 {
        self.listed + self.inflating
    }

    /// Puts an accepted frame on the list (room is guaranteed by the spare page).
    fn push(&mut self, frame: PseudoFrame) {
        let full = match self.top {
            // List pages are frames this driver took from the allocator and owns, guest
            // RAM in the direct map that no Rust object lives in; `top` is one of them.
            Some(top) => {
                // SAFETY: `top` is a list page (owned, see above); word 1 is its count.
                let count = unsafe { *list_word(top, 1) };
                count >= ENTRIES_PER_PAGE
            }
            None => true,
        };
        if full {
            let Some(page) = self.spare.take() else {
                // Cannot happen (a spare is kept before any inflate); keep the frame
                // counted as lost rather than corrupt the list.
                self.lost += 1;
                return;
            };
            // SAFETY: `page` is the spare, a frame this driver took from the allocator and
            // owns; words 0 and 1 are its link and count.
            unsafe {
                *list_word(page, 0) = self.top.map_or(0, PseudoFrame::raw);
                *list_word(page, 1) = 0;
            }
            self.top = Some(page);
        }
        if let Some(top) = self.top {
            // SAFETY: `top` is a list page this driver owns; the count is below
            // ENTRIES_PER_PAGE (a full page was replaced above), so word 2 + n is inside it.
            unsafe {
                let n = *list_word(top, 1);
                *list_word(top, 2 + n) = frame.raw();
                *list_word(top, 1) = n + 1;
            }
            self.listed += 1;
        }
    }

    /// Takes a frame off the list; an emptied list page becomes the spare or is freed.
    fn pop(&mut self) -> Option<PseudoFrame> {
        let top = self.top?;
        // SAFETY: `top` is a list page this driver owns; words 0 and 1 are its link and count.
        let (n, link) = unsafe { (*list_word(top, 1), *list_word(top, 0)) };
        if n == 0 {
            return None;
        }
        // SAFETY: `top` is a list page this driver owns, and n - 1 < ENTRIES_PER_PAGE is
        // an entry `push` wrote.
        let frame = PseudoFrame::new(unsafe { *list_word(top, 2 + n - 1) });
        // SAFETY: `top` is a list page this driver owns; word 1 is its count.
        unsafe { *list_word(top, 1) = n - 1 };
        self.listed -= 1;
        if n == 1 {
            self.top = (link != 0).then_some(PseudoFrame::new(link));
            if self.spare.is_none() {
                self.spare = Some(top);
            } else {
                frames::free(top);
            }
        }
        Some(frame)
    }

    /// Places the frames of an answered batch.
    fn complete(&mut self, done: &Completed) {
        let n = done.count as u64;
        let ok = done.status == BalloonStatus::Ok;
        if !ok {
            self.refused += 1;
        }
        match done.op {
            BalloonOp::Inflate => {
                self.inflating -= n;
                for &frame in done.frames() {
                    if ok {
                        self.push(frame);
                    } else {
                        frames::free(frame);
                    }
                }
            }
            BalloonOp::Deflate => {
                self.deflating -= n;
                for &frame in done.frames() {
                    if ok {
                        self.taken_back += 1;
                        if !reads_as_zeros(frame) {
                            self.not_zero += 1;
                        }
                        frames::free(frame);
                    } else {
                        self.lost += 1;
                    }
                }
            }
        }
    }
}

/// Whether a frame taken back reads as zeros, sampled: eight words spread over it.
fn reads_as_zeros(frame: PseudoFrame) -> bool {
    (0..8).all(|i| {
        // SAFETY: the frame came back from hv and is owned by this driver until it is
        // freed: guest RAM in the direct map that no Rust object lives in.
        unsafe { core::ptr::read_volatile(list_word(frame, i * 64 + 7 * i)) == 0 }
    })
}

/// Takes hv's answers, then sends what the target asks, as far as the ring allows.
/// Never waits. Does nothing without a balloon device.
pub fn service() {
    let mut guard = drivers::balloon();
    let Some(front) = guard.as_mut() else { return };
    let mut d = DRIVER.borrow_mut();
    // Bounded: each round takes answers or sends batches; a backend that keeps answering
    // cannot hold the kernel here for more than this many rounds.
    for _ in 0..MAX_ROUNDS_PER_SERVICE {
        if !serve_once(front, &mut d) {
            return;
        }
    }
}

/// Rounds one [`service`] call makes at most.
const MAX_ROUNDS_PER_SERVICE: u32 = 64;

/// One round: answers, then new batches; re-arms the upcall for the answers still to
/// come. True if answers arrived meanwhile (another round is worth it).
fn serve_once(front: &mut drivers::Balloon, d: &mut Driver) -> bool {
    // Answers first: they free ring slots and may change what is left to do.
    loop {
        match front.poll() {
            Ok(Some(done)) => d.complete(&done),
            Ok(None) => break,
            // A backend that corrupts the ring or answers nonsense: stop using the
            // balloon for this call; the frames in flight stay out of the allocator.
            Err(_) => return false,
        }
    }
    let wanted = d.wanted(front.target_pages());
    let mut sent = false;
    while front.can_submit() {
        let committed = d.committed();
        if wanted > committed {
            match inflate_batch(front, d, wanted - committed) {
                Inflated::Full => sent = true,
                Inflated::Short => {
                    sent = true;
                    break;
                }
                Inflated::Nothing => break,
            }
        } else if wanted < committed {
            // Only frames hv has accepted can be asked back.
            let mut batch = [PseudoFrame::new(0); BALLOON_BATCH];
            let want = (committed - wanted).min(d.listed).min(BALLOON_BATCH as u64) as usize;
            let mut n = 0;
            while n < want {
                match d.pop() {
                    Some(frame) => {
                        batch[n] = frame;
                        n += 1;
                    }
                    None => break,
                }
            }
            if n == 0 {
                break;
            }
            if front.submit(BalloonOp::Deflate, &batch[..n]).is_err() {
                batch[..n].iter().for_each(|f| d.push(*f));
                break;
            }
            d.deflating += n as u64;
            sent = true;
        } else {
            break;
        }
    }
    if sent {
        // Publishing re-arms the upcall for the answers first.
        front.kick();
    }
    front.in_flight() > 0 && front.arm_for_answers()
}

/// What [`inflate_batch`] did.
enum Inflated {
    /// Sent a batch of all the frames asked for: there may be room for another.
    Full,
    /// Sent a batch of fewer frames (the allocator ran dry): stop for now.
    Short,
    /// Sent nothing (no frame, no spare list page, or the ring refused).
    Nothing,
}

/// Sends one inflate batch of up to `missing` frames (at most [`BALLOON_BATCH`]), taken
/// from the frame allocator so nothing in the guest uses them any more. Keeps a spare
/// list page first, so an accepted batch always has room on the list.
fn inflate_batch(front: &mut drivers::Balloon, d: &mut Driver, missing: u64) -> Inflated {
    // LAB 8 BEGIN: inflate: take frames from the allocator and send them to hv in one batch
    if d.spare.is_none() {
        match frames::alloc() {
            Some(page) => d.spare = Some(page),
            None => {
                d.short = true;
                return Inflated::Nothing;
            }
        }
    }
    let want = missing.min(BALLOON_BATCH as u64) as usize;
    let mut batch = [PseudoFrame::new(0); BALLOON_BATCH];
    let mut n = 0;
    while n < want {
        match frames::alloc() {
            Some(frame) => {
                batch[n] = frame;
                n += 1;
            }
            None => {
                d.short = true;
                break;
            }
        }
    }
    if n == want {
        d.short = false;
    }
    if n == 0 {
        return Inflated::Nothing;
    }
    if front.submit(BalloonOp::Inflate, &batch[..n]).is_err() {
        // The ring refused: the frames were never sent, so they are the guest's again.
        batch[..n].iter().for_each(|f| frames::free(*f));
        return Inflated::Nothing;
    }
    d.inflating += n as u64;
    if n < want {
        Inflated::Short
    } else {
        Inflated::Full
    }
    // LAB 8 STUB: let _ = (front, d, missing, BALLOON_BATCH, frames::alloc, BalloonOp::Inflate);
    // LAB 8 STUB: todo!("lab 8: take up to BALLOON_BATCH frames from the allocator and submit them as one inflate batch: balloon::inflate_batch")
    // LAB 8 END
}

/// The balloon as it stands (`None` without a balloon device).
pub fn status() -> Option<Status> {
    let guard = drivers::balloon();
    let front = guard.as_ref()?;
    let d = DRIVER.borrow_mut();
    let wanted = d.wanted(front.target_pages());
    let idle = d.inflating == 0 && d.deflating == 0;
    // Settled: the list is as large as wanted, or it is smaller but the allocator ran
    // dry (nothing more can be given).
    let settled = idle && (d.listed == wanted || (d.listed < wanted && d.short));
    Some(Status {
        target_pages: front.target_pages(),
        floor_pages: d.floor_pages,
        current_pages: d.listed,
        host_pages: front.host_size_pages(),
        refused: d.refused,
        not_zero: d.not_zero,
        taken_back: d.taken_back,
        lost: d.lost,
        settled,
    })
}
