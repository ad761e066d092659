//! `hv demo balloon`: a guest gives memory back to the host while it runs, and hv's
//! resident memory falls by as much; then it takes the memory back.

use std::time::{Duration, Instant};

use super::stage::Stage;
use super::DemoError;
use crate::devices::balloon::mib_to_pages;
use crate::devices::console::CapturedOutput;
use crate::vcpu::control::AfterJob;
use crate::vmm::{Vm, VmConfig};

/// This process's resident memory, in MiB (the guest runs in it).
fn resident_mib() -> f64 {
    crate::top::sample::resident_kib(std::process::id()).unwrap_or(0) as f64 / 1024.0
}

/// Waits for a console line containing `text` (after `skip` such lines).
fn wait_for(console: &CapturedOutput, text: &str, skip: usize) -> Result<String, DemoError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(line) = console.text().lines().filter(|l| l.contains(text)).nth(skip) {
            return Ok(line.to_string());
        }
        if Instant::now() > deadline {
            return Err(DemoError::Measure(format!("the guest never printed {text:?}: {:?}", console.text())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    stage.step("a guest whose free memory the host really holds");
    stage.say(
        "A 64 MiB guest writes 40 MiB of its free frames and gives them back to its own allocator: the guest sees \
         free memory, but the host has had to back every one of those pages, so hv's resident memory includes them.",
    );
    let words = ["touch-mem", "40", ";", "balloon-wait", "24", "120", ";", "balloon-wait", "64", "120"];
    let config = VmConfig { seccomp: true, ..VmConfig::builtin_guest(&words) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now())?;
    let control = vm.control();
    let runner = std::thread::Builder::new().name("hv-demo-vcpu".into()).spawn(move || vm.run()).map_err(|e| DemoError::Measure(format!("cannot start the guest's thread: {e}")))?;
    let touched = wait_for(&console, "touch-mem:", 0)?;
    stage.evidence(&[touched.as_str()]);
    let before = resident_mib();
    stage.figure("hv's resident memory", &format!("{before:.1} MiB"));

    stage.step("inflate: the guest gives 40 MiB back");
    stage.say(
        "hv sets the balloon's target to 24 MiB and raises the balloon's upcall. The guest's balloon driver takes free \
         frames from its allocator and hands their numbers to hv in batches; hv checks each frame (the guest's own, \
         not twice, not its page tables or its kernel) and releases the host memory behind it with \
         madvise(MADV_DONTNEED). The guest has less memory; the host has it back.",
    );
    let set = |mib: u64| control.call(move |b| (b.devices.set_balloon_target(b.kvm, mib_to_pages(mib)), AfterJob::Run));
    let started = Instant::now();
    set(24).map_err(|e| DemoError::Measure(e.to_string()))?.map_err(DemoError::Measure)?;
    let inflated = wait_for(&console, "balloon: target", 0)?;
    let took = started.elapsed();
    stage.evidence(&[inflated.as_str()]);
    let after = resident_mib();
    stage.figure("hv's resident memory", &format!("{after:.1} MiB ({:+.1} MiB)", after - before));
    stage.figure("released per second", &format!("{:.0} MiB/s", (before - after).max(0.0) / took.as_secs_f64().max(1e-3)));

    stage.step("deflate: the guest takes it back");
    stage.say(
        "Now the target goes back to all 64 MiB: the guest asks for its frames again, hv hands them back (they read as \
         zeros: the host's memory behind them was given away), and the guest's allocator has them again.",
    );
    set(64).map_err(|e| DemoError::Measure(e.to_string()))?.map_err(DemoError::Measure)?;
    let deflated = wait_for(&console, "balloon: target", 1)?;
    stage.evidence(&[deflated.as_str()]);
    let ended = runner.join().unwrap_or(Err(crate::vmm::VmError::GuestThreadPanicked))?;
    stage.figure("exit code", &ended.stop.exit_code().to_string());
    stage.lesson(
        "Ballooning: a cooperative driver in the guest gives memory back to the hypervisor, which can then give it to \
         another VM; the guest decides which frames to give, the hypervisor only checks and releases them.",
    );
    Ok(())
}
