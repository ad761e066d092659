//! The SIGSYS handler: what happens when a confined thread makes a forbidden call.
//!
//! The filters answer a forbidden call with `SECCOMP_RET_TRAP`: the call is not made,
//! and the kernel sends the thread SIGSYS with the call's number in the signal's
//! information. This handler prints one line naming the thread and the call, and ends
//! the whole process with [`EXIT_SECCOMP`]: a thread that tried something it never does
//! is either broken or taken over, and neither should go on serving a guest.
//!
//! A signal handler runs in the middle of whatever the thread was doing, so it must not
//! allocate or take a lock: the message is assembled in a buffer on the stack and
//! written with a single `write(2)`, then `_exit` ends the process (both calls are on
//! every filter's list, so the handler itself cannot trap). The thread's kind is kept in
//! a thread-local byte set before its filter is installed.

use std::cell::Cell;
use std::sync::OnceLock;

use super::ThreadKind;

/// hv's exit code when a thread made a forbidden system call: 128 + SIGSYS, what a shell
/// shows for a process killed by that signal.
pub const EXIT_SECCOMP: u8 = 128 + libc::SIGSYS as u8;

thread_local! {
    /// This thread's kind (0: not confined).
    static KIND: Cell<u8> = const { Cell::new(0) };
}

/// Remembers the calling thread's kind for the handler.
pub(super) fn set_current_kind(kind: ThreadKind) {
    KIND.with(|k| k.set(kind as u8));
}

/// Installs the handler for the whole process (once; later calls return the first result).
pub(super) fn install_handler() -> std::io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid empty one; we fill in the handler (a
        // function of the signature SA_SIGINFO expects) and flags, and pass pointers to
        // live locals.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigsys as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
        }
        Ok(())
    });
    result.map_err(std::io::Error::from_raw_os_error)
}

/// The part of `siginfo_t` a seccomp SIGSYS fills in (`_sigsys` in Linux's
/// `struct siginfo`): after the three ints of every siginfo and the padding to 8 bytes.
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: *mut libc::c_void,
    syscall: i32,
    arch: u32,
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a handler installed with SA_SIGINFO;
    // for SIGSYS from seccomp it is laid out as `SigsysInfo` (it is larger than that).
    let nr = unsafe { (*info.cast::<SigsysInfo>()).syscall };
    let kind = KIND.with(Cell::get);
    let mut line = Line::default();
    match ThreadKind::from_u8(kind) {
        Some(kind) => {
            line.push(b"hv: seccomp: the ");
            line.push(kind.name().as_bytes());
            line.push(b" thread made a forbidden system call ");
        }
        // A thread started by a confined one runs under its parent's filter until it
        // installs its own.
        None => line.push(b"hv: seccomp: a thread started by a confined thread made a forbidden system call "),
    }
    line.push_number(i64::from(nr));
    line.push(b" (");
    line.push(syscall_name(nr).unwrap_or("unknown").as_bytes());
    line.push(b"); this is a bug in hv or an attack\n");
    // SAFETY: write and _exit are async-signal-safe and on every filter's list; the
    // buffer is a live local of the length given.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        libc::_exit(i32::from(EXIT_SECCOMP));
    }
}

/// A fixed buffer for the message (no allocation in a signal handler).
struct Line {
    buf: [u8; 200],
    len: usize,
}

impl Default for Line {
    fn default() -> Self {
        Line { buf: [0; 200], len: 0 }
    }
}

impl Line {
    fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            self.push(b"-");
        }
        self.push(&digits[i..]);
    }
}

/// The names of the calls an attacker would reach for first, and of those hv's threads
/// make (x86-64 numbers); others are reported by number only.
pub(super) fn syscall_name(nr: i32) -> Option<&'static str> {
    let nr = i64::from(nr);
    let names: &[(i64, &str)] = &[
        (libc::SYS_read, "read"),
        (libc::SYS_write, "write"),
        (libc::SYS_open, "open"),
        (libc::SYS_openat, "openat"),
        (libc::SYS_close, "close"),
        (libc::SYS_ioctl, "ioctl"),
        (libc::SYS_fcntl, "fcntl"),
        (libc::SYS_mmap, "mmap"),
        (libc::SYS_mprotect, "mprotect"),
        (libc::SYS_socket, "socket"),
        (libc::SYS_connect, "connect"),
        (libc::SYS_bind, "bind"),
        (libc::SYS_listen, "listen"),
        (libc::SYS_accept4, "accept4"),
        (libc::SYS_sendto, "sendto"),
        (libc::SYS_recvfrom, "recvfrom"),
        (libc::SYS_clone, "clone"),
        (libc::SYS_clone3, "clone3"),
        (libc::SYS_fork, "fork"),
        (libc::SYS_vfork, "vfork"),
        (libc::SYS_execve, "execve"),
        (libc::SYS_execveat, "execveat"),
        (libc::SYS_kill, "kill"),
        (libc::SYS_tgkill, "tgkill"),
        (libc::SYS_ptrace, "ptrace"),
        (libc::SYS_prctl, "prctl"),
        (libc::SYS_seccomp, "seccomp"),
        (libc::SYS_unlink, "unlink"),
        (libc::SYS_unlinkat, "unlinkat"),
        (libc::SYS_rename, "rename"),
        (libc::SYS_mkdir, "mkdir"),
        (libc::SYS_chmod, "chmod"),
        (libc::SYS_setuid, "setuid"),
        (libc::SYS_mount, "mount"),
        (libc::SYS_pread64, "pread64"),
        (libc::SYS_pwrite64, "pwrite64"),
        (libc::SYS_fsync, "fsync"),
        (libc::SYS_fdatasync, "fdatasync"),
        (libc::SYS_getpid, "getpid"),
        (libc::SYS_sched_getaffinity, "sched_getaffinity"),
        (libc::SYS_getppid, "getppid"),
        (libc::SYS_nanosleep, "nanosleep"),
        (libc::SYS_clock_nanosleep, "clock_nanosleep"),
        (libc::SYS_epoll_wait, "epoll_wait"),
        (libc::SYS_statx, "statx"),
        (libc::SYS_newfstatat, "newfstatat"),
        (libc::SYS_process_vm_writev, "process_vm_writev"),
        (libc::SYS_bpf, "bpf"),
        (libc::SYS_memfd_create, "memfd_create"),
    ];
    names.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_without_allocating_and_names_are_found() {
        let mut line = Line::default();
        line.push_number(0);
        line.push(b" ");
        line.push_number(41);
        line.push(b" ");
        line.push_number(-7);
        assert_eq!(&line.buf[..line.len], b"0 41 -7");
        assert_eq!(syscall_name(libc::SYS_socket as i32), Some("socket"));
        assert_eq!(syscall_name(100_000), None);
    }

    #[test]
    fn hostile_messages_longer_than_the_buffer_are_cut_not_overflowed() {
        let mut line = Line::default();
        for _ in 0..100 {
            line.push(b"0123456789");
        }
        assert_eq!(line.len, line.buf.len());
    }
}
