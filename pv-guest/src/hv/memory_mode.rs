//! The memory mode, read where it is used, and the CR3 section around its one use.
//!
//! How the kernel loads an address space depends on the memory mode: in ept mode it
//! writes CR3 itself; in shadow mode the CPU must only ever see hv's shadow tables, so
//! it asks hv (`set_cr3`). The mode is not fixed for the guest's life: hv can restore a
//! snapshot, or receive a migrated guest, in the *other* mode, and then rewrites
//! `BootInfo::mmu_mode` before the guest runs again. So the mode is read from the
//! boot-info page at every use, never cached.
//!
//! One window is left: between reading the mode and loading CR3. A guest moved to the
//! other mode inside it would finish the load the old mode's way. The guest closes the
//! window the paravirtual way, by telling hv: [`in_cr3_section`] raises a flag in the
//! shared-info page (`SHARED_INFO_CR3_SECTION_OFFSET`) for those few instructions, and
//! hv does not take a snapshot or a migration's last step while it is up (hv's
//! `vcpu::control` has the other half).

use core::sync::atomic::{compiler_fence, AtomicPtr, AtomicU8, Ordering};

use pv_abi::addr::PseudoPhys;
use pv_abi::event_channel::SHARED_INFO_CR3_SECTION_OFFSET;
use pv_abi::layout::SHARED_INFO_GPA;
use pv_abi::{BootInfo, MmuMode};

use crate::arch::kernel_map;

/// The boot-info page's `mmu_mode` word.
static MODE_WORD: AtomicPtr<u32> = AtomicPtr::new(core::ptr::null_mut());

/// Remembers where the boot-info page keeps the mode.
pub fn init(info: &'static BootInfo) {
    MODE_WORD.store(core::ptr::addr_of!(info.mmu_mode).cast_mut(), Ordering::Relaxed);
}

/// The memory mode now (hv may have changed it while the guest was stopped).
pub fn current() -> Option<MmuMode> {
    let word = MODE_WORD.load(Ordering::Relaxed);
    if word.is_null() {
        return None;
    }
    // SAFETY: `word` points into the boot-info page (set by `init` from the page hv
    // wrote, in the direct map), an aligned u32. Read volatile: hv rewrites it from
    // outside the program while the guest is stopped, which the compiler cannot see.
    MmuMode::from_u32(unsafe { core::ptr::read_volatile(word) })
}

fn cr3_section_flag() -> &'static AtomicU8 {
    let addr = kernel_map::phys_to_virt(PseudoPhys::new(SHARED_INFO_GPA)).raw() + SHARED_INFO_CR3_SECTION_OFFSET as u64;
    // SAFETY: the shared-info page is guest RAM in the direct map and the flag is one
    // byte inside it; AtomicU8 has the layout of u8. hv only reads it, while the vCPU is
    // stopped.
    unsafe { &*(addr as *const AtomicU8) }
}

/// Runs `load` (which loads CR3 the way the given mode asks) with the CR3-section flag
/// raised, so that hv does not move the guest to another mode in the middle of it.
pub fn in_cr3_section<R>(load: impl FnOnce(Option<MmuMode>) -> R) -> R {
    let flag = cr3_section_flag();
    flag.store(1, Ordering::Relaxed);
    // Single vCPU, and hv looks only while the vCPU is stopped: program order is all
    // that is needed, so a compiler fence keeps the mode read inside the section.
    compiler_fence(Ordering::SeqCst);
    let result = load(current());
    compiler_fence(Ordering::SeqCst);
    flag.store(0, Ordering::Relaxed);
    result
}
