//! How a guest run ends, and what hv tells the user about it.
//!
//! A guest can stop itself (the `shutdown` hypercall), report its own death (a kernel
//! panic, an unexpected exception), or die in a way only the VMM sees (a triple fault,
//! a halt nothing can wake, a touch of memory that is not RAM, a KVM failure). Each case
//! is a [`GuestStop`] with a message that names what happened; only a clean shutdown
//! gives the guest's own exit code.

use crate::kvm::RegisterDump;
use pv_abi::addr::{GuestVirt, MachineAddr};
use pv_abi::exception::exception_mnemonic;

/// hv's exit code when the guest crashed (panic, exception, triple fault, …); the same
/// value a Rust program exits with on panic.
pub const EXIT_GUEST_CRASHED: u8 = 101;
/// hv's exit code when the VM could not be set up or run (bad kernel, no KVM, …).
pub const EXIT_VMM_ERROR: u8 = 1;
/// hv's exit code when `--timeout` stopped the guest (the same as timeout(1)'s).
pub const EXIT_TIMED_OUT: u8 = 124;

/// Why the guest stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestStop {
    /// The guest called `shutdown(code)`.
    Shutdown {
        /// The guest's exit code.
        code: u8,
    },
    /// The guest kernel panicked and said so.
    Panicked {
        /// `file:line:col: message`, as the guest sent it.
        message: String,
    },
    /// The guest took an exception it could not handle and reported it.
    Exception {
        /// Exception vector (0..=31).
        vector: u64,
        /// Where it happened.
        rip: GuestVirt,
        /// The error code the CPU pushed (0 if none).
        error_code: u64,
        /// CR2 for a page fault: the virtual address the guest touched.
        cr2: GuestVirt,
    },
    /// The vCPU shut down: an exception while delivering a double fault.
    TripleFault {
        /// Registers at the time, if KVM could give them.
        dump: Option<RegisterDump>,
    },
    /// The guest executed `hlt` with nothing that could ever wake it.
    Halted {
        /// Registers at the time.
        dump: Option<RegisterDump>,
    },
    /// The guest touched a guest-physical address that is not RAM.
    NotRam {
        /// The address, as KVM reported it: guest-physical in KVM's words, a machine
        /// address in hv's (the same as pseudo-physical in ept mode).
        machine: MachineAddr,
        /// A write (or a read).
        write: bool,
        /// Access size.
        len: usize,
        /// Registers at the time.
        dump: Option<RegisterDump>,
    },
    /// The guest was still running when `--timeout` ran out.
    TimedOut {
        /// The timeout, in milliseconds.
        millis: u64,
        /// Registers at the time.
        dump: Option<RegisterDump>,
    },
    /// Shadow mode: a page-table store hv could not apply (say, one that runs past the
    /// end of the page-table pool).
    PageTableStoreRefused {
        /// Why.
        what: String,
        /// Registers at the time.
        dump: Option<RegisterDump>,
    },
    /// hv ended the run on request (`snapshot --stop`, the source after a migration).
    Ended {
        /// What happened, for the user.
        why: String,
    },
    /// KVM could not run the vCPU (failed entry, internal error, unexpected exit).
    KvmFailure {
        /// What KVM said.
        what: KvmFailure,
        /// Registers at the time.
        dump: Option<RegisterDump>,
    },
}

/// What went wrong when KVM could not run the vCPU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvmFailure {
    /// An ioctl on the vCPU or the VM failed.
    #[error("{ioctl} failed: {source}")]
    Ioctl {
        /// Which ioctl (or what it was for).
        ioctl: &'static str,
        /// The error KVM returned.
        source: kvm_ioctls::Error,
    },
    /// The CPU refused to enter the guest.
    #[error("VM entry failed (hardware reason {reason:#x}): the vCPU state is invalid")]
    EntryFailed {
        /// The hardware's reason code.
        reason: u64,
    },
    /// KVM itself could not go on (1 = an instruction it could not emulate, …).
    #[error("KVM internal error (suberror {suberror})")]
    InternalError {
        /// KVM's suberror code.
        suberror: u32,
    },
    /// An exit hv does not expect from its configuration.
    #[error("unexpected exit {exit}")]
    UnexpectedExit {
        /// The exit, as kvm-ioctls prints it.
        exit: String,
    },
}

impl GuestStop {
    /// hv's process exit code for this stop.
    pub fn exit_code(&self) -> u8 {
        match self {
            GuestStop::Shutdown { code } => *code,
            GuestStop::Ended { .. } => 0,
            GuestStop::TimedOut { .. } => EXIT_TIMED_OUT,
            _ => EXIT_GUEST_CRASHED,
        }
    }

    /// The message for the user; `None` for a clean shutdown (nothing to say).
    pub fn message(&self) -> Option<String> {
        let with_dump = |head: String, dump: &Option<RegisterDump>| match dump {
            Some(d) => format!("{head}\n{d}"),
            None => format!("{head}\n  (registers unavailable)"),
        };
        Some(match self {
            GuestStop::Shutdown { .. } => return None,
            GuestStop::Ended { why } => why.clone(),
            GuestStop::Panicked { message } => format!("guest panicked at {message}"),
            GuestStop::Exception { vector, rip, error_code, cr2 } => {
                let mut m = format!(
                    "guest exception {} (vector {vector}) at rip={rip:#x} error={error_code:#x}",
                    exception_mnemonic(*vector)
                );
                if *vector == pv_abi::exception::PAGE_FAULT {
                    m.push_str(&format!(" cr2={cr2:#x}"));
                }
                m
            }
            GuestStop::TripleFault { dump } => with_dump(
                "guest triple-faulted: an exception occurred while the CPU was delivering a double fault, \
                 so the virtual CPU shut down"
                    .into(),
                dump,
            ),
            GuestStop::Halted { dump } => with_dump(
                "guest halted (hlt) with interrupts it cannot receive: it would sleep forever, so hv stopped it".into(),
                dump,
            ),
            GuestStop::NotRam { machine, write, len, dump } => with_dump(
                format!(
                    "guest {} {len} bytes at guest-physical {machine:#x}, which is not RAM",
                    if *write { "wrote" } else { "read" }
                ),
                dump,
            ),
            GuestStop::TimedOut { millis, dump } => with_dump(
                format!(
                    "the guest was still running after {} s (--timeout), so hv stopped it; \
                     it may be halted with interrupts off, or in an endless loop",
                    *millis as f64 / 1000.0
                ),
                dump,
            ),
            GuestStop::PageTableStoreRefused { what, dump } => {
                with_dump(format!("hv could not apply a guest page-table store (shadow mode): {what}"), dump)
            }
            GuestStop::KvmFailure { what, dump } => with_dump(format!("KVM could not run the guest: {what}"), dump),
        })
    }
}
