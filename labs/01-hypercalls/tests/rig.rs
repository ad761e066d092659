//! The host rig of lab 1 (not a test file: `mod rig;` in each host test file).
//!
//! Calls the graded tree's `hv::vcpu::hypercall::dispatch` the way the vCPU loop does,
//! but without KVM: guest RAM is a plain `GuestRam` of 4 MiB and the console writes
//! into a buffer the test reads back.

#![allow(dead_code)] // each test file uses a part of the rig

use hv::devices::console::{CapturedOutput, ConsoleOutput};
use hv::memory::GuestRam;
use hv::vcpu::hypercall::{dispatch, HypercallContext, HypercallOutcome, HypercallRequest};
use pv_abi::addr::PseudoPhys;

/// The rig's guest RAM size: addresses from here on are outside guest RAM.
pub const RAM: u64 = 4 << 20;

/// The page-table pool the rig hands dispatch (only `mmu_update` looks at it).
const POOL: std::ops::Range<u64> = 0x30_0000..0x40_0000;

/// Guest RAM and a console whose output the test can read.
pub struct Rig {
    pub ram: GuestRam,
    console: ConsoleOutput,
    captured: CapturedOutput,
}

impl Rig {
    pub fn new() -> Self {
        let captured = CapturedOutput::default();
        Rig { ram: GuestRam::new(RAM).expect("4 MiB of guest RAM"), console: ConsoleOutput::new(Box::new(captured.clone())), captured }
    }

    /// Puts `bytes` into guest RAM at `gpa`.
    pub fn put(&self, gpa: u64, bytes: &[u8]) {
        self.ram.write(PseudoPhys::new(gpa), bytes).expect("the test writes inside guest RAM");
    }

    /// Makes hypercall `nr` with `args` in ept mode (no shadow paging), as the vCPU loop would.
    pub fn call(&self, nr: u64, args: [u64; 4]) -> HypercallOutcome {
        let pt_pool = PseudoPhys::new(POOL.start)..PseudoPhys::new(POOL.end);
        dispatch(&HypercallRequest { nr, args }, &mut HypercallContext { ram: &self.ram, console: &self.console, pt_pool, shadow: None })
    }

    /// What reached the console.
    pub fn console_bytes(&self) -> Vec<u8> {
        self.captured.bytes()
    }
}

/// `name(args)` for a failure message.
pub fn show(nr: u64, args: [u64; 4]) -> String {
    let name = pv_abi::Hypercall::from_number(nr).map_or("unknown", pv_abi::Hypercall::name);
    format!("{name} (number {nr:#x}) with arguments [{:#x}, {:#x}, {:#x}, {:#x}]", args[0], args[1], args[2], args[3])
}
