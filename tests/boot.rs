//! End-to-end: boot the real guest on KVM and check what it and hv say.

mod common;
use common::{hv, selftest_counts};

#[test]
fn default_boot_greets_names_the_memory_mode_and_exits_zero() {
    require_kvm!();
    let r = hv(&["run"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("paravirtual Rust kernel, running on the hv hypervisor"), "greeting");
    r.expect(r.stdout.contains("memory mode ept"), "greeting names the memory mode");
    r.expect(r.stderr.is_empty(), "a clean boot prints nothing on stderr");
}

#[test]
fn selftest_passes_every_test() {
    require_kvm!();
    let r = hv(&["run", "--", "selftest"]);
    r.expect_code(0);
    let (passed, failed) = selftest_counts(&r.stdout).expect("a selftest summary line");
    r.expect(failed == 0 && passed >= 16, "all self-tests pass");
}

#[test]
fn the_guest_command_line_arrives_word_by_word() {
    require_kvm!();
    let r = hv(&["run", "--", "echo", "two words", "x"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("echo: [two words] [x]"), "words with spaces stay whole");
}

#[test]
fn an_unknown_guest_command_is_a_usage_error() {
    require_kvm!();
    let r = hv(&["run", "--", "no-such-command"]);
    r.expect_code(2);
    r.expect(r.stdout.contains("unknown command 'no-such-command'"), "the guest names the command");
}

#[test]
fn a_guest_panic_is_reported_with_its_location() {
    require_kvm!();
    let r = hv(&["run", "--", "panic"]);
    r.expect_code(101);
    r.expect(r.stderr.contains("hv: guest panicked at src/commands.rs:"), "panic location");
    r.expect(r.stderr.contains("the `panic` command asked for a guest panic"), "panic message");
}

#[test]
fn guest_exceptions_are_reported_by_name() {
    require_kvm!();
    for (kind, expected) in [("ud", "#UD (vector 6)"), ("gp", "#GP (vector 13)"), ("de", "#DE (vector 0)")] {
        let r = hv(&["run", "--", "fault", kind]);
        r.expect_code(101);
        r.expect(r.stderr.contains(&format!("guest exception {expected} at rip=0xffffffff8")), kind);
    }
    let r = hv(&["run", "--", "fault", "pf"]);
    r.expect_code(101);
    r.expect(r.stderr.contains("guest exception #PF (vector 14)") && r.stderr.contains("cr2=0x1000"), "page fault with CR2");
    r.expect(r.stderr.contains("error=0x0 ") || r.stderr.contains("error=0x0\n") || r.stderr.contains("error=0x0 cr2"), "not-present read");
}

#[test]
fn a_triple_fault_gives_a_message_and_a_register_dump() {
    require_kvm!();
    let r = hv(&["run", "--", "triple-fault"]);
    r.expect_code(101);
    r.expect(r.stderr.contains("guest triple-faulted"), "names the triple fault");
    // CR3 is the VMM's boot PML4, the first frame of the page-table pool (at the top of
    // the default 64 MiB: 64 - 4 MiB).
    r.expect(r.stderr.contains("rip=0xffffffff8") && r.stderr.contains("cr3=0x0000000003c00000"), "register dump");
    r.expect(r.stderr.contains("idt=0x0/0x0"), "the dump shows the empty IDT that caused it");
}

#[test]
fn hostile_hypercalls_get_error_codes_and_the_guest_keeps_running() {
    require_kvm!();
    let trace = common::temp_path("bad.trace");
    let r = hv(&["run", "--stats", "--trace", trace.to_str().unwrap(), "--", "bad-hypercalls"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("9 of 9 refused; the guest is still running"), "every bad call refused");
    let text = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).ok();
    for expected in [
        "console_write(gpa=0x4000000, len=16) = -EFAULT",
        "console_write(gpa=0xfffffffffffffff8, len=16) = -EFAULT",
        "len=1073741824) = -E2BIG",
        "unknown_0x7777(0x0, 0x0, 0x0, 0x0) = -ENOSYS",
        "shutdown(code=256, counters=0x0) = -EINVAL",
        "shutdown(code=0, counters=0x3fffff8) = -EFAULT",
        "report_exception(vector=99, rip=0x0, error=0x0, cr2=0x0) = -EINVAL",
    ] {
        assert!(text.contains(expected), "trace lacks {expected:?}:\n{text}");
    }
    let refused = r.stderr.lines().find(|l| l.trim_start().starts_with("hypercalls refused"));
    r.expect(refused.and_then(|l| l.split_whitespace().last()) == Some("9"), "--stats counts the 9 refusals");
}

#[test]
fn stats_show_exits_by_reason_and_hypercalls_by_name() {
    require_kvm!();
    let r = hv(&["run", "--stats"]);
    r.expect_code(0);
    for row in ["wall time", "start to first console line", "VM exits", "io-out", "hypercalls", "shutdown", "device console", "doorbells"] {
        r.expect(r.stderr.contains(row), &format!("stats row {row:?}"));
    }
    r.expect(!r.stderr.contains("(no line)"), "the first console line was timed");
}

#[test]
fn hypercall_bench_reports_a_round_trip() {
    require_kvm!();
    let r = hv(&["run", "--", "hypercall-bench", "200"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("hypercall-bench: 200 nop hypercalls, "), "bench line");
}
