//! Which system calls each thread kind may make, and why.
//!
//! Every list starts from [`COMMON`]: what any Rust thread of hv needs to live and end
//! (memory for the allocator, futexes for locks and channels, `write` for messages and
//! for signalling eventfds, returning from a signal handler, exiting). Each kind then adds
//! only what its own work needs; the lists were found by running hv under `strace -f`
//! (docs/security.md lists what each kind was seen to call). Anything else traps.
//!
//! Two calls are allowed only with particular arguments, because their other uses are
//! powerful: `ioctl` only with KVM's request numbers (type 0xAE; the same call on another
//! kind of file could reconfigure a terminal or a network device), and `tgkill` only with
//! the vCPU kick signal (`vcpu::kick`), so a thread may interrupt `KVM_RUN` and nothing
//! more; `fcntl` only to ask about a descriptor or duplicate one. `prctl` is allowed on the control accept thread only to name a new thread and to
//! let it add its own, tighter filter.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::ThreadKind;

/// What every thread needs. (Reads of the clock go through the vDSO, not a system call,
/// but `clock_gettime` stays allowed for kernels or sanitizers without it.)
const COMMON: &[i64] = &[
    libc::SYS_futex,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Waiting on eventfds (the backends and the accept thread sleep in epoll).
const WAITS: &[i64] = &[libc::SYS_epoll_wait, libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2, libc::SYS_read];

/// The block backend's work on the image: positioned reads and writes, and the flush.
const DISK: &[i64] = &[
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
];

/// The balloon backend: `pread` of `/proc/self/status`, opened before confinement, for
/// the RSS figures (its `madvise` is in [`COMMON`]).
const BALLOON: &[i64] = &[libc::SYS_pread64];

/// The vCPU thread, which in `hv run` is also the main thread: its exits, a snapshot
/// written from a control job (create, write, sync, rename a file), and what hv does
/// after the guest stops (join the other threads, shut the control socket and remove its
/// file, print the report).
const VCPU: &[i64] = &[
    libc::SYS_read,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_openat,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_shutdown,
    libc::SYS_sigaltstack,
];

/// The control accept thread: take a client, start its thread (which then adds the
/// client filter on top of this one), refuse one over the limit, remove the socket file
/// on a second Ctrl-C.
const CONTROL_ACCEPT: &[i64] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_setsockopt,
    libc::SYS_shutdown,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_sched_getaffinity,
    libc::SYS_seccomp,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
];

/// One control client's thread: read a request line (with a deadline: `setsockopt`),
/// write the reply, close.
const CONTROL_CLIENT: &[i64] = &[
    libc::SYS_read,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_setsockopt,
    libc::SYS_shutdown,
];

/// The watchdog: sleep, then kick.
const WATCHDOG: &[i64] = &[libc::SYS_nanosleep, libc::SYS_clock_nanosleep];

/// A migration's sender: an outgoing TCP connection (`connect` with a timeout: a
/// non-blocking socket and `poll`), its reads and writes, and the JSON and plot files.
const MIGRATION_SENDER: &[i64] = &[
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_getsockopt,
    libc::SYS_setsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_read,
    libc::SYS_shutdown,
    libc::SYS_openat,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
];

/// A TAP port's thread: the waits, reading frames from the TAP (`read`, in `WAITS`) and
/// writing them (`write`, in every list), and `epoll_ctl` to stop watching a TAP that
/// was deleted under it. The TAP itself was opened and bound (`TUNSETIFF`) before the
/// thread started, so it needs no `ioctl` and no `openat`.
const TAP_PORT: &[i64] = &[libc::SYS_epoll_ctl];

/// `ioctl(FIONBIO)`: how std makes a socket non-blocking for `connect_timeout`.
const FIONBIO: u64 = 0x5421;

/// The system calls `kind` may make with any arguments.
pub(super) fn allowed(kind: ThreadKind) -> Vec<i64> {
    let own: &[&[i64]] = match kind {
        ThreadKind::Vcpu => &[VCPU],
        ThreadKind::ConsoleBackend => &[WAITS],
        ThreadKind::BlockBackend => &[WAITS, DISK],
        // Its port's frames travel through queues in memory, or through `read` (in
        // WAITS) and `write` (common) on a descriptor the port was opened with.
        ThreadKind::NetBackend => &[WAITS],
        ThreadKind::BalloonBackend => &[WAITS, BALLOON],
        // A client thread starts under the accept thread's filter and adds its own:
        // both apply, so the accept thread's list must hold the client's.
        ThreadKind::ControlAccept => &[WAITS, CONTROL_ACCEPT, CONTROL_CLIENT],
        ThreadKind::ControlClient => &[CONTROL_CLIENT],
        ThreadKind::Watchdog => &[WATCHDOG],
        ThreadKind::MigrationSender => &[MIGRATION_SENDER],
        ThreadKind::TapPort => &[WAITS, TAP_PORT],
    };
    let mut all: Vec<i64> = COMMON.iter().chain(own.iter().flat_map(|l| l.iter())).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// `ioctl`'s request type byte for KVM (`_IO(KVMIO, nr)`, KVMIO = 0xAE).
const KVM_IOCTL_TYPE: u64 = 0xAE;

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
}

/// The calls `kind` may make only with some arguments, each as (call, one rule per
/// allowed shape).
fn conditional(kind: ThreadKind) -> Result<Vec<(i64, Vec<SeccompRule>)>, seccompiler::BackendError> {
    let kick = u64::try_from(vmm_sys_util::signal::SIGRTMIN()).unwrap_or(0);
    // tgkill(tgid, tid, signal): only the kick signal.
    let tgkill = (libc::SYS_tgkill, vec![SeccompRule::new(vec![condition(2, SeccompCmpOp::Eq, kick)?])?]);
    // fcntl(fd, cmd, ...): every thread may ask whether a descriptor is open (Rust's
    // debug builds do before closing one); the accept thread may also duplicate one (a
    // second handle on a client's socket, to shut it down when the server stops).
    let mut fcntl = vec![libc::F_GETFD];
    if kind == ThreadKind::ControlAccept {
        fcntl.push(libc::F_DUPFD_CLOEXEC);
    }
    if kind == ThreadKind::MigrationSender {
        // Cloning the connection's handle (one end reads replies while the other writes).
        fcntl.extend([libc::F_DUPFD_CLOEXEC, libc::F_GETFL, libc::F_SETFL]);
    }
    let fcntl = fcntl.into_iter().map(|cmd| SeccompRule::new(vec![condition(1, SeccompCmpOp::Eq, cmd as u64)?])).collect::<Result<Vec<_>, _>>()?;
    let mut rules = vec![(libc::SYS_fcntl, fcntl)];
    match kind {
        ThreadKind::Vcpu => {
            // ioctl(fd, request, ...): bits 8..15 of the request are its type.
            let kvm_only = condition(1, SeccompCmpOp::MaskedEq(0xff00), KVM_IOCTL_TYPE << 8)?;
            rules.push((libc::SYS_ioctl, vec![SeccompRule::new(vec![kvm_only])?]));
        }
        ThreadKind::ControlAccept => {
            let prctl = [libc::PR_SET_NAME, libc::PR_SET_NO_NEW_PRIVS]
                .into_iter()
                .map(|op| SeccompRule::new(vec![condition(0, SeccompCmpOp::Eq, op as u64)?]))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push((libc::SYS_prctl, prctl));
            rules.push(tgkill);
        }
        ThreadKind::ControlClient | ThreadKind::Watchdog => rules.push(tgkill),
        ThreadKind::MigrationSender => {
            // KVM's dirty log and memory slots (VM ioctls), and FIONBIO on its socket.
            let kvm_only = condition(1, SeccompCmpOp::MaskedEq(0xff00), KVM_IOCTL_TYPE << 8)?;
            let fionbio = condition(1, SeccompCmpOp::Eq, FIONBIO)?;
            rules.push((libc::SYS_ioctl, vec![SeccompRule::new(vec![kvm_only])?, SeccompRule::new(vec![fionbio])?]));
            rules.push(tgkill);
        }
        ThreadKind::ConsoleBackend | ThreadKind::BlockBackend | ThreadKind::TapPort | ThreadKind::NetBackend | ThreadKind::BalloonBackend => {}
    }
    Ok(rules)
}

/// Builds `kind`'s filter: its calls allowed, every other call trapped (SIGSYS).
pub(super) fn compile(kind: ThreadKind) -> Result<BpfProgram, seccompiler::Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = allowed(kind).into_iter().map(|nr| (nr, Vec::new())).collect();
    for (nr, shapes) in conditional(kind)? {
        rules.insert(nr, shapes);
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, arch)?;
    Ok(BpfProgram::try_from(filter)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_compiles() {
        for kind in ThreadKind::ALL {
            assert!(compile(kind).is_ok(), "{}", kind.name());
        }
    }

    #[test]
    fn no_thread_may_start_programs_or_open_network_sockets_but_the_migration_sender_may_connect() {
        for kind in ThreadKind::ALL {
            let list = allowed(kind);
            for nr in [libc::SYS_execve, libc::SYS_execveat, libc::SYS_ptrace, libc::SYS_fork, libc::SYS_bind, libc::SYS_listen] {
                assert!(!list.contains(&nr), "the {} thread may make call {nr}", kind.name());
            }
            let connects = list.contains(&libc::SYS_socket) || list.contains(&libc::SYS_connect);
            assert_eq!(connects, kind == ThreadKind::MigrationSender, "only the migration sender connects: {}", kind.name());
        }
    }

    #[test]
    fn a_client_thread_may_make_every_call_of_its_own_list_under_the_accept_threads_filter() {
        let accept = allowed(ThreadKind::ControlAccept);
        for nr in allowed(ThreadKind::ControlClient) {
            assert!(accept.contains(&nr), "call {nr}");
        }
    }

    #[test]
    fn only_the_vcpu_thread_and_the_migration_sender_make_ioctls_and_only_the_block_backend_writes_the_disk() {
        for kind in ThreadKind::ALL {
            let ioctl = conditional(kind).unwrap().iter().any(|(nr, _)| *nr == libc::SYS_ioctl);
            assert_eq!(ioctl, matches!(kind, ThreadKind::Vcpu | ThreadKind::MigrationSender), "{}", kind.name());
            let disk_write = allowed(kind).contains(&libc::SYS_pwrite64);
            assert_eq!(disk_write, matches!(kind, ThreadKind::BlockBackend | ThreadKind::Vcpu), "{}", kind.name());
        }
    }
}
