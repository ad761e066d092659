//! The boot-info page and the kernel's view of its own addresses.
//!
//! The VMM's first page tables give the kernel two windows onto guest-physical memory
//! (see `pv_abi::layout`): the kernel image at `KERNEL_VIRT_BASE + p`, and all of RAM at
//! `PHYS_MAP_BASE + p`. Hypercalls take guest-physical addresses, so the kernel needs
//! the reverse: [`virt_to_phys`] undoes whichever window an address is in.
//!
//! This sits in `arch` because it is the shape of the address space the CPU runs in
//! from the first instruction (the boot page tables and the linker script fix it), and
//! every layer above, down to the hypercall wrappers, needs it.

use core::sync::atomic::{AtomicU64, Ordering};

use pv_abi::addr::{GuestVirt, PseudoPhys};
use pv_abi::layout::{KERNEL_VIRT_BASE, PHYS_MAP_BASE};
use pv_abi::BootInfo;

/// Size of RAM, recorded at boot so [`virt_to_phys`] can bound the direct map.
static MEM_BYTES: AtomicU64 = AtomicU64::new(0);

extern "C" {
    // Defined by linker.ld: the first and one-past-last virtual byte of the image.
    static __kernel_start: u8;
    static __kernel_end: u8;
}

fn kernel_image_range() -> (u64, u64) {
    // Only the addresses of the linker symbols are taken, never their contents.
    (&raw const __kernel_start as u64, &raw const __kernel_end as u64)
}

/// Reads and checks the boot-info page at `boot_info_gpa` (what the VMM passed in
/// `rdi`); panics (which the VMM reports) if it is bad.
pub fn init(boot_info_gpa: PseudoPhys) -> &'static BootInfo {
    assert!(
        boot_info_gpa.is_aligned(core::mem::align_of::<BootInfo>() as u64) && boot_info_gpa.raw() < (1 << 32),
        "boot-info address {:#x} is not plausible",
        boot_info_gpa.raw()
    );
    // SAFETY: the VMM maps all of RAM at PHYS_MAP_BASE and wrote a BootInfo (a plain
    // repr(C) struct of integers, valid for any bytes) at this aligned address below
    // 4 GiB, which it never changes afterwards; the reference is read-only.
    let info: &'static BootInfo = unsafe { &*direct_map::<BootInfo>(boot_info_gpa) };
    if let Err(problem) = info.check() {
        panic!("the boot-info page is not valid: {problem:?}");
    }
    MEM_BYTES.store(info.mem_bytes, Ordering::Relaxed);
    info
}

/// Translates a kernel virtual address to guest-physical, or `None` if it lies in
/// neither window (for example a null pointer or a user address).
pub fn virt_to_phys(virt: GuestVirt) -> Option<PseudoPhys> {
    let (start, end) = kernel_image_range();
    let virt = virt.raw();
    if (start..end).contains(&virt) {
        return Some(PseudoPhys::new(virt - KERNEL_VIRT_BASE));
    }
    let mem = MEM_BYTES.load(Ordering::Relaxed);
    let offset = virt.checked_sub(PHYS_MAP_BASE)?;
    (offset < mem).then_some(PseudoPhys::new(offset))
}

/// The kernel virtual address of a pointer (for [`virt_to_phys`]).
pub fn virt_of<T: ?Sized>(pointer: *const T) -> GuestVirt {
    GuestVirt::new(pointer.cast::<u8>() as u64)
}

/// The virtual address at which guest-physical `gpa` can be read (the direct map).
pub fn phys_to_virt(gpa: PseudoPhys) -> GuestVirt {
    // PHYS_MAP_BASE leaves 2^63 bytes above it and guest RAM is far smaller, so this
    // does not overflow for any guest-physical address.
    GuestVirt::new(PHYS_MAP_BASE + gpa.raw())
}

/// A pointer to guest-physical `gpa` through the direct map. Making it is safe; using
/// it is the caller's `unsafe`, with a proof that `gpa` is RAM it may access as a `T`.
pub fn direct_map<T>(gpa: PseudoPhys) -> *mut T {
    phys_to_virt(gpa).raw() as *mut T
}
