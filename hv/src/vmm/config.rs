//! What one guest is made of, before it exists: its kernel, RAM size, devices, memory
//! mode and the run's options (`hv run`'s flags, or a program's choice).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use backend_drivers::block::image::file_kind;

use backend_drivers::runner::NotifyPolicy;
use pv_abi::layout::{LARGE_PAGE_SIZE, MAX_MEM_MIB, MIN_MEM_MIB};
use pv_abi::MmuMode;

use super::error::VmError;
use crate::boot::elf::MAX_KERNEL_FILE_BYTES;
use crate::boot::guest_image;
use crate::devices::block::DiskConfig;
use crate::trace::TraceFormat;

/// `--trace-max`'s default: about 100 MB of text trace.
pub const DEFAULT_TRACE_MAX_EVENTS: u64 = 1_000_000;

/// Guest RAM when nothing else is asked for (`hv run`'s `--mem` default).
pub const DEFAULT_MEM_MIB: u64 = 64;

/// What to run: everything that describes one guest before it exists.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// A kernel ELF to boot instead of the built-in pv-guest.
    pub kernel: Option<PathBuf>,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Words passed to the guest.
    pub guest_args: Vec<String>,
    /// Where to write a trace, and in which format.
    pub trace: Option<(PathBuf, TraceFormat)>,
    /// At most this many trace events are written (`--trace-max`); then the trace says
    /// it was cut and records nothing more, so a guest in an exit storm cannot fill the
    /// disk.
    pub trace_max_events: u64,
    /// A disk image for the block device.
    pub disk: Option<DiskConfig>,
    /// When backends signal the guest.
    pub notify_policy: NotifyPolicy,
    /// Stop the guest if it is still running after this long.
    pub timeout: Option<std::time::Duration>,
    /// How guest memory is translated (`--mmu`).
    pub mmu: MmuMode,
    /// Confine the VM's threads with seccomp filters (`crate::sandbox`): the vCPU thread
    /// (the one calling `Vm::run`, which stays confined after it returns), the backends,
    /// the watchdog and the control socket's threads. On for `hv`'s commands unless
    /// `--no-seccomp`; off here, because a program driving the library usually runs more
    /// than one VM, and code of its own, on the same threads.
    pub seccomp: bool,
    /// The balloon's first target, in MiB of RAM the guest should keep
    /// (`--balloon-target`); `None`: all of it (an empty balloon). A balloon is served
    /// whenever the devices run on threads, so `hv ctl PATH balloon MIB` can set one later.
    pub balloon_target_mib: Option<u64>,
}

impl VmConfig {
    /// The built-in pv-guest with `guest_args`, in [`DEFAULT_MEM_MIB`] of RAM, ept mode,
    /// a console and no disk, no trace and no timeout: what `hv run -- ARGS` runs.
    pub fn builtin_guest(guest_args: &[&str]) -> Self {
        VmConfig {
            kernel: None,
            mem_mib: DEFAULT_MEM_MIB,
            guest_args: guest_args.iter().map(|w| w.to_string()).collect(),
            trace: None,
            trace_max_events: DEFAULT_TRACE_MAX_EVENTS,
            disk: None,
            notify_policy: NotifyPolicy::EventIndex,
            timeout: None,
            mmu: MmuMode::Ept,
            seccomp: false,
            balloon_target_mib: None,
        }
    }
}

/// `--mem` in bytes, if it is a size hv accepts.
pub(super) fn check_memory_size(mib: u64) -> Result<u64, VmError> {
    let bytes = mib << 20;
    if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mib) || !bytes.is_multiple_of(LARGE_PAGE_SIZE) {
        return Err(VmError::BadMemorySize { mib });
    }
    Ok(bytes)
}

/// The kernel file's bytes (the built-in pv-guest without `--kernel`).
///
/// The path may name anything, so it is checked before it is opened, and the read is
/// bounded whatever the file claims:
/// - only a regular file is opened: a FIFO would block hv until some other program
///   wrote to it, a directory cannot be read, and a device (`/dev/zero`) has no size;
/// - the open does not block (in case the path became a FIFO since the check), and the
///   open file is checked again;
/// - at most [`MAX_KERNEL_FILE_BYTES`] + 1 bytes are read, so a file that grows while it
///   is read, or lies about its size, is refused instead of eating memory.
pub(super) fn read_kernel(config: &VmConfig) -> Result<Vec<u8>, VmError> {
    let Some(path) = &config.kernel else {
        return Ok(guest_image::PV_GUEST_ELF.to_vec());
    };
    let read_err = |source| VmError::ReadKernel { path: path.clone(), source };
    let not_a_file = |t| VmError::KernelNotAFile { path: path.clone(), kind: file_kind(t) };
    let metadata = std::fs::metadata(path).map_err(read_err)?;
    if !metadata.is_file() {
        return Err(not_a_file(metadata.file_type()));
    }
    let too_large = |len| VmError::KernelTooLarge { path: path.clone(), len };
    if metadata.len() > MAX_KERNEL_FILE_BYTES {
        return Err(too_large(metadata.len()));
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(read_err)?;
    let opened = file.metadata().map_err(read_err)?;
    if !opened.is_file() {
        return Err(not_a_file(opened.file_type()));
    }
    let mut bytes = Vec::with_capacity(opened.len().min(MAX_KERNEL_FILE_BYTES) as usize);
    file.take(MAX_KERNEL_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > MAX_KERNEL_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}
