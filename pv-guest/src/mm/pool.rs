//! The page-table pool allocator.
//!
//! Page tables must come from the pool the boot-info page announces (`pt_pool_free ..
//! pt_pool_end`; the VMM's first tables use the frames before that). A free pool frame
//! is always all zeroes: a table is cleared when it is freed, so a freshly allocated one
//! is a valid empty table at once. Freed frames go on a small stack; fresh ones come
//! from a bump pointer.

use pv_abi::addr::{PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::BootInfo;

use super::table::PageTable;
use crate::arch::cpu_local::{VcpuCell, VcpuRefMut};

/// Freed tables remembered for reuse (beyond this, they are simply not reused).
const FREE_STACK: usize = 256;

/// The pool's bookkeeping, in pseudo-physical frames (what leaves this file is a
/// [`PageTable`]).
struct Pool {
    /// First frame handed out to the guest (the VMM's boot tables lie below).
    start: PseudoFrame,
    /// First frame never handed out.
    next: PseudoFrame,
    /// End of the pool (exclusive).
    end: PseudoFrame,
    free: [PseudoFrame; FREE_STACK],
    free_len: usize,
    in_use: u64,
}

/// The pool. A demand-zero fault in ring 3 may take a table; kernel code never holds
/// the pool while such a fault can happen.
static POOL: VcpuCell<Pool> =
    VcpuCell::new(Pool { start: NO_FRAME, next: NO_FRAME, end: NO_FRAME, free: [NO_FRAME; FREE_STACK], free_len: 0, in_use: 0 });

/// Frame 0, for the empty pool before `init` (it is never a pool frame).
const NO_FRAME: PseudoFrame = PseudoFrame::new(0);

fn pool() -> VcpuRefMut<'static, Pool> {
    POOL.borrow_mut()
}

/// Takes over the pool described by the boot-info page. The boot-info check makes the
/// pool's bounds page-aligned; the first free frame is rounded up to a whole page, so
/// no table handed out can overlap one of the VMM's (an empty pool if that overflows).
pub fn init(info: &BootInfo) {
    let end = PseudoPhys::new(info.pt_pool_end).frame();
    let start = PseudoPhys::new(info.pt_pool_free).checked_align_up(PAGE_SIZE).map_or(end, PseudoPhys::frame);
    let mut p = pool();
    p.start = start;
    p.next = start;
    p.end = end;
}

/// A zeroed pool frame for a page table.
pub fn alloc_table() -> Option<PageTable> {
    let mut p = pool();
    let frame = if p.free_len > 0 {
        p.free_len -= 1;
        p.free[p.free_len]
    } else {
        match p.next.checked_add(1) {
            Some(after) if after <= p.end => core::mem::replace(&mut p.next, after),
            _ => return None,
        }
    };
    p.in_use += 1;
    // SAFETY: the frame is a pool frame, guest RAM set aside for page tables, that no
    // one else holds (it was free), and free pool frames are all zero.
    Some(unsafe { PageTable::at(frame) })
}

/// Returns a table. The caller has already cleared every entry
/// (`AddressSpace::destroy`), so the pool's free frames stay zero.
pub fn free_table(table: PageTable) {
    let gpa = table.gpa();
    let frame = gpa.frame();
    let mut p = pool();
    if !gpa.is_aligned(PAGE_SIZE) || frame < p.start || frame >= p.next {
        drop(p);
        crate::println!("pool: refusing to free {:#x}: not a page-table pool frame", gpa.raw());
        return;
    }
    p.in_use -= 1;
    if p.free_len < FREE_STACK {
        let slot = p.free_len;
        p.free[slot] = frame;
        p.free_len += 1;
    }
}

/// Tables handed out and not freed.
pub fn in_use() -> u64 {
    pool().in_use
}
