//! `hostile-ptes`: the kernel plays a hostile kernel, and the VMM's shadow paging must
//! refuse what it writes (run with `hv run --mmu shadow`).
//!
//! Under shadow paging the CPU never walks the guest's page tables; it walks the shadow
//! tables hv derives from them, and hv reflects a guest entry only if it is safe
//! (`shadow-mmu`, `ShadowMmu::reflect`). Each case below gives a ring-3 task an address
//! space with one entry that must not be reflected, then lets the task read through it.
//! A refused entry is simply absent from the shadow, so the read faults and the kernel
//! kills the task: the guest learns nothing and reaches nothing. hv's trace shows each
//! refusal (`shadow REFUSED …`) with its reason.
//!
//! Under ept the same entries would reach KVM, which confines the guest in its own way
//! (an address outside RAM is an MMIO exit, and hv stops the guest), so the command
//! runs only in shadow mode.

use pv_abi::exception::PAGE_FAULT;
use pv_abi::{BootInfo, MmuMode};

use crate::mm::frames;
use crate::mm::{MmuError, PageSize, Protection};
use pv_abi::addr::{GuestVirt, PseudoFrame};
use pv_abi::paging::{Pte, PteFlags};
use crate::task::programs::READ_ADDRESS;
use crate::task::scheduler::{self, TaskExit};

/// A hostile entry: what it claims, the address it is reached by, its level, its value
/// (for a leaf with `own_frame`, ORed with the frame the task's legitimate mapping used,
/// so that freeing the task frees that frame once).
struct HostileEntry {
    name: &'static str,
    va: GuestVirt,
    level: u32,
    value: Pte,
    own_frame: bool,
}

const USER: PteFlags = PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::USER);

/// An entry with these raw bits: the cases are deliberately not well-formed entries.
const fn raw(bits: u64) -> Pte {
    Pte::from_raw(bits)
}

fn cases(info: &BootInfo, frame: PseudoFrame) -> [HostileEntry; 5] {
    let va = GuestVirt::new;
    [
        // A frame past the end of RAM: memory the guest was never given.
        HostileEntry { name: "frame beyond guest RAM", va: va(0x1000_0000), level: 1, value: raw((info.mem_bytes + (16 << 20)) | USER.bits()), own_frame: false },
        // Where hv keeps its shadow tables in machine memory (8 GiB). To the guest it
        // is just another address outside its RAM, and refused as such.
        HostileEntry { name: "hv's shadow area", va: va(0x1020_0000), level: 1, value: raw((8 << 30) | USER.bits()), own_frame: false },
        // A "page table" that is a data frame outside the page-table pool: if hv
        // followed it, the guest could change mappings without hv seeing the writes.
        HostileEntry { name: "page table outside the pool", va: va(0x1040_0000), level: 2, value: Pte::to_pseudo(frame, USER), own_frame: false },
        // A 1 GiB page: not supported by hv's shadow paging.
        HostileEntry { name: "1 GiB page", va: va(0x4000_0000), level: 3, value: Pte::to_pseudo(frame, USER.union(PteFlags::LARGE)), own_frame: false },
        // Bits 52..62 set: hv treats them as reserved.
        HostileEntry { name: "reserved bits", va: va(0x1060_0000), level: 1, value: raw(USER.bits() | (1 << 55)), own_frame: true },
    ]
}

/// Runs every case; returns the exit code (0 if every read was refused).
pub fn run(info: &BootInfo) -> u8 {
    if MmuMode::from_u32(info.mmu_mode) != Some(MmuMode::Shadow) {
        crate::println!("hostile-ptes: run this with `hv run --mmu shadow` (under ept, KVM confines the guest instead)");
        return 2;
    }
    let Some(frame) = frames::alloc() else {
        crate::println!("hostile-ptes: out of memory");
        return 1;
    };
    // SAFETY: the frame was just allocated, and this is the only reference to it.
    unsafe { frames::bytes(frame) }.fill(0);
    let mut refused = 0;
    let all = cases(info, frame);
    for case in &all {
        match attack(case) {
            Ok(true) => {
                refused += 1;
                crate::println!("hostile-ptes: {} ... not reflected: the task's read faulted", case.name);
            }
            Ok(false) => crate::println!("hostile-ptes: {} ... REACHED: the task read through it", case.name),
            Err(e) => crate::println!("hostile-ptes: {} ... could not set up: {e}", case.name),
        }
    }
    frames::free(frame);
    crate::println!("hostile-ptes: {refused} of {} hostile entries refused", all.len());
    u8::from(refused != all.len())
}

/// Spawns a task that reads `case.va`, plants the entry, runs the task. `Ok(true)` if
/// the task was killed by a page fault at exactly that address.
fn attack(case: &HostileEntry) -> Result<bool, &'static str> {
    let slot = scheduler::spawn(&READ_ADDRESS, [case.va.raw(), 0]).map_err(|_| "spawn failed")?;
    let planted = scheduler::edit_space(slot, |space, w| {
        let mut value = case.value;
        if case.level == 1 {
            // A legitimate mapping first, so the tables above exist.
            let legit = frames::alloc().ok_or(MmuError::NoTables)?;
            // SAFETY: the frame was just allocated, and this is the only reference to it.
            unsafe { frames::bytes(legit) }.fill(0);
            space.map(w, case.va, legit, Protection::USER_DATA, PageSize::Small)?;
            if case.own_frame {
                value = raw(value.raw() | Pte::to_pseudo(legit, PteFlags::empty()).raw());
            } else {
                frames::free(legit);
            }
        }
        // SAFETY: the entries above level 1 name `frame` (the 1 GiB "page" and the
        // "table outside the pool"), which is all zero and stays allocated until `run`
        // frees it after the task, and with it this space, is gone.
        unsafe { space.write_raw_entry(w, case.va, case.level, value) }
    });
    if planted.is_err() {
        // The task still has to run to be freed; its result no longer matters.
        scheduler::run_all();
        return Err("could not write the entry");
    }
    let result = scheduler::run_all()[slot];
    Ok(matches!(result, Some(TaskExit::Killed { vector: PAGE_FAULT, address, .. }) if address == case.va))
}
