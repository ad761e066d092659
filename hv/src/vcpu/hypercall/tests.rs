//! Hostile-argument tests for hypercall dispatch, against plain guest RAM (no KVM).

use super::*;
use pv_abi::hypercall::MMU_UPDATE_MAX;
use crate::devices::console::CapturedOutput;

const RAM: u64 = 4 << 20;

fn setup() -> (GuestRam, ConsoleOutput, CapturedOutput) {
    let ram = GuestRam::new(RAM).unwrap();
    let captured = CapturedOutput::default();
    (ram, ConsoleOutput::new(Box::new(captured.clone())), captured)
}

/// The page-table pool of the test RAM (as the guest names it in hypercall arguments).
const POOL: std::ops::Range<u64> = 0x30_0000..0x40_0000;

/// A guest address the test reads or writes in RAM.
fn at(address: u64) -> PseudoPhys {
    PseudoPhys::new(address)
}

/// A typed range as the raw numbers a guest passes in registers.
fn raw(range: std::ops::Range<PseudoPhys>) -> std::ops::Range<u64> {
    range.start.raw()..range.end.raw()
}

fn call(ram: &GuestRam, console: &ConsoleOutput, h: u64, args: [u64; 4]) -> HypercallOutcome {
    dispatch(&HypercallRequest { nr: h, args }, &mut HypercallContext { ram, console, pt_pool: at(POOL.start)..at(POOL.end), shadow: None })
}

fn call_shadow(ram: &GuestRam, console: &ConsoleOutput, shadow: &mut ShadowPaging, h: u64, args: [u64; 4]) -> HypercallOutcome {
    let pt_pool = shadow.layout().pool.clone();
    dispatch(&HypercallRequest { nr: h, args }, &mut HypercallContext { ram, console, pt_pool, shadow: Some(shadow) })
}

const WRITE: u64 = Hypercall::ConsoleWrite as u64;

#[test]
fn console_write_copies_exactly_the_bytes_asked_for() {
    let (ram, con, out) = setup();
    ram.write(at(0x5000), b"hello, world").unwrap();
    let r = call(&ram, &con, WRITE, [0x5000, 5, 0, 0]);
    assert_eq!(r.result, Ok(5));
    assert_eq!(out.bytes().as_slice(), b"hello");
    assert_eq!(r.text.as_deref(), Some("hello"));
}

#[test]
fn hostile_console_write_past_the_end_of_ram_is_efault_and_prints_nothing() {
    let (ram, con, out) = setup();
    for (gpa, len) in [(RAM, 1), (RAM - 4, 8), (u64::MAX - 3, 8), (u64::MAX, 1)] {
        assert_eq!(call(&ram, &con, WRITE, [gpa, len, 0, 0]).result, Err(HypercallError::Fault), "{gpa:#x}+{len}");
    }
    assert!(out.bytes().is_empty());
}

#[test]
fn hostile_console_write_of_one_gib_is_e2big_without_allocating_it() {
    let (ram, con, _) = setup();
    assert_eq!(call(&ram, &con, WRITE, [0, 1 << 30, 0, 0]).result, Err(HypercallError::TooBig));
    assert_eq!(call(&ram, &con, WRITE, [0, u64::MAX, 0, 0]).result, Err(HypercallError::TooBig));
    assert_eq!(call(&ram, &con, WRITE, [0, CONSOLE_WRITE_MAX, 0, 0]).result, Ok(CONSOLE_WRITE_MAX));
}

#[test]
fn hostile_control_characters_from_the_guest_do_not_reach_the_terminal() {
    let (ram, con, out) = setup();
    ram.write(at(0x100), b"\x1b[2Jok\n").unwrap();
    call(&ram, &con, WRITE, [0x100, 7, 0, 0]);
    assert_eq!(out.bytes().as_slice(), b"?[2Jok\n");
}

#[test]
fn hostile_hypercall_numbers_unknown_are_enosys() {
    let (ram, con, _) = setup();
    for nr in [7, 0x7777, u64::MAX] {
        let r = call(&ram, &con, nr, [0; 4]);
        assert_eq!(r.result, Err(HypercallError::NoSys));
        assert!(r.stop.is_none());
    }
}

#[test]
fn hostile_shutdown_codes_wider_than_a_byte_are_refused() {
    let (ram, con, _) = setup();
    let sd = Hypercall::Shutdown as u64;
    assert_eq!(call(&ram, &con, sd, [7, 0, 0, 0]).stop, Some(GuestStop::Shutdown { code: 7 }));
    for code in [256, u64::MAX] {
        let r = call(&ram, &con, sd, [code, 0, 0, 0]);
        assert_eq!(r.result, Err(HypercallError::Inval));
        assert!(r.stop.is_none(), "a refused shutdown must not stop the guest");
    }
}

#[test]
fn hostile_shutdown_counters_address_is_checked() {
    let (ram, con, _) = setup();
    let sd = Hypercall::Shutdown as u64;
    let words: Vec<u8> = (1u64..=5).flat_map(u64::to_le_bytes).collect();
    ram.write(at(0x300), &words).unwrap();
    let r = call(&ram, &con, sd, [0, 0x300, 0, 0]);
    assert_eq!(r.stop, Some(GuestStop::Shutdown { code: 0 }));
    let c = r.counters.expect("counters read");
    assert_eq!((c.page_faults, c.cr3_loads, c.syscalls, c.direct_pt_writes, c.batched_pt_writes), (1, 2, 3, 4, 5));
    for bad in [RAM - 8, u64::MAX - 3] {
        let r = call(&ram, &con, sd, [0, bad, 0, 0]);
        assert_eq!(r.result, Err(HypercallError::Fault));
        assert!(r.stop.is_none(), "a refused shutdown must not stop the guest");
    }
}

#[test]
fn hostile_report_panic_message_range_is_checked() {
    let (ram, con, _) = setup();
    let rp = Hypercall::ReportPanic as u64;
    ram.write(at(0x200), b"src/x.rs:1:2: boom").unwrap();
    let r = call(&ram, &con, rp, [0x200, 18, 0, 0]);
    assert_eq!(r.stop, Some(GuestStop::Panicked { message: "src/x.rs:1:2: boom".into() }));
    assert_eq!(call(&ram, &con, rp, [RAM, 4, 0, 0]).result, Err(HypercallError::Fault));
    assert_eq!(call(&ram, &con, rp, [0, 1 << 40, 0, 0]).result, Err(HypercallError::TooBig));
}

#[test]
fn hostile_panic_messages_and_console_text_reach_the_terminal_sanitized() {
    let (ram, con, out) = setup();
    let evil = b"\x1b]0;pwned\x07\rhv: error: all is fine\x1b[2J";
    ram.write(at(0x200), evil).unwrap();
    let r = call(&ram, &con, Hypercall::ReportPanic as u64, [0x200, evil.len() as u64, 0, 0]);
    let Some(GuestStop::Panicked { message }) = r.stop else { panic!("a panic stop") };
    assert_eq!(message, "?]0;pwned??hv: error: all is fine?[2J");
    let r = call(&ram, &con, WRITE, [0x200, evil.len() as u64, 0, 0]);
    assert_eq!(r.text.as_deref(), Some("?]0;pwned??hv: error: all is fine?[2J"));
    con.flush();
    assert!(!out.text().contains('\x1b') && !out.text().contains('\r'), "{:?}", out.text());
}

#[test]
fn hostile_report_exception_vectors_beyond_the_cpus_are_refused() {
    let (ram, con, _) = setup();
    let re = Hypercall::ReportException as u64;
    let r = call(&ram, &con, re, [13, 0xffff_ffff_8020_0000, 0, 0]);
    assert!(matches!(r.stop, Some(GuestStop::Exception { vector: 13, .. })));
    assert_eq!(call(&ram, &con, re, [32, 0, 0, 0]).result, Err(HypercallError::Inval));
}

const MMU: u64 = Hypercall::MmuUpdate as u64;

fn write_batch(ram: &GuestRam, array: u64, pairs: &[(u64, u64)]) {
    for (i, (e, v)) in pairs.iter().enumerate() {
        ram.write_u64(at(array + 16 * i as u64), *e).unwrap();
        ram.write_u64(at(array + 16 * i as u64 + 8), *v).unwrap();
    }
}

#[test]
fn mmu_update_applies_a_batch_inside_the_pool() {
    let (ram, con, _) = setup();
    write_batch(&ram, 0x1000, &[(POOL.start, 0x1234_5007), (POOL.start + 8, 0x2003), (POOL.end - 8, 7)]);
    assert_eq!(call(&ram, &con, MMU, [0x1000, 3, 0, 0]).result, Ok(3));
    assert_eq!(ram.read_u64(at(POOL.start)).unwrap(), 0x1234_5007);
    assert_eq!(ram.read_u64(at(POOL.end - 8)).unwrap(), 7);
}

#[test]
fn hostile_mmu_update_with_one_entry_outside_the_pool_changes_nothing() {
    let (ram, con, _) = setup();
    let kernel_data = 0x20_0000;
    write_batch(&ram, 0x1000, &[(POOL.start, 0x1007), (kernel_data, 0xdead)]);
    assert_eq!(call(&ram, &con, MMU, [0x1000, 2, 0, 0]).result, Err(HypercallError::Inval));
    assert_eq!(ram.read_u64(at(POOL.start)).unwrap(), 0, "not even the good entry was applied");
    assert_eq!(ram.read_u64(at(kernel_data)).unwrap(), 0);
    write_batch(&ram, 0x1000, &[(POOL.start + 4, 1)]);
    assert_eq!(call(&ram, &con, MMU, [0x1000, 1, 0, 0]).result, Err(HypercallError::Inval), "unaligned");
    write_batch(&ram, 0x1000, &[(POOL.end, 1)]);
    assert_eq!(call(&ram, &con, MMU, [0x1000, 1, 0, 0]).result, Err(HypercallError::Inval), "one past the pool");
}

#[test]
fn hostile_mmu_update_huge_counts_and_arrays_outside_ram_are_refused() {
    let (ram, con, _) = setup();
    assert_eq!(call(&ram, &con, MMU, [0, MMU_UPDATE_MAX + 1, 0, 0]).result, Err(HypercallError::TooBig));
    assert_eq!(call(&ram, &con, MMU, [0, u64::MAX, 0, 0]).result, Err(HypercallError::TooBig));
    assert_eq!(call(&ram, &con, MMU, [RAM - 16, 2, 0, 0]).result, Err(HypercallError::Fault));
    assert_eq!(call(&ram, &con, MMU, [0, 0, 0, 0]).result, Ok(0), "an empty batch is fine");
}

const SET_CR3: u64 = Hypercall::SetCr3 as u64;

#[test]
fn hostile_set_cr3_outside_shadow_mode_or_the_pool_is_refused() {
    let (ram, con, _) = setup();
    assert_eq!(call(&ram, &con, SET_CR3, [POOL.start, 0, 0, 0]).result, Err(HypercallError::NoSys));
    let mut shadow = ShadowPaging::new(RAM).unwrap();
    let pool = raw(shadow.layout().pool.clone());
    let r = call_shadow(&ram, &con, &mut shadow, SET_CR3, [pool.start, 0, 0, 0]);
    assert_eq!(r.result, Ok(0));
    let cr3 = r.cr3.expect("a shadow root for CR3");
    assert!(shadow.layout().in_shadow_area(cr3), "CR3 points into the shadow area, never at the guest's table");
    for bad in [0x1000, pool.start + 8, pool.end, !0xfff] {
        let r = call_shadow(&ram, &con, &mut shadow, SET_CR3, [bad, 0, 0, 0]);
        assert_eq!(r.result, Err(HypercallError::Inval), "root {bad:#x}");
        assert_eq!(r.cr3, None);
    }
    assert_eq!(shadow.counters().cr3_loads, 1);
}

#[test]
fn mmu_update_in_shadow_mode_goes_through_the_engine() {
    let (ram, con, _) = setup();
    let mut shadow = ShadowPaging::new(RAM).unwrap();
    let pool = raw(shadow.layout().pool.clone());
    call_shadow(&ram, &con, &mut shadow, SET_CR3, [pool.start, 0, 0, 0]);
    // PML4[0] → a PDPT in the pool: one guest write, one shadow entry re-derived.
    write_batch(&ram, 0x1000, &[(pool.start, (pool.start + 0x1000) | 7)]);
    assert_eq!(call_shadow(&ram, &con, &mut shadow, MMU, [0x1000, 1, 0, 0]).result, Ok(1));
    assert_eq!(ram.read_u64(at(pool.start)).unwrap(), (pool.start + 0x1000) | 7);
    let c = shadow.counters();
    assert_eq!((c.shadow_syncs, c.trapped_pt_writes), (1, 0));
    write_batch(&ram, 0x1000, &[(0x2000, 1)]);
    assert_eq!(call_shadow(&ram, &con, &mut shadow, MMU, [0x1000, 1, 0, 0]).result, Err(HypercallError::Inval));
}

#[test]
fn hostile_set_cr3_to_a_root_too_big_is_e2big_and_cr3_follows_the_loaded_space() {
    let (ram, con, _) = setup();
    let mut shadow = ShadowPaging::new(RAM).unwrap();
    let pool = raw(shadow.layout().pool.clone());
    let area_frames = shadow.layout().shadow_bytes / 0x1000;
    let loaded = call_shadow(&ram, &con, &mut shadow, SET_CR3, [pool.start, 0, 0, 0]).cr3;
    // Another root: PML4 → PDPT → PD → more PTs than the shadow area has frames.
    let frame = |n: u64| pool.start + (1 + n) * 0x1000;
    ram.write_u64(at(frame(0)), frame(1) | 7).unwrap();
    ram.write_u64(at(frame(1)), frame(2) | 7).unwrap();
    for i in 0..area_frames {
        ram.write_u64(at(frame(2) + i * 8), frame(3 + i) | 7).unwrap();
    }
    let r = call_shadow(&ram, &con, &mut shadow, SET_CR3, [frame(0), 0, 0, 0]);
    assert_eq!(r.result, Err(HypercallError::TooBig));
    assert!(r.stop.is_none(), "a bad argument is never fatal");
    // CR3 ends up at the loaded space's shadow: where it was, or where it was rebuilt.
    assert_eq!(r.cr3.or(loaded), shadow.current_cr3());
    assert_eq!(shadow.guest_root(), Some(at(pool.start)));
}
