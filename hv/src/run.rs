//! `hv run`: create the VM, boot the guest, run it to the end.
//!
//! [`run`] is the whole life of a VM in order; each step is one call into the module
//! that owns it, so this file doubles as a table of contents.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use pv_abi::layout::{LARGE_PAGE_SIZE, MAX_MEM_MIB, MIN_MEM_MIB};
use backend_drivers::runner::NotifyPolicy;
use pv_abi::MmuMode;

use crate::boot::{self, BootError, BootInputs};
use crate::console::ConsoleOutput;
use crate::devices::{DeviceError, DiskConfig, Devices};
use crate::host_info::HostMmu;
use crate::machine::{Machine, MachineError};
use crate::outcome::GuestStop;
use crate::shadow::{ShadowPaging, ShadowSetupError};
use crate::stats::RunStats;
use crate::trace::{TraceEvent, TraceFormat, TraceWriter, Tracer};
use crate::watchdog::Watchdog;
use crate::{boot::elf::MAX_KERNEL_FILE_BYTES, guest_image, vcpu_loop};

/// What to run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// A kernel ELF to boot instead of the built-in pv-guest.
    pub kernel: Option<PathBuf>,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Words passed to the guest.
    pub guest_args: Vec<String>,
    /// Where to write a trace, and in which format.
    pub trace: Option<(PathBuf, TraceFormat)>,
    /// A disk image for the block device.
    pub disk: Option<DiskConfig>,
    /// When backends signal the guest.
    pub notify_policy: NotifyPolicy,
    /// Stop the guest if it is still running after this long.
    pub timeout: Option<std::time::Duration>,
    /// How guest memory is translated (`--mmu`).
    pub mmu: MmuMode,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunReport {
    /// Why the guest stopped.
    pub stop: GuestStop,
    /// Counters.
    pub stats: RunStats,
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
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
    /// The kernel file is too large.
    #[error("the kernel {path} is {len} bytes; hv reads kernels of at most {MAX_KERNEL_FILE_BYTES} bytes")]
    KernelTooLarge {
        /// The path.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The guest could not be loaded.
    #[error("{0}")]
    Boot(#[from] BootError),
    /// KVM setup failed.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// The --timeout watchdog could not be started.
    #[error("cannot start the --timeout watchdog: {0}")]
    Watchdog(std::io::Error),
    /// A device could not be set up.
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// The trace file could not be written.
    #[error("cannot write the trace file {path}: {source}")]
    Trace {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn check_memory_size(mib: u64) -> Result<u64, RunError> {
    let bytes = mib << 20;
    if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mib) || !bytes.is_multiple_of(LARGE_PAGE_SIZE) {
        return Err(RunError::BadMemorySize { mib });
    }
    Ok(bytes)
}

fn read_kernel(config: &RunConfig) -> Result<Vec<u8>, RunError> {
    let Some(path) = &config.kernel else {
        return Ok(guest_image::PV_GUEST_ELF.to_vec());
    };
    let read_err = |source| RunError::ReadKernel { path: path.clone(), source };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > MAX_KERNEL_FILE_BYTES {
        return Err(RunError::KernelTooLarge { path: path.clone(), len });
    }
    std::fs::read(path).map_err(read_err)
}

/// Boots the guest and runs it until it stops. `started` is when hv started (for the
/// time-to-first-line figure); console output goes to `console`.
pub fn run(config: &RunConfig, console: Box<dyn Write + Send>, started: Instant) -> Result<RunReport, RunError> {
    let ram_bytes = check_memory_size(config.mem_mib)?;
    let kernel = read_kernel(config)?;
    // Check the file before touching KVM, so a bad kernel is named as such everywhere.
    let image = boot::elf::parse_kernel(&kernel, boot::kernel_memory_limit(ram_bytes)).map_err(BootError::from)?;
    let disk = config.disk.as_ref().map(Devices::open_disk).transpose()?;
    let tracer = match &config.trace {
        Some((path, format)) => Tracer::to_writer(
            TraceWriter::create(path, *format).map_err(|source| RunError::Trace { path: path.clone(), source })?,
        ),
        None => Tracer::default(),
    };

    let mut shadow = match config.mmu {
        MmuMode::Ept => None,
        MmuMode::Shadow => Some(ShadowPaging::new(ram_bytes)?),
    };
    let mut machine = Machine::new(ram_bytes, shadow.as_ref())?;
    let console = ConsoleOutput::new(console);
    let devices = Devices::attach(&machine, console.clone(), disk, &tracer, config.notify_policy)?;
    let inputs = BootInputs {
        kernel: &kernel,
        image: &image,
        guest_args: &config.guest_args,
        mmu: config.mmu,
        tsc_khz: machine.tsc_khz().map_or(0, u64::from),
        nx: machine.nx_supported(),
        devices: devices.layout(),
    };
    let plan = boot::prepare(machine.ram(), &inputs)?;
    // ept: CR3 is the guest's own root. shadow: the shadow of it, in the shadow area.
    let cr3 = match shadow.as_mut() {
        None => plan.page_table_root,
        Some(s) => s.load_root(machine.ram(), plan.page_table_root).map_err(RunError::ShadowBoot)?,
    };
    machine.set_boot_state(&plan, cr3)?;
    tracer.emit(|| TraceEvent::Boot {
        entry: plan.entry,
        mem_bytes: ram_bytes,
        mmu: config.mmu.name(),
        segments: plan.segments,
        cmdline: config.guest_args.clone(),
    });
    for event in shadow.as_mut().map(ShadowPaging::drain_events).unwrap_or_default() {
        tracer.emit(|| TraceEvent::Shadow(event));
    }

    let mut stats = RunStats::new(started);
    stats.mmu = config.mmu;
    devices.start();
    let pt_pool = plan.boot_info.pt_pool_start..plan.boot_info.pt_pool_end;
    let watchdog = config.timeout.map(Watchdog::arm).transpose().map_err(RunError::Watchdog)?;
    let stop = vcpu_loop::run(
        &mut machine,
        &mut vcpu_loop::LoopContext {
            console: &console,
            tracer: &tracer,
            stats: &mut stats,
            pt_pool,
            watchdog: watchdog.as_ref(),
            shadow: shadow.as_mut(),
            stale_translations: false,
            // With hardware EPT/NPT the CPU walks the tables in memory itself and sees
            // every write; only a software MMU in KVM keeps a copy that can go stale.
            flush_after_host_writes: !HostMmu::detect().has_hardware_two_dimensional_paging(),
        },
    );
    stats.shadow = shadow.as_ref().map(ShadowPaging::counters);
    drop(watchdog);
    stats.devices = devices.stop();
    console.flush();
    stats.finish(console.first_line_at());
    if let Some((path, _)) = &config.trace {
        tracer.finish().map_err(|source| RunError::Trace { path: path.clone(), source })?;
    }
    Ok(RunReport { stop, stats })
}
