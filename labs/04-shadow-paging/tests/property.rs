//! The property: whatever the guest writes, in whatever order, the loaded shadow
//! translates every probed address exactly as the reference walk
//! (`shadow_mmu::reference::reference_translate`) says, and never reaches outside the
//! guest's frames. Parts (a) and (b) together.

mod rig;

use proptest::prelude::*;
use rig::*;

const INDICES: [u64; 3] = [0, 1, 511];
const TABLES: u64 = 6;

#[derive(Clone, Debug)]
enum Op {
    Write { table: u64, index: u64, value: u64 },
    Load { root: u64 },
}

fn flags() -> impl Strategy<Value = u64> {
    (any::<bool>(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.05))
        .prop_map(|(rw, us, nx, reserved)| (if rw { RW } else { 0 }) | (if us { US } else { 0 }) | (if nx { NX } else { 0 }) | (if reserved { 1 << 55 } else { 0 }))
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        4 => (0..TABLES, flags()).prop_map(|(t, f)| table(t) | P | f),
        4 => (prop_oneof![0..64u64, 955..1030u64, 2000..2100u64], flags()).prop_map(|(frame, f)| frame * PAGE | P | f),
        1 => (prop_oneof![Just(0u64), Just(512), Just(1024), 0..1100u64], flags()).prop_map(|(frame, f)| frame * PAGE | P | PS | f),
        1 => any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..TABLES, prop::sample::select(INDICES.to_vec()), value()).prop_map(|(table, index, value)| Op::Write { table, index, value }),
        2 => (0..2u64).prop_map(|root| Op::Load { root }),
    ]
}

fn probes() -> Vec<u64> {
    let mut out = Vec::new();
    for a in INDICES {
        for b in INDICES {
            for c in INDICES {
                for d in INDICES {
                    out.push((a << 39) | (b << 30) | (c << 21) | (d << 12) | 0x28);
                }
            }
        }
    }
    out
}

fn run(ops: &[Op], pool_traps_writes: bool) -> Result<(), TestCaseError> {
    let mut r = Rig::new(pool_traps_writes);
    let mut current: Option<(u64, pv_abi::addr::MachineAddr)> = None;
    for op in ops {
        match *op {
            Op::Write { table: t, index, value } => {
                if r.write(table(t), index, value) == shadow_mmu::shadow::SyncOutcome::AllDropped {
                    current = current.and_then(|(g, _)| r.mmu.load_root(&mut r.mem, pv_abi::addr::PseudoPhys::new(table(g))).ok().map(|m| (g, m)));
                }
            }
            Op::Load { root } => {
                current = r.mmu.load_root(&mut r.mem, pv_abi::addr::PseudoPhys::new(table(root))).ok().map(|m| (root, m));
            }
        }
        prop_assert_eq!(r.mmu.unreachable_tables(&r.mem), 0, "lab 4: a shadow table outlived every reference to it after {:?}", op);
        let Some((guest, shadow)) = current else { continue };
        for va in probes() {
            let expected = shadow_mmu::reference::reference_translate(&r.mem, r.mmu.p2m(), r.mmu.config(), pv_abi::addr::PseudoPhys::new(table(guest)), pv_abi::addr::GuestVirt::new(va));
            let got = r.shadow(shadow, va);
            prop_assert_eq!(got, expected, "lab 4: the shadow (left) differs from the reference walk (right) at va {:#x} after {:?}", va, op);
            if let Some(t) = got {
                let frame = t.machine.frame();
                prop_assert!(!r.mmu.is_shadow_frame(frame), "lab 4: never map the shadow area");
                prop_assert!((MACHINE_BASE..MACHINE_BASE + GUEST_FRAMES).contains(&frame.raw()), "lab 4: a translation reached outside the guest's frames");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_shadow_equals_the_reference_walk(ops in prop::collection::vec(op(), 1..20)) {
        run(&ops, false)?;
    }

    #[test]
    fn the_shadow_equals_the_reference_walk_when_the_pool_traps_writes(ops in prop::collection::vec(op(), 1..20)) {
        run(&ops, true)?;
    }
}
