//! Why a VM could not be created or run. Each message names what to fix; `hv run`
//! prints it after `hv: error: `.

use std::path::PathBuf;

use pv_abi::layout::{MAX_MEM_MIB, MIN_MEM_MIB};

use crate::boot::elf::MAX_KERNEL_FILE_BYTES;
use crate::boot::BootError;
use crate::devices::DeviceError;
use crate::kvm::KvmVmError;
use crate::record::log::LogError;
use crate::shadow::ShadowSetupError;

/// Why a VM could not be created or run.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// --mem out of range.
    #[error("--mem {mib}: guest RAM must be between {MIN_MEM_MIB} and {MAX_MEM_MIB} MiB and a multiple of 2 MiB")]
    BadMemorySize {
        /// The value given.
        mib: u64,
    },
    /// Shadow paging could not be set up.
    #[error(transparent)]
    ShadowSetup(#[from] ShadowSetupError),
    /// The boot page tables could not be shadowed.
    #[error("cannot shadow the boot page tables: {0}")]
    ShadowBoot(shadow_mmu::ShadowError),
    /// The kernel file could not be read.
    #[error("cannot read the kernel {path}: {source}")]
    ReadKernel {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kernel path names something other than a regular file.
    #[error("the kernel {path} is {kind}; --kernel must name a regular file (an ELF executable)")]
    KernelNotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO (named pipe)", ...).
        kind: &'static str,
    },
    /// The file is too large (or grew past the limit while it was read).
    #[error("the kernel {path} is {len} bytes or more; hv reads kernels of at most {MAX_KERNEL_FILE_BYTES} bytes")]
    KernelTooLarge {
        /// The path.
        path: PathBuf,
        /// Its size (or how much of it was read before the limit was passed).
        len: u64,
    },
    /// The guest could not be loaded.
    #[error("{0}")]
    Boot(#[from] BootError),
    /// KVM setup failed.
    #[error(transparent)]
    Kvm(#[from] KvmVmError),
    /// The --timeout watchdog could not be started.
    #[error("cannot start the --timeout watchdog: {0}")]
    Watchdog(std::io::Error),
    /// A thread could not be confined (`crate::sandbox`).
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// A device could not be set up.
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// The record log could not be created or read.
    #[error(transparent)]
    RecordLog(#[from] LogError),
    /// The log was recorded with a guest or host this replay cannot reproduce.
    #[error("this log cannot be replayed here: {what}\n  recorded: {recorded}\n  replay:   {replay}")]
    ReplayMismatch {
        /// What differs.
        what: &'static str,
        /// The log's side.
        recorded: String,
        /// This run's side.
        replay: String,
    },
    /// The trace file could not be written.
    #[error("cannot write the trace file {path}: {source}")]
    Trace {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A saved state could not be taken or used.
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    /// A saved state cannot be restored in this configuration.
    #[error("cannot restore: {0}")]
    Restore(String),
    /// A guest's vCPU thread panicked (a bug in hv: a guest's input never panics it).
    #[error("the guest's vCPU thread panicked (a bug in hv; please report it)")]
    GuestThreadPanicked,
}
