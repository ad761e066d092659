//! What runs inside the container (`hv __container-init ROUNDS`): it looks around and
//! times a system call, and reports `key=value` lines on standard output.
//!
//! It forks once first: `unshare(CLONE_NEWPID)` puts only the *children* of the caller in
//! the new PID namespace, so the forked child is its process 1.

use std::time::Instant;

/// The container's process (before its fork): runs the workload as process 1 of the new
/// PID namespace and passes on its exit code.
pub fn init(rounds: u64) -> i32 {
    // SAFETY: fork in a process with one thread (this command starts no other), so the
    // child's copy of memory is consistent; the child only runs `report` and exits.
    match unsafe { libc::fork() } {
        -1 => {
            eprintln!("container: fork failed: {}", std::io::Error::last_os_error());
            1
        }
        0 => {
            report(rounds);
            // SAFETY: ends the child without running the parent's exit handlers twice.
            unsafe { libc::_exit(0) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for the one child just forked; `status` is a valid int.
            unsafe { libc::waitpid(child, &mut status, 0) };
            if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                1
            }
        }
    }
}

/// Mounts this namespace's own `/proc` and `/sys`, so that what the workload reads there
/// is its PID and network namespaces' view, not the host's. The mount namespace is made
/// private first, so none of this propagates back to the host's mounts.
fn mount_own_views() -> std::io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(std::io::Error::other);
    let (root, proc_dir, sys_dir, proc_fs, sys_fs) = (c("/")?, c("/proc")?, c("/sys")?, c("proc")?, c("sysfs")?);
    // SAFETY: each pointer is a NUL-terminated string that outlives its call, or null
    // where mount(2) allows it (no source, no data).
    unsafe {
        if libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::mount(proc_fs.as_ptr(), proc_dir.as_ptr(), proc_fs.as_ptr(), 0, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::mount(sys_fs.as_ptr(), sys_dir.as_ptr(), sys_fs.as_ptr(), 0, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What the workload sees, and the price of a system call from here.
fn report(rounds: u64) {
    if let Err(e) = mount_own_views() {
        println!("mounts=cannot mount its own /proc and /sys: {e}");
    }
    let _ = set_hostname("hv-container");
    println!("pid={}", std::process::id());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    println!("hostname={}", hostname.trim());
    let interfaces: Vec<String> = std::fs::read_dir("/sys/class/net").map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default();
    println!("interfaces={}", interfaces.join(","));
    let processes = std::fs::read_dir("/proc").map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<u32>().ok()).count()).unwrap_or(0);
    println!("processes_visible={processes}");
    let start = Instant::now();
    for _ in 0..rounds.max(1) {
        // SAFETY: getppid takes nothing and cannot fail: the cheapest real system call.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    println!("syscall_ns={:.1}", start.elapsed().as_nanos() as f64 / rounds.max(1) as f64);
    let rss = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")).map(|v| v.trim().to_string()));
    println!("rss={}", rss.unwrap_or_default());
}

/// Sets this UTS namespace's hostname.
fn set_hostname(name: &str) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
