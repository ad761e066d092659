//! Grading one lab on one tree: build the tests, run each with its limit, score.
//!
//! Grading never gives up half-way: when the build fails or a test hangs, every test still
//! gets a result (0 points, with the reason as its output), so the autograder always has a
//! results file to show the student.
//!
//! Each test runs alone (`cargo test --test <file> -- <fn> --exact --nocapture`), so one
//! hanging test costs only its own points. A test passes only if cargo reports exactly one
//! test passed: a filter that matched nothing must not count as a pass. A VM test that
//! prints `LAB-NOT-RUN: <reason>` (no `/dev/kvm`) is "not run", never passed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness;
use crate::manifest::{Lab, TestKind};
use crate::outcome::{Grade, Status, TestResult};
use crate::runner::{run_with_limit, Finished};

/// The marker line a VM test prints where it cannot boot a guest.
pub const NOT_RUN_MARKER: &str = "LAB-NOT-RUN:";

/// The longest output kept per test: enough for a trace diff, not a whole log.
const MAX_OUTPUT: usize = 6000;

/// How to grade.
#[derive(Clone, Debug)]
pub struct Options {
    /// Grade the hidden tests too (the instructor's default).
    pub include_hidden: bool,
    /// CARGO_TARGET_DIR for building the tests (the tree's `target/` by default).
    pub target_dir: PathBuf,
    /// Limit for building the tree and the tests.
    pub build_limit: Duration,
}

impl Options {
    /// The defaults for grading `tree`: hidden tests included, its own `target/`, 30 minutes to build.
    pub fn for_tree(tree: &Path) -> Options {
        Options { include_hidden: true, target_dir: tree.join("target"), build_limit: Duration::from_secs(1800) }
    }
}

/// Grades `lab` (from the instructor's checkout) on the tree at `tree`.
pub fn grade(lab: &Lab, tree: &Path, options: &Options) -> Grade {
    // A starter's manifest lists hidden tests whose files it does not have: they are not graded.
    let tests: Vec<_> = lab.tests.iter().filter(|t| t.present && (options.include_hidden || !t.hidden)).collect();
    let mut grade = Grade { lab: lab.manifest.number, title: lab.manifest.title.clone(), build_seconds: 0.0, tests: Vec::new() };
    let result = |t: &crate::manifest::LabTest, status, seconds, output: String| TestResult {
        id: t.entry.id.clone(),
        kind: match t.entry.kind {
            TestKind::Host => "host",
            TestKind::Vm => "vm",
        },
        hidden: t.hidden,
        status,
        points: if status == Status::Passed { t.entry.points } else { 0 },
        max_points: t.entry.points,
        seconds,
        output,
    };

    let built = harness::write_crate(lab, tree, options.include_hidden).and_then(|manifest| {
        let mut build = cargo(&manifest, tree, options);
        build.args(["--no-run", "--tests"]);
        let done = run_with_limit(build, options.build_limit).map_err(|e| format!("could not run cargo: {e}"))?;
        grade.build_seconds = done.elapsed.as_secs_f64();
        if done.timed_out {
            Err(format!("building took longer than {} s and was stopped", options.build_limit.as_secs()))
        } else if done.code != Some(0) {
            Err(format!("the tree or the lab's tests do not build:\n{}", compiler_errors(&done.stderr)))
        } else {
            Ok(manifest)
        }
    });
    let manifest = match built {
        Ok(manifest) => manifest,
        Err(why) => {
            grade.tests = tests.iter().map(|t| result(t, Status::BuildFailed, 0.0, why.clone())).collect();
            return grade;
        }
    };

    for test in tests {
        let mut command = cargo(&manifest, tree, options);
        command.args(["--test", &test.file_stem, "--", &test.fn_name, "--exact", "--nocapture", "--test-threads=1"]);
        let limit = Duration::from_secs(test.entry.timeout_secs);
        let (status, output, seconds) = match run_with_limit(command, limit) {
            Err(e) => (Status::Failed, format!("could not run cargo: {e}"), 0.0),
            Ok(done) => {
                let (status, output) = judge(&done, limit, &test.fn_name);
                (status, output, done.elapsed.as_secs_f64())
            }
        };
        grade.tests.push(result(test, status, seconds, output));
    }
    grade
}

/// `cargo test --manifest-path <manifest>` with the target dir set, and `LAB_TREE` naming
/// the graded tree (for a test that reads files the student hands in, like lab 5's report).
fn cargo(manifest: &Path, tree: &Path, options: &Options) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // No backtraces: a student reads the panic message, not the frames of the test harness.
    command.arg("test").arg("--manifest-path").arg(manifest).env("CARGO_TARGET_DIR", &options.target_dir).env("RUST_BACKTRACE", "0").env("LAB_TREE", tree);
    command
}

/// The status and the student-facing output of one finished test run.
/// `fn_name` is the test's name (libtest's lines naming it are dropped from the output).
pub fn judge(done: &Finished, limit: Duration, fn_name: &str) -> (Status, String) {
    if done.timed_out {
        return (Status::TimedOut, format!("timed out: still running after {} s, stopped (an endless loop or a wait that never ends?)\n{}", limit.as_secs(), clean_output(done, fn_name)));
    }
    let all = format!("{}\n{}", done.stdout, done.stderr);
    if let Some(line) = all.lines().find(|l| l.contains(NOT_RUN_MARKER)) {
        let reason = line.split_once(NOT_RUN_MARKER).map(|(_, r)| r.trim()).unwrap_or_default();
        return (Status::NotRun, format!("not run: {reason}"));
    }
    if done.code == Some(0) && done.stdout.contains("test result: ok. 1 passed") {
        return (Status::Passed, String::new());
    }
    if done.code == Some(0) {
        return (Status::Failed, "the test was not found in the built test binary (no test ran)".into());
    }
    (Status::Failed, clean_output(done, fn_name))
}

/// The test's own output and panic message, without cargo's and libtest's progress lines.
/// Cargo's stderr up to its `Running` line is the build's (replayed warnings): dropped.
fn clean_output(done: &Finished, fn_name: &str) -> String {
    let progress = ["Compiling ", "Finished ", "Running ", "Blocking ", "running ", "test result:", "failures:", "error: test failed", "note: run with `RUST_BACKTRACE"];
    let keep = |line: &&str| {
        let t = line.trim_start();
        !progress.iter().any(|p| t.starts_with(p)) && !(t.starts_with("test ") && (t.ends_with(" ... FAILED") || t.ends_with(" ... ok"))) && t != fn_name
    };
    let stderr_lines: Vec<&str> = done.stderr.lines().collect();
    let run_starts = stderr_lines.iter().position(|l| l.trim_start().starts_with("Running ")).map_or(0, |at| at + 1);
    let mut text: String = done.stdout.lines().chain(stderr_lines[run_starts..].iter().copied()).filter(keep).collect::<Vec<_>>().join("\n");
    text = text.trim().to_string();
    truncate(text)
}

/// The compiler's error messages from a failed build's stderr (warnings dropped).
fn compiler_errors(stderr: &str) -> String {
    let mut kept = Vec::new();
    let mut in_error = false;
    for line in stderr.lines() {
        if line.starts_with("error") {
            in_error = true;
        } else if line.starts_with("warning") || line.trim_start().starts_with("Compiling ") {
            in_error = false;
        }
        if in_error {
            kept.push(line);
        }
    }
    let text = if kept.is_empty() { stderr.trim().to_string() } else { kept.join("\n") };
    truncate(text)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[... output cut ...]");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(code: Option<i32>, timed_out: bool, stdout: &str, stderr: &str) -> Finished {
        Finished { code, timed_out, stdout: stdout.into(), stderr: stderr.into(), elapsed: Duration::from_secs(1) }
    }

    #[test]
    fn one_passed_test_passes() {
        let done = finished(Some(0), false, "running 1 test\ntest a ... ok\n\ntest result: ok. 1 passed; 0 failed", "");
        assert_eq!(judge(&done, Duration::from_secs(5), "a").0, Status::Passed);
    }

    #[test]
    fn hostile_a_filter_that_matched_nothing_is_not_a_pass() {
        let done = finished(Some(0), false, "running 0 tests\n\ntest result: ok. 0 passed; 0 failed", "");
        assert_eq!(judge(&done, Duration::from_secs(5), "a").0, Status::Failed);
    }

    #[test]
    fn a_failure_keeps_the_panic_message_only() {
        let done = finished(Some(101), false, "running 1 test\ntest a ... FAILED\n\nfailures:\n    a\n", "warning: unused field\n  --> src/lib.rs:3:5\n    Finished `test` profile\n     Running tests/a.rs\nthread 'a' panicked at tests/a.rs:3:5:\nnot yet implemented: lab 3: check\n");
        let (status, output) = judge(&done, Duration::from_secs(5), "a");
        assert_eq!(status, Status::Failed);
        assert_eq!(output, "thread 'a' panicked at tests/a.rs:3:5:\nnot yet implemented: lab 3: check");
    }

    #[test]
    fn a_vm_test_without_kvm_is_not_run() {
        let done = finished(Some(0), false, "LAB-NOT-RUN: /dev/kvm cannot be opened\ntest result: ok. 1 passed", "");
        assert_eq!(judge(&done, Duration::from_secs(5), "a"), (Status::NotRun, "not run: /dev/kvm cannot be opened".into()));
    }

    #[test]
    fn a_killed_test_is_timed_out() {
        let (status, output) = judge(&finished(None, true, "", ""), Duration::from_secs(7), "a");
        assert_eq!(status, Status::TimedOut);
        assert!(output.starts_with("timed out: still running after 7 s"), "{output}");
    }
}
