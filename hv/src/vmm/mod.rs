//! A VM as a value: one guest with its memory, vCPU, devices and memory mode.
//!
//! [`Vm::new`] builds a guest from a [`VmConfig`] and [`Vm::run`] runs it to the end on
//! the calling thread, which becomes its vCPU thread. Nothing a `Vm` holds is shared
//! with another one (its KVM file descriptors, RAM, shadow tables, device threads,
//! console and trace are all its own), so a program can build several and run each on
//! its own thread; `hv run` builds one. The two steps, in order, double as a table of
//! contents: each line is one call into the layer that owns it.
//!
//! | file | idea |
//! | --- | --- |
//! | [`config`] | what a guest is made of, before it exists |
//! | [`error`] | why a VM could not be created or run |
//! | [`stats`] | what one run did (`--stats`) |
//! | [`snapshot`] | saving a running VM to a file, at an exit boundary |
//! | [`restore`] | continuing a guest from a saved state, in either memory mode |
//! | [`session`] | a recorded or replayed VM: the log's header, the replay's checks |
//! | [`group`] | several guests in one process, each on its own vCPU thread |

pub mod config;
pub mod error;
pub mod restore;
pub mod snapshot;
pub mod stats;
pub mod session;
pub mod group;

use std::io::Write;
use std::time::Instant;

use pv_abi::addr::MachineAddr;
use pv_abi::layout::pt_pool;
use pv_abi::MmuMode;

use crate::boot::{self, cpu_state, BootError, BootInputs};
use crate::devices::console::ConsoleOutput;
use crate::devices::uart::Uart16550;
use crate::devices::net::NetConfig;
use crate::devices::{block, DeviceError, Devices, RingPositions, Serving};
use backend_drivers::frame_port::FramePort;
use crate::kvm::host_info::HostMmu;
use crate::kvm::{KvmVm, MemoryPlan};
use crate::outcome::GuestStop;
use crate::record::{Session, SessionReport};
use crate::shadow::ShadowPaging;
use crate::trace::{TraceEvent, TraceWriter, Tracer};
use crate::vcpu::control::{self, ExitBoundary, VcpuControl, VcpuMailbox};
use crate::vcpu::counters::VcpuCounters;
use crate::vcpu::exit_loop::{self, LoopContext};
use crate::vcpu::watchdog::Watchdog;
pub use config::VmConfig;
pub use error::VmError;
pub use session::SessionSetup;
use stats::RunStats;

/// How a run ended.
#[derive(Debug)]
pub struct RunReport {
    /// Why the guest stopped.
    pub stop: GuestStop,
    /// Counters.
    pub stats: RunStats,
    /// Record or replay: the memory hash and what was found (`None` in a normal run).
    pub session: Option<SessionReport>,
}

/// One guest, booted and ready to run.
///
/// Field order is drop order: the device threads stop before the VM whose memory they
/// serve is closed.
pub struct Vm {
    devices: Devices,
    kvm: KvmVm,
    shadow: Option<ShadowPaging>,
    console: ConsoleOutput,
    tracer: Tracer,
    config: VmConfig,
    started: Instant,
    control: VcpuControl,
    mailbox: VcpuMailbox,
    session: Option<Session>,
}

impl Vm {
    /// Creates the guest `config` describes, with its console output going to
    /// `console`: checks the kernel, creates the KVM VM and the devices, loads the
    /// kernel and sets the vCPU at its entry point. `started` is the instant the
    /// figures of `--stats` count from (when hv started, for `hv run`).
    pub fn new(config: &VmConfig, console: Box<dyn Write + Send>, started: Instant) -> Result<Vm, VmError> {
        Self::with_session(config, console, started, None)
    }

    /// [`Vm::new`], recorded or replayed as `setup` says (`crate::record`): the devices
    /// are served on the vCPU thread (record) or not at all (replay), and the guest is
    /// told to read its clock through hv. A replay first checks that it boots what was
    /// recorded.
    pub fn with_session(config: &VmConfig, console: Box<dyn Write + Send>, started: Instant, setup: Option<SessionSetup>) -> Result<Vm, VmError> {
        Self::build(config, console, started, setup, None)
    }

    /// [`Vm::new`], with a network device whose frames go to and come from `port` (a
    /// virtual switch's port, usually), the guest told its identity `net` in its
    /// boot-info page.
    pub fn on_network(config: &VmConfig, console: Box<dyn Write + Send>, started: Instant, port: Box<dyn FramePort>, net: NetConfig) -> Result<Vm, VmError> {
        Self::build(config, console, started, None, Some((port, net)))
    }

    fn build(
        config: &VmConfig,
        console: Box<dyn Write + Send>,
        started: Instant,
        setup: Option<SessionSetup>,
        network: Option<(Box<dyn FramePort>, NetConfig)>,
    ) -> Result<Vm, VmError> {
        let ram_bytes = config::check_memory_size(config.mem_mib)?;
        if config.seccomp {
            crate::sandbox::prepare()?;
        }
        let kernel = config::read_kernel(config)?;
        // Check the file before touching KVM, so a bad kernel is named as such everywhere.
        let image = boot::elf::parse_kernel(&kernel, boot::kernel_memory_limit(ram_bytes)).map_err(BootError::from)?;
        let disk = config.disk.as_ref().map(block::open_disk).transpose().map_err(DeviceError::from)?;
        let tracer = match &config.trace {
            Some((path, format)) => Tracer::to_writer(
                TraceWriter::create(path, *format, config.trace_max_events).map_err(|source| VmError::Trace { path: path.clone(), source })?,
            ),
            None => Tracer::default(),
        };

        let mut shadow = match config.mmu {
            MmuMode::Ept => None,
            MmuMode::Shadow => Some(ShadowPaging::new(ram_bytes)?),
        };
        let memory = shadow.as_ref().map_or_else(|| MemoryPlan::flat(ram_bytes), ShadowPaging::memory_plan);
        let mut kvm = KvmVm::new(ram_bytes, memory)?;
        let console = ConsoleOutput::new(console);
        let host_tsc_khz = kvm.tsc_khz().map_or(0, u64::from);
        let tsc_khz = setup.as_ref().map_or(host_tsc_khz, |s| s.tsc_khz(host_tsc_khz));
        if let Some(setup) = &setup {
            setup.check_replay(config, &kernel, kvm.nx_supported())?;
        }
        let disk_identity = disk.as_ref().map(|d| (d.sectors(), d.read_only()));
        let serving = setup.as_ref().map_or(Serving::Threads, SessionSetup::serving);
        let balloon = (serving == Serving::Threads).then(|| balloon_plan(config, ram_bytes, &image, kvm.ram()));
        let mut devices = Devices::attach_serving(&kvm, console.clone(), disk, &tracer, config.notify_policy, RingPositions::default(), serving, config.seccomp, balloon)?;
        // The network device comes after the others: it routes their GSIs again with its own.
        if let Some((port, net)) = network {
            devices.attach_net(&kvm, port, net, Default::default(), &tracer, config.notify_policy, config.seccomp)?;
        }
        let layout = devices.layout();
        let session = match setup {
            None => None,
            Some(setup) => {
                let disk = match serving {
                    Serving::Replayed { block } => block,
                    _ => disk_identity,
                };
                Some(setup.start(&session::header(config, &kernel, tsc_khz, kvm.nx_supported(), disk))?)
            }
        };
        let inputs = BootInputs {
            kernel: &kernel,
            image: &image,
            guest_args: &config.guest_args,
            mmu: config.mmu,
            tsc_khz,
            nx: kvm.nx_supported(),
            devices: layout,
            clock_recorded: session.is_some(),
        };
        let plan = boot::prepare(kvm.ram(), &inputs)?;
        // ept: CR3 is the guest's own root. shadow: the shadow of it, in the shadow area.
        let cr3 = match shadow.as_mut() {
            // ept mode: machine addresses are the pseudo-physical ones (one memslot at 0).
            None => MachineAddr::new(plan.page_table_root.raw()),
            Some(s) => s.load_root(kvm.ram(), plan.page_table_root).map_err(VmError::ShadowBoot)?,
        };
        let nx = kvm.nx_supported();
        kvm.set_initial_state(|sregs| cpu_state::long_mode_sregs(sregs, cr3, nx), &cpu_state::entry_regs(plan.entry, plan.boot_info_gpa))?;
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
        let (control, mailbox) = control::channel();
        Ok(Vm { devices, kvm, shadow, console, tracer, config: config.clone(), started, control, mailbox, session })
    }

    /// A handle through which other threads reach this VM while it runs (pause, resume,
    /// read counters, save its state: `crate::vcpu::control`). Jobs sent before
    /// [`Vm::run`] wait for its first exit.
    pub fn control(&self) -> VcpuControl {
        self.control.clone()
    }

    /// What the VM was made from.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// Who the guest is on the network (`None`: it has no network device).
    pub fn net_config(&self) -> Option<NetConfig> {
        self.devices.net_config()
    }

    /// Runs the guest on the calling thread (its vCPU thread) until it stops, then
    /// stops the devices and reports how it ended.
    pub fn run(self) -> Result<RunReport, VmError> {
        let Vm { devices, mut kvm, mut shadow, console, tracer, config, started, control: _, mailbox, mut session } = self;
        let mut stats = RunStats::new(started);
        stats.mmu = config.mmu;
        let mut counters = VcpuCounters::default();
        // The emulated UART at COM1 prints to the same console as the PV one.
        let mut uart = Uart16550::new(console.clone());
        devices.start();
        let pt_pool = pt_pool(kvm.ram().size());
        // This thread runs the vCPU: it is the one the watchdog and the control kick.
        let kick_target = mailbox.kicker().register_current_thread().map_err(VmError::Watchdog)?;
        let watchdog =
            config.timeout.map(|t| Watchdog::arm(t, mailbox.kicker().clone(), config.seccomp)).transpose().map_err(VmError::Watchdog)?;
        // Every thread this run needs exists now: from here on this one makes only the
        // calls of its exits and of hv's end (`crate::sandbox`).
        if config.seccomp {
            crate::sandbox::confine_current_thread(crate::sandbox::ThreadKind::Vcpu)?;
        }
        let stop = exit_loop::run(
            &mut kvm,
            &mut LoopContext {
                console: &console,
                tracer: &tracer,
                counters: &mut counters,
                pt_pool,
                devices: &devices,
                mailbox: Some(&mailbox),
                watchdog: watchdog.as_ref(),
                shadow: shadow.as_mut(),
                stale_translations: false,
                // With hardware EPT/NPT the CPU walks the tables in memory itself and sees
                // every write; only a software MMU in KVM keeps a copy that can go stale.
                flush_after_host_writes: !HostMmu::detect().has_hardware_two_dimensional_paging(),
                session: session.as_mut(),
                uart: &mut uart,
            },
        );
        uart.flush();
        // `hv replay --until N --snapshot FILE`: the vCPU is still at exit N.
        let snapshot = session.as_ref().and_then(Session::snapshot_due).map(|path| {
            let path = path.to_path_buf();
            let mut boundary = ExitBoundary {
                kvm: &mut kvm,
                shadow: shadow.as_mut(),
                devices: &devices,
                counters: &counters,
                tracer: &tracer,
                console: &console,
                paused: true,
                in_cr3_section: false,
            };
            session::snapshot_here(&path, &mut boundary, &config.guest_args)
        });
        let mut session = session.map(|s| s.finish(&stop, kvm.ram()));
        if let (Some(report), Some(snapshot)) = (session.as_mut(), snapshot) {
            match snapshot {
                Ok(done) => report.note = Some(report.note.take().map_or(done.clone(), |n| format!("{n}; {done}"))),
                Err(why) => report.problem = Some(format!("no snapshot at the --until point: {why}")),
            }
        }
        stats.vcpu = counters;
        stats.shadow = shadow.as_ref().map(ShadowPaging::counters);
        drop(watchdog);
        drop(kick_target);
        stats.balloon = devices.balloon_report(kvm.ram());
        (stats.devices, stats.net) = devices.stop();
        console.flush();
        stats.finish(console.first_line_at());
        if let Some((path, _)) = &config.trace {
            tracer.finish().map_err(|source| VmError::Trace { path: path.clone(), source })?;
        }
        Ok(RunReport { stop, stats, session })
    }
}

/// The balloon of a new guest: empty, with the first target `--balloon-target` asks
/// (all of RAM without it), and the kernel image's frames from the checked ELF file
/// (the same bounds the boot-info page will give the guest).
fn balloon_plan(config: &VmConfig, ram_bytes: u64, image: &boot::elf::KernelImage, ram: &crate::memory::GuestRam) -> crate::devices::BalloonPlan {
    let occupied = || image.segments.iter().filter(|s| s.mem_size > 0);
    let kernel_start = occupied().map(|s| s.phys_pages().0.raw()).min().unwrap_or_default();
    let kernel_end = occupied().map(|s| s.phys_pages().1.raw()).max().unwrap_or_default();
    let mem_pages = crate::devices::balloon::mib_to_pages(ram_bytes >> 20);
    let target = config.balloon_target_mib.map_or(mem_pages, |mib| crate::devices::balloon::mib_to_pages(mib).min(mem_pages));
    crate::devices::BalloonPlan {
        limits: crate::devices::balloon::limits(ram_bytes, kernel_start..kernel_end),
        state: crate::devices::balloon::new_state(ram),
        target_pages: Some(target),
    }
}
