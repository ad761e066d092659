//! Part (a): the reflection rule (`ShadowMmu::reflect`, `ShadowMmu::reflect_leaf`).
//! Each hostile entry must be refused with its reason and leave nothing in the shadow;
//! a good entry must become the p2m's machine frame with A and D preset. The guest's
//! tables are planted before the root is loaded (`Rig::plant`), so these tests need
//! only part (a): the shadow is built by `reflect` alone, with no trapped write.

mod rig;

use rig::*;
use shadow_mmu::Refusal;

#[test]
fn a_good_leaf_maps_the_p2m_frame_with_the_guest_permissions() {
    let mut r = Rig::new(false);
    r.plant_chain();
    r.plant(table(3), 5, 7 * PAGE | P | RW | US);
    r.plant(table(3), 6, 9 * PAGE | P | NX);
    let root = r.load();
    let t = r.shadow(root, 5 * PAGE + 0x18).expect("lab 4: reflect a present leaf: the page must be mapped in the shadow");
    assert_eq!(t.machine.raw(), r.machine(7) * PAGE + 0x18, "lab 4: reflect a leaf through the p2m: the shadow must point at p2m(frame), never at the guest's pseudo-physical frame");
    assert!(t.writable && t.user && t.executable, "lab 4: reflect a leaf: the shadow keeps the guest's permission bits (got {t:?})");
    let t = r.shadow(root, 6 * PAGE).expect("lab 4: a read-only, no-execute page is still mapped");
    assert!(!t.writable && !t.user && !t.executable, "lab 4: reflect a leaf: read-only, supervisor and NX stay as the guest wrote them (got {t:?})");
    assert!(r.refusals().is_empty(), "lab 4: good entries are never refused");
}

#[test]
fn shadow_leaves_have_accessed_and_dirty_preset() {
    let mut r = Rig::new(false);
    r.plant_chain();
    r.plant(table(3), 1, 7 * PAGE | P | RW);
    let root = r.load();
    // Walk the shadow by hand down to the leaf: PML4 → PDPT → PD → PT, entry 1.
    let mut table_addr = root.raw();
    for index in [0u64, 0, 0] {
        let e = read(&r, table_addr + index * 8);
        assert!(e & P != 0, "lab 4: a link to a lower table must be present in the shadow");
        table_addr = e & 0x000f_ffff_ffff_f000;
    }
    let leaf = read(&r, table_addr + 8);
    assert_eq!(leaf & (A | D), A | D, "lab 4: A/D preset: a shadow leaf is made with Accessed and Dirty set, so the CPU never writes them (leaf {leaf:#x})");
    let guest = read(&r, r.machine(POOL_START + 3) * PAGE + 8);
    assert_eq!(guest, 7 * PAGE | P | RW, "lab 4: the guest's own entry is left as the guest wrote it");
}

fn read(r: &Rig, addr: u64) -> u64 {
    use shadow_mmu::MachineMemory;
    r.mem.read_u64(pv_abi::addr::MachineAddr::new(addr)).expect("inside the rig's memory")
}

#[test]
fn hostile_frame_outside_the_guest_is_refused() {
    let mut r = Rig::new(false);
    r.plant_chain();
    r.plant(table(3), 1, GUEST_FRAMES * PAGE | P | RW | US);
    r.plant(table(3), 2, 0x40_0000_0000 | P | US);
    let root = r.load();
    assert_eq!(r.shadow(root, PAGE), None, "lab 4: refuse a frame outside the guest: frame {GUEST_FRAMES} is past the guest's last frame, yet the shadow maps it");
    assert_eq!(r.shadow(root, 2 * PAGE), None, "lab 4: refuse a frame outside the guest: a frame far past the guest's memory is mapped");
    let refusals = r.refusals();
    assert!(refusals.iter().filter(|(l, w)| *l == 1 && *w == Refusal::OutsideGuest).count() >= 2, "lab 4: each refusal is reported: expected two OutsideGuest refusals at level 1, got {refusals:?}");
}

#[test]
fn hostile_entry_at_the_shadow_area_is_refused() {
    let mut r = Rig::new(false);
    r.plant_chain();
    // Machine frame 3 is a shadow table; to the guest it is an address it was never
    // given. A guest frame number is pseudo-physical: the rule is "outside the guest".
    r.plant(table(3), 1, 3 * PAGE | P | RW | US);
    // Past the guest's end, where a hostile guest might guess the shadow area lies.
    r.plant(table(3), 2, (MACHINE_BASE + GUEST_FRAMES + 1) * PAGE | P | RW | US);
    let root = r.load();
    if let Some(t) = r.shadow(root, PAGE) {
        assert!(!r.mmu.is_shadow_frame(t.machine.frame()), "lab 4: never map the shadow area: guest frame 3 was reflected as machine frame 3, a shadow table (use the p2m)");
    }
    r.expect_agree(root, PAGE, "a guest frame is translated through the p2m");
    assert_eq!(r.shadow(root, 2 * PAGE), None, "lab 4: refuse a frame outside the guest");
}

#[test]
fn hostile_table_outside_the_pool_is_refused() {
    let mut r = Rig::new(false);
    r.plant_chain();
    // A PD entry naming data frame 20 as a page table: hv would never see writes to it.
    r.plant(table(2), 1, 20 * PAGE | P | RW | US);
    let root = r.load();
    assert_eq!(r.shadow(root, (1 << 21) + PAGE), None, "lab 4: refuse a page table outside the pool: a guest could change such a table without a trap");
    let refusals = r.refusals();
    assert!(refusals.contains(&(2, Refusal::TableOutsidePool)), "lab 4: refuse a page table outside the pool, and report it: got {refusals:?}");
}

#[test]
fn hostile_one_gib_page_is_refused() {
    let mut r = Rig::new(false);
    r.plant_chain();
    r.plant(table(1), 1, P | RW | US | PS);
    let root = r.load();
    assert_eq!(r.shadow(root, 1 << 30), None, "lab 4: refuse a 1 GiB page (large at level 3): the engine does not support them");
    let refusals = r.refusals();
    assert!(refusals.contains(&(3, Refusal::HugePage)), "lab 4: refuse a 1 GiB page, and report it as HugePage at level 3: got {refusals:?}");
}

#[test]
fn hostile_reserved_bits_are_refused() {
    let mut r = Rig::new(false);
    r.plant_chain();
    r.plant(table(3), 1, 7 * PAGE | P | RW | (1 << 55));
    r.plant(table(2), 1, table(4) | P | RW | (1 << 52));
    let root = r.load();
    assert_eq!(r.shadow(root, PAGE), None, "lab 4: refuse reserved bits (52..62) in a leaf");
    let refusals = r.refusals();
    assert!(refusals.contains(&(1, Refusal::ReservedBits)) && refusals.contains(&(2, Refusal::ReservedBits)), "lab 4: refuse reserved bits at every level, and report them: got {refusals:?}");
}

#[test]
fn hostile_writable_mapping_of_a_page_table_is_read_only() {
    let mut r = Rig::new(false);
    r.plant_chain();
    r.plant(table(3), 1, table(3) | P | RW | US);
    let root = r.load();
    let t = r.shadow(root, PAGE).expect("lab 4: a page table may be mapped (read-only): the guest reads its own tables");
    assert!(!t.writable, "lab 4: a page-table frame is mapped read-only: a writable mapping would let the guest change its tables without a trap");
    r.expect_agree(root, PAGE, "a page-table frame is mapped read-only");

    let mut r = Rig::new(true);
    r.plant_chain();
    r.plant(table(3), 1, table(3) | P | RW | US);
    let root = r.load();
    let t = r.shadow(root, PAGE).expect("lab 4: a page table may be mapped");
    assert!(t.writable, "lab 4: when the pool's memory traps writes itself (pool_traps_writes), a page table may stay writable: the store exits anyway");
}

#[test]
fn large_pages_only_where_allowed() {
    let mut r = Rig::new(false);
    r.plant_chain();
    // 2 MiB at guest 2 MiB (frames 512.. do not exist: outside), at 0 (fine), misaligned.
    r.plant(table(2), 1, P | RW | US | PS);
    r.plant(table(2), 2, PAGE | P | RW | US | PS);
    let root = r.load();
    let t = r.shadow(root, (1 << 21) + 0x1234).expect("lab 4: a 2 MiB page at level 2 over contiguous guest frames is allowed");
    assert_eq!(t.machine.raw(), r.machine(0) * PAGE + 0x1234, "lab 4: a 2 MiB page maps p2m(first frame) plus the offset in the 2 MiB page");
    assert_eq!(r.shadow(root, 2 << 21), None, "lab 4: refuse a misaligned 2 MiB page");
    let refusals = r.refusals();
    assert!(refusals.contains(&(2, Refusal::Misaligned)), "lab 4: a misaligned 2 MiB page is refused as Misaligned: got {refusals:?}");
    for va in [(1u64 << 21) + 0x1234, 2 << 21] {
        r.expect_agree(root, va, "large pages only where allowed");
    }
}
