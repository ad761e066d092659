//! A container, made by hand from the kernel's own mechanisms, to set beside a VM
//! (`hv demo vm-vs-container`).
//!
//! A container is not a thing the kernel knows: it is an ordinary process started with
//! a few of the kernel's isolation mechanisms turned on. Here, exactly those:
//!
//! - **namespaces** ([`spawn`]): a new PID namespace (the workload is process 1 and sees
//!   no other process), a new mount namespace (its mounts are its own), a new network
//!   namespace (only a loopback interface, down), a new UTS namespace (its own hostname);
//! - a **cgroup** ([`cgroup`]): a memory limit the kernel enforces on the whole group.
//!
//! No container runtime is involved: `unshare(2)` before `exec`, then one `fork` so the
//! workload is the first process of its PID namespace, and a few writes under
//! `/sys/fs/cgroup`. What it does *not* do is as instructive: the workload still runs on
//! the host's kernel, makes real system calls into it, and shares it with every other
//! process; a VM's guest has a kernel of its own, and what it can ask of the host is the
//! hypervisor's short list of exits and hypercalls. The course notes' "more isolation vs
//! more sharing".
//!
//! | file | idea |
//! | --- | --- |
//! | [`cgroup`] | a memory limit: cgroup v2's `memory.max` or v1's `memory.limit_in_bytes` |
//! | [`workload`] | what runs inside: what it can see, and the price of a system call |

pub mod cgroup;
pub mod workload;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a container run showed.
#[derive(Debug)]
pub struct ContainerRun {
    /// From `spawn` to the workload's first line.
    pub start: Duration,
    /// The workload's report, one `key=value` per line.
    pub report: Vec<(String, String)>,
    /// The memory limit set, if a cgroup could be made (and why not, if not).
    pub limit: Result<u64, String>,
}

impl ContainerRun {
    /// The value of `key` in the workload's report.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.report.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Why no container ran.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The child could not be started (not root: namespaces need CAP_SYS_ADMIN).
    #[error("cannot start the container: {0} (creating namespaces needs root)")]
    Spawn(std::io::Error),
    /// It ended without its report.
    #[error("the container's workload ended without its report: {0}")]
    NoReport(String),
}

/// The namespaces a container gets.
const NAMESPACES: libc::c_int = libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWUTS;

/// Starts `hv __container-init ROUNDS` in new PID, mount, network and UTS namespaces,
/// under a memory limit of `memory_limit` bytes, and collects its report.
pub fn spawn(rounds: u64, memory_limit: u64) -> Result<ContainerRun, ContainerError> {
    let exe = std::env::current_exe().map_err(ContainerError::Spawn)?;
    let group = cgroup::MemoryGroup::create(memory_limit);
    let mut command = Command::new(exe);
    command.args(["__container-init", &rounds.to_string()]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec; it makes one system
    // call (unshare), allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            if libc::unshare(NAMESPACES) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(ContainerError::Spawn)?;
    let limit = match &group {
        Ok(g) => g.add(child.id()).map(|()| memory_limit),
        Err(why) => Err(why.clone()),
    };
    let mut start = None;
    let mut report = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            start.get_or_insert_with(|| started.elapsed());
            if let Some((k, v)) = line.split_once('=') {
                report.push((k.to_string(), v.to_string()));
            }
        }
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let _ = child.wait();
    drop(group);
    match start {
        Some(start) if !report.is_empty() => Ok(ContainerRun { start, report, limit }),
        _ => Err(ContainerError::NoReport(err.trim().to_string())),
    }
}
