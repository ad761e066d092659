//! Lab 1, hidden: what an almost-right dispatch or buffer check lets through.

mod rig;

use pv_abi::hypercall::CONSOLE_WRITE_MAX;
use pv_abi::{Hypercall, HypercallError};
use rig::{show, Rig, RAM};

const WRITE: u64 = Hypercall::ConsoleWrite as u64;

#[test]
fn hostile_numbers_that_agree_in_their_low_bits_are_still_enosys() {
    let rig = Rig::new();
    // A dispatch that looks only at the low 32 (or 8) bits would take these for console_write.
    rig.put(0x100, b"nope");
    for nr in [(1 << 32) | WRITE, (1 << 8) | WRITE, (1 << 63) | WRITE] {
        let r = rig.call(nr, [0x100, 4, 0, 0]);
        assert_eq!(r.result, Err(HypercallError::NoSys), "lab 1: the whole of rax is the number: {} is no hypercall the ABI defines, so ENOSYS", show(nr, [0x100, 4, 0, 0]));
    }
    assert!(rig.console_bytes().is_empty(), "lab 1: an unknown number does nothing");
}

#[test]
fn hostile_buffers_whose_end_wraps_past_zero_are_efault() {
    let rig = Rig::new();
    // gpa + len wraps to a small number, which an unchecked `gpa + len <= RAM` lets through.
    for (gpa, len) in [(u64::MAX, 1), (u64::MAX - 2, 8), (0u64.wrapping_sub(CONSOLE_WRITE_MAX), CONSOLE_WRITE_MAX)] {
        let r = rig.call(WRITE, [gpa, len, 0, 0]);
        assert_eq!(r.result, Err(HypercallError::Fault), "lab 1: a buffer whose end wraps past address 0 is outside guest RAM, so EFAULT: {}", show(WRITE, [gpa, len, 0, 0]));
    }
    assert!(rig.console_bytes().is_empty(), "lab 1: a refused console_write prints nothing");
}

#[test]
fn hostile_one_byte_over_the_limit_is_e2big_and_an_empty_write_is_fine() {
    let rig = Rig::new();
    let r = rig.call(WRITE, [0x1000, CONSOLE_WRITE_MAX + 1, 0, 0]);
    assert_eq!(r.result, Err(HypercallError::TooBig), "lab 1: CONSOLE_WRITE_MAX + 1 bytes is E2BIG");
    assert_eq!(rig.call(WRITE, [0x1000, 0, 0, 0]).result, Ok(0), "lab 1: an empty console_write inside RAM writes nothing and answers 0");
    assert_eq!(rig.call(WRITE, [RAM - 1, 1, 0, 0]).result, Ok(1), "lab 1: the last byte of guest RAM is inside it");
}

#[test]
fn hostile_set_cr3_outside_shadow_mode_is_enosys() {
    let rig = Rig::new();
    let r = rig.call(Hypercall::SetCr3 as u64, [0x30_0000, 0, 0, 0]);
    assert_eq!(r.result, Err(HypercallError::NoSys), "lab 1: set_cr3 exists only in shadow mode: in ept mode it is ENOSYS");
    assert_eq!(rig.call(Hypercall::MmuUpdate as u64, [0x1000, 0, 0, 0]).result, Ok(0), "lab 1: mmu_update(array, count) gets its arguments from rdi, rsi: an empty batch answers 0");
}
