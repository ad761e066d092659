//! Confining hv's own threads: a seccomp filter per thread kind.
//!
//! hv reads what a guest writes, on several threads. If one of them had a bug that let
//! the guest take it over (the kind of bug fuzzing looks for), the attacker would hold a
//! thread of a process that can open files, start programs and make network connections
//! as the user who ran hv. A **seccomp filter** takes that away: a small program the
//! kernel runs on every system call the thread makes, allowing only the calls on its list
//! (Linux's `seccomp(2)`; the course notes' containers section). A filter can only ever be
//! tightened, never removed, and threads started later inherit it.
//!
//! Each kind of thread ([`ThreadKind`]) gets its own list, as short as what it does
//! (`filters`): the backend threads wait on eventfds and touch guest memory, only the
//! block backend reads and writes the disk image, the vCPU thread makes KVM ioctls.
//! Each thread installs its filter itself ([`confine_current_thread`]) once its setup is
//! done and before it serves the guest: the backends when their thread starts, the vCPU
//! thread in `Vm::run` before the first `KVM_RUN`, the control socket's threads and the
//! watchdog when they start.
//!
//! A call off the list does not fail quietly: the filter's answer is `SECCOMP_RET_TRAP`,
//! the kernel sends the thread SIGSYS, and `report`'s handler names the thread and the
//! call and ends hv with [`EXIT_SECCOMP`]. A quiet `EPERM` would let an attack probe on;
//! a silent kill would look like a crash with no cause.
//!
//! | file | idea |
//! | --- | --- |
//! | `filters` | which system calls each thread kind may make, and why |
//! | `report` | the SIGSYS handler: a clear message and exit code for a forbidden call |
//! | `test_hook` | debug builds only: make one thread misbehave, to test the above |

mod filters;
mod report;
mod test_hook;

use std::sync::OnceLock;

use seccompiler::BpfProgram;

pub use report::EXIT_SECCOMP;

/// The kinds of thread hv runs, each with its own filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadKind {
    /// The thread that calls `Vm::run`: KVM_RUN and every exit. In `hv run` it is also
    /// the main thread, so its list covers what hv does after the guest stops.
    Vcpu = 1,
    /// The console backend: eventfds, guest memory, standard output.
    ConsoleBackend,
    /// The block backend: the console's needs plus reads, writes and flushes of the image.
    BlockBackend,
    /// The balloon backend: the console's needs, and `pread` of `/proc/self/status` for
    /// its RSS figures; its `madvise(MADV_DONTNEED)` is in every thread's list already
    /// (the allocator returns memory with it).
    BalloonBackend,
    /// The control socket's accept thread: takes clients, starts their threads.
    ControlAccept,
    /// One control-socket client's thread: reads requests, writes replies.
    ControlClient,
    /// The `--timeout` watchdog: sleeps, then signals the vCPU thread.
    Watchdog,
    /// A live migration's sender (`hv run --migrate-to`, `hv ctl … migrate`): the one
    /// thread allowed to open a network connection, and only outward (no `bind`,
    /// `listen`, `accept`); it reads KVM's dirty log and writes the figures' files.
    MigrationSender,
    /// A host TAP device's port on the virtual switch (`hv-tap`): waits on its eventfds
    /// and the TAP's descriptor, reads and writes frames. The TAP was opened before.
    TapPort,
    /// The network backend: eventfds, guest memory, and its port's frames (a port's
    /// queues, or `read`/`write` on a descriptor it was given, such as a TAP device's).
    NetBackend,
}

impl ThreadKind {
    /// Every kind, in declaration order.
    pub const ALL: [ThreadKind; 10] = [
        ThreadKind::Vcpu,
        ThreadKind::ConsoleBackend,
        ThreadKind::BlockBackend,
        ThreadKind::BalloonBackend,
        ThreadKind::ControlAccept,
        ThreadKind::ControlClient,
        ThreadKind::Watchdog,
        ThreadKind::MigrationSender,
        ThreadKind::TapPort,
        ThreadKind::NetBackend,
    ];

    /// The name messages use ("the console backend thread made ...").
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::ConsoleBackend => "console backend",
            ThreadKind::BlockBackend => "block backend",
            ThreadKind::BalloonBackend => "balloon backend",
            ThreadKind::ControlAccept => "control accept",
            ThreadKind::ControlClient => "control connection",
            ThreadKind::Watchdog => "watchdog",
            ThreadKind::MigrationSender => "migration sender",
            ThreadKind::TapPort => "tap port",
            ThreadKind::NetBackend => "net backend",
        }
    }

    fn from_u8(n: u8) -> Option<ThreadKind> {
        ThreadKind::ALL.into_iter().find(|k| *k as u8 == n)
    }
}

/// Why a thread could not be confined.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The filter could not be built (a bug in `filters`).
    #[error("seccomp: cannot build the {kind} thread's filter: {reason}")]
    Build {
        /// Thread kind.
        kind: &'static str,
        /// seccompiler's reason.
        reason: String,
    },
    /// The kernel refused it (no seccomp support, or a filter already forbids `seccomp`).
    #[error("seccomp: cannot confine the {kind} thread: {reason} (run with --no-seccomp to go without)")]
    Install {
        /// Thread kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The SIGSYS handler could not be installed.
    #[error("seccomp: cannot install the SIGSYS handler: {0}")]
    Handler(std::io::Error),
}

/// Compiled filters, built once per process (they depend on nothing but the kind).
fn compiled(kind: ThreadKind) -> Result<&'static BpfProgram, SandboxError> {
    static PROGRAMS: OnceLock<Vec<Result<BpfProgram, String>>> = OnceLock::new();
    let programs = PROGRAMS.get_or_init(|| ThreadKind::ALL.into_iter().map(|k| filters::compile(k).map_err(|e| e.to_string())).collect());
    let index = ThreadKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    match &programs[index] {
        Ok(program) => Ok(program),
        Err(reason) => Err(SandboxError::Build { kind: kind.name(), reason: reason.clone() }),
    }
}

/// Checks, before a VM is built, that every filter compiles and that this kernel has
/// seccomp filters; then a thread's [`confine_current_thread`] cannot fail for either reason.
pub fn prepare() -> Result<(), SandboxError> {
    for kind in ThreadKind::ALL {
        compiled(kind)?;
    }
    // SAFETY: PR_GET_SECCOMP takes no pointers; it only reports this thread's mode.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if mode < 0 {
        let reason = format!("this kernel has no seccomp support ({})", std::io::Error::last_os_error());
        return Err(SandboxError::Install { kind: "any", reason });
    }
    fix_malloc_arena_limit();
    report::install_handler().map_err(SandboxError::Handler)
}

/// glibc's allocator works out how many arenas it may create the first time a thread
/// needs a new one, by reading `/sys/devices/system/cpu/online` (an `openat` no filter
/// allows), unless the limit was set. Setting it now, to glibc's own default of 8 per
/// CPU, takes that file read out of the confined threads.
fn fix_malloc_arena_limit() {
    #[cfg(target_env = "gnu")]
    {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let arenas = libc::c_int::try_from(8 * cpus).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes two integers and changes only the allocator's settings.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Installs `kind`'s filter on the calling thread, for good.
pub fn confine_current_thread(kind: ThreadKind) -> Result<(), SandboxError> {
    let program = compiled(kind)?;
    report::install_handler().map_err(SandboxError::Handler)?;
    report::set_current_kind(kind);
    seccompiler::apply_filter(program).map_err(|e| SandboxError::Install { kind: kind.name(), reason: e.to_string() })?;
    test_hook::misbehave_if_asked(kind);
    Ok(())
}
