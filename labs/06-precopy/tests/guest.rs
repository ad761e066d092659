//! Lab 6's VM helpers (not a test file: `mod guest;` in each VM test file).
//!
//! A real migration in one process, with the graded tree's hv library: the source guest
//! runs on one thread, the destination (`hv::migration::receive`) waits on another, and
//! the test's thread sends (`hv::migration::send`, whose round loop is yours).

#![allow(dead_code)] // each test file uses a part of the helpers

use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hv::devices::console::CapturedOutput;
use hv::migration::stream::kernel_identity;
use hv::migration::{self, IncomingOptions, MigrationError, MigrationReport, SendOptions};
use hv::outcome::GuestStop;
use hv::vmm::{Vm, VmConfig};
use pv_abi::MmuMode;

/// Whether this machine can run guests; if not, says so in the form the grader reads.
pub fn kvm_or_not_run() -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            println!("LAB-NOT-RUN: this test boots a guest and needs /dev/kvm, which cannot be opened here ({e})");
            false
        }
    }
}

/// How a guest run ended, and what it printed.
pub struct Ran {
    pub stop: GuestStop,
    pub output: String,
}

fn run_thread(vm: Vm, console: CapturedOutput) -> JoinHandle<Ran> {
    std::thread::spawn(move || {
        let stop = vm.run().map(|r| r.stop).unwrap_or_else(|e| GuestStop::Ended { why: format!("the VM failed: {e}") });
        Ran { stop, output: console.text() }
    })
}

/// Runs `guest` without migrating it.
pub fn unmigrated(mode: MmuMode, guest: &[&str]) -> Ran {
    let config = VmConfig { mmu: mode, ..VmConfig::builtin_guest(guest) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("lab 6: the VM is created");
    run_thread(vm, console).join().expect("lab 6: the guest's thread")
}

/// What one migration did: the source's report (or error), and both guests' runs.
pub struct Migrated {
    pub report: Result<MigrationReport, MigrationError>,
    pub source: Ran,
    pub destination: Option<Ran>,
}

/// Runs `guest` in mode `mode`, and after `after` migrates it to a destination in the
/// same mode with the given round limit and downtime target.
pub fn migrate(mode: MmuMode, guest: &[&str], after: Duration, max_rounds: u32, target: Duration) -> Migrated {
    let config = VmConfig { mmu: mode, ..VmConfig::builtin_guest(guest) };
    let kernel = kernel_identity(hv::boot::guest_image::PV_GUEST_ELF);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("a port").port();
    let incoming = IncomingOptions {
        mem_mib: config.mem_mib,
        mmu: mode,
        kernel,
        trace: None,
        trace_max_events: hv::vmm::config::DEFAULT_TRACE_MAX_EVENTS,
        timeout: Some(Duration::from_secs(60)),
        seccomp: false,
    };
    let destination = std::thread::spawn(move || {
        let console = CapturedOutput::default();
        let received = migration::receive(&listener, &incoming, Box::new(console.clone()), Instant::now(), None).ok()?;
        Some(run_thread(received.vm, console).join().expect("lab 6: the destination's guest thread"))
    });
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("lab 6: the VM is created");
    let control = vm.control();
    let source = run_thread(vm, console);
    std::thread::sleep(after);
    let options = SendOptions { destination: format!("127.0.0.1:{port}"), max_rounds, downtime_target: target, kernel };
    let report = migration::send(&control, &options, migration::state_capture(&config), |r| println!("{}", r.line()));
    if let Ok(r) = &report {
        println!("{}", r.summary());
    }
    let source = source.join().expect("lab 6: the source's guest thread");
    let destination = if report.is_ok() { destination.join().expect("lab 6: the destination's thread") } else { None };
    Migrated { report, source, destination }
}
