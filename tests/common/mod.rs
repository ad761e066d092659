//! Shared helpers for the end-to-end tests: run the real `hv` binary with a time limit,
//! and skip (loudly) where /dev/kvm is missing.

#![allow(dead_code)] // each test file uses a different subset

pub mod background;
pub mod namespace;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// No guest run in these tests should take more than a few seconds; this bound turns a
/// hang into a failure instead of a stuck CI job.
const RUN_TIME_LIMIT: Duration = Duration::from_secs(60);

/// What one hv process did.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Fails the test with both outputs if `cond` is false.
    pub fn expect(&self, cond: bool, what: &str) {
        assert!(cond, "{what}\n--- exit code: {}\n--- stdout:\n{}\n--- stderr:\n{}", self.code, self.stdout, self.stderr);
    }

    /// Asserts hv exited with `code` and did not panic.
    pub fn expect_code(&self, code: i32) {
        self.expect(self.code == code, &format!("expected exit code {code}"));
        self.expect(!self.stderr.contains("panicked at") || self.stderr.contains("guest panicked at"), "hv itself panicked");
    }
}

/// Whether this machine can run guests. Prints why not.
pub fn kvm_available() -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: this test needs /dev/kvm, which cannot be opened here ({e})");
            false
        }
    }
}

/// Returns early from a test (after printing why) if KVM is missing.
#[macro_export]
macro_rules! require_kvm {
    () => {
        if !common::kvm_available() {
            return;
        }
    };
}

/// Runs `hv ARGS...` and collects its output, killing it after [`RUN_TIME_LIMIT`].
pub fn hv(args: &[&str]) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hv"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the hv binary runs");
    // Drain both pipes on threads so a chatty guest cannot fill a pipe and block.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for hv") {
            break status;
        }
        if start.elapsed() > RUN_TIME_LIMIT {
            let _ = child.kill();
            panic!("hv {args:?} ran longer than {RUN_TIME_LIMIT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code().unwrap_or(-1),
        stdout: out_thread.join().expect("stdout reader"),
        stderr: err_thread.join().expect("stderr reader"),
    }
}

/// A fresh path in the system's temporary directory, unique to this process and call.
pub fn temp_path(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("hv-test-{}-{n}-{name}", std::process::id()))
}

/// Reads `selftest: N passed, M failed` from guest output.
pub fn selftest_counts(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout.lines().rev().find(|l| l.starts_with("selftest: ") && l.contains(" passed, "))?;
    let rest = line.strip_prefix("selftest: ")?;
    let (passed, rest) = rest.split_once(" passed, ")?;
    let failed = rest.strip_suffix(" failed")?;
    Some((passed.parse().ok()?, failed.parse().ok()?))
}

/// Filters for trace snapshots: addresses that move whenever the guest kernel changes
/// size are redacted; the order of events, the page-table pool and shadow addresses, and
/// the counts stay.
pub fn trace_snapshot_settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"entry=0x[0-9a-f]+", "entry=[entry]");
    s.add_filter(r"gpa=0x[0-9a-f]+", "gpa=[gpa]");
    s.add_filter(r"value=0x[0-9a-f]+", "value=[value]");
    s.add_filter(r"counters=0x[0-9a-f]+", "counters=[counters]");
    s.add_filter(r"kernel at 0x[0-9a-f]+\.\.0x[0-9a-f]+, \d+ KiB", "kernel at [range], [N] KiB");
    s
}

/// A minimal kernel ELF whose whole code is `code`, loaded at 2 MiB.
pub fn tiny_kernel(code: &[u8]) -> Vec<u8> {
    let virt: u64 = 0xffff_ffff_8020_0000;
    let mut f = vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4..7].copy_from_slice(&[2, 1, 1]);
    let u16s = |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let u64s = |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
    u16s(&mut f, 16, 2); // ET_EXEC
    u16s(&mut f, 18, 62); // EM_X86_64
    f[20] = 1;
    u64s(&mut f, 24, virt); // entry
    u64s(&mut f, 32, 64); // phoff
    u16s(&mut f, 52, 64);
    u16s(&mut f, 54, 56);
    u16s(&mut f, 56, 1);
    u16s(&mut f, 58, 64);
    f[64] = 1; // PT_LOAD
    f[68] = 5; // R+X
    u64s(&mut f, 72, 0x1000); // offset
    u64s(&mut f, 80, virt);
    u64s(&mut f, 88, 0x20_0000);
    u64s(&mut f, 96, code.len() as u64);
    u64s(&mut f, 104, code.len() as u64);
    f.extend_from_slice(code);
    f
}
