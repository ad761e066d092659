//! Lab 8, VM: a real guest inflates its balloon when hv lowers the target, and hv's
//! resident memory (this process's: the graded tree's hv library runs the guest here)
//! falls by about the ballooned amount. Both halves are yours: the guest's inflate and
//! the host's release.

use std::time::{Duration, Instant};

use hv::devices::balloon::mib_to_pages;
use hv::devices::console::CapturedOutput;
use hv::outcome::GuestStop;
use hv::vcpu::control::AfterJob;
use hv::vmm::{Vm, VmConfig};

/// Whether this machine can run guests; if not, says so in the form the grader reads.
fn kvm_or_not_run() -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            println!("LAB-NOT-RUN: this test boots a guest and needs /dev/kvm, which cannot be opened here ({e})");
            false
        }
    }
}

/// This process's resident memory (VmRSS), KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("a VmRSS line")
}

/// A field `name N KiB` of a `balloon:` status line.
fn kib_field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!("{name} "))?;
    line[at + name.len() + 1..].split_whitespace().next()?.parse().ok()
}

/// Waits for a console line containing `text`; fails with the output so far.
fn wait_for_line(console: &CapturedOutput, text: &str, what: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some(line) = console.text().lines().find(|l| l.contains(text)) {
            return line.to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(150), "lab 8: {what}: no line with {text:?} after 150 s; the guest printed:\n{}", console.text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn vm_an_inflate_of_32_mib_lowers_the_resident_memory() {
    if !kvm_or_not_run() {
        return;
    }
    // 64 MiB of RAM: 48 MiB made resident, then hv asks the guest to keep 32 MiB. The
    // guest then waits for the target to go back to 64 MiB, so it is still running (its
    // memory still mapped) when the test reads the resident memory, and takes 48 MiB
    // again at the end, which fits only if the balloon gave the memory back.
    let words = ["touch-mem", "48", ";", "balloon-wait", "32", "120", ";", "balloon-wait", "64", "120", ";", "touch-mem", "48"];
    let config = VmConfig { mem_mib: 64, timeout: Some(Duration::from_secs(180)), ..VmConfig::builtin_guest(&words) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("lab 8: the VM is created");
    let control = vm.control();
    let guest = std::thread::spawn(move || vm.run().map(|r| r.stop));
    wait_for_line(&console, "touch-mem: 48 MiB touched", "the guest makes 48 MiB resident");
    let before = resident_kib();
    let started = Instant::now();
    let set = control
        .call(|b| (b.devices.set_balloon_target(b.kvm, mib_to_pages(32)), AfterJob::Run))
        .expect("lab 8: the guest is running when the test sets the balloon's target");
    assert_eq!(set, Ok(true), "lab 8: hv serves a balloon");
    let line = wait_for_line(&console, "balloon: target 32768 KiB", "the guest inflates to the target");
    let took = started.elapsed();
    let after = resident_kib();
    let _ = control.call(|b| (b.devices.set_balloon_target(b.kvm, mib_to_pages(64)), AfterJob::Run));
    let stop = guest.join().expect("lab 8: the guest's thread");
    let fell = before.saturating_sub(after);
    println!("lab 8: a 32 MiB inflate took {:.0} ms; VmRSS {before} KiB -> {after} KiB ({:.1} MiB released)", took.as_secs_f64() * 1e3, fell as f64 / 1024.0);
    let context = format!("--- the guest printed:\n{}", console.text());
    assert_eq!(kib_field(&line, "current"), Some(32 << 10), "lab 8: a target of 32 MiB of 64: the balloon must hold 32 MiB (mem_pages - target, in batches of frames from the allocator)\n{context}");
    assert_eq!(kib_field(&line, "host"), Some(32 << 10), "lab 8: hv must hold what the guest gave: 32 MiB\n{context}");
    assert!(matches!(stop, Ok(GuestStop::Shutdown { code: 0 })), "lab 8: the guest must settle, take its memory back when the target returns to 64 MiB, touch 48 MiB again and shut down cleanly, but it stopped with {stop:?}\n{context}");
    assert!(
        fell >= 24 << 10,
        "lab 8: a 32 MiB inflate of resident memory lowered hv's VmRSS by only {fell} KiB ({before} -> {after} KiB): the backend must release each frame it accepts (HostMemory::release)\n{context}"
    );
}

#[test]
fn vm_a_target_below_the_floor_stops_at_the_floor() {
    if !kvm_or_not_run() {
        return;
    }
    let config = VmConfig { mem_mib: 64, balloon_target_mib: Some(0), timeout: Some(Duration::from_secs(180)), ..VmConfig::builtin_guest(&["balloon-wait", "0", "120"]) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("lab 8: the VM is created");
    let stop = vm.run().map(|r| r.stop);
    let text = console.text();
    let line = text.lines().find(|l| l.starts_with("balloon: target")).unwrap_or_default();
    let (floor, current) = (kib_field(line, "floor").unwrap_or(0), kib_field(line, "current").unwrap_or(0));
    assert!(matches!(stop, Ok(GuestStop::Shutdown { code: 0 })), "lab 8: a target of 0 must settle at the floor and the guest shut down cleanly, but it stopped with {stop:?}\n--- the guest printed:\n{text}");
    assert!(floor > 0 && current + floor == 64 << 10, "lab 8: a target of 0 MiB is below the floor ({floor} KiB): the balloon must stop there, holding RAM minus the floor (expected {} KiB, holds {current} KiB)\n--- the guest printed:\n{text}", (64 << 10) - floor);
}
