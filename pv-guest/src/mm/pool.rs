//! The page-table pool allocator.
//!
//! Page tables must come from the pool the boot-info page announces (`pt_pool_free ..
//! pt_pool_end`; the VMM's first tables use the frames before that). A free pool frame
//! is always all zeroes: a table is cleared when it is freed, so a freshly allocated one
//! is a valid empty table at once. Freed frames go on a small stack; fresh ones come
//! from a bump pointer.

use pv_abi::addr::{PseudoPhys, PAGE_SIZE};
use pv_abi::BootInfo;

use super::table::PageTable;
use crate::arch::cpu_local::{VcpuCell, VcpuRefMut};

/// Freed tables remembered for reuse (beyond this, they are simply not reused).
const FREE_STACK: usize = 256;

/// The pool's bookkeeping, in raw guest-physical addresses (the arithmetic on them
/// stays in this file; what leaves it is a [`PageTable`]).
struct Pool {
    /// First frame handed out to the guest (the VMM's boot tables lie below).
    start: u64,
    next: u64,
    end: u64,
    free: [u64; FREE_STACK],
    free_len: usize,
    in_use: u64,
}

/// The pool. A demand-zero fault in ring 3 may take a table; kernel code never holds
/// the pool while such a fault can happen.
static POOL: VcpuCell<Pool> =
    VcpuCell::new(Pool { start: 0, next: 0, end: 0, free: [0; FREE_STACK], free_len: 0, in_use: 0 });

fn pool() -> VcpuRefMut<'static, Pool> {
    POOL.borrow_mut()
}

/// Takes over the pool described by the boot-info page.
pub fn init(info: &BootInfo) {
    let mut p = pool();
    p.start = info.pt_pool_free;
    p.next = info.pt_pool_free;
    p.end = info.pt_pool_end;
}

/// A zeroed pool frame for a page table.
pub fn alloc_table() -> Option<PageTable> {
    let mut p = pool();
    let frame = if p.free_len > 0 {
        p.free_len -= 1;
        p.free[p.free_len]
    } else if p.next + PAGE_SIZE <= p.end {
        p.next += PAGE_SIZE;
        p.next - PAGE_SIZE
    } else {
        return None;
    };
    p.in_use += 1;
    // SAFETY: the frame is a page-aligned pool frame, guest RAM set aside for page
    // tables, that no one else holds (it was free), and free pool frames are all zero.
    Some(unsafe { PageTable::at(PseudoPhys::new(frame).frame()) })
}

/// Returns a table. The caller has already cleared every entry
/// (`AddressSpace::destroy`), so the pool's free frames stay zero.
pub fn free_table(table: PageTable) {
    let frame = table.gpa().raw();
    let mut p = pool();
    if !frame.is_multiple_of(PAGE_SIZE) || frame < p.start || frame >= p.next {
        drop(p);
        crate::println!("pool: refusing to free {frame:#x}: not a page-table pool frame");
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
