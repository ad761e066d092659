//! Unit tests of the builder and of each isolation rule, named after what they try.

use std::ops::Range;

use pv_abi::paging::PteFlags;

use super::*;
use crate::event::Refusal;
use crate::memory::VecMemory;
use crate::reference::reference_translate;

/// Entry bits as the raw words a guest writes.
const P: u64 = PteFlags::PRESENT.bits();
const RW: u64 = PteFlags::WRITABLE.bits();
const US: u64 = PteFlags::USER.bits();
const NX: u64 = PteFlags::NO_EXECUTE.bits();
const PS: u64 = PteFlags::LARGE.bits();

/// Guest frames; the pool is the top 64 of them; the shadow area is machine 0..SHADOW.
const GUEST_FRAMES: u64 = 1024;
const POOL: Range<u64> = 960..1024;
const SHADOW: u64 = 256;
const MACHINE_BASE: u64 = 512;

fn setup(traps: bool) -> (VecMemory, ShadowMmu) {
    let mem = VecMemory::new(MACHINE_BASE + GUEST_FRAMES);
    let p2m = P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), 512);
    let config = ShadowConfig { pool: PseudoFrame::new(POOL.start)..PseudoFrame::new(POOL.end), shadow_area: MachineFrame::new(0)..MachineFrame::new(SHADOW), root_cache: 4, pool_traps_writes: traps, device_frames: Vec::new() };
    (mem, ShadowMmu::new(config, p2m).unwrap())
}

fn entry(frame: u64, index: u64) -> PseudoPhys {
    PseudoPhys::new(frame * PAGE_SIZE + index * 8)
}

fn write(mem: &mut VecMemory, s: &mut ShadowMmu, frame: u64, index: u64, value: u64) {
    s.guest_pt_write(mem, entry(frame, index), Pte::from_raw(value)).unwrap();
}

const TABLE: u64 = P | RW | US;
const DATA: u64 = P | RW | US | NX;

/// PML4 960 → PDPT 961 → PD 962 → PT 963 → data frame 100, for va 0.
fn simple_tree(mem: &mut VecMemory, s: &mut ShadowMmu) {
    write(mem, s, 960, 0, (961 * PAGE_SIZE) | TABLE);
    write(mem, s, 961, 0, (962 * PAGE_SIZE) | TABLE);
    write(mem, s, 962, 0, (963 * PAGE_SIZE) | TABLE);
    write(mem, s, 963, 0, (100 * PAGE_SIZE) | DATA);
}

fn check_against_reference(mem: &VecMemory, s: &ShadowMmu, root: u64, shadow: MachineAddr, va: u64) {
    let expected = reference_translate(mem, s.p2m(), s.config(), PseudoPhys::new(root * PAGE_SIZE), GuestVirt::new(va));
    assert_eq!(s.translate_shadow(mem, shadow, GuestVirt::new(va)), expected, "va {va:#x}");
}

#[test]
fn a_4k_mapping_translates_through_the_p2m() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert!(s.is_shadow_frame(root.frame()));
    let t = s.translate_shadow(&mem, root, GuestVirt::new(0x123)).unwrap();
    let machine = s.p2m().machine_frame(PseudoFrame::new(100)).unwrap();
    assert_ne!(machine, MachineFrame::new(100), "the p2m is not the identity");
    assert_eq!(t.machine, MachineAddr::new(machine.raw() * PAGE_SIZE + 0x123));
    assert!(t.writable && t.user && !t.executable);
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0x1000)).is_none());
}

#[test]
fn a_write_after_the_root_is_built_reaches_the_shadow() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    write(&mut mem, &mut s, 963, 1, (101 * PAGE_SIZE) | P | US);
    let t = s.translate_shadow(&mem, root, GuestVirt::new(0x1000)).unwrap();
    assert!(!t.writable && t.executable, "permissions follow the guest entry");
    write(&mut mem, &mut s, 963, 0, 0);
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0)).is_none(), "an unmap reaches the shadow");
    assert!(s.stats().shadow_syncs >= 2);
}

#[test]
fn permissions_combine_across_levels() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    write(&mut mem, &mut s, 961, 0, (962 * PAGE_SIZE) | P | RW); // no US at the PDPT
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    let t = s.translate_shadow(&mem, root, GuestVirt::new(0)).unwrap();
    assert!(!t.user, "a supervisor-only PDPT entry makes the whole range supervisor-only");
    check_against_reference(&mem, &s, 960, root, 0);
}

#[test]
fn hostile_misaligned_2m_page_is_refused_and_an_aligned_one_translates() {
    let (mut mem, mut s) = setup(false);
    write(&mut mem, &mut s, 960, 0, (961 * PAGE_SIZE) | TABLE);
    write(&mut mem, &mut s, 961, 0, (962 * PAGE_SIZE) | TABLE);
    write(&mut mem, &mut s, 962, 1, (512 * PAGE_SIZE) | DATA | PS);
    write(&mut mem, &mut s, 962, 2, (513 * PAGE_SIZE) | DATA | PS);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    let t = s.translate_shadow(&mem, root, GuestVirt::new(0x20_0000 + 0x1f_f123)).unwrap();
    assert_eq!(t.machine.raw(), s.p2m().machine_frame(PseudoFrame::new(512)).unwrap().raw() * PAGE_SIZE + 0x1f_f123);
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0x40_0000)).is_none());
    assert!(s.drain_events().iter().any(|e| matches!(e, ShadowEvent::Refused { why: Refusal::Misaligned, .. })));
}

#[test]
fn hostile_large_page_across_the_p2m_halves_is_refused() {
    let (mut mem, mut s) = setup(false);
    // Frames 0..512 and 512..1024 are swapped in machine memory; a page spanning the seam
    // cannot be 2 MiB-aligned in this p2m, so build a p2m where it can.
    let p2m = P2m::from_table((0..GUEST_FRAMES).map(|f| MachineFrame::new(MACHINE_BASE + (f ^ 1))).collect());
    let config = s.config().clone();
    s = ShadowMmu::new(config, p2m).unwrap();
    write(&mut mem, &mut s, 960, 0, (961 * PAGE_SIZE) | TABLE);
    write(&mut mem, &mut s, 961, 0, (962 * PAGE_SIZE) | TABLE);
    write(&mut mem, &mut s, 962, 0, DATA | PS);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0)).is_none());
    assert!(s.drain_events().iter().any(|e| matches!(e, ShadowEvent::Refused { why: Refusal::NotContiguous, .. })));
}

#[test]
fn hostile_entry_pointing_past_the_last_guest_frame_is_not_reflected() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    write(&mut mem, &mut s, 963, 0, (GUEST_FRAMES * PAGE_SIZE) | DATA);
    write(&mut mem, &mut s, 963, 1, 0x000f_ffff_ffff_f000 | DATA);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0)).is_none());
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0x1000)).is_none());
    assert!(s.drain_events().iter().any(|e| matches!(e, ShadowEvent::Refused { why: Refusal::OutsideGuest, .. })));
}

#[test]
fn hostile_entry_can_never_reach_the_shadow_area() {
    // The shadow area is machine 0..256; no guest frame maps there, so whatever frame
    // number the guest writes, the shadow leaf points into guest memory or nowhere.
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    for f in [0, 1, 255, 256, 511] {
        write(&mut mem, &mut s, 963, 2, (f * PAGE_SIZE) | DATA);
        let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
        if let Some(t) = s.translate_shadow(&mem, root, GuestVirt::new(0x2000)) {
            assert!(!s.is_shadow_frame(t.machine.frame()), "guest frame {f} reached the shadow area");
        }
    }
    let p2m = P2m::from_table(vec![MachineFrame::new(5); 4]);
    let config = ShadowConfig { pool: PseudoFrame::new(2)..PseudoFrame::new(4), shadow_area: MachineFrame::new(0)..MachineFrame::new(8), root_cache: 1, pool_traps_writes: false, device_frames: Vec::new() };
    assert_eq!(ShadowMmu::new(config, p2m).err(), Some(ShadowError::AreaOverlapsGuest(MachineFrame::new(5))));
}

#[test]
fn hostile_page_table_outside_the_pool_is_refused() {
    let (mut mem, mut s) = setup(false);
    write(&mut mem, &mut s, 960, 0, (100 * PAGE_SIZE) | TABLE); // "PDPT" in ordinary RAM
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0)).is_none());
    assert!(s.drain_events().iter().any(|e| matches!(e, ShadowEvent::Refused { why: Refusal::TableOutsidePool, .. })));
    assert_eq!(s.load_root(&mut mem, PseudoPhys::new(100 * PAGE_SIZE)), Err(ShadowError::NotInPool(PseudoPhys::new(100 * PAGE_SIZE))));
    assert_eq!(s.guest_pt_write(&mut mem, entry(100, 0), Pte::EMPTY), Err(ShadowError::NotInPool(PseudoPhys::new(100 * PAGE_SIZE))));
}

#[test]
fn hostile_writable_mapping_of_a_pool_frame_is_reflected_read_only() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    write(&mut mem, &mut s, 963, 3, (961 * PAGE_SIZE) | DATA); // the guest maps its own PDPT writable
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    let t = s.translate_shadow(&mem, root, GuestVirt::new(0x3000)).unwrap();
    assert!(!t.writable);
    assert_eq!(s.stats().write_protected, 1);
}

#[test]
fn with_a_write_trapping_pool_the_mapping_stays_writable() {
    let (mut mem, mut s) = setup(true);
    simple_tree(&mut mem, &mut s);
    write(&mut mem, &mut s, 963, 3, (961 * PAGE_SIZE) | DATA);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0x3000)).unwrap().writable, "the memslot, not the shadow, protects it");
}

#[test]
fn hostile_reserved_bits_and_1g_pages_are_refused() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    write(&mut mem, &mut s, 963, 4, (100 * PAGE_SIZE) | DATA | (1 << 55));
    write(&mut mem, &mut s, 961, 1, DATA | PS); // a 1 GiB page at va 1 GiB
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0x4000)).is_none());
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(1 << 30)).is_none());
    let why: Vec<_> = s.drain_events().into_iter().filter_map(|e| match e { ShadowEvent::Refused { why, .. } => Some(why), _ => None }).collect();
    assert!(why.contains(&Refusal::ReservedBits) && why.contains(&Refusal::HugePage));
}

#[test]
fn changing_a_non_leaf_entry_replaces_the_whole_subtree() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    write(&mut mem, &mut s, 964, 0, (200 * PAGE_SIZE) | DATA); // a second PT
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    write(&mut mem, &mut s, 962, 0, (964 * PAGE_SIZE) | TABLE);
    let t = s.translate_shadow(&mem, root, GuestVirt::new(0)).unwrap();
    assert_eq!(t.machine.frame(), s.p2m().machine_frame(PseudoFrame::new(200)).unwrap());
}

#[test]
fn a_table_shared_by_two_spaces_and_used_at_two_levels_stays_in_step_everywhere() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    // A second root sharing the same PDPT (as every space shares the kernel half).
    write(&mut mem, &mut s, 970, 0, (961 * PAGE_SIZE) | TABLE);
    // And PT 963 also used as a PD (level 2) from PDPT entry 1.
    write(&mut mem, &mut s, 961, 1, (963 * PAGE_SIZE) | TABLE);
    let a = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    let b = s.load_root(&mut mem, PseudoPhys::new(970 * PAGE_SIZE)).unwrap();
    write(&mut mem, &mut s, 963, 0, (300 * PAGE_SIZE) | DATA);
    for root in [a, b] {
        assert_eq!(s.translate_shadow(&mem, root, GuestVirt::new(0)).unwrap().machine.frame(), s.p2m().machine_frame(PseudoFrame::new(300)).unwrap());
    }
    // Through the level-2 use, entry 0 of 963 is a PD entry pointing at frame 300 as a
    // PT, which is not a pool frame: refused there, exactly as the reference says.
    for va in [0, 1 << 30, (1 << 30) + 0x1000] {
        check_against_reference(&mem, &s, 960, a, va);
    }
    let synced = s.drain_events().into_iter().rev().find_map(|e| match e { ShadowEvent::Synced { shadows, .. } => Some(shadows), _ => None });
    assert_eq!(synced, Some(2), "both shadows of table 963 (level 1 and level 2) were updated");
}

#[test]
fn hostile_table_that_maps_itself_terminates() {
    let (mut mem, mut s) = setup(false);
    write(&mut mem, &mut s, 960, 0, (960 * PAGE_SIZE) | TABLE); // PML4[0] → the PML4 itself
    write(&mut mem, &mut s, 960, 1, (960 * PAGE_SIZE) | TABLE);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    for va in [0, 0x1000, 1 << 39, (1 << 39) + (1 << 30)] {
        check_against_reference(&mem, &s, 960, root, va);
    }
    assert!(s.stats().tables_built <= 4, "one shadow per level at most");
}

#[test]
fn the_root_cache_is_bounded_and_evicts_the_oldest() {
    let (mut mem, mut s) = setup(false);
    for r in 960..966 {
        s.load_root(&mut mem, PseudoPhys::new(r * PAGE_SIZE)).unwrap();
    }
    assert_eq!(s.stats().roots_built, 6);
    assert_eq!(s.stats().roots_evicted, 2);
    s.load_root(&mut mem, PseudoPhys::new(965 * PAGE_SIZE)).unwrap();
    assert_eq!(s.stats().root_hits, 1);
    s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert_eq!(s.stats().roots_built, 7, "an evicted root is built again");
}

#[test]
fn hostile_full_shadow_area_drops_everything_instead_of_failing() {
    let mem_frames = MACHINE_BASE + GUEST_FRAMES;
    let mut mem = VecMemory::new(mem_frames);
    let config = ShadowConfig { pool: PseudoFrame::new(POOL.start)..PseudoFrame::new(POOL.end), shadow_area: MachineFrame::new(0)..MachineFrame::new(4), root_cache: 4, pool_traps_writes: false, device_frames: Vec::new() };
    let mut s = ShadowMmu::new(config, P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), 512)).unwrap();
    simple_tree(&mut mem, &mut s);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    check_against_reference(&mem, &s, 960, root, 0);
    // A second PT does not fit: the write drops every shadow and says so.
    write(&mut mem, &mut s, 964, 0, 0);
    assert_eq!(s.guest_pt_write(&mut mem, entry(962, 1), Pte::from_raw((964 * PAGE_SIZE) | TABLE)), Ok(SyncOutcome::AllDropped));
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE));
    assert_eq!(root, Err(ShadowError::AreaTooSmall), "5 tables never fit in 4 frames");
}

#[test]
fn hostile_storm_of_writes_is_bounded_work() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    for i in 0..100_000u64 {
        write(&mut mem, &mut s, 963, i % 512, ((i % 900) * PAGE_SIZE) | DATA);
    }
    check_against_reference(&mem, &s, 960, root, 0x1000 * (99_999 % 512));
    assert_eq!(s.stats().guest_writes, 100_004);
}

#[test]
fn hostile_mmu_update_batch_is_checked_whole_first() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    let bad = [(entry(963, 5), Pte::from_raw((105 * PAGE_SIZE) | DATA)), (entry(100, 0), Pte::from_raw(1))];
    assert!(s.mmu_update(&mut mem, &bad).is_err());
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0x5000)).is_none(), "nothing of a bad batch applied");
    let good = [(entry(963, 5), Pte::from_raw((105 * PAGE_SIZE) | DATA)), (entry(963, 6), Pte::from_raw((106 * PAGE_SIZE) | DATA))];
    assert_eq!(s.mmu_update(&mut mem, &good), Ok(SyncOutcome::Synced));
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0x6000)).is_some());
}

#[test]
fn hostile_frames_outside_ram_other_than_a_passed_through_device_are_not_mapped() {
    let mem_frames = MACHINE_BASE + GUEST_FRAMES;
    let mut mem = VecMemory::new(mem_frames);
    let apic = 0xfee00;
    let config = ShadowConfig { pool: PseudoFrame::new(POOL.start)..PseudoFrame::new(POOL.end), shadow_area: MachineFrame::new(0)..MachineFrame::new(SHADOW), root_cache: 4, pool_traps_writes: false, device_frames: vec![(PseudoFrame::new(apic), MachineFrame::new(apic))] };
    let mut s = ShadowMmu::new(config, P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), 512)).unwrap();
    simple_tree(&mut mem, &mut s);
    write(&mut mem, &mut s, 963, 1, (apic * PAGE_SIZE) | DATA);
    write(&mut mem, &mut s, 963, 2, ((apic + 1) * PAGE_SIZE) | DATA);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert_eq!(s.translate_shadow(&mem, root, GuestVirt::new(0x1010)).unwrap().machine, MachineAddr::new(apic * PAGE_SIZE + 0x10));
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0x2000)).is_none(), "the frame after the device is not passed through");
    let overlap = ShadowConfig { pool: PseudoFrame::new(POOL.start)..PseudoFrame::new(POOL.end), shadow_area: MachineFrame::new(apic)..MachineFrame::new(apic + 1), root_cache: 4, pool_traps_writes: false, device_frames: vec![(PseudoFrame::new(apic), MachineFrame::new(apic))] };
    assert_eq!(ShadowMmu::new(overlap, P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), 512)).err(), Some(ShadowError::AreaOverlapsGuest(MachineFrame::new(apic))));
}

#[test]
fn writing_the_pml4_of_an_idle_cached_space_drops_its_shadow_and_frees_its_tables() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    s.load_root(&mut mem, PseudoPhys::new(970 * PAGE_SIZE)).unwrap(); // another space is loaded now
    assert_eq!(s.live_tables(), 5, "four tables of the first space, one (empty) root of the second");
    write(&mut mem, &mut s, 960, 0, 0); // tearing down the idle space
    assert_eq!(s.stats().roots_invalidated, 1);
    assert_eq!(s.live_tables(), 1, "its whole shadow tree was freed");
    assert_eq!(s.unreachable_tables(&mem), 0);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert!(s.translate_shadow(&mem, root, GuestVirt::new(0)).is_none(), "rebuilt from the guest's tables as they are now");
}

#[test]
fn unlinking_a_subtree_frees_its_shadows_for_reuse() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    write(&mut mem, &mut s, 961, 0, 0); // PDPT entry gone: the PD and PT shadows go too
    assert_eq!(s.stats().tables_freed, 2);
    assert_eq!(s.unreachable_tables(&mem), 0);
    write(&mut mem, &mut s, 961, 0, (962 * PAGE_SIZE) | TABLE);
    assert_eq!(s.stats().tables_built, 6, "rebuilt, in frames taken from the free list");
    assert!(s.drain_events().iter().all(|e| !matches!(e, ShadowEvent::Refused { .. })));
}

/// A shadow area of `frames` frames, the rest as [`setup`].
fn setup_area(frames: u64) -> (VecMemory, ShadowMmu) {
    let mem = VecMemory::new(MACHINE_BASE + GUEST_FRAMES);
    let config = ShadowConfig { pool: PseudoFrame::new(POOL.start)..PseudoFrame::new(POOL.end), shadow_area: MachineFrame::new(0)..MachineFrame::new(frames), root_cache: 4, pool_traps_writes: false, device_frames: Vec::new() };
    (mem, ShadowMmu::new(config, P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), 512)).unwrap())
}

/// Guest root 970 → PDPT 971 → PD 972 → `pts` PTs (973…), each mapping one page: a
/// space of `pts + 3` tables, built with plain stores (it is not loaded, so the engine
/// need not hear of them).
fn big_space(mem: &mut VecMemory, pts: u64) {
    let store = |mem: &mut VecMemory, frame: u64, index: u64, value: u64| {
        let machine = P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), 512).machine_frame(PseudoFrame::new(frame)).unwrap();
        mem.write_entry(machine, index as usize, Pte::from_raw(value)).unwrap();
    };
    store(mem, 970, 0, (971 * PAGE_SIZE) | TABLE);
    store(mem, 971, 0, (972 * PAGE_SIZE) | TABLE);
    for i in 0..pts {
        store(mem, 972, i, ((973 + i) * PAGE_SIZE) | TABLE);
        store(mem, 973 + i, 0, (100 * PAGE_SIZE) | DATA);
    }
}

#[test]
fn hostile_set_cr3_to_a_root_too_big_for_the_area_leaves_the_loaded_root_alive() {
    let (mut mem, mut s) = setup_area(12);
    simple_tree(&mut mem, &mut s);
    s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    big_space(&mut mem, 20); // 23 tables: more than the whole area
    assert_eq!(s.load_root(&mut mem, PseudoPhys::new(970 * PAGE_SIZE)), Err(ShadowError::AreaTooSmall));
    assert_eq!(s.current_root(), Some(PseudoPhys::new(960 * PAGE_SIZE)), "the CPU stays in the space it was in");
    let cr3 = s.current_shadow().expect("the loaded root still has a shadow");
    for va in [0, 0x1000, 1 << 30] {
        check_against_reference(&mem, &s, 960, cr3, va);
    }
    assert!(s.translate_shadow(&mem, cr3, GuestVirt::new(0x123)).is_some());
    assert_eq!(s.unreachable_tables(&mem), 0);
    // The failed builds left nothing behind: only the loaded space's four tables live.
    assert_eq!(s.live_tables(), 4);
    // A root that fits alone, but not beside the loaded one, still loads (the loaded
    // root's tables make room for it).
    let (mut mem, mut s) = setup_area(12);
    simple_tree(&mut mem, &mut s);
    s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    big_space(&mut mem, 8); // 11 tables
    let root = s.load_root(&mut mem, PseudoPhys::new(970 * PAGE_SIZE)).unwrap();
    check_against_reference(&mem, &s, 970, root, 7 << 21);
    assert_eq!(s.current_shadow(), Some(root));
}

#[test]
fn hostile_mmu_update_growing_the_loaded_space_past_the_area_is_undone() {
    let (mut mem, mut s) = setup_area(12);
    simple_tree(&mut mem, &mut s);
    s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    // Link 20 more PTs into the loaded space's PD, one batch.
    let batch: Vec<_> = (1..=20u64).map(|i| (entry(962, i), Pte::from_raw(((963 + i) * PAGE_SIZE) | TABLE))).collect();
    assert_eq!(s.mmu_update(&mut mem, &batch), Err(ShadowError::AreaTooSmall));
    for i in 1..=20u64 {
        let machine = s.p2m().machine_frame(PseudoFrame::new(962)).unwrap();
        assert_eq!(mem.read_entry(machine, i as usize), Ok(Pte::EMPTY), "entry {i} of the batch was undone");
    }
    assert_eq!(s.current_root(), Some(PseudoPhys::new(960 * PAGE_SIZE)));
    let cr3 = s.current_shadow().expect("the loaded root was built again");
    for va in [0, 0x1000, 1 << 21] {
        check_against_reference(&mem, &s, 960, cr3, va);
    }
    assert!(s.translate_shadow(&mem, cr3, GuestVirt::new(0)).is_some());
    assert_eq!(s.unreachable_tables(&mem), 0);
    // A batch that fits after the drop is applied, and the caller gets the new CR3.
    let batch: Vec<_> = (1..=4u64).map(|i| (entry(962, i), Pte::from_raw(((963 + i) * PAGE_SIZE) | TABLE))).collect();
    assert!(s.mmu_update(&mut mem, &batch).is_ok());
    let cr3 = s.current_shadow().unwrap();
    check_against_reference(&mem, &s, 960, cr3, 4 << 21);
}

/// Memory that refuses to store a non-zero value at one address (zeroing a frame still
/// works, so the failure comes in the middle of a build, not at its start).
struct FailingStore {
    inner: VecMemory,
    at: MachineAddr,
}

impl MachineMemory for FailingStore {
    fn read_u64(&self, addr: MachineAddr) -> Result<u64, MemoryError> {
        self.inner.read_u64(addr)
    }

    fn write_u64(&mut self, addr: MachineAddr, value: u64) -> Result<(), MemoryError> {
        if addr == self.at && value != 0 {
            return Err(MemoryError::Outside(addr));
        }
        self.inner.write_u64(addr, value)
    }
}

#[test]
fn hostile_memory_error_mid_build_leaves_nothing_registered() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    // A second subtree under PML4 entry 1; the root's shadow (the first frame handed
    // out, machine frame 0) cannot take its link: the build fails after the first
    // subtree was built and linked, and after the second was built.
    write(&mut mem, &mut s, 960, 1, (964 * PAGE_SIZE) | TABLE);
    write(&mut mem, &mut s, 964, 0, (965 * PAGE_SIZE) | TABLE);
    let mut failing = FailingStore { inner: mem, at: MachineAddr::new(8) };
    let root = PseudoPhys::new(960 * PAGE_SIZE);
    assert!(matches!(s.load_root(&mut failing, root), Err(ShadowError::Memory(_))));
    assert_eq!(s.live_tables(), 0, "no half-built table stays registered");
    assert_eq!(s.current_root(), None);
    assert_eq!(s.stats().tables_built, s.stats().tables_freed);
    // With working memory the same root builds in full, from frames reused after the flush.
    let mut mem = failing.inner;
    let shadow = s.load_root(&mut mem, root).unwrap();
    check_against_reference(&mem, &s, 960, shadow, 0);
    assert_eq!(s.live_tables(), 6);
    assert_eq!(s.unreachable_tables(&mem), 0);
}

#[test]
fn hostile_memory_error_mid_sync_leaves_the_shadows_as_they_were() {
    let (mut mem, mut s) = setup(false);
    simple_tree(&mut mem, &mut s);
    let shadow = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    // Linking PDPT 964 (whose PD 965 has a PT) builds three shadows; the PD's own link
    // to the PT's shadow cannot be stored.
    write(&mut mem, &mut s, 964, 0, (965 * PAGE_SIZE) | TABLE);
    write(&mut mem, &mut s, 965, 0, (966 * PAGE_SIZE) | TABLE);
    let before = (s.live_tables(), s.stats().tables_built);
    // Frames handed out so far: 0..4 (the loaded space); the next are 4 (PDPT), 5 (PD).
    let mut failing = FailingStore { inner: mem, at: MachineAddr::new(5 * PAGE_SIZE) };
    assert!(s.guest_pt_write(&mut failing, entry(960, 1), Pte::from_raw((964 * PAGE_SIZE) | TABLE)).is_err());
    let mem = failing.inner;
    assert_eq!(s.live_tables(), before.0, "the failed subtree is gone");
    assert_eq!(s.stats().tables_built - before.1, s.stats().tables_freed);
    assert!(s.translate_shadow(&mem, shadow, GuestVirt::new(1 << 39)).is_none());
    check_against_reference(&mem, &s, 960, shadow, 0);
    assert_eq!(s.unreachable_tables(&mem), 0);
}

/// PML4 entry 0 of root 960 can link PDPT 961 → PD 962 → PTs 963..963+`pts`, each with
/// 512 data pages: a subtree of 2 + `pts` tables.
fn wide_subtree(mem: &mut VecMemory, s: &mut ShadowMmu, pts: u64) {
    write(mem, s, 961, 0, (962 * PAGE_SIZE) | TABLE);
    for i in 0..pts {
        write(mem, s, 962, i, ((963 + i) * PAGE_SIZE) | TABLE);
        for e in 0..512 {
            write(mem, s, 963 + i, e, ((e % 400) * PAGE_SIZE) | DATA);
        }
    }
}

#[test]
fn hostile_batch_linking_a_subtree_over_and_over_builds_at_most_the_budget_then_rebuilds_once() {
    let (mut mem, mut s) = setup(false);
    wide_subtree(&mut mem, &mut s, 50);
    let root = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    assert_eq!(s.build_budget(), SHADOW, "the default budget is the area's size");
    s.set_build_budget(60);
    // Link and unlink the 52-table subtree 256 times in one batch: without the budget,
    // 256 × 52 tables built in one exit.
    let link = Pte::from_raw((961 * PAGE_SIZE) | TABLE);
    let batch: Vec<_> = (0..512).map(|i| (entry(960, 0), if i % 2 == 0 { link } else { Pte::EMPTY })).collect();
    let before = s.stats();
    assert_eq!(s.mmu_update(&mut mem, &batch).unwrap(), SyncOutcome::AllDropped, "the budget ran out: every shadow dropped");
    let after = s.stats();
    assert!(after.tables_built - before.tables_built <= 60 + 1, "built {} tables in one batch", after.tables_built - before.tables_built);
    assert!(after.budget_spent > before.budget_spent);
    // The root was built again from the guest's tables, which end unlinked.
    let shadow = s.current_shadow().unwrap();
    let _ = root; // dropped with every shadow; the area's frames were reset, so it may be reused
    assert_eq!(s.live_tables(), 1, "the batch ends with the subtree unlinked: only the root is shadowed");
    for va in [0, 0x1000, 0x20_0000 * 49] {
        check_against_reference(&mem, &s, 960, shadow, va);
    }
    assert_eq!(s.unreachable_tables(&mem), 0);
}

#[test]
fn hostile_store_linking_more_than_the_budget_drops_and_the_reload_matches_the_guest() {
    let (mut mem, mut s) = setup(false);
    wide_subtree(&mut mem, &mut s, 20);
    s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    s.set_build_budget(5);
    let outcome = s.guest_pt_write(&mut mem, entry(960, 0), Pte::from_raw((961 * PAGE_SIZE) | TABLE)).unwrap();
    assert_eq!(outcome, SyncOutcome::AllDropped);
    assert_eq!(s.live_tables(), 0, "nothing half-built is left");
    // Root loads are not budgeted: the whole 23-table tree loads.
    let shadow = s.load_root(&mut mem, PseudoPhys::new(960 * PAGE_SIZE)).unwrap();
    for va in [0, 0x1000, 0x20_0000 * 19 + 0x5000] {
        check_against_reference(&mem, &s, 960, shadow, va);
    }
    assert!(s.translate_shadow(&mem, shadow, GuestVirt::new(0x20_0000 * 19)).is_some());
    // A small write within the budget still syncs in place.
    assert_eq!(s.guest_pt_write(&mut mem, entry(963, 1), Pte::EMPTY).unwrap(), SyncOutcome::Synced);
}
