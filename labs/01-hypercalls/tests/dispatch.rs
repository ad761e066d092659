//! Lab 1, part (a): the VMM's hypercall dispatch and the checks of a guest buffer.
//! Every call goes through `hv::vcpu::hypercall::dispatch` with plain guest RAM (no KVM).

mod rig;

use hv::outcome::GuestStop;
use pv_abi::hypercall::CONSOLE_WRITE_MAX;
use pv_abi::{Hypercall, HypercallError};
use rig::{show, Rig, RAM};

const NOP: u64 = Hypercall::Nop as u64;
const WRITE: u64 = Hypercall::ConsoleWrite as u64;
const SHUTDOWN: u64 = Hypercall::Shutdown as u64;
const PANIC: u64 = Hypercall::ReportPanic as u64;
const EXCEPTION: u64 = Hypercall::ReportException as u64;

/// Fails unless the call was refused with `expected` and the guest runs on.
fn expect_refused(rig: &Rig, nr: u64, args: [u64; 4], expected: HypercallError, rule: &str) {
    let r = rig.call(nr, args);
    assert_eq!(r.result, Err(expected), "lab 1: {rule}: {} must be refused with {expected:?} (the guest gets -{})", show(nr, args), expected.name());
    assert!(r.stop.is_none(), "lab 1: {rule}: a refused call returns an error code to the guest, which runs on; {} stopped it with {:?}", show(nr, args), r.stop);
}

#[test]
fn nop_answers_zero() {
    let rig = Rig::new();
    let r = rig.call(NOP, [1, 2, 3, 4]);
    assert_eq!(r.result, Ok(0), "lab 1: nop is the bare round trip: it ignores its arguments and answers 0");
    assert!(r.stop.is_none(), "lab 1: nop must not stop the guest");
}

#[test]
fn hostile_unknown_numbers_are_enosys() {
    let rig = Rig::new();
    for nr in [7, 8, 0x7777, 1 << 32, u64::MAX] {
        expect_refused(&rig, nr, [0; 4], HypercallError::NoSys, "a number the ABI does not define is ENOSYS (Hypercall::from_number says which it defines)");
    }
}

#[test]
fn console_write_copies_exactly_the_bytes_asked_for() {
    let rig = Rig::new();
    rig.put(0x5000, b"hello, world");
    let r = rig.call(WRITE, [0x5000, 5, 0, 0]);
    assert_eq!(r.result, Ok(5), "lab 1: console_write(gpa, len) answers the number of bytes written");
    assert_eq!(rig.console_bytes(), b"hello", "lab 1: console_write writes exactly `len` bytes from guest-physical `gpa` (arguments rdi, rsi)");
    assert_eq!(r.text.as_deref(), Some("hello"), "lab 1: console_write hands its text to the trace");
    rig.put(RAM - 3, b"end");
    assert_eq!(rig.call(WRITE, [RAM - 3, 3, 0, 0]).result, Ok(3), "lab 1: a buffer that ends exactly at the end of guest RAM is inside it");
    assert_eq!(rig.call(WRITE, [0x5000, CONSOLE_WRITE_MAX, 0, 0]).result, Ok(CONSOLE_WRITE_MAX), "lab 1: CONSOLE_WRITE_MAX bytes are allowed (the limit is inclusive)");
}

#[test]
fn hostile_console_write_outside_guest_ram_is_efault_and_prints_nothing() {
    let rig = Rig::new();
    for (gpa, len) in [(RAM, 1), (RAM - 4, 8), (RAM + 0x1000, 16), (u64::MAX - 7, 16)] {
        expect_refused(&rig, WRITE, [gpa, len, 0, 0], HypercallError::Fault, "a buffer not wholly inside guest RAM is EFAULT (GuestRam's checked read says so)");
    }
    assert!(rig.console_bytes().is_empty(), "lab 1: a refused console_write prints nothing, not even part of the buffer; the console got {:?}", String::from_utf8_lossy(&rig.console_bytes()));
}

#[test]
fn hostile_console_write_too_long_is_e2big_before_anything_is_allocated() {
    let rig = Rig::new();
    // All inside RAM but one: the length is checked first, so a huge length is E2BIG
    // wherever it points (and the VMM never allocates what the guest asks for).
    for len in [CONSOLE_WRITE_MAX + 1, 1 << 20, 1 << 30, u64::MAX] {
        expect_refused(&rig, WRITE, [0x1000, len, 0, 0], HypercallError::TooBig, "a length over CONSOLE_WRITE_MAX is E2BIG, checked before the buffer is read");
    }
    assert!(rig.console_bytes().is_empty(), "lab 1: a refused console_write prints nothing");
}

#[test]
fn shutdown_and_the_reports_get_their_arguments_from_the_abi_registers() {
    let rig = Rig::new();
    let r = rig.call(SHUTDOWN, [7, 0, 0, 0]);
    assert_eq!(r.stop, Some(GuestStop::Shutdown { code: 7 }), "lab 1: shutdown(code, counters) stops the guest with the code from rdi");
    rig.put(0x200, b"src/x.rs:1:2: boom");
    let r = rig.call(PANIC, [0x200, 18, 0, 0]);
    assert_eq!(r.stop, Some(GuestStop::Panicked { message: "src/x.rs:1:2: boom".into() }), "lab 1: report_panic(gpa, len) stops the guest with the message it reads");
    let r = rig.call(EXCEPTION, [14, 0xffff_ffff_8020_1234, 2, 0xdead_0000]);
    match r.stop {
        Some(GuestStop::Exception { vector, rip, error_code, cr2 }) => assert_eq!(
            (vector, rip.raw(), error_code, cr2.raw()),
            (14, 0xffff_ffff_8020_1234, 2, 0xdead_0000),
            "lab 1: report_exception(vector, rip, error, cr2) takes its arguments from rdi, rsi, r8, r9 in that order"
        ),
        other => panic!("lab 1: report_exception stops the guest with GuestStop::Exception, not {other:?}"),
    }
}

#[test]
fn hostile_report_panic_message_is_checked_like_a_console_buffer() {
    let rig = Rig::new();
    expect_refused(&rig, PANIC, [RAM - 2, 4, 0, 0], HypercallError::Fault, "report_panic's message is a guest buffer: outside guest RAM it is EFAULT");
    expect_refused(&rig, PANIC, [0, 1 << 40, 0, 0], HypercallError::TooBig, "report_panic's message is a guest buffer: over CONSOLE_WRITE_MAX it is E2BIG");
}

#[test]
fn hostile_bad_shutdowns_and_exception_reports_are_refused() {
    let rig = Rig::new();
    expect_refused(&rig, SHUTDOWN, [256, 0, 0, 0], HypercallError::Inval, "a shutdown code wider than a byte is EINVAL");
    expect_refused(&rig, SHUTDOWN, [0, RAM - 8, 0, 0], HypercallError::Fault, "shutdown's counters address must name 40 bytes inside guest RAM");
    expect_refused(&rig, EXCEPTION, [32, 0, 0, 0], HypercallError::Inval, "an exception vector above 31 is EINVAL");
}
