//! Lab 1 on a real guest: the guest's hypercall stub makes the calls, hv's dispatch
//! answers them, and the trace's hypercall lines must say what the ABI fixes: which
//! call, with which arguments, and which result.

mod guest;

use guest::{boot, kvm_or_not_run};

#[test]
fn vm_default_boot_makes_one_shutdown_hypercall() {
    if !kvm_or_not_run() {
        return;
    }
    let run = boot(&[]);
    // The console is a ring device, not a hypercall: a default boot exits to the VMM
    // for a hypercall exactly once, to shut down with code 0 and its counters.
    run.expect_trace_then_exit(&["shutdown(code=0, counters=[addr]) = 0"], 0, "the guest's stub puts the number in rax and the arguments in rdi, rsi; a shutdown with code 0 stops the guest");
    assert!(run.output.contains("hello! I am a paravirtual Rust kernel"), "lab 1: the default boot prints its greeting:\n{}", run.output);
}

#[test]
fn vm_bad_hypercalls_get_the_abi_error_codes_and_the_guest_runs_on() {
    if !kvm_or_not_run() {
        return;
    }
    let run = boot(&["bad-hypercalls"]);
    // 64 MiB of guest RAM: 0x4000000 is one past its end. The E2BIG calls point at free
    // guest memory, wherever the kernel's layout puts it.
    run.expect_trace_then_exit(
        &[
            "console_write(gpa=0x4000000, len=16) = -EFAULT",
            "console_write(gpa=0x3fffff8, len=16) = -EFAULT",
            "console_write(gpa=0xfffffffffffffff8, len=16) = -EFAULT",
            "console_write(gpa=[addr], len=1073741824) = -E2BIG",
            "console_write(gpa=[addr], len=4097) = -E2BIG",
            "unknown_0x7777(0x0, 0x0, 0x0, 0x0) = -ENOSYS",
            "shutdown(code=256, counters=0x0) = -EINVAL",
            "shutdown(code=0, counters=0x3fffff8) = -EFAULT",
            "report_exception(vector=99, rip=0x0, error=0x0, cr2=0x0) = -EINVAL",
            "shutdown(code=0, counters=[addr]) = 0",
        ],
        0,
        "every bad hypercall is refused with the error code the ABI gives it (EFAULT, E2BIG, ENOSYS, EINVAL) and the guest runs on",
    );
    assert!(run.output.contains("9 of 9 refused; the guest is still running"), "lab 1: the guest saw every refusal as the error it expected:\n{}", run.output);
}
