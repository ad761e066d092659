//! `shadow-storm [N]`: the kernel makes the most expensive exits it can in shadow mode,
//! forever, so that a test can check hv's `--timeout` still stops it promptly (run with
//! `hv run --mmu shadow --timeout SECS`).
//!
//! It builds an address space whose lower half is one subtree of N page tables (a PDPT,
//! a page directory, and N - 2 page tables, one page mapped in each), loads it, and then
//! sends `mmu_update` batches of the largest size ([`MMU_UPDATE_MAX`] entries) that link
//! and unlink that subtree at the root in turn. hv shadows eagerly: each link asks it to
//! build the whole subtree's shadow. Without a bound one batch was seconds of hv's time
//! (docs/memory-modes.md); with the engine's build budget it is one subtree's worth
//! plus one rebuild of the root. The loop never ends: the guest is stopped from outside.

use pv_abi::addr::{GuestVirt, PseudoPhys};
use pv_abi::hypercall::{MmuUpdate, MMU_UPDATE_MAX};
use pv_abi::layout::LARGE_PAGE_SIZE;
use pv_abi::paging::Pte;
use pv_abi::{BootInfo, MmuMode};

use crate::hv::{hypercall, memory_mode};
use crate::mm::address_space::AddressSpace;
use crate::mm::frames;
use crate::mm::table::PageTable;
use crate::mm::writer::PageTableWriter;
use crate::mm::{PageSize, Protection};
use crate::println;

/// Page tables in the subtree when no N is given: most of the shadow area at the
/// default `--mem` (64 MiB: 256 frames, of which the kernel's own half uses some).
const DEFAULT_TABLES: u64 = 200;

/// Builds the subtree, loads it, and links and unlinks it forever; returns only if
/// something could not be set up (exit code 1, or 2 outside shadow mode).
pub fn run<'a>(info: &BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    if MmuMode::from_u32(info.mmu_mode) != Some(MmuMode::Shadow) {
        println!("shadow-storm: run this with `hv run --mmu shadow` (ept mode has no shadow to build)");
        return 2;
    }
    let tables = words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(DEFAULT_TABLES).clamp(3, 512);
    let kernel_root = PseudoPhys::new(info.boot_page_table_root);
    let Some(page) = frames::alloc() else {
        println!("shadow-storm: out of memory");
        return 1;
    };
    let mut w = PageTableWriter::batched();
    let Ok(mut space) = AddressSpace::new(&mut w, kernel_root) else {
        println!("shadow-storm: out of page tables");
        return 1;
    };
    // One page per 2 MiB: each needs a page table of its own, all under PML4 entry 0.
    for i in 0..tables - 2 {
        if space.map(&mut w, GuestVirt::new(i * LARGE_PAGE_SIZE), page, Protection::USER_DATA, PageSize::Small).is_err() {
            println!("shadow-storm: could not map page {i}");
            return 1;
        }
    }
    if w.flush().is_err() {
        println!("shadow-storm: could not build the subtree");
        return 1;
    }
    // SAFETY: the space's upper half is the boot PML4's: the kernel stays mapped.
    if memory_mode::in_cr3_section(|_| unsafe { hypercall::set_cr3(space.root()) }).is_err() {
        println!("shadow-storm: hv would not load the space ({tables} page tables)");
        return 1;
    }
    // SAFETY: the space's root is a page table this kernel owns (AddressSpace::new).
    let link_entry = unsafe { PageTable::at(space.root().frame()) }.entry(0);
    let link = w.read(link_entry);
    let batch: [MmuUpdate; MMU_UPDATE_MAX as usize] =
        core::array::from_fn(|i| MmuUpdate { entry: link_entry.gpa().raw(), value: if i % 2 == 0 { link.raw() } else { Pte::EMPTY.raw() } });
    println!("shadow-storm: linking and unlinking {tables} page tables, {MMU_UPDATE_MAX} times a batch, until stopped");
    let mut batches: u64 = 0;
    loop {
        // SAFETY: entry 0 of this space's root, which this kernel owns; the values are
        // the link it wrote itself and an empty entry. The kernel runs in the upper half.
        if unsafe { hypercall::mmu_update(&batch) }.is_err() {
            println!("shadow-storm: batch {batches} was refused");
            return 1;
        }
        batches += 1;
    }
}
