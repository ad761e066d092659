//! VM helpers of lab 1 (not a test file: `mod guest;` in each VM test file).
//!
//! Boots the graded tree's own guest kernel with hv's library (`hv::vmm::Vm`) and a text
//! trace, and compares the trace's hypercall lines (name, arguments, result) with what
//! the ABI of `pv_abi::hypercall` fixes.

#![allow(dead_code)] // each test file uses a part of the helpers

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hv::devices::console::CapturedOutput;
use hv::outcome::GuestStop;
use hv::trace::TraceFormat;
use hv::vmm::{Vm, VmConfig};

/// A run that takes longer has hung.
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

fn temp_path(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("hv-lab1-vm-{}-{n}-{name}", std::process::id()))
}

/// What one guest run did.
pub struct Run {
    pub stop: GuestStop,
    pub output: String,
    /// The trace's hypercall lines, sequence numbers cut: `console_write(gpa=0x…, len=16) = -EFAULT`.
    pub hypercalls: Vec<String>,
}

/// Boots the guest (64 MiB, ept mode, as `hv run` does by default) and runs `args`.
pub fn boot(args: &[&str]) -> Run {
    let trace = temp_path("trace.txt");
    let config = VmConfig { trace: Some((trace.clone(), TraceFormat::Text)), timeout: Some(GUEST_TIME_LIMIT), ..VmConfig::builtin_guest(args) };
    let console = CapturedOutput::default();
    let vm = Vm::new(&config, Box::new(console.clone()), Instant::now()).expect("the VM is created");
    let report = vm.run().expect("the VM runs");
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    let hypercalls = text.lines().filter_map(hypercall_line).collect();
    Run { stop: report.stop, output: console.text(), hypercalls }
}

/// `00003 hypercall  nop() = 0` → `nop() = 0`.
fn hypercall_line(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(' ')?;
    Some(rest.trim_start().strip_prefix("hypercall")?.trim_start().to_string())
}

/// Whether `line` is `expected`, where each `[addr]` in `expected` stands for one hex
/// number `0x…` (an address the kernel's layout chooses, not the ABI).
pub fn line_matches(expected: &str, line: &str) -> bool {
    let mut rest = line;
    let mut pieces = expected.split("[addr]");
    let first = pieces.next().unwrap_or("");
    let Some(after) = rest.strip_prefix(first) else { return false };
    rest = after;
    for piece in pieces {
        let Some(hex) = rest.strip_prefix("0x") else { return false };
        let digits = hex.len() - hex.trim_start_matches(|c: char| c.is_ascii_hexdigit()).len();
        if digits == 0 {
            return false;
        }
        let Some(after) = hex[digits..].strip_prefix(piece) else { return false };
        rest = after;
    }
    rest.is_empty()
}

impl Run {
    /// Fails, naming the concept, unless the guest shut down with `code`.
    pub fn expect_exit(&self, code: u8, concept: &str) {
        let why = match &self.stop {
            GuestStop::Shutdown { code: c } if *c == code => return,
            GuestStop::TimedOut { .. } => "the guest timed out. A guest whose hypercall stub does not work cannot even shut down: its panic report is a hypercall too".to_string(),
            GuestStop::TripleFault { .. } if self.hypercalls.is_empty() => "the guest triple-faulted before any hypercall reached hv. A `todo!` in the guest's hypercall stub (`hv::hypercall::raw` in pv-guest) panics, the panic is reported with a hypercall, which panics again, until the stack runs out and the CPU gives up".to_string(),
            GuestStop::TripleFault { .. } => "the guest triple-faulted (an exception it could not even report)".to_string(),
            GuestStop::Panicked { message } => format!("the guest kernel panicked: {message}"),
            other => format!("the guest stopped with {other:?}"),
        };
        panic!(
            "lab 1: {concept}: expected a shutdown with code {code}, but {why}\n--- guest output:\n{}\n--- hypercall trace:\n{}",
            self.output,
            self.hypercalls.join("\n")
        );
    }

    /// Fails with the first diverging line of the hypercall trace (and context around
    /// it) unless the trace's hypercall lines match `expected` one for one.
    pub fn expect_hypercall_trace(&self, expected: &[&str], concept: &str) {
        let same = |i: usize| match (expected.get(i), self.hypercalls.get(i)) {
            (Some(e), Some(l)) => line_matches(e, l),
            (None, None) => true,
            _ => false,
        };
        let Some(at) = (0..self.hypercalls.len().max(expected.len())).find(|&i| !same(i)) else { return };
        let context = |lines: Vec<&str>| {
            let from = at.saturating_sub(3);
            let to = (at + 4).min(lines.len());
            let shown: Vec<String> = (from..to).map(|i| format!("{} {:>3} {}", if i == at { ">" } else { " " }, i, lines[i])).collect();
            if shown.is_empty() { "  (no more hypercalls)".to_string() } else { shown.join("\n") }
        };
        panic!(
            "lab 1: {concept}\nthe hypercall trace diverges at call {at} ([addr] stands for any address):\n--- expected (what the ABI fixes):\n{}\n--- yours:\n{}\n--- your whole hypercall trace:\n{}\n--- guest output:\n{}",
            context(expected.to_vec()),
            context(self.hypercalls.iter().map(String::as_str).collect()),
            self.hypercalls.join("\n"),
            self.output,
        );
    }

    /// The trace first when the guest shut down by itself (it shows the first wrong
    /// call), then the exit code.
    pub fn expect_trace_then_exit(&self, expected: &[&str], code: u8, concept: &str) {
        if matches!(self.stop, GuestStop::Shutdown { .. }) {
            self.expect_hypercall_trace(expected, concept);
        }
        self.expect_exit(code, concept);
    }
}
