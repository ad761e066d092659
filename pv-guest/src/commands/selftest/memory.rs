//! Self-tests of the memory-management layer and of ring-3 tasks.
//!
//! They cover what the course notes promise of virtual memory: a mapping translates as
//! written and disappears when removed; protection is enforced (a task that writes its
//! own code or reads the kernel is killed, and only it); anonymous memory arrives as
//! zeroes on first touch; tasks in different address spaces switch CR3 and keep their
//! own memory; 2 MiB pages work; and page-table writes can go through the batched
//! `mmu_update` hypercall.

use pv_abi::addr::{GuestVirt, PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::exception::PAGE_FAULT;
use pv_abi::paging::{PteFlags, LARGE_PAGE_SIZE};
use pv_abi::BootInfo;

use super::check::{ensure, SelfTest, TestResult};
use crate::arch::{cpu, kernel_map};
use crate::counters::{self, CR3_LOADS, DEMAND_FAULTS};
use crate::mm::address_space::AddressSpace;
use crate::mm::frames;
use crate::mm::writer::PageTableWriter;
use crate::mm::{pool, PageSize, Protection};
use crate::task::programs::{UserProgram, HELLO, MAP_UNMAP_LOOP, READ_ADDRESS, TOUCH_PAGES, USE_AFTER_UNMAP, WRITE_OWN_CODE, YIELD_LOOP};
use crate::task::scheduler::{self, TaskExit, USER_STACK_TOP};

/// The tests, by name.
pub const TESTS: [SelfTest; 19] = [
    ("address_space_maps_translates_and_unmaps", |i| map_translate_unmap(i, false)),
    ("batched_mmu_update_maps_the_same", |i| map_translate_unmap(i, true)),
    ("protect_changes_permissions", protect_changes_permissions),
    ("large_page_translates_across_2_mib", large_page_translates),
    ("a_2_mib_page_is_seen_by_the_cpu", large_page_is_seen_by_the_cpu),
    ("task_runs_in_ring_3_and_exits", |_| task_runs_and_exits()),
    ("demand_zero_pages_read_as_zero", |_| demand_zero()),
    ("writing_own_code_kills_only_that_task", |_| hostile_write_own_code_is_killed()),
    ("reading_kernel_memory_kills_the_task", |_| hostile_read_kernel_is_killed()),
    ("tasks_switch_address_spaces", |_| tasks_switch()),
    ("as_many_tasks_as_slots_switch_round_robin", |_| all_slots_switch()),
    ("map_unmap_system_calls_free_their_frames", |_| map_unmap_loop(false)),
    ("map_unmap_through_batched_mmu_update", |_| map_unmap_loop(true)),
    ("remap_is_seen_by_the_cpu", |i| remap_is_seen_by_the_cpu(i, false)),
    ("remap_through_mmu_update_is_seen_by_the_cpu", |i| remap_is_seen_by_the_cpu(i, true)),
    ("a_page_is_gone_after_unmap", |_| use_after_unmap(false)),
    ("a_page_is_gone_after_unmap_through_mmu_update", |_| use_after_unmap(true)),
    ("reused_page_tables_are_seen_by_the_cpu", |i| reused_tables_are_seen_by_the_cpu(i, false, 4)),
    ("many_reused_page_tables_through_mmu_update_are_seen", |i| reused_tables_are_seen_by_the_cpu(i, true, 80)),
];

/// A user address no test maps otherwise.
const TEST_VA: GuestVirt = GuestVirt::new(0x1000_0000);
/// A 2 MiB-aligned user address for the large-page tests.
const LARGE_VA: GuestVirt = GuestVirt::new(0x4000_0000);

/// `base + bytes` (the test addresses are nowhere near the end of the address space).
fn at(base: GuestVirt, bytes: u64) -> GuestVirt {
    GuestVirt::new(base.raw() + bytes)
}

/// The guest-physical address `bytes` into `frame`.
fn in_frame(frame: PseudoFrame, bytes: u64) -> Option<PseudoPhys> {
    frame.checked_address()?.checked_add(bytes)
}

/// The boot page tables' root, from the boot-info page.
fn boot_root(info: &BootInfo) -> PseudoPhys {
    PseudoPhys::new(info.boot_page_table_root)
}

fn map_translate_unmap(info: &BootInfo, batched: bool) -> TestResult {
    let mut w = if batched { PageTableWriter::batched() } else { PageTableWriter::Direct };
    let tables_before = pool::in_use();
    let mut space = AddressSpace::new(&mut w, boot_root(info)).map_err(|_| "no page tables")?;
    let frames: [PseudoFrame; 80] = core::array::from_fn(|_| frames::alloc().unwrap_or_default());
    ensure(frames.iter().all(|f| f.raw() != 0), "out of frames")?;
    for (i, f) in frames.iter().enumerate() {
        space.map(&mut w, at(TEST_VA, i as u64 * PAGE_SIZE), *f, Protection::USER_DATA, PageSize::Small).map_err(|_| "map failed")?;
    }
    w.flush().map_err(|_| "mmu_update refused the batch")?;
    if batched {
        // 80 leaves and a few intermediate entries: at least two batches of 64.
        ensure(w.hypercalls() >= 2, "the batched writer did not use mmu_update")?;
    }
    for (i, f) in frames.iter().enumerate() {
        let (gpa, entry) = space.translate(at(TEST_VA, i as u64 * PAGE_SIZE + 5)).ok_or("mapped page does not translate")?;
        ensure(Some(gpa) == in_frame(*f, 5), "translation gives the wrong frame")?;
        ensure(entry.flags().contains(PteFlags::USER | PteFlags::WRITABLE | PteFlags::NO_EXECUTE), "wrong permissions")?;
    }
    for (i, f) in frames.iter().enumerate() {
        let (frame, size) = space.unmap(&mut w, at(TEST_VA, i as u64 * PAGE_SIZE)).map_err(|_| "unmap failed")?;
        ensure(frame == *f && size == PageSize::Small, "unmap returned the wrong frame")?;
    }
    w.flush().map_err(|_| "mmu_update refused the batch")?;
    ensure(space.translate(TEST_VA).is_none(), "an unmapped page still translates")?;
    space.destroy(&mut w, &mut |_, _| {}).map_err(|_| "destroy failed")?;
    frames.iter().for_each(|f| frames::free(*f));
    ensure(pool::in_use() == tables_before, "destroy did not return every page table")
}

fn protect_changes_permissions(info: &BootInfo) -> TestResult {
    let mut w = PageTableWriter::Direct;
    let mut space = AddressSpace::new(&mut w, boot_root(info)).map_err(|_| "no page tables")?;
    let f = frames::alloc().ok_or("out of frames")?;
    space.map(&mut w, TEST_VA, f, Protection::USER_DATA, PageSize::Small).map_err(|_| "map failed")?;
    space.protect(&mut w, TEST_VA, Protection::USER_READ_ONLY).map_err(|_| "protect failed")?;
    let (_, entry) = space.translate(TEST_VA).ok_or("gone after protect")?;
    ensure(!entry.flags().contains(PteFlags::WRITABLE), "still writable")?;
    space.protect(&mut w, TEST_VA, Protection::USER_CODE).map_err(|_| "protect failed")?;
    let (_, entry) = space.translate(TEST_VA).ok_or("gone after protect")?;
    ensure(!entry.flags().contains(PteFlags::NO_EXECUTE), "not executable")?;
    ensure(space.protect(&mut w, at(TEST_VA, PAGE_SIZE), Protection::USER_DATA).is_err(), "protected an unmapped page")?;
    space.destroy(&mut w, &mut |f, _| frames::free(f)).map_err(|_| "destroy failed")?;
    Ok(())
}

fn large_page_translates(info: &BootInfo) -> TestResult {
    let mut w = PageTableWriter::Direct;
    let mut space = AddressSpace::new(&mut w, boot_root(info)).map_err(|_| "no page tables")?;
    let big = frames::alloc_large().ok_or("no 2 MiB frame")?;
    ensure(big.checked_address().is_some_and(|a| a.is_aligned(LARGE_PAGE_SIZE)), "large frame not aligned")?;
    let va = LARGE_VA;
    space.map(&mut w, va, big, Protection::USER_DATA, PageSize::Large).map_err(|_| "map failed")?;
    let (gpa, _) = space.translate(at(va, 0x1f_f123)).ok_or("no translation near the end")?;
    ensure(Some(gpa) == in_frame(big, 0x1f_f123), "wrong translation inside the large page")?;
    ensure(space.map(&mut w, at(va, PAGE_SIZE), big, Protection::USER_DATA, PageSize::Small).is_err(), "mapped over a large page")?;
    ensure(space.map(&mut w, at(va, PAGE_SIZE), big, Protection::USER_DATA, PageSize::Large).is_err(), "accepted an unaligned large page")?;
    space
        .destroy(&mut w, &mut |f, size| match size {
            PageSize::Small => frames::free(f),
            PageSize::Large => frames::free_large(f),
        })
        .map_err(|_| "destroy failed")?;
    Ok(())
}

/// Maps a 2 MiB page and reads it through the CPU at both ends: one entry, 512 frames.
/// Under shadow paging the shadow entry is a 2 MiB page too, which is only possible
/// because hv keeps each 2 MiB block of guest frames contiguous in machine memory.
fn large_page_is_seen_by_the_cpu(info: &BootInfo) -> TestResult {
    let mut w = PageTableWriter::Direct;
    let mut space = AddressSpace::new(&mut w, boot_root(info)).map_err(|_| "no page tables")?;
    let big = frames::alloc_large().ok_or("no 2 MiB frame")?;
    let last = big.checked_add(LARGE_PAGE_SIZE / PAGE_SIZE - 1).ok_or("the large page's last frame has no number")?;
    // SAFETY: the large page was just allocated to this test; both frames are in it.
    unsafe {
        write_frame(big, 0x1111);
        write_frame(last, 0x2222);
    }
    let va = LARGE_VA;
    space.map(&mut w, va, big, Protection::USER_DATA, PageSize::Large).map_err(|_| "map failed")?;
    // SAFETY: both addresses lie in the 2 MiB page mapped at `va` in the loaded space.
    let seen = scheduler::with_address_space(&mut space, |_| unsafe { (read_user(va), read_user(at(va, LARGE_PAGE_SIZE - PAGE_SIZE))) });
    space.destroy(&mut w, &mut |f, _| frames::free_large(f)).map_err(|_| "destroy failed")?;
    ensure(seen == (0x1111, 0x2222), "the CPU reads other memory through the 2 MiB mapping")
}

/// Spawns the given tasks, runs them all, and returns how each ended.
fn run(tasks: &[(&UserProgram, [u64; 2])]) -> Result<[Option<TaskExit>; scheduler::MAX_TASKS], &'static str> {
    let mut slots = [usize::MAX; scheduler::MAX_TASKS];
    for (i, (program, args)) in tasks.iter().enumerate() {
        slots[i] = scheduler::spawn(program, *args).map_err(|_| "spawn failed")?;
    }
    let results = scheduler::run_all();
    let mut by_order = [None; scheduler::MAX_TASKS];
    for (i, slot) in slots.iter().enumerate().take(tasks.len()) {
        by_order[i] = results[*slot];
    }
    Ok(by_order)
}

fn task_runs_and_exits() -> TestResult {
    let frames_before = frames::in_use();
    let r = run(&[(&HELLO, [0, 0])])?;
    ensure(r[0] == Some(TaskExit::Exited(0)), "hello did not exit with 0")?;
    ensure(frames::in_use() == frames_before, "the task's frames were not all freed")
}

fn demand_zero() -> TestResult {
    let before = counters::read(&DEMAND_FAULTS);
    let pages = 12;
    let r = run(&[(&TOUCH_PAGES, [USER_STACK_TOP.raw() - pages * PAGE_SIZE, pages])])?;
    ensure(r[0] == Some(TaskExit::Exited(0)), "a fresh page did not read as zero")?;
    ensure(counters::read(&DEMAND_FAULTS) - before == pages, "not one demand fault per page")
}

fn hostile_write_own_code_is_killed() -> TestResult {
    let r = run(&[(&WRITE_OWN_CODE, [0, 0]), (&HELLO, [0, 0])])?;
    ensure(matches!(r[0], Some(TaskExit::Killed { vector: PAGE_FAULT, .. })), "writing code was not a page fault")?;
    ensure(r[1] == Some(TaskExit::Exited(0)), "the other task did not survive")
}

fn hostile_read_kernel_is_killed() -> TestResult {
    let kernel = kernel_map::virt_of(crate::kmain as *const ());
    let r = run(&[(&READ_ADDRESS, [kernel.raw(), 0])])?;
    match r[0] {
        Some(TaskExit::Killed { vector: PAGE_FAULT, address, .. }) if address == kernel => Ok(()),
        _ => Err("reading kernel memory from ring 3 was not refused"),
    }
}

fn tasks_switch() -> TestResult {
    let loads = counters::read(&CR3_LOADS);
    let rounds = 40;
    let r = run(&[(&YIELD_LOOP, [rounds, 0]), (&YIELD_LOOP, [rounds, 0]), (&YIELD_LOOP, [rounds, 0])])?;
    ensure(r[..3].iter().all(|x| *x == Some(TaskExit::Exited(0))), "a yielding task did not finish")?;
    ensure(counters::read(&CR3_LOADS) - loads >= 3 * rounds, "tasks did not switch address spaces")
}

/// A task maps, touches and unmaps a page, then reads it again: the read must fault.
/// The CPU has used the mapping, so this checks that removing it really removes it,
/// whoever keeps the translation (the guest's tables, KVM's MMU, hv's shadow).
fn use_after_unmap(batched: bool) -> TestResult {
    scheduler::use_batched_updates(batched);
    let r = run(&[(&USE_AFTER_UNMAP, [TEST_VA.raw(), 0])]);
    scheduler::use_batched_updates(false);
    match r?[0] {
        Some(TaskExit::Killed { vector: PAGE_FAULT, address, .. }) if address == TEST_VA => Ok(()),
        Some(TaskExit::Exited(0)) => Err("the page was still readable after unmap"),
        _ => Err("the task ended some other way"),
    }
}

/// Every task slot busy, each task yielding to the next: more address spaces in turn
/// than hv's shadow-root cache holds (8, plus the kernel's), so under shadow paging
/// roots are evicted and rebuilt (`--stats`: "shadow roots evicted").
fn all_slots_switch() -> TestResult {
    let rounds = 6;
    let tasks = [(&YIELD_LOOP, [rounds, 0]); scheduler::MAX_TASKS];
    let r = run(&tasks)?;
    ensure(r.iter().all(|x| *x == Some(TaskExit::Exited(0))), "a yielding task did not finish")
}

fn map_unmap_loop(batched: bool) -> TestResult {
    scheduler::use_batched_updates(batched);
    let frames_before = frames::in_use();
    let hypercalls = scheduler::mmu_hypercalls();
    let r = run(&[(&MAP_UNMAP_LOOP, [TEST_VA.raw(), 25])]);
    let used_hypercalls = scheduler::mmu_hypercalls() > hypercalls;
    scheduler::use_batched_updates(false);
    ensure(r?[0] == Some(TaskExit::Exited(0)), "map/write/unmap did not work")?;
    ensure(frames::in_use() == frames_before, "frames leaked")?;
    ensure(!batched || used_hypercalls, "the batched writer made no mmu_update hypercall")
}

/// Changes a mapping the CPU has already used, and reads through it again.
///
/// The software walk (`translate`) only shows what the tables say; this test shows what
/// the CPU does. After a remap and `invlpg` the CPU must see the new frame, whichever
/// component really translates: the guest's own tables (ept mode), or shadow tables the
/// VMM rewrote when it applied the change (shadow mode, and `mmu_update` in any mode).
fn remap_is_seen_by_the_cpu(info: &BootInfo, batched: bool) -> TestResult {
    let mut w = if batched { PageTableWriter::batched() } else { PageTableWriter::Direct };
    let mut space = AddressSpace::new(&mut w, boot_root(info)).map_err(|_| "no page tables")?;
    let (a, b) = (frames::alloc().ok_or("out of frames")?, frames::alloc().ok_or("out of frames")?);
    // SAFETY: both frames were just allocated to this test.
    unsafe {
        write_frame(a, 0xaaaa);
        write_frame(b, 0xbbbb);
    }
    space.map(&mut w, TEST_VA, a, Protection::USER_DATA, PageSize::Small).map_err(|_| "map failed")?;
    w.flush().map_err(|_| "mmu_update refused the batch")?;
    let seen = scheduler::with_address_space(&mut space, |space| {
        // SAFETY: TEST_VA is mapped (to `a`) in the loaded space.
        let first = unsafe { read_user(TEST_VA) };
        let remapped = space
            .unmap(&mut w, TEST_VA)
            .and_then(|_| space.map(&mut w, TEST_VA, b, Protection::USER_DATA, PageSize::Small))
            .and_then(|_| w.flush());
        cpu::invlpg(TEST_VA);
        if remapped.is_err() {
            return Err(());
        }
        // SAFETY: TEST_VA is mapped again (to `b`): the remap succeeded.
        let second = unsafe { read_user(TEST_VA) };
        let _ = space.unmap(&mut w, TEST_VA).and_then(|_| w.flush());
        cpu::invlpg(TEST_VA);
        Ok((first, second))
    });
    space.destroy(&mut w, &mut |_, _| {}).map_err(|_| "destroy failed")?;
    frames::free(a);
    frames::free(b);
    let (first, second) = seen.map_err(|_| "remap failed")?;
    ensure(first == 0xaaaa, "the first mapping reads the wrong frame")?;
    ensure(second == 0xbbbb, "after remap and invlpg the CPU still reads the old frame")
}

/// Writes `value` at the start of `frame`, through the direct map.
///
/// # Safety
/// The caller owns `frame` (from `frames`, not freed) and holds no reference to it.
unsafe fn write_frame(frame: PseudoFrame, value: u64) {
    let Some(gpa) = frame.checked_address() else { return };
    // SAFETY: the caller owns the frame, guest RAM in the direct map.
    unsafe { core::ptr::write_volatile(kernel_map::direct_map::<u64>(gpa), value) };
}

/// Reads the u64 at user address `va` in the loaded address space.
///
/// # Safety
/// `va` must be mapped in the loaded address space, to a frame this test owns (SMAP is
/// off, so ring 0 may read a user page).
unsafe fn read_user(va: GuestVirt) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::read_volatile(va.raw() as *const u64) }
}

/// Builds an address space, uses it, destroys it, and builds the next over the same
/// page-table frames, at shifting levels, many times: the CPU must only ever see the
/// tables of the space loaded now.
///
/// Under shadow paging this is the hard case. Every one of those frames already has had
/// shadows, built when it was a table at another level; and with enough rounds the VMM
/// runs out of fresh shadow frames and must recycle freed ones (see `--stats`, "shadow
/// area recycled": 80 rounds are enough at the default size), which is safe only if whatever the CPU cached from them is dropped.
fn reused_tables_are_seen_by_the_cpu(info: &BootInfo, batched: bool, rounds: usize) -> TestResult {
    let mut w = if batched { PageTableWriter::batched() } else { PageTableWriter::Direct };
    let frames = [frames::alloc().ok_or("out of frames")?, frames::alloc().ok_or("out of frames")?];
    // SAFETY: both frames were just allocated to this test.
    unsafe {
        write_frame(frames[0], 0xaaaa);
        write_frame(frames[1], 0xbbbb);
    }
    let mut result = Ok(());
    for round in 0..rounds {
        let frame = frames[round % 2];
        // Odd rounds take one table first, so every later table lands one level off.
        let spacer = if round % 2 == 1 { pool::alloc_table() } else { None };
        let mut space = AddressSpace::new(&mut w, boot_root(info)).map_err(|_| "no page tables")?;
        space.map(&mut w, TEST_VA, frame, Protection::USER_DATA, PageSize::Small).map_err(|_| "map failed")?;
        w.flush().map_err(|_| "mmu_update refused the batch")?;
        // SAFETY: TEST_VA is mapped to `frame` in the loaded space.
        let seen = scheduler::with_address_space(&mut space, |_| unsafe { read_user(TEST_VA) });
        space.destroy(&mut w, &mut |_, _| {}).map_err(|_| "destroy failed")?;
        spacer.into_iter().for_each(pool::free_table);
        if seen != [0xaaaa, 0xbbbb][round % 2] {
            result = Err("an address space built over reused tables reads another space's frame");
            break;
        }
    }
    frames.iter().for_each(|f| frames::free(*f));
    result
}
