//! A value a task takes (mutably) once: its large buffers live in `.bss` (mapped zeroed
//! by the kernel's loader) instead of on its 64 KiB stack.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// `T`, handed out at most once.
pub struct TakeOnce<T> {
    taken: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is handed out at most once (the atomic swap), so no two references
// to it can exist, whatever threads there are (a task has one).
unsafe impl<T> Sync for TakeOnce<T> {}

impl<T> TakeOnce<T> {
    /// `value`, not taken yet.
    pub const fn new(value: T) -> Self {
        TakeOnce { taken: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// The value, the first time; `None` after.
    // A `&mut` from a `&`: sound because the atomic swap lets only one caller through
    // (the lint cannot see that).
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above succeeds once, so this is the only reference ever made.
        Some(unsafe { &mut *self.value.get() })
    }
}
