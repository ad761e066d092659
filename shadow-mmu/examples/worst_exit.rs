//! The most shadow work one guest exit can cause, timed: `cargo run --release -p
//! shadow-mmu --example worst_exit`.
//!
//! Eager shadowing (the crate's DESIGN) means one guest action can make the engine build
//! or drop a large share of the shadow area: a store that links a big subtree under the
//! loaded root, an `mmu_update` batch that links and unlinks such a subtree over and
//! over, a `set_cr3` of a root that needs the whole area. This program sets the engine up
//! as hv does (`hv::shadow::layout`: a page-table pool of a sixteenth of RAM, between 1
//! and 64 MiB; a shadow area of 128 frames plus one per eight pool frames) at 64 MiB and
//! at the largest RAM hv runs (3 GiB), builds each worst case in the guest's tables, and
//! prints how long the one operation took and how many shadow tables it built. Only the
//! pool and the area are backed by memory here (the engine never reads a data page).
//! docs/memory-modes.md quotes the figures.

use std::time::Instant;

use pv_abi::addr::{MachineFrame, PseudoFrame, PseudoPhys, PAGE_SIZE};
use pv_abi::paging::{Pte, PteFlags};
use shadow_mmu::{MachineMemory, P2m, ShadowConfig, ShadowMmu, VecMemory};

/// Entry bits of a table link and of a data page.
const LINK: u64 = PteFlags::PRESENT.bits() | PteFlags::WRITABLE.bits() | PteFlags::USER.bits();
const DATA: u64 = LINK | PteFlags::NO_EXECUTE.bits();

/// One guest: RAM frames, its pool (the last frames of RAM) and the shadow area.
struct Machine {
    mem: VecMemory,
    engine: ShadowMmu,
    pool_start: u64,
    area: u64,
    next_table: u64,
}

impl Machine {
    /// hv's layout for `ram_mib` of RAM: area at machine frames 0..area, the pool right
    /// after it, data frames (never read) beyond.
    fn new(ram_mib: u64) -> Machine {
        let ram_frames = (ram_mib << 20) / PAGE_SIZE;
        let pool_bytes = ((ram_mib << 20) / 16).clamp(1 << 20, 64 << 20);
        let pool_frames = pool_bytes / PAGE_SIZE;
        let area = 128 + pool_frames / 8;
        let pool_start = ram_frames - pool_frames;
        // Pool frames → machine frames area..area+pool; the other frames after those.
        let machine_of = (0..ram_frames).map(|g| MachineFrame::new(if g >= pool_start { area + (g - pool_start) } else { area + pool_frames + g })).collect();
        let config = ShadowConfig {
            pool: PseudoFrame::new(pool_start)..PseudoFrame::new(ram_frames),
            shadow_area: MachineFrame::new(0)..MachineFrame::new(area),
            root_cache: 8,
            pool_traps_writes: true,
            device_frames: Vec::new(),
        };
        let engine = ShadowMmu::new(config, P2m::from_table(machine_of)).expect("a valid layout");
        Machine { mem: VecMemory::new(area + pool_frames), engine, pool_start, area, next_table: 0 }
    }

    /// A fresh guest page table (pool frame).
    fn table(&mut self) -> u64 {
        let t = self.pool_start + self.next_table;
        self.next_table += 1;
        t
    }

    /// Writes a guest entry directly (building tables no shadow uses yet).
    fn store(&mut self, table: u64, index: u64, value: u64) {
        let machine = self.engine.p2m().machine_frame(PseudoFrame::new(table)).expect("a pool frame");
        self.mem.write_entry(machine, index as usize, Pte::from_raw(value)).expect("pool memory");
    }

    /// A PDPT whose subtree holds `tables` tables in all (PDPT, PDs, full PTs).
    fn subtree(&mut self, tables: u64) -> u64 {
        let pdpt = self.table();
        let mut left = tables - 1;
        let mut pd_index = 0;
        while left > 0 {
            let pd = self.table();
            self.store(pdpt, pd_index, (pd * PAGE_SIZE) | LINK);
            pd_index += 1;
            left -= 1;
            for i in 0..512.min(left) {
                let pt = self.table();
                self.store(pd, i, (pt * PAGE_SIZE) | LINK);
                for e in 0..512 {
                    // Data pages: the frames below the pool, never the same one twice.
                    self.store(pt, e, (((i * 512 + e) % self.pool_start) * PAGE_SIZE) | DATA);
                }
                left -= 1;
            }
        }
        pdpt
    }
}

fn entry(table: u64, index: u64) -> PseudoPhys {
    PseudoPhys::new(table * PAGE_SIZE + index * 8)
}

fn main() {
    println!("{:<8} {:<58} {:>10} {:>12} {:>8}", "RAM", "one exit", "ms", "tables built", "dropped");
    for ram_mib in [64, 3 * 1024] {
        let label = format!("{ram_mib} MiB");
        let report = |what: &str, m: &Machine, before: shadow_mmu::ShadowStats, ms: f64| {
            let s = m.engine.stats();
            println!("{label:<8} {what:<58} {ms:>10.2} {:>12} {:>8}", s.tables_built - before.tables_built, s.all_dropped - before.all_dropped);
        };
        let mut m = Machine::new(ram_mib);
        let root = m.table();
        let fits = m.subtree(m.area - 1);
        m.engine.load_root(&mut m.mem, PseudoPhys::new(root * PAGE_SIZE)).expect("an empty root fits");

        // 1. One trapped store links a subtree that fills the whole area.
        let before = m.engine.stats();
        let t = Instant::now();
        m.engine.guest_pt_write(&mut m.mem, entry(root, 0), Pte::from_raw((fits * PAGE_SIZE) | LINK)).expect("a pool entry");
        report("store linking a subtree of the whole area", &m, before, t.elapsed().as_secs_f64() * 1e3);
        m.engine.guest_pt_write(&mut m.mem, entry(root, 0), Pte::EMPTY).expect("a pool entry");

        // 2. One mmu_update batch of the largest size, linking and unlinking it in turn.
        let batch: Vec<(PseudoPhys, Pte)> = (0..pv_abi::hypercall::MMU_UPDATE_MAX)
            .map(|i| (entry(root, 0), if i % 2 == 0 { Pte::from_raw((fits * PAGE_SIZE) | LINK) } else { Pte::EMPTY }))
            .collect();
        let before = m.engine.stats();
        let t = Instant::now();
        let r = m.engine.mmu_update(&mut m.mem, &batch);
        report(&format!("mmu_update of {} entries, link/unlink in turn ({})", batch.len(), if r.is_ok() { "ok" } else { "refused" }), &m, before, t.elapsed().as_secs_f64() * 1e3);

        // 3. A store linking a subtree one table too big: the area fills, every shadow is
        //    dropped, and the loaded root is built again (and does not fit).
        let too_big = m.subtree(m.area);
        let before = m.engine.stats();
        let t = Instant::now();
        m.engine.guest_pt_write(&mut m.mem, entry(root, 1), Pte::from_raw((too_big * PAGE_SIZE) | LINK)).expect("a pool entry");
        let reload = m.engine.load_root(&mut m.mem, PseudoPhys::new(root * PAGE_SIZE));
        report(&format!("store growing the loaded root past the area (reload {})", if reload.is_ok() { "ok" } else { "fails" }), &m, before, t.elapsed().as_secs_f64() * 1e3);
        m.engine.guest_pt_write(&mut m.mem, entry(root, 1), Pte::EMPTY).expect("a pool entry");
        m.engine.load_root(&mut m.mem, PseudoPhys::new(root * PAGE_SIZE)).expect("fits again");

        // 4. set_cr3 of a root that needs more than the area, while the loaded one fills
        //    most of it: build, drop the idle roots, drop all, build, rebuild the loaded one.
        m.engine.guest_pt_write(&mut m.mem, entry(root, 0), Pte::from_raw((fits * PAGE_SIZE) | LINK)).expect("a pool entry");
        let other = m.table();
        m.store(other, 0, (too_big * PAGE_SIZE) | LINK);
        let before = m.engine.stats();
        let t = Instant::now();
        let r = m.engine.load_root(&mut m.mem, PseudoPhys::new(other * PAGE_SIZE));
        report(&format!("set_cr3 of a root needing more than the area ({})", if r.is_ok() { "ok" } else { "E2BIG" }), &m, before, t.elapsed().as_secs_f64() * 1e3);
    }
}
