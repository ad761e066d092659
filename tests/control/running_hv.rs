//! A real `hv run --control PATH` in the background, for the control-socket tests: its
//! console lines as they arrive, requests on fresh connections, and its end.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

/// How long hv may take to start listening, and a guest to finish after the test is done
/// with it: generous, so that a loaded machine fails nothing; a hang still fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// One hv process serving a control socket.
pub struct RunningHv {
    child: Option<Child>,
    /// The control socket.
    pub socket: PathBuf,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// How the hv process ended.
pub struct Ended {
    pub code: i32,
    pub stdout: Vec<String>,
    pub stderr: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunningHv {
    /// Starts `hv run --control SOCKET OPTIONS -- GUEST` and waits until it listens.
    pub fn start(options: &[&str], guest: &[&str]) -> RunningHv {
        let socket = common::temp_path("ctl.sock");
        Self::start_at(socket, options, guest).unwrap_or_else(|ended| {
            panic!("hv did not start listening: exit {}\n--- stderr:\n{}", ended.code, ended.stderr)
        })
    }

    /// Like [`RunningHv::start`] at a given path; `Err` with how hv ended if it never listened.
    pub fn start_at(socket: PathBuf, options: &[&str], guest: &[&str]) -> Result<RunningHv, Ended> {
        let mut args: Vec<String> = vec!["run".into(), "--control".into(), socket.display().to_string()];
        args.extend(options.iter().map(|s| s.to_string()));
        args.push("--".into());
        args.extend(guest.iter().map(|s| s.to_string()));
        Self::spawn(socket, &args)
    }

    /// Starts `hv restore --control SOCKET FILE` and waits until it listens.
    pub fn restore(file: &std::path::Path) -> RunningHv {
        let socket = common::temp_path("restored.sock");
        let args = ["restore".to_string(), "--control".into(), socket.display().to_string(), file.display().to_string()];
        Self::spawn(socket, &args).unwrap_or_else(|ended| panic!("hv restore did not start listening: exit {}\n{}", ended.code, ended.stderr))
    }

    /// Starts `hv ARGS` (which serve a control socket at `socket`) and waits until it listens.
    fn spawn(socket: PathBuf, args: &[String]) -> Result<RunningHv, Ended> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hv"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hv binary runs");
        let (stdout, stderr) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(String::new())));
        let out = BufReader::new(child.stdout.take().expect("piped"));
        let err = BufReader::new(child.stderr.take().expect("piped"));
        let readers = vec![
            {
                let stdout = stdout.clone();
                std::thread::spawn(move || out.lines().map_while(Result::ok).for_each(|l| lock(&stdout).push(l)))
            },
            {
                let stderr = stderr.clone();
                std::thread::spawn(move || {
                    for line in err.lines().map_while(Result::ok) {
                        let mut s = lock(&stderr);
                        s.push_str(&line);
                        s.push('\n');
                    }
                })
            },
        ];
        let mut hv = RunningHv { child: Some(child), socket, stdout, stderr, readers };
        let start = Instant::now();
        while !lock(&hv.stderr).contains("hv: control socket listening at") {
            if hv.child.as_mut().expect("running").try_wait().expect("wait for hv").is_some() || start.elapsed() > PATIENCE {
                return Err(hv.finish());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(hv)
    }

    /// The hv process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The guest's console lines so far.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.stdout).clone()
    }

    /// Waits until the guest has printed at least `n` lines.
    pub fn wait_for_lines(&self, n: usize) {
        let start = Instant::now();
        while lock(&self.stdout).len() < n {
            assert!(start.elapsed() < PATIENCE, "the guest printed only {:?}", self.lines());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A new connection to the socket.
    pub fn connect(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.socket).expect("connect to the control socket");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream
    }

    /// Sends one request line on a new connection and returns the reply.
    pub fn request(&self, line: &str) -> Value {
        let mut stream = self.connect();
        stream.write_all(format!("{line}\n").as_bytes()).expect("send");
        read_reply(&mut stream)
    }

    /// Waits for hv to end and returns what it did.
    pub fn finish(mut self) -> Ended {
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for hv") {
                break status;
            }
            if start.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hv ran longer than {PATIENCE:?}: killed; stdout: {:?}", self.lines());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let stderr = lock(&self.stderr).clone();
        Ended { code: status.code().unwrap_or(-1), stdout: self.lines(), stderr }
    }
}

impl Drop for RunningHv {
    fn drop(&mut self) {
        // A test that failed half-way must not leave a guest running.
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads one reply line and parses it (a reply must always be a JSON object with `v: 1`).
pub fn read_reply(stream: &mut UnixStream) -> Value {
    let mut line = Vec::new();
    let mut byte = [0u8];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => panic!("the server closed the connection without a reply (read so far: {:?})", String::from_utf8_lossy(&line)),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("no reply: {e} (read so far: {:?})", String::from_utf8_lossy(&line)),
        }
    }
    let reply: Value = serde_json::from_slice(&line).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", String::from_utf8_lossy(&line)));
    assert_eq!(reply["v"], 1, "every reply carries the version: {reply}");
    reply
}

/// Whether the server has closed `stream` (reads end of file).
pub fn closed_by_server(stream: &mut UnixStream) -> bool {
    let mut rest = Vec::new();
    matches!(stream.read_to_end(&mut rest), Ok(0))
}

/// The numbers a `count N` guest printed.
pub fn counts(lines: &[String]) -> Vec<u64> {
    lines.iter().filter_map(|l| l.strip_prefix("count: ")).map(|v| v.parse().expect("a number")).collect()
}

/// Checks that a `count N` guest printed `count: 1` .. `count: N`, each once, in order.
pub fn assert_counted(lines: &[String], n: u64) {
    assert_eq!(counts(lines), (1..=n).collect::<Vec<_>>(), "the count went 1..={n} without a gap or a repeat");
}
