//! `overflow-shadow [N]`: the kernel asks for more shadow tables than hv's shadow area
//! holds, both ways it can, and must get E2BIG and run on (run with `hv run --mmu
//! shadow`, at a small `--mem` so the area is small).
//!
//! hv keeps its shadow tables in a fixed area (`hv::shadow::layout`: 128 frames plus one
//! per eight pool frames). A kernel can build an address space with more page tables
//! than that, and the paravirtual ABI promises that a bad argument is never fatal:
//! 1. `set_cr3` of a space with N page tables under one root: hv cannot shadow it, so
//!    the call fails with E2BIG, and the kernel goes on in the space it was in.
//! 2. `mmu_update` batches that grow the *loaded* space one page table at a time: the
//!    batch that no longer fits is undone whole and fails with E2BIG, and the kernel goes
//!    on in that space, with everything mapped before the failing batch still there.
//!
//! Either way, before the fix, hv's retry dropped the shadow CR3 still pointed at and
//! the guest's next instruction fetch walked a zeroed frame (a triple fault).

use pv_abi::addr::{GuestVirt, PseudoFrame, PseudoPhys};
use pv_abi::hypercall::HypercallError;
use pv_abi::layout::LARGE_PAGE_SIZE;
use pv_abi::{BootInfo, MmuMode};

use crate::hv::{hypercall, memory_mode};
use crate::mm::address_space::AddressSpace;
use crate::mm::frames;
use crate::mm::writer::PageTableWriter;
use crate::mm::{MmuError, PageSize, Protection};
use crate::println;

/// Page tables built when no N is given: more than the shadow area has frames at
/// `--mem 16` (160).
const DEFAULT_TABLES: u64 = 200;

/// Runs both cases; returns the exit code (0 if both were refused and the kernel ran on).
pub fn run<'a>(info: &BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    if MmuMode::from_u32(info.mmu_mode) != Some(MmuMode::Shadow) {
        println!("overflow-shadow: run this with `hv run --mmu shadow` (only shadow mode has a shadow area)");
        return 2;
    }
    let tables = words.next().and_then(|w| w.parse::<u64>().ok()).unwrap_or(DEFAULT_TABLES);
    let kernel_root = PseudoPhys::new(info.boot_page_table_root);
    let Some(page) = frames::alloc() else {
        println!("overflow-shadow: out of memory");
        return 1;
    };
    // SAFETY: the frame was just allocated, and this is the only reference to it.
    unsafe { frames::bytes(page) }.fill(0);
    let mut w = PageTableWriter::batched();
    let loaded = load_big_space(&mut w, kernel_root, page, tables);
    let grown = grow_loaded_space(&mut w, kernel_root, page, tables);
    frames::free(page);
    let ok = matches!(loaded, Ok(Err(HypercallError::TooBig))) && matches!(grown, Ok(Some(_)));
    match loaded {
        Ok(Err(e)) => println!("overflow-shadow: set_cr3 of a space with {tables} page tables: {}; the kernel runs on", e.name()),
        Ok(Ok(_)) => println!("overflow-shadow: set_cr3 of a space with {tables} page tables: loaded (the shadow area holds it)"),
        Err(e) => println!("overflow-shadow: could not build the space: {e:?}"),
    }
    match grown {
        Ok(Some(n)) => println!("overflow-shadow: mmu_update growing the loaded space: E2BIG at page table {n}; the kernel runs on in it"),
        Ok(None) => println!("overflow-shadow: mmu_update growing the loaded space: all {tables} page tables fitted"),
        Err(e) => println!("overflow-shadow: could not grow the loaded space: {e:?}"),
    }
    u8::from(!ok)
}

/// Where page table `i` of a test space maps `page`: one page per 2 MiB, so each needs
/// a page table of its own.
fn address(i: u64) -> GuestVirt {
    GuestVirt::new(i * LARGE_PAGE_SIZE)
}

/// Loads the space at `root` (set_cr3), inside the CR3 section.
fn load(root: PseudoPhys) -> Result<u64, HypercallError> {
    // SAFETY: every root loaded here is the kernel's own (the boot PML4) or an
    // AddressSpace's, whose upper half is the boot PML4's: the kernel stays mapped.
    memory_mode::in_cr3_section(|_| unsafe { hypercall::set_cr3(root) })
}

/// Case 1: builds a space with `tables` page tables (not loaded: hv does not shadow it
/// yet) and asks hv to load it. Returns what `set_cr3` said.
fn load_big_space(w: &mut PageTableWriter, kernel_root: PseudoPhys, page: PseudoFrame, tables: u64) -> Result<Result<u64, HypercallError>, MmuError> {
    let mut space = AddressSpace::new(w, kernel_root)?;
    let mut built = Ok(());
    for i in 0..tables {
        built = space.map(w, address(i), page, Protection::USER_DATA, PageSize::Small);
        if built.is_err() {
            break;
        }
    }
    let answer = built.and_then(|()| w.flush()).map(|()| load(space.root()));
    if matches!(answer, Ok(Ok(_))) {
        let _ = load(kernel_root);
    }
    // `page` is mapped many times: it is freed once, by the caller.
    space.destroy(w, &mut |_, _| {})?;
    answer
}

/// Case 2: loads a space with one mapping, then maps more pages in it while it is
/// loaded, each needing a page table, until `mmu_update` refuses. Returns the number of
/// the page table whose batch was refused (`None` if all fitted).
fn grow_loaded_space(w: &mut PageTableWriter, kernel_root: PseudoPhys, page: PseudoFrame, tables: u64) -> Result<Option<u64>, MmuError> {
    let mut space = AddressSpace::new(w, kernel_root)?;
    space.map(w, address(0), page, Protection::USER_DATA, PageSize::Small)?;
    w.flush()?;
    if load(space.root()).is_err() {
        space.destroy(w, &mut |_, _| {})?;
        return Err(MmuError::Refused);
    }
    let mut refused = None;
    for i in 1..tables {
        match space.map(w, address(i), page, Protection::USER_DATA, PageSize::Small).and_then(|()| w.flush()) {
            Ok(()) => {}
            Err(MmuError::Refused) => {
                refused = Some(i);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    // Still here, in the grown space: its first mapping is still translated.
    let still_mapped = space.translate(address(0)).is_some();
    let back = load(kernel_root);
    space.destroy(w, &mut |_, _| {})?;
    if back.is_err() || !still_mapped {
        return Err(MmuError::Refused);
    }
    Ok(refused)
}
