//! `hv demo snapshot`: a running guest saved to a file at an exit boundary, then continued
//! from the file exactly where it was, in the other memory mode.

use std::time::{Duration, Instant};

use pv_abi::MmuMode;

use super::stage::{duration, Stage};
use super::DemoError;
use crate::devices::console::CapturedOutput;
use crate::vmm::snapshot::{self, AfterSnapshot, SnapshotInputs};
use crate::vmm::{Vm, VmConfig};

/// Lines the guest prints before it is saved.
const LINES_BEFORE: usize = 3;
/// Lines the guest counts in all.
const LINES: u64 = 8;

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    let file = std::env::temp_dir().join(format!("hv-demo-{}.snap", std::process::id()));
    let result = run_with(stage, &file);
    let _ = std::fs::remove_file(&file);
    result
}

fn count_lines(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with("count: ")).map(str::to_string).collect()
}

fn run_with(stage: &mut Stage, file: &std::path::Path) -> Result<(), DemoError> {
    stage.step("a guest at work, saved to a file");
    stage.say(&format!(
        "The guest counts to {LINES}, one line every 50 ms. After its {LINES_BEFORE}rd line hv saves it: at the guest's next \
         exit it drains the device rings, copies the vCPU's registers and every non-zero page of RAM into a file, and \
         stops the guest."
    ));
    let config = VmConfig { seccomp: true, ..VmConfig::builtin_guest(&["count", &LINES.to_string(), "50"]) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now())?;
    let control = vm.control();
    let runner = std::thread::Builder::new().name("hv-demo-vcpu".into()).spawn(move || vm.run()).map_err(|e| DemoError::Measure(format!("cannot start the guest's thread: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_lines(&console.text()).len() < LINES_BEFORE {
        if Instant::now() > deadline || runner.is_finished() {
            return Err(DemoError::Measure(format!("the guest did not count: {:?}", console.text())));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let report = snapshot::take(&control, SnapshotInputs::from_config(&config), file.to_path_buf(), AfterSnapshot::Stop)
        .map_err(|e| DemoError::Measure(format!("snapshot: {e}")))?;
    let _ = runner.join();
    let before = count_lines(&console.text());
    stage.evidence(&before);
    let s = &report.summary;
    stage.figure("the guest was paused for", &duration(report.paused_for.as_nanos() as f64));
    stage.figure("pages saved (the non-zero ones)", &format!("{} of {}", s.pages_stored, s.ram_pages));

    stage.step("restored, in the other memory mode");
    stage.say(
        "A new VM is built from the file: its RAM is the file, mapped copy-on-write (so restoring costs almost nothing \
         and the file is never changed), its registers and ring indices are the saved ones. It was saved in ept mode; \
         it continues in shadow mode: the guest's memory is the same, only hv's translation of it changes.",
    );
    let started = Instant::now();
    let (state, ram) = crate::state::snapshot_file::read(file).and_then(|f| f.map_ram()).map_err(|e| DemoError::Measure(e.to_string()))?;
    let mut restored_config = VmConfig::for_state(&state, Some(MmuMode::Shadow))?;
    restored_config.seccomp = true;
    let console = CapturedOutput::default();
    let vm = Vm::restore(&restored_config, &state, ram, Box::new(console.clone()), Instant::now())?;
    let restore_took = started.elapsed();
    let run = std::thread::Builder::new().name("hv-demo-vcpu".into()).spawn(move || vm.run()).map_err(|e| DemoError::Measure(format!("cannot start the guest's thread: {e}")))?;
    let ended = run.join().unwrap_or(Err(crate::vmm::VmError::GuestThreadPanicked))?;
    let after = count_lines(&console.text());
    stage.evidence(&after);
    stage.figure("from the file to the guest's first instruction", &duration(restore_took.as_nanos() as f64));
    stage.figure("lines before + after", &format!("{} + {} = {} (none lost, none repeated)", before.len(), after.len(), before.len() + after.len()));
    stage.figure("exit code", &ended.stop.exit_code().to_string());
    stage.lesson(
        "A VM's whole state is its registers, its memory and its devices' state: saved at an exit boundary, it can be \
         continued later, elsewhere, or in another memory mode, and the guest cannot tell.",
    );
    Ok(())
}
