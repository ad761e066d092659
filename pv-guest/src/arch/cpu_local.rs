//! [`VcpuCell`]: the kernel's one kind of mutable global.
//!
//! A kernel needs state that lives for ever and changes: the frame allocator, the task
//! table, the GDT. In Rust a `static mut` would do, but every use of one is `unsafe`
//! and nothing checks the promise made there. This kernel has exactly one mutable
//! global type instead, and its soundness argument is written once, here.
//!
//! ## Why one vCPU makes it sound
//! hv gives the guest exactly one virtual CPU, and the kernel starts no threads, so
//! no two pieces of kernel code ever run *at the same time*. What can happen is that
//! one runs *inside* another: an exception or an interrupt stops the kernel between two
//! instructions, runs a handler to completion, and resumes it. Interrupts are off in
//! ring 0 except inside `cpu::wait_for_interrupt`, but exceptions (a page fault, an
//! announced `ud2`) can happen anywhere. If the interrupted code held a `&mut` to a
//! global and the handler took another, Rust's aliasing rule would be broken.
//!
//! So a `VcpuCell` is a `RefCell` for one CPU: [`VcpuCell::borrow_mut`] sets a flag
//! (with a compiler barrier, so no access to the value moves before it) and the guard
//! clears it when dropped. A second borrow while the first is alive, which can only
//! mean a handler re-entered code that was using the same state, panics (and the panic
//! becomes a `report_panic` hypercall) instead of aliasing. The flag costs a load, a
//! branch and two stores per borrow, so hot paths borrow once per operation, not once
//! per access.
//!
//! ## The one rule the flag cannot check
//! `arch::user_entry::back_to_kernel` abandons the trap handler's stack (a `longjmp`),
//! so a guard alive on that stack would never be dropped and its cell would stay
//! borrowed for ever. That function is `unsafe`, and its callers drop every guard
//! first.
//!
//! ## Memory the CPU reads
//! Descriptor tables and stacks are handed to the hardware by address. For them,
//! [`VcpuCell::as_ptr`] gives the address of the value without borrowing; the value is
//! the first field, so the cell's own address is the value's (the boot stub uses that).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{compiler_fence, AtomicBool, Ordering};

/// A mutable global for a single-vCPU kernel: a value and a "borrowed" flag.
#[repr(C)]
pub struct VcpuCell<T> {
    /// The value; first, so that the cell's address is the value's.
    value: UnsafeCell<T>,
    /// Set while a [`VcpuRefMut`] is alive.
    borrowed: AtomicBool,
}

// SAFETY: the guest has one vCPU and no threads, so a `VcpuCell` is never used from two
// CPUs at once; the only overlap possible is a trap handler nested inside kernel code,
// and `borrow_mut`'s flag turns a nested second borrow into a panic. `T: Send` because
// the value may be reached from any context (kernel code or a handler) in turn.
unsafe impl<T: Send> Sync for VcpuCell<T> {}

impl<T> VcpuCell<T> {
    /// A cell holding `value`, not borrowed.
    pub const fn new(value: T) -> Self {
        VcpuCell { value: UnsafeCell::new(value), borrowed: AtomicBool::new(false) }
    }

    /// Exclusive access to the value until the guard is dropped.
    ///
    /// # Panics
    /// If the cell is already borrowed: a trap handler re-entered code that was using
    /// this state (or a guard was leaked across `back_to_kernel`). That is a kernel bug.
    #[inline]
    pub fn borrow_mut(&self) -> VcpuRefMut<'_, T> {
        // A plain load and store, not an atomic exchange: only this vCPU ever touches
        // the flag, so there is no other CPU to race with, and a locked instruction
        // would cost more on every borrow. A trap between the load and the store is
        // harmless: its handler either finds the flag clear and clears it again
        // before returning here, or panics.
        if self.borrowed.load(Ordering::Relaxed) {
            already_borrowed();
        }
        self.borrowed.store(true, Ordering::Relaxed);
        // Nothing done with the value may be moved above the store that marks it
        // borrowed (a trap handler must see the flag before it sees the changes).
        compiler_fence(Ordering::Acquire);
        VcpuRefMut { cell: self }
    }

    /// The value's address, for memory the CPU reads by address (descriptor tables,
    /// stacks). No borrow is taken: dereferencing the pointer is the caller's `unsafe`.
    pub const fn as_ptr(&self) -> *mut T {
        self.value.get()
    }
}

/// The panic of a second borrow, out of line: every borrow site stays a load, a branch
/// and a store.
#[cold]
#[inline(never)]
fn already_borrowed() -> ! {
    panic!("a VcpuCell was borrowed twice (a trap handler re-entered the code using it)")
}

/// Exclusive access to a [`VcpuCell`]'s value; the borrow ends when this is dropped.
pub struct VcpuRefMut<'a, T> {
    cell: &'a VcpuCell<T>,
}

impl<T> Deref for VcpuRefMut<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while `borrowed` is set, and `borrow_mut` hands
        // out at most one guard while it is set, so no other reference to the value exists.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for VcpuRefMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the guard's only live reference.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for VcpuRefMut<'_, T> {
    fn drop(&mut self) {
        // Release: every use of the value happens before the next borrow can begin.
        self.cell.borrowed.store(false, Ordering::Release);
    }
}
