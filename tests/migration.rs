//! Pre-copy live migration (`hv::migration`).
//!
//! In one process: a guest dirtying memory is sent to a receiver that compares, once
//! the source is paused, every byte of its RAM with the source's (dirty tracking in
//! both memory modes), then refuses the VM: the source's guest must run on to the end.

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hv::devices::console::CapturedOutput;
use hv::migration::receive::{accept_vm, Expect};
use hv::migration::stream::kernel_identity;
use hv::migration::{send, MigrationError, SendOptions};
use hv::outcome::GuestStop;
use hv::vmm::{Vm, VmConfig};
use pv_abi::addr::PseudoPhys;
use pv_abi::MmuMode;

/// Sends a running `dirty-loop` guest to an in-process receiver that checks the memory
/// it got against the source's at the pause, and refuses it.
fn memory_arrives_whole(mode: MmuMode) {
    let config = VmConfig { mmu: mode, ..VmConfig::builtin_guest(&["dirty-loop", "8", "20000", "3"]) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
    let control = vm.control();
    let vcpu = std::thread::spawn(move || vm.run().expect("the VM runs"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().unwrap().port();
    let kernel = kernel_identity(hv::boot::guest_image::PV_GUEST_ELF);
    let ram_bytes = config.mem_mib << 20;
    let receiver = std::thread::spawn(move || {
        let incoming = accept_vm(&listener, Expect { ram_bytes, kernel }).expect("the VM arrives");
        let mut ram = vec![0u8; ram_bytes as usize];
        incoming.ram.read(PseudoPhys::new(0), &mut ram).unwrap();
        incoming.answer.refuse("this test only compares memory");
        ram
    });
    // Let the guest start writing.
    std::thread::sleep(Duration::from_millis(700));
    let at_pause = Arc::new(Mutex::new(Vec::new()));
    let seen = at_pause.clone();
    let capture = move |b: &mut hv::vcpu::control::ExitBoundary| {
        let mut ram = vec![0u8; b.kvm.ram().size() as usize];
        b.kvm.ram().read(PseudoPhys::new(0), &mut ram).map_err(|e| e.to_string())?;
        *seen.lock().unwrap() = ram;
        Ok(vec![1, 2, 3])
    };
    let options = SendOptions { destination: format!("127.0.0.1:{port}"), max_rounds: 5, downtime_target: Duration::from_millis(5), kernel };
    let mut rounds = Vec::new();
    let result = send(&control, &options, capture, |r| {
        eprintln!("{mode:?}: {}", r.line());
        rounds.push(r.clone());
    });
    let received = receiver.join().expect("the receiver");
    match result {
        Err(MigrationError::Refused(why)) => assert!(why.contains("only compares memory"), "{why}"),
        other => panic!("the receiver refused the VM, yet send said {other:?}"),
    }
    assert!(rounds.len() >= 2 && rounds[0].pages_sent > 0, "{rounds:?}");
    let source = at_pause.lock().unwrap();
    let differing: Vec<usize> = (0..source.len() / 4096).filter(|p| source[p * 4096..][..4096] != received[p * 4096..][..4096]).collect();
    assert!(differing.is_empty(), "{mode:?}: {} pages differ at the pause, first frames {:x?}", differing.len(), &differing[..differing.len().min(8)]);
    // The source's guest ran on to the end, as if nothing had happened.
    let report = vcpu.join().expect("the vCPU thread");
    assert_eq!(report.stop, GuestStop::Shutdown { code: 0 }, "{}", console.text());
    assert!(console.text().contains("dirty-loop: done"), "{}", console.text());
}

#[test]
fn memory_arrives_whole_in_ept_mode_and_a_refused_guest_runs_on() {
    require_kvm!();
    memory_arrives_whole(MmuMode::Ept);
}

#[test]
fn memory_arrives_whole_in_shadow_mode_and_a_refused_guest_runs_on() {
    require_kvm!();
    memory_arrives_whole(MmuMode::Shadow);
}
