//! `hv demo migration`: a running guest moved to another VM by pre-copy live migration,
//! round by round, and how long it was really stopped.

use std::time::{Duration, Instant};

use super::stage::{duration, Stage};
use super::DemoError;
use crate::devices::console::CapturedOutput;
use crate::migration::{self, send::SendOptions, stream::kernel_identity, IncomingOptions};
use crate::vmm::{Vm, VmConfig};

/// Lines the guest counts in all.
const LINES: u64 = 12;

fn count_lines(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with("count: ")).map(str::to_string).collect()
}

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    let measure = |e: &dyn std::fmt::Display| DemoError::Measure(e.to_string());
    stage.step("two VMs: one running, one waiting");
    stage.say(&format!(
        "A guest counts to {LINES}, a line every 50 ms. A second VM, empty, waits for a migration on a TCP port (here on \
         this machine's loopback, as between two hosts)."
    ));
    let config = VmConfig { seccomp: true, timeout: Some(Duration::from_secs(120)), ..VmConfig::builtin_guest(&["count", &LINES.to_string(), "50"]) };
    let kernel = kernel_identity(crate::boot::guest_image::PV_GUEST_ELF);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| measure(&e))?;
    let port = listener.local_addr().map_err(|e| measure(&e))?.port();
    let incoming = IncomingOptions {
        mem_mib: config.mem_mib,
        mmu: config.mmu,
        kernel,
        trace: None,
        trace_max_events: crate::vmm::config::DEFAULT_TRACE_MAX_EVENTS,
        timeout: Some(Duration::from_secs(120)),
        seccomp: true,
    };
    let there = CapturedOutput::default();
    let there_sink = there.clone();
    let destination = std::thread::Builder::new()
        .name("hv-demo-dest".into())
        .spawn(move || -> Result<crate::outcome::GuestStop, String> {
            let received = migration::receive(&listener, &incoming, Box::new(there_sink), Instant::now(), None).map_err(|e| e.to_string())?;
            received.vm.run().map(|r| r.stop).map_err(|e| e.to_string())
        })
        .map_err(|e| measure(&e))?;
    let here = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(here.clone()), Instant::now())?;
    let control = vm.control();
    let source = std::thread::Builder::new().name("hv-demo-vcpu".into()).spawn(move || vm.run()).map_err(|e| measure(&e))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_lines(&here.text()).len() < 4 {
        if Instant::now() > deadline {
            return Err(DemoError::Measure(format!("the guest did not count: {:?}", here.text())));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stage.evidence(&count_lines(&here.text()));

    stage.step("pre-copy: memory first, while the guest runs");
    stage.say(
        "Round 0 sends every page the guest has touched, while it keeps running; KVM's dirty log records what it writes \
         meanwhile, and each later round sends only that. When what is left would take less than the downtime target \
         (5 ms) to send, the guest is paused, the last pages and its registers and device rings go, and the other VM \
         starts it.",
    );
    let options = SendOptions { destination: format!("127.0.0.1:{port}"), max_rounds: 8, downtime_target: Duration::from_millis(5), kernel };
    let report = migration::send(&control, &options, migration::state_capture(&config), |_| {}).map_err(|e| measure(&e))?;
    let _ = source.join();
    for r in &report.rounds {
        let what = if r.paused { "paused " } else { "running" };
        stage.figure(&format!("round {} (guest {what})", r.round), &format!("{} pages sent, {} dirtied meanwhile, {}", r.pages_sent, r.pages_dirtied, duration(r.ms * 1e6)));
    }
    stage.figure("downtime (the guest stopped)", &duration(report.downtime_ms * 1e6));

    stage.step("the guest goes on over there");
    stage.say("It counts on in the other VM, from where it was: what it printed here while memory was being copied, then there.");
    let stop = destination.join().map_err(|_| DemoError::Measure("the destination's thread panicked".into()))?.map_err(DemoError::Measure)?;
    let before = count_lines(&here.text());
    let after = count_lines(&there.text());
    // The lines the guest printed here while round 0 ran, then those it printed there.
    let shown: Vec<String> = before.iter().skip(4).map(|l| format!("here  | {l}")).chain(after.iter().map(|l| format!("there | {l}"))).collect();
    stage.evidence(&shown);
    stage.figure("lines here + there", &format!("{} + {} = {} (none lost, none repeated)", before.len(), after.len(), before.len() + after.len()));
    stage.figure("exit code over there", &stop.exit_code().to_string());
    stage.lesson(
        "Pre-copy live migration: copy memory while the guest runs, again and again for what it dirtied, and stop it \
         only for the last few pages: the downtime is milliseconds, whatever the size of its RAM.",
    );
    Ok(())
}
