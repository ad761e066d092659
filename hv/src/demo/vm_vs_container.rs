//! `hv demo vm-vs-container`: the same question asked of a VM and of a container hv makes
//! itself from namespaces and a cgroup: how fast it starts, what it costs in memory, what
//! a request to the host costs (a hypercall against a system call), and what it isolates.

use std::time::Instant;

use pv_abi::MmuMode;

use super::guest::DemoGuest;
use super::stage::{duration, Stage};
use super::DemoError;
use crate::container;

/// The container's memory limit.
const CONTAINER_MEMORY: u64 = 64 << 20;

fn resident_kib() -> u64 {
    crate::top::sample::resident_kib(std::process::id()).unwrap_or(0)
}

/// Runs the demo; `calls` hypercalls and system calls are timed.
pub fn run(stage: &mut Stage, calls: u64) -> Result<(), DemoError> {
    stage.step("a VM");
    stage.say(
        "hv boots a 64 MiB guest: its own kernel, its own page tables, its own devices. It times null hypercalls, the \
         cheapest thing it can ask of the host.",
    );
    let count = calls.to_string();
    let rss_before = resident_kib();
    let started = Instant::now();
    let vm = DemoGuest::new(&["hypercall-bench", &count], MmuMode::Ept).run()?;
    let vm_start = vm.stats.first_console_line.unwrap_or_else(|| started.elapsed());
    let vm_rss = resident_kib().saturating_sub(rss_before);
    let line = vm.console.lines().find(|l| l.starts_with("hypercall-bench:")).unwrap_or("").to_string();
    stage.evidence(&[line.as_str()]);
    let hypercall_ns = line.split(", ").nth(1).and_then(|w| w.split(" ns each").next()).and_then(|n| n.trim().parse::<f64>().ok()).unwrap_or(0.0);
    stage.figure("start to the guest's first line", &duration(vm_start.as_nanos() as f64));
    stage.figure("hypercall round trip", &duration(hypercall_ns));
    stage.figure("memory hv's process grew by for it", &format!("{:.1} MiB (its RAM is allocated as it is touched)", vm_rss as f64 / 1024.0));

    stage.step("a container, made from the kernel's own parts");
    stage.say(
        "Now hv starts a process with unshare(2): new PID, mount, network and UTS namespaces, and puts it in a memory \
         cgroup of 64 MiB. No container runtime: that is all a container is. Inside, the process looks around and times \
         the cheapest system call, getppid:",
    );
    let c = match container::spawn(calls * 10, CONTAINER_MEMORY) {
        Ok(c) => c,
        Err(e) => {
            stage.figure("the container", &format!("not started: {e}"));
            return Ok(());
        }
    };
    let seen: Vec<String> = ["pid", "hostname", "interfaces", "processes_visible"].iter().map(|k| format!("{k} = {}", c.get(k).unwrap_or("?"))).collect();
    stage.evidence(&seen);
    let syscall_ns = c.get("syscall_ns").and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    stage.figure("start to its first line", &duration(c.start.as_nanos() as f64));
    stage.figure("system call (getppid)", &duration(syscall_ns));
    stage.figure("its resident memory", c.get("rss").unwrap_or("?"));
    match &c.limit {
        Ok(bytes) => stage.figure("memory limit (cgroup)", &format!("{} MiB", bytes >> 20)),
        Err(why) => stage.figure("memory limit (cgroup)", &format!("none: {why}")),
    }

    stage.step("more isolation, or more sharing");
    stage.figure("hypercall / system call", &format!("{:.0}×", hypercall_ns / syscall_ns.max(0.1)));
    stage.say(
        "The container starts faster and costs less memory because it is only a process: it shares the host's kernel, \
         and its system calls are calls into that kernel, cheap and many (hundreds of them, each a way in). It sees its \
         own process tree, hostname and network, but a bug in the host's kernel is a bug in its kernel. The VM brings \
         its own kernel and reaches the host only through exits and a short list of hypercalls that hv checks one by \
         one: more isolation, at the price of a world switch per request and a kernel's worth of memory.",
    );
    stage.lesson(
        "Containers isolate with namespaces and limit with cgroups, on a shared kernel; VMs isolate with a hypervisor \
         and a narrow interface. The course notes' trade-off: more sharing, or more isolation.",
    );
    Ok(())
}
