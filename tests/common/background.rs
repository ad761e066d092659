//! An hv process running in the background while a test does something else (two hv
//! processes migrating a guest between them): its standard error is watched line by
//! line, so a test can wait for a message, and everything is collected at the end.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Outcome;

/// How long a background hv may run before the test gives up on it.
const LIMIT: Duration = Duration::from_secs(60);

/// A running hv.
pub struct Background {
    child: Child,
    lines: Receiver<String>,
    stderr_seen: Vec<String>,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<()>,
    started: Instant,
}

impl Background {
    /// Starts `hv ARGS...`.
    pub fn start(args: &[&str]) -> Background {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hv"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hv binary runs");
        let mut out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let (tx, lines) = channel();
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Background { child, lines, stderr_seen: Vec::new(), stdout, stderr, started: Instant::now() }
    }

    /// Waits for a line of standard error containing `text`, and returns it.
    pub fn wait_for(&mut self, text: &str) -> String {
        loop {
            let left = LIMIT.saturating_sub(self.started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("hv printed no '{text}' in {LIMIT:?}:\n{}", self.stderr_seen.join("\n")),
                Err(RecvTimeoutError::Disconnected) => panic!("hv ended without printing '{text}':\n{}", self.stderr_seen.join("\n")),
            }
        }
    }

    /// The port in a line like "... on 127.0.0.1:PORT".
    pub fn listening_port(&mut self) -> u16 {
        let line = self.wait_for("waiting for a migrating guest on ");
        line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).unwrap_or_else(|| panic!("no port in '{line}'"))
    }

    /// Kills the process (a destination that dies mid-migration).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the process to end and collects what it printed.
    pub fn finish(mut self) -> Outcome {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for hv") {
                break status;
            }
            if self.started.elapsed() > LIMIT {
                let _ = self.child.kill();
                panic!("a background hv ran longer than {LIMIT:?}: killed");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = self.stderr.join();
        self.stderr_seen.extend(self.lines.try_iter());
        Outcome {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.join().expect("stdout reader"),
            stderr: self.stderr_seen.join("\n") + "\n",
        }
    }
}
