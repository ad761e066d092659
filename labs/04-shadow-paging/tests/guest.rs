//! VM helpers of lab 4 (not a test file: `mod guest;` in each VM test file).
//!
//! Boots the graded tree's own guest kernel with hv's library (`hv::vmm::Vm`) in either
//! memory mode, with a text trace, and keeps what the concept fixes: the guest's output
//! and the shadow engine's REFUSED lines (level and reason; the entry's value is left
//! out, since it holds addresses of the guest's own allocations).

#![allow(dead_code)] // each test file uses a part of the helpers

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hv::devices::console::CapturedOutput;
use hv::outcome::GuestStop;
use hv::trace::TraceFormat;
use hv::vmm::{Vm, VmConfig};
use pv_abi::MmuMode;

/// A run that takes longer has hung.
const GUEST_TIME_LIMIT: Duration = Duration::from_secs(60);

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

fn temp_path(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("hv-lab4-vm-{}-{n}-{name}", std::process::id()))
}

/// What one guest run did.
pub struct Run {
    pub stop: GuestStop,
    pub output: String,
    /// The trace's `REFUSED entry=… level=L: reason` lines, as `level=L: reason`.
    pub refused: Vec<String>,
}

/// Boots the guest in `mmu` mode and runs `args`.
pub fn boot(mmu: MmuMode, args: &[&str]) -> Run {
    let trace = temp_path("trace.txt");
    let config = VmConfig { trace: Some((trace.clone(), TraceFormat::Text)), timeout: Some(GUEST_TIME_LIMIT), mmu, ..VmConfig::builtin_guest(args) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
    let report = vm.run().expect("the VM runs");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    let refused = text.lines().filter_map(refused_line).collect();
    Run { stop: report.stop, output: console.text(), refused }
}

/// `00412 shadow     REFUSED entry=0x80000000001007 level=1: reserved-bits` → `level=1: reserved-bits`.
fn refused_line(line: &str) -> Option<String> {
    let rest = line.split_once("REFUSED entry=")?.1;
    let (_, tail) = rest.split_once(' ')?;
    Some(tail.to_string())
}

impl Run {
    /// Fails, naming the concept, unless the guest shut down with `code`.
    pub fn expect_exit(&self, code: u8, concept: &str) {
        let why = match &self.stop {
            GuestStop::Shutdown { code: c } if *c == code => return,
            GuestStop::TimedOut { .. } => "the guest timed out. Did the VMM panic in shadow-mmu (a todo! of lab 4)? Its message is above".to_string(),
            GuestStop::Panicked { message } => format!("the guest kernel panicked: {message}"),
            GuestStop::Shutdown { code: c } => format!("the guest exited with code {c}: one of its checks failed (see its output below; a wrong shadow makes the guest read or write the wrong memory)"),
            other => format!("the guest stopped with {other:?} (a panic in shadow-mmu, such as a todo! of lab 4, stops the VM; its message is above)"),
        };
        panic!("lab 4: {concept}: expected a shutdown with code {code}, but {why}\n--- guest output:\n{}\n--- REFUSED lines:\n{}", self.output, self.refused.join("\n"));
    }
}

/// Fails with the first diverging line (and context around it) unless `got` is
/// exactly `expected`.
pub fn expect_lines(got: &[String], expected: &[&str], what: &str, concept: &str) {
    let at = (0..got.len().max(expected.len())).find(|&i| got.get(i).map(String::as_str) != expected.get(i).copied());
    let Some(at) = at else { return };
    let context = |lines: Vec<&str>| {
        let from = at.saturating_sub(3);
        let to = (at + 4).min(lines.len());
        (from..to).map(|i| format!("{} {:>3} {}", if i == at { ">" } else { " " }, i, lines[i])).collect::<Vec<_>>().join("\n")
    };
    panic!(
        "lab 4: {concept}\nthe {what} diverge at line {at}:\n--- expected:\n{}\n--- yours:\n{}",
        context(expected.to_vec()),
        context(got.iter().map(String::as_str).collect()),
    );
}
