//! `hv demo record-replay`: a run recorded, then replayed without any device, to the same
//! memory, byte for byte (ReVirt's idea).

use crate::record::log::LogReader;
use crate::vmm::session::replay_config;
use crate::vmm::{SessionSetup, VmConfig};

use super::guest::run_session;
use super::stage::Stage;
use super::DemoError;

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    let log = std::env::temp_dir().join(format!("hv-demo-{}.hvlog", std::process::id()));
    let result = run_with(stage, &log);
    let _ = std::fs::remove_file(&log);
    result
}

fn run_with(stage: &mut Stage, log: &std::path::Path) -> Result<(), DemoError> {
    stage.step("record: every input from outside the guest's own instructions");
    stage.say(
        "A guest's run is deterministic except for what comes from outside: the time it reads, what its devices answer, \
         when its interrupts arrive. hv records exactly those, and the exit at which each happened: the guest counts \
         with pauses read from its clock, so every clock read goes into the log.",
    );
    let config = VmConfig { seccomp: true, ..VmConfig::builtin_guest(&["count", "5", "2"]) };
    let (recorded, console) = run_session(&config, SessionSetup::Record { log: log.to_path_buf() })?;
    let recorded = recorded.session.ok_or_else(|| DemoError::Measure("the recording made no report".into()))?;
    let lines: Vec<&str> = console.lines().collect();
    stage.evidence(&lines);
    stage.figure("guest exits recorded", &recorded.exits.to_string());
    stage.figure("inputs in the log", &recorded.events.to_string());
    stage.figure("guest memory hash at the end", &format!("{:016x}", recorded.memory_hash));

    stage.step("replay: the same run again, fed from the log");
    stage.say(
        "Now the same guest boots again and runs on the CPU again, but no device backend runs and the clock is not \
         read: at each exit the log says what the guest saw then, and hv gives it the same. Every exit is checked against \
         the log; the first that differs would stop the replay and say where.",
    );
    let reader = LogReader::open(log).map_err(|e| DemoError::Measure(e.to_string()))?;
    let mut replay = replay_config(reader.header(), None)?;
    replay.seccomp = true;
    let (replayed, console) = run_session(&replay, SessionSetup::Replay { log: Box::new(reader), until: None, snapshot: None })?;
    let replayed = replayed.session.ok_or_else(|| DemoError::Measure("the replay made no report".into()))?;
    if let Some(problem) = &replayed.problem {
        return Err(DemoError::Measure(format!("the replay diverged: {problem}")));
    }
    let lines: Vec<&str> = console.lines().collect();
    stage.evidence(&lines);
    stage.figure("guest exits replayed", &replayed.exits.to_string());
    stage.figure("guest memory hash at the end", &format!("{:016x}", replayed.memory_hash));
    stage.figure("same memory, byte for byte", if replayed.memory_hash == recorded.memory_hash { "yes" } else { "NO" });
    stage.lesson(
        "Record and replay (ReVirt): log only the nondeterministic inputs and when they arrived, and a whole VM run can \
         be re-executed exactly, for debugging, forensics or fault tolerance.",
    );
    Ok(())
}
