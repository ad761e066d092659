//! Part (b): syncing shadows on a trapped write (`ShadowMmu::sync_shadows`,
//! `ShadowMmu::replace_shadow_entry`). After every write the loaded shadow must say what
//! the guest's tables say; a changed present entry must ask for a flush; a shadow table
//! nothing reaches any more must be freed.

mod rig;

use rig::*;

#[test]
fn a_trapped_write_maps_changes_and_unmaps_a_page() {
    let mut r = Rig::new(false);
    r.chain();
    let root = r.load();
    assert_eq!(r.shadow(root, PAGE), None, "nothing is mapped yet");
    r.write(table(3), 1, 7 * PAGE | P | RW | US);
    let t = r.shadow(root, PAGE).expect("lab 4: sync on a trapped write: the guest mapped a page in the loaded address space, but the shadow did not follow");
    assert_eq!(t.machine.raw(), r.machine(7) * PAGE, "lab 4: sync on a trapped write: the new entry is reflected (through the p2m)");
    r.write(table(3), 1, 8 * PAGE | P | US);
    r.expect_agree(root, PAGE, "sync on a trapped write: a changed entry replaces the old one");
    r.write(table(3), 1, 0);
    assert_eq!(r.shadow(root, PAGE), None, "lab 4: sync on a trapped write: the guest unmapped the page, but the shadow still maps it (a stale translation: the guest could reach a freed frame)");
}

#[test]
fn a_changed_present_entry_asks_for_a_flush() {
    let mut r = Rig::new(false);
    r.chain();
    let _root = r.load();
    let _ = r.mmu.take_flush_needed();
    r.write(table(3), 1, 7 * PAGE | P | RW);
    assert!(!r.mmu.take_flush_needed(), "lab 4: an entry that only becomes present needs no flush (nothing was cached)");
    r.write(table(3), 1, 8 * PAGE | P | RW);
    assert!(r.mmu.take_flush_needed(), "lab 4: a present shadow entry that changed must ask for a flush (take_flush_needed): the CPU may hold the old translation");
    r.write(table(3), 1, 0);
    assert!(r.mmu.take_flush_needed(), "lab 4: a present shadow entry that was removed must ask for a flush");
}

#[test]
fn every_shadow_of_a_shared_table_is_synced() {
    let mut r = Rig::new(false);
    r.chain();
    // Table 3 is also used as a PD (level 2) through PDPT entry 1: two shadows of it.
    r.write(table(1), 1, table(3) | P | RW | US);
    let root = r.load();
    r.write(table(3), 2, table(4) | P | RW | US);
    r.write(table(4), 0, 9 * PAGE | P | RW | US);
    for va in [2 * PAGE, (1 << 30) + (2 << 21)] {
        r.expect_agree(root, va, "sync every shadow of the written table (one per level it is used at)");
    }
    assert!(r.shadow(root, (1 << 30) + (2 << 21)).is_some(), "lab 4: sync every shadow of the written table: table 3 used as a PD must link to table 4's shadow");
}

#[test]
fn replaced_links_free_their_shadow_tables() {
    let mut r = Rig::new(false);
    r.chain();
    r.write(table(3), 1, 7 * PAGE | P | RW);
    let root = r.load();
    let before = r.mmu.live_tables();
    r.write(table(1), 0, 0);
    assert_eq!(r.mmu.unreachable_tables(&r.mem), 0, "lab 4: replace one shadow entry: the old entry's lower shadow table must lose its reference (release the old child), or shadow memory leaks");
    assert!(r.mmu.live_tables() < before, "lab 4: unlinking a PD frees its shadow and the PT's below it ({} tables before, {} after)", before, r.mmu.live_tables());
    r.write(table(1), 0, table(2) | P | RW | US);
    r.expect_agree(root, PAGE, "a relinked table is shadowed again");
    // Linking the same table again in place of itself must keep it alive.
    r.write(table(1), 0, table(2) | P | RW | US);
    r.expect_agree(root, PAGE, "rewriting a link with the same value keeps its shadow alive");
    assert_eq!(r.mmu.unreachable_tables(&r.mem), 0, "lab 4: release the old child only after storing the new entry");
}

#[test]
fn a_hostile_write_is_refused_at_sync_time_too() {
    let mut r = Rig::new(false);
    r.chain();
    let root = r.load();
    r.write(table(3), 1, 7 * PAGE | P | RW);
    r.write(table(3), 1, GUEST_FRAMES * PAGE | P | RW);
    assert_eq!(r.shadow(root, PAGE), None, "lab 4: a trapped write goes through the same rule (reflect) as a build: a frame outside the guest is refused");
    assert!(!r.refusals().is_empty(), "lab 4: the refusal is reported");
}

#[test]
fn a_full_shadow_area_drops_every_shadow() {
    // Four tables fill the area exactly: one more table cannot be shadowed.
    let mut r = Rig::with_area(false, 4);
    r.chain();
    let _root = r.load();
    let outcome = r.write(table(2), 1, table(4) | P | RW);
    assert_eq!(outcome, shadow_mmu::shadow::SyncOutcome::AllDropped, "lab 4: when the shadow area is full, every shadow is dropped and the write says AllDropped (the VMM then loads its root again)");
    // Unlink table 3 so that the tree (PML4, PDPT, PD, table 4) fits the area again.
    r.write(table(2), 0, 0);
    r.write(table(4), 1, 7 * PAGE | P | RW);
    let root = r.load();
    r.expect_agree(root, (1 << 21) + PAGE, "after AllDropped the root is built afresh");
    assert!(r.shadow(root, (1 << 21) + PAGE).is_some(), "lab 4: after AllDropped the root is built afresh from the guest's tables");
}
