//! Running a command with a time limit.
//!
//! A student's code may loop forever or deadlock. A grader that waits for it never writes
//! a result, and the autograder reports a useless "timed out" for the whole submission.
//! So each test runs as its own process group (cargo, the test binary, and any guest it
//! boots), and when the limit passes the whole group is killed: nothing is left running
//! and the test is reported as timed out.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How a command ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The exit code; None when killed by a signal (including our timeout).
    pub code: Option<i32>,
    /// True when the time limit passed and the process group was killed.
    pub timed_out: bool,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Runs `command` in a new process group, capturing its output, for at most `limit`.
pub fn run_with_limit(mut command: Command, limit: Duration) -> std::io::Result<Finished> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let start = Instant::now();
    let mut child = command.spawn()?;
    // Drain both pipes on their own threads, so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));

    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= limit {
            timed_out = true;
            kill_group(child.id());
            break child.wait()?;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // The group leader is gone; kill what it may have left behind so the pipes close.
    kill_group(child.id());
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(Finished { code: status.code(), timed_out, stdout, stderr, elapsed: start.elapsed() })
}

/// Sends SIGKILL to the process group led by `leader` (ignoring "no such group").
fn kill_group(leader: u32) {
    let Ok(pgid) = libc::pid_t::try_from(leader) else { return };
    // SAFETY: kill(2) with a negative pid only sends a signal to the process group we
    // created with `process_group(0)` (its id is the leader's pid); it touches no memory.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn a_quick_command_finishes_with_its_output() {
        let done = run_with_limit(sh("echo out; echo err >&2; exit 3"), Duration::from_secs(10)).unwrap();
        assert_eq!((done.code, done.timed_out), (Some(3), false));
        assert_eq!((done.stdout.as_str(), done.stderr.as_str()), ("out\n", "err\n"));
    }

    #[test]
    fn hostile_a_sleeping_command_and_its_children_are_killed() {
        // The background sleep would hold the pipes open for a minute if only `sh` died.
        let done = run_with_limit(sh("echo started; sleep 60 & sleep 60"), Duration::from_millis(500)).unwrap();
        assert!(done.timed_out);
        assert_eq!(done.code, None);
        assert_eq!(done.stdout, "started\n");
        assert!(done.elapsed < Duration::from_secs(10), "took {:?}", done.elapsed);
    }
}
