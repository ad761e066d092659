//! VM helpers of lab 3 (not a test file: `mod guest;` in each VM test file).
//!
//! Boots the graded tree's own guest kernel with hv's library (`hv::vmm::Vm`), a disk
//! image and a text trace, and compares what the concept fixes: the image's bytes on
//! the host, the guest's output, and the block device's lines of the trace.

#![allow(dead_code)] // each test file uses a part of the helpers

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hv::devices::block::DiskConfig;
use hv::devices::console::CapturedOutput;
use hv::outcome::GuestStop;
use hv::trace::TraceFormat;
use hv::vmm::{Vm, VmConfig};

/// A run that takes longer has hung (a backend that died leaves the guest waiting).
const GUEST_TIME_LIMIT: Duration = Duration::from_secs(20);

/// Whether this machine can run guests; if not, says so in the form the grader reads.
pub fn kvm_or_not_run() -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            println!("LAB-NOT-RUN: this test boots a guest and needs /dev/kvm, which cannot be opened here ({e})");
            false
        }
    }
}

/// FNV-1a 64, as the guest's `blk-read-sum` computes it.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn temp_path(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("hv-lab3-vm-{}-{n}-{name}", std::process::id()))
}

/// A disk image with a recognisable pattern, removed when dropped.
pub struct Image(pub PathBuf);

impl Image {
    pub fn new(sectors: u64) -> Self {
        let path = temp_path("disk.img");
        let data: Vec<u8> = (0..sectors * 512).map(|i| (i % 251) as u8 ^ (i / 512) as u8).collect();
        std::fs::write(&path, data).expect("the test can write a disk image");
        Image(path)
    }

    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).expect("the disk image is readable")
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one guest run did.
pub struct Run {
    pub stop: GuestStop,
    pub output: String,
    /// The trace's block-device lines, sequence numbers cut and addresses redacted.
    pub blk: Vec<String>,
}

/// Boots the guest with `image` as its disk (`read_only`: `,ro`) and runs `args`.
pub fn boot(image: &Image, read_only: bool, args: &[&str]) -> Run {
    let trace = temp_path("trace.txt");
    let config = VmConfig {
        disk: Some(DiskConfig { path: image.0.clone(), read_only }),
        trace: Some((trace.clone(), TraceFormat::Text)),
        timeout: Some(GUEST_TIME_LIMIT),
        ..VmConfig::builtin_guest(args)
    };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
    let report = vm.run().expect("the VM runs");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    let blk = text.lines().filter_map(|l| blk_line(l)).collect();
    Run { stop: report.stop, output: console.text(), blk }
}

/// `00033 blk        grant check gref=1 write: ok gpa=0x1234` → `grant check gref=1 write: ok gpa=[gpa]`.
fn blk_line(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("blk")?.trim_start();
    let redacted = match rest.find("gpa=0x") {
        Some(at) => format!("{}gpa=[gpa]{}", &rest[..at], rest[at + 6..].trim_start_matches(|c: char| c.is_ascii_hexdigit())),
        None => rest.to_string(),
    };
    Some(redacted)
}

impl Run {
    /// Fails, naming the concept, unless the guest shut down with `code`.
    pub fn expect_exit(&self, code: u8, concept: &str) {
        let why = match &self.stop {
            GuestStop::Shutdown { code: c } if *c == code => return,
            GuestStop::TimedOut { .. } => "the guest timed out: it waited for a block response that never came. Did the backend thread panic (a todo! in backend-drivers)? Its message is above".to_string(),
            GuestStop::Panicked { message } => format!("the guest kernel panicked (the frontend runs in the guest): {message}"),
            other => format!("the guest stopped with {other:?}"),
        };
        panic!("lab 3: {concept}: expected a shutdown with code {code}, but {why}\n--- guest output:\n{}\n--- block trace:\n{}", self.output, self.blk.join("\n"));
    }

    /// Checks the block trace against `expected` (when the guest shut down by itself:
    /// then the trace says most about what went wrong), then the exit code.
    pub fn expect_trace_then_exit(&self, expected: &[&str], code: u8, concept: &str) {
        if matches!(self.stop, GuestStop::Shutdown { .. }) {
            self.expect_blk_trace(expected, concept);
        }
        self.expect_exit(code, concept);
    }

    /// Fails with the first diverging line of the block trace (and context around it)
    /// unless the trace's block lines are exactly `expected`.
    pub fn expect_blk_trace(&self, expected: &[&str], concept: &str) {
        let at = (0..self.blk.len().max(expected.len())).find(|&i| self.blk.get(i).map(String::as_str) != expected.get(i).copied());
        let Some(at) = at else { return };
        let context = |lines: Vec<&str>| {
            let from = at.saturating_sub(3);
            let to = (at + 4).min(lines.len());
            (from..to).map(|i| format!("{} {:>3} {}", if i == at { ">" } else { " " }, i, lines[i])).collect::<Vec<_>>().join("\n")
        };
        panic!(
            "lab 3: {concept}\nthe block trace diverges at event {at}:\n--- expected (what the concept fixes):\n{}\n--- yours:\n{}\n--- your whole block trace:\n{}",
            context(expected.to_vec()),
            context(self.blk.iter().map(String::as_str).collect()),
            self.blk.join("\n"),
        );
    }
}
