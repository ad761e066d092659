//! Fuzz entry point: the shadow engine under arbitrary sequences of guest page-table
//! writes, `mmu_update` batches and root loads, checked against the reference walk.
//!
//! This is `tests/property.rs` with the fuzzer choosing the operations instead of
//! proptest: the same machine (1024 guest frames whose p2m swaps two halves, a pool of
//! the last 64 frames, a passed-through device frame), and after every step the same
//! checks: the loaded shadow translates every probe address exactly as
//! [`reference_translate`] works it out from the guest's tables, never into the shadow
//! area or outside the guest's frames, never a page table writable (unless the pool
//! traps writes itself), and no shadow table outlives every reference to it. The fuzzer
//! also reaches what proptest's generators do not: raw entry addresses anywhere (which
//! must be refused, not obeyed) and any 64-bit entry value.
//!
//! [`shadow_sequence`] is the body of the `shadow_mmu` fuzz target (`fuzz/`, nightly)
//! and of the stable corpus test `tests/fuzz_corpus.rs`; a property violation panics,
//! which is what the fuzzer reports.

use pv_abi::addr::{GuestVirt, MachineAddr, MachineFrame, PseudoFrame, PseudoPhys};
use pv_abi::paging::{Pte, PteFlags};

use crate::reference::reference_translate;
use crate::shadow::SyncOutcome;
use crate::{P2m, ShadowConfig, ShadowError, ShadowMmu, VecMemory};

const PAGE: u64 = 4096;
const GUEST_FRAMES: u64 = 1024;
const MACHINE_BASE: u64 = 512;
/// The pool: guest frames 960..1024. Most generated entries land in the first TABLES.
const POOL_START: u64 = 960;
const TABLES: u64 = 8;
const DEVICE_FRAME: u64 = 0xfee00;
/// Entry indices the probes use, so that generated trees connect often.
const INDICES: [u64; 3] = [0, 1, 511];
/// Steps one input may take: bounds the work per input.
const MAX_STEPS: usize = 64;

/// Reads an input front to back; past the end every read gives zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, i| acc | u64::from(self.u8()) << (8 * i))
    }
}

/// Entry flags from one byte: writable, user, no-execute, and rarely a reserved bit.
fn flags(b: u8) -> u64 {
    let mut f = 0;
    if b & 1 != 0 {
        f |= PteFlags::WRITABLE.bits();
    }
    if b & 2 != 0 {
        f |= PteFlags::USER.bits();
    }
    if b & 4 != 0 {
        f |= PteFlags::NO_EXECUTE.bits();
    }
    if b & 0xf8 == 0xf8 {
        f |= 1 << 55;
    }
    f
}

/// An entry value: empty, a pool table, a 4 KiB page, a 2 MiB page, or any 64 bits.
fn value(input: &mut Input) -> u64 {
    let present = PteFlags::PRESENT.bits();
    let kind = input.u8();
    let f = flags(input.u8());
    match kind % 8 {
        0 => 0,
        1..=3 => ((POOL_START + u64::from(input.u8()) % TABLES) * PAGE) | present | f,
        4 | 5 => {
            let frame = match input.u8() {
                b @ 0..=127 => u64::from(b) % 64,
                b @ 128..=250 => 956 + u64::from(b) % 74,
                _ => DEVICE_FRAME,
            };
            (frame * PAGE) | present | f
        }
        6 => {
            let frame = [0, 512, 1024, u64::from(input.u8()) * 5][usize::from(input.u8() % 4)];
            (frame * PAGE) | present | PteFlags::LARGE.bits() | f
        }
        _ => input.u64(),
    }
}

/// The address of an entry: usually one of the probe indices of a pool table, sometimes
/// any 64-bit address at all (which the engine must refuse unless it is a pool entry).
fn entry(input: &mut Input) -> PseudoPhys {
    let b = input.u8();
    if b == 0xff {
        return PseudoPhys::new(input.u64());
    }
    let table = POOL_START + u64::from(b) % TABLES;
    let index = INDICES[usize::from(input.u8() % 3)];
    PseudoPhys::new(table * PAGE + index * 8)
}

fn is_pool_entry(entry: PseudoPhys) -> bool {
    entry.is_aligned(8) && (POOL_START * PAGE..GUEST_FRAMES * PAGE).contains(&entry.raw())
}

/// Every address whose table indices are all from INDICES, with an offset in the page.
fn probe_addresses() -> Vec<GuestVirt> {
    let mut out = Vec::new();
    for a in INDICES {
        for b in INDICES {
            for c in INDICES {
                for d in INDICES {
                    out.push(GuestVirt::new((a << 39) | (b << 30) | (c << 21) | (d << 12) | 0x18));
                }
            }
        }
    }
    out
}

/// Target `shadow_mmu`. Input: one byte of setup (bit 0: the pool traps writes; bit 1:
/// a tiny shadow area of 5 frames that overflows often, else 256; bit 2: a build budget
/// of 2 tables per write or batch, reached often, else the area's size), then steps: a write,
/// a batch of up to 8 writes, or a root load.
pub fn shadow_sequence(data: &[u8]) {
    let mut input = Input(data);
    let setup = input.u8();
    let pool_traps_writes = setup & 1 != 0;
    let shadow_frames = if setup & 2 != 0 { 5 } else { 256 };
    let mut mem = VecMemory::new(MACHINE_BASE + GUEST_FRAMES);
    let p2m = P2m::swapped_halves(GUEST_FRAMES, MachineFrame::new(MACHINE_BASE), 512);
    let config = ShadowConfig {
        pool: PseudoFrame::new(POOL_START)..PseudoFrame::new(GUEST_FRAMES),
        shadow_area: MachineFrame::new(0)..MachineFrame::new(shadow_frames),
        root_cache: 2,
        pool_traps_writes,
        device_frames: vec![(PseudoFrame::new(DEVICE_FRAME), MachineFrame::new(DEVICE_FRAME))],
    };
    let mut s = ShadowMmu::new(config, p2m).expect("the model's configuration is valid");
    if setup & 4 != 0 {
        s.set_build_budget(2);
    }
    let probes = probe_addresses();
    let mut current: Option<(u64, MachineAddr)> = None;
    for _ in 0..MAX_STEPS {
        if input.0.is_empty() {
            break;
        }
        let dropped = match input.u8() % 4 {
            0 | 1 => {
                let at = entry(&mut input);
                let v = Pte::from_raw(value(&mut input));
                match s.guest_pt_write(&mut mem, at, v) {
                    Ok(outcome) => outcome == SyncOutcome::AllDropped,
                    Err(e) => {
                        assert!(!is_pool_entry(at), "a write to pool entry {:#x} failed: {e}", at.raw());
                        false
                    }
                }
            }
            2 => {
                let n = 1 + usize::from(input.u8() % 8);
                let batch: Vec<_> = (0..n).map(|_| (entry(&mut input), Pte::from_raw(value(&mut input)))).collect();
                match s.mmu_update(&mut mem, &batch) {
                    Ok(outcome) => outcome == SyncOutcome::AllDropped,
                    // The batch grew the loaded space past the (tiny) area: it was undone
                    // and the loaded root built again as it was, possibly elsewhere
                    // (`E2BIG` for the guest; the property test's rule). The root must
                    // still have a shadow, and it is checked below like any other.
                    Err(ShadowError::AreaTooSmall) if batch.iter().all(|(at, _)| is_pool_entry(*at)) => {
                        let root = s.current_root().expect("only a loaded root's reload refuses a batch");
                        current = Some((root.raw() / PAGE, s.current_shadow().expect("a refused batch left the loaded root without a shadow")));
                        false
                    }
                    Err(e) => {
                        assert!(!batch.iter().all(|(at, _)| is_pool_entry(*at)), "a batch of pool entries failed: {e}");
                        false
                    }
                }
            }
            _ => {
                let b = input.u8();
                let root = if b == 0xff { PseudoPhys::new(input.u64()) } else { PseudoPhys::new((POOL_START + u64::from(b % 3)) * PAGE) };
                match s.load_root(&mut mem, root) {
                    Ok(shadow) => current = Some((root.raw() / PAGE, shadow)),
                    // A root outside the pool is refused; a tree too big for a tiny shadow
                    // area is a legitimate refusal (the property test's rule).
                    Err(_) => current = None,
                }
                false
            }
        };
        if dropped {
            // The VMM's duty after AllDropped: load the running root again.
            current = current.and_then(|(g, _)| s.load_root(&mut mem, PseudoPhys::new(g * PAGE)).ok().map(|m| (g, m)));
        }
        assert_eq!(s.unreachable_tables(&mem), 0, "a shadow table outlived every reference to it");
        let Some((guest, shadow)) = current else { continue };
        for &va in &probes {
            let expected = reference_translate(&mem, s.p2m(), s.config(), PseudoPhys::new(guest * PAGE), va);
            let got = s.translate_shadow(&mem, shadow, va);
            assert_eq!(got, expected, "va {:#x}: the shadow disagrees with the reference walk", va.raw());
            if let Some(t) = got {
                let frame = t.machine.frame();
                assert!(!s.is_shadow_frame(frame), "a translation reached the shadow area");
                assert!(
                    (MACHINE_BASE..MACHINE_BASE + GUEST_FRAMES).contains(&frame.raw()) || frame.raw() == DEVICE_FRAME,
                    "a translation reached outside the guest's frames"
                );
                let guest_frame = (0..GUEST_FRAMES).find(|f| s.p2m().machine_frame(PseudoFrame::new(*f)) == Some(frame));
                let is_pool = guest_frame.is_some_and(|f| f >= POOL_START);
                assert!(!(is_pool && t.writable && !pool_traps_writes), "a page table was mapped writable");
            }
        }
    }
}
