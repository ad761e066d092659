//! VM helpers of lab 2 (not a test file: `mod guest;` in the VM test files).
//!
//! Boots the graded tree's own guest kernel with hv's library (`hv::vmm::Vm`), with a
//! text trace, and keeps each device's trace lines: the doorbells (guest → backend),
//! the requests taken, and each publish of responses with whether it raised an upcall.
//! The guest's frontends and hv's backends both run the ring you wrote.

#![allow(dead_code)] // each test file uses a part of the helpers

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use backend_drivers::runner::NotifyPolicy;
use hv::devices::block::DiskConfig;
use hv::devices::console::CapturedOutput;
use hv::outcome::GuestStop;
use hv::trace::TraceFormat;
use hv::vmm::{Vm, VmConfig};

/// A run that takes longer has hung: one side sleeps while the other waits for it.
const GUEST_TIME_LIMIT: Duration = Duration::from_secs(30);

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
    std::env::temp_dir().join(format!("hv-lab2-vm-{}-{n}-{name}", std::process::id()))
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
    /// The trace's lines of every device, `(device, event)`, sequence numbers cut.
    pub events: Vec<(String, String)>,
}

/// Boots the guest with `args`, a disk if `image`, and the backends' `policy`.
pub fn boot(image: Option<&Image>, policy: NotifyPolicy, args: &[&str]) -> Run {
    let trace = temp_path("trace.txt");
    let config = VmConfig {
        disk: image.map(|i| DiskConfig { path: i.0.clone(), read_only: false }),
        trace: Some((trace.clone(), TraceFormat::Text)),
        timeout: Some(GUEST_TIME_LIMIT),
        notify_policy: policy,
        ..VmConfig::builtin_guest(args)
    };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
    let report = vm.run().expect("the VM runs");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    let events = text.lines().filter_map(device_line).collect();
    Run { stop: report.stop, output: console.text(), events }
}

/// `00002 console    doorbell woke the backend (count=1)` → `("console", "doorbell woke …")`.
fn device_line(line: &str) -> Option<(String, String)> {
    let (_, rest) = line.split_once(' ')?;
    let rest = rest.trim_start();
    let (device, event) = rest.split_once(' ')?;
    if !["console", "blk"].contains(&device) {
        return None;
    }
    Some((device.to_string(), event.trim_start().to_string()))
}

impl Run {
    /// One device's events.
    pub fn of(&self, device: &str) -> Vec<&str> {
        self.events.iter().filter(|(d, _)| d == device).map(|(_, e)| e.as_str()).collect()
    }

    /// Doorbell writes the backend saw, in all: the sum of the `count=` of its wake-ups.
    pub fn doorbell_writes(&self, device: &str) -> u64 {
        self.of(device)
            .iter()
            .filter_map(|e| e.strip_prefix("doorbell woke the backend (count=")?.strip_suffix(')')?.parse::<u64>().ok())
            .sum()
    }

    /// Requests the backend took.
    pub fn requests(&self, device: &str) -> usize {
        self.of(device).iter().filter(|e| e.starts_with("pop request")).count()
    }

    /// Fails, naming the rule, unless the guest shut down with `code`.
    pub fn expect_exit(&self, code: u8, rule: &str) {
        let why = match &self.stop {
            GuestStop::Shutdown { code: c } if *c == code => return,
            GuestStop::TimedOut { .. } => "the guest timed out: one side of a ring slept while the other waited for it (a lost wake-up), or a backend thread panicked (its message is above)".to_string(),
            GuestStop::Panicked { message } => format!("the guest kernel panicked (its drivers run the same ring): {message}"),
            other => format!("the guest stopped with {other:?}"),
        };
        let trace: Vec<String> = self.events.iter().map(|(d, e)| format!("{d:<8} {e}")).collect();
        panic!("lab 2: {rule}: expected a shutdown with code {code}, but {why}\n--- guest output:\n{}\n--- device trace:\n{}", self.output, trace.join("\n"));
    }

    /// Fails with the first diverging event (and context around it) unless `device`'s
    /// events, each reduced by `kind`, are exactly `expected`.
    pub fn expect_kinds(&self, device: &str, kind: impl Fn(&str) -> String, expected: &[String], rule: &str) {
        let yours: Vec<String> = self.of(device).iter().map(|e| kind(e)).collect();
        let at = (0..yours.len().max(expected.len())).find(|&i| yours.get(i) != expected.get(i));
        let Some(at) = at else { return };
        let context = |lines: &[String]| {
            let from = at.saturating_sub(3);
            let to = (at + 4).min(lines.len());
            (from..to).map(|i| format!("{} {:>3} {}", if i == at { ">" } else { " " }, i, lines[i])).collect::<Vec<_>>().join("\n")
        };
        panic!(
            "lab 2: {rule}\nthe {device} trace diverges at event {at}:\n--- expected (what the rule fixes):\n{}\n--- yours:\n{}\n--- your whole {device} trace:\n{}",
            context(expected),
            context(&yours),
            self.of(device).join("\n"),
        );
    }
}
