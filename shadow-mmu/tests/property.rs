//! Property: whatever the guest writes, in whatever order, with batches and address-space
//! switches in between, the shadow translates every address exactly as the guest's own
//! tables composed with the p2m table (under the isolation rules) say it should, and no
//! translation ever reaches outside the guest's machine frames.
//!
//! The engine updates its shadow write by write; the reference (`reference_translate`)
//! works every answer out from scratch. They must always agree.

use proptest::prelude::*;
use pv_abi::addr::{GuestVirt, MachineAddr, MachineFrame, PseudoFrame, PseudoPhys};
use pv_abi::paging::{Pte, PteFlags};
use shadow_mmu::reference::reference_translate;
use shadow_mmu::shadow::SyncOutcome;
use shadow_mmu::{P2m, ShadowConfig, ShadowError, ShadowMmu, VecMemory};

/// Entry bits as the raw words a guest writes.
const P: u64 = PteFlags::PRESENT.bits();
const RW: u64 = PteFlags::WRITABLE.bits();
const US: u64 = PteFlags::USER.bits();
const NX: u64 = PteFlags::NO_EXECUTE.bits();
const PS: u64 = PteFlags::LARGE.bits();

const PAGE: u64 = 4096;
const GUEST_FRAMES: u64 = 1024;
const MACHINE_BASE: u64 = 512;
/// The pool: guest frames 960..1024. The tests use the first TABLES of them.
const POOL_START: u64 = 960;
const TABLES: u64 = 8;
/// A device frame passed through (as hv passes the local APIC's page).
const DEVICE_FRAME: u64 = 0xfee00;
/// Entry indices the generated writes use, so that trees connect often.
const INDICES: [u64; 3] = [0, 1, 511];

#[derive(Clone, Debug)]
enum Value {
    Empty,
    Table { table: u64, flags: u64 },
    Page { frame: u64, flags: u64 },
    LargePage { frame: u64, flags: u64 },
    Garbage(u64),
}

impl Value {
    fn encode(&self) -> u64 {
        match *self {
            Value::Empty => 0,
            Value::Table { table, flags } => ((POOL_START + table) * PAGE) | P | flags,
            Value::Page { frame, flags } => (frame * PAGE) | P | flags,
            Value::LargePage { frame, flags } => (frame * PAGE) | P | PS | flags,
            Value::Garbage(v) => v,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write { table: u64, index: u64, value: Value },
    Batch(Vec<(u64, u64, Value)>),
    Load { root: u64 },
}

fn flags() -> impl Strategy<Value = u64> {
    (any::<bool>(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.05)).prop_map(|(rw, us, nx, reserved)| {
        (if rw { RW } else { 0 }) | (if us { US } else { 0 }) | (if nx { NX } else { 0 }) | (if reserved { 1 << 55 } else { 0 })
    })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Empty),
        4 => (0..TABLES, flags()).prop_map(|(table, flags)| Value::Table { table, flags }),
        4 => (prop_oneof![8 => 0..64u64, 8 => 956..1030u64, 1 => Just(DEVICE_FRAME)], flags()).prop_map(|(frame, flags)| Value::Page { frame, flags }),
        1 => (prop_oneof![Just(0u64), Just(512), Just(1024), 0..1100u64], flags()).prop_map(|(frame, flags)| Value::LargePage { frame, flags }),
        1 => any::<u64>().prop_map(Value::Garbage),
    ]
}

fn write() -> impl Strategy<Value = (u64, u64, Value)> {
    (0..TABLES, prop::sample::select(INDICES.to_vec()), value())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => write().prop_map(|(table, index, value)| Op::Write { table, index, value }),
        2 => prop::collection::vec(write(), 1..6).prop_map(Op::Batch),
        2 => (0..3u64).prop_map(|root| Op::Load { root }),
    ]
}

/// Every address whose indices are all from INDICES, with an offset in the page.
fn probe_addresses() -> Vec<u64> {
    let mut out = Vec::new();
    for a in INDICES {
        for b in INDICES {
            for c in INDICES {
                for d in INDICES {
                    out.push((a << 39) | (b << 30) | (c << 21) | (d << 12) | 0x18);
                }
            }
        }
    }
    out
}

fn run(ops: &[Op], pool_traps_writes: bool, shadow_frames: u64) -> Result<(), TestCaseError> {
    run_with_budget(ops, pool_traps_writes, shadow_frames, None)
}

/// `run` with the engine's build budget (tables one write or batch may build) set to
/// `budget`, if given.
fn run_with_budget(ops: &[Op], pool_traps_writes: bool, shadow_frames: u64, budget: Option<u64>) -> Result<(), TestCaseError> {
    let mut mem = VecMemory::new(MACHINE_BASE + GUEST_FRAMES);
    let p2m = P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), 512);
    let config = ShadowConfig { pool: PseudoFrame::new(POOL_START)..PseudoFrame::new(GUEST_FRAMES), shadow_area: MachineFrame::new(0)..MachineFrame::new(shadow_frames), root_cache: 2, pool_traps_writes, device_frames: vec![(PseudoFrame::new(DEVICE_FRAME), MachineFrame::new(DEVICE_FRAME))] };
    let mut s = ShadowMmu::new(config, p2m).unwrap();
    if let Some(budget) = budget {
        s.set_build_budget(budget);
    }
    let probes = probe_addresses();
    let mut current: Option<(u64, MachineAddr)> = None;
    for op in ops {
        let mut dropped = false;
        match op {
            Op::Write { table, index, value } => {
                let entry = PseudoPhys::new((POOL_START + table) * PAGE + index * 8);
                dropped = s.guest_pt_write(&mut mem, entry, Pte::from_raw(value.encode())).unwrap() == SyncOutcome::AllDropped;
            }
            Op::Batch(writes) => {
                let batch: Vec<_> =
                    writes.iter().map(|(t, i, v)| (PseudoPhys::new((POOL_START + t) * PAGE + i * 8), Pte::from_raw(v.encode()))).collect();
                match s.mmu_update(&mut mem, &batch) {
                    Ok(outcome) => dropped = outcome == SyncOutcome::AllDropped,
                    // The batch would have grown the loaded space past a tiny area: it was
                    // undone and the loaded root built again, possibly elsewhere.
                    Err(ShadowError::AreaTooSmall) => {
                        prop_assert_eq!(s.current_root(), current.map(|(g, _)| PseudoPhys::new(g * PAGE)));
                        current = current.and_then(|(g, _)| s.current_shadow().map(|m| (g, m)));
                        prop_assert!(current.is_some(), "a refused batch left the loaded root without a shadow");
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{e} after {op:?}"))),
                }
            }
            Op::Load { root } => {
                let guest = POOL_START + root;
                match s.load_root(&mut mem, PseudoPhys::new(guest * PAGE)) {
                    Ok(shadow) => current = Some((guest, shadow)),
                    // A tree too big for a tiny shadow area: a legitimate refusal, after
                    // which the root loaded before still runs (its shadow possibly rebuilt
                    // elsewhere, which is where CR3 then points).
                    Err(_) => current = current.and_then(|(g, _)| s.current_shadow().map(|m| (g, m))),
                }
            }
        }
        if dropped {
            // The VMM's duty after AllDropped: load the running root again. If the running
            // tree itself no longer fits the area (a trapped store grew it; no error code
            // can refuse a plain store), hv stops the guest there
            // (`GuestStop::PageTableStoreRefused`, see docs/memory-modes.md): so does this
            // model of it, and nothing after that point is a guest's to check.
            if let Some((g, _)) = current {
                match s.load_root(&mut mem, PseudoPhys::new(g * PAGE)) {
                    Ok(m) => current = Some((g, m)),
                    Err(_) => return Ok(()),
                }
            }
        }
        prop_assert_eq!(s.unreachable_tables(&mem), 0, "a shadow table outlived every reference to it after {:?}", op);
        let Some((guest, shadow)) = current else { continue };
        for &va in &probes {
            let expected = reference_translate(&mem, s.p2m(), s.config(), PseudoPhys::new(guest * PAGE), GuestVirt::new(va));
            let got = s.translate_shadow(&mem, shadow, GuestVirt::new(va));
            prop_assert_eq!(got, expected, "va {:#x} after {:?}", va, op);
            if let Some(t) = got {
                let frame = t.machine.frame();
                prop_assert!(!s.is_shadow_frame(frame), "a translation reached the shadow area");
                prop_assert!((MACHINE_BASE..MACHINE_BASE + GUEST_FRAMES).contains(&frame.raw()) || frame.raw() == DEVICE_FRAME, "outside the guest's frames");
                let guest_frame = (0..GUEST_FRAMES).find(|f| s.p2m().machine_frame(PseudoFrame::new(*f)) == Some(frame));
                let is_pool = guest_frame.is_some_and(|f| f >= POOL_START);
                prop_assert!(!(is_pool && t.writable && !pool_traps_writes), "a page table was mapped writable");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn shadow_equals_guest_tables_composed_with_p2m(ops in prop::collection::vec(op(), 1..24)) {
        run(&ops, false, 256)?;
    }

    #[test]
    fn the_same_holds_when_the_pool_traps_writes_itself(ops in prop::collection::vec(op(), 1..24)) {
        run(&ops, true, 256)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// A shadow area of 5 frames overflows often: dropping everything must never leave
    /// a stale or wrong translation behind.
    #[test]
    fn hostile_overflowing_a_tiny_shadow_area_never_gives_a_wrong_translation(ops in prop::collection::vec(op(), 1..24)) {
        run(&ops, false, 5)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// A build budget of one or two tables per write or batch is reached all the time:
    /// every shadow is dropped and the root built afresh instead, and the shadow must
    /// still translate exactly as the guest's tables say.
    #[test]
    fn hostile_a_tiny_build_budget_never_gives_a_wrong_translation(ops in prop::collection::vec(op(), 1..24), budget in 1..3u64) {
        run_with_budget(&ops, false, 256, Some(budget))?;
    }
}
