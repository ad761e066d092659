//! Pre-copy live migration: moving a running guest to another hv process over TCP.
//!
//! A VM is a state machine whose whole state the hypervisor holds, so it can be moved:
//! its memory, its vCPU and its devices' positions are copied to another host and it
//! continues there. *Live* migration (Clark et al., NSDI'05) keeps the guest running
//! while most of the memory travels: it copies memory in rounds, each round the pages
//! the guest dirtied during the previous one, and pauses the guest only for the last,
//! small set and the state. The time the guest is paused is the **downtime**; hv
//! measures it and every round's figures.
//!
//! | file | idea |
//! | --- | --- |
//! | [`stream`] | the wire format, documented where it is defined, checked on receipt |
//! | [`dirty`] | pages dirtied since the last look: KVM's log and hv's own record, in either memory mode |
//! | [`figures`] | per-round figures, the report, its JSON; downtime defined |
//! | [`precopy`] | the round loop and its stop condition, over a sink and a dirty source |
//! | [`plot`] | dirty pages per round as an SVG chart |
//! | [`send`] | the source: rounds, pause, last pages and state, confirmation or resume |
//! | [`receive`] | the destination: fill fresh RAM from the stream, every record checked |
//!
//! The state travels as the state layer's [`crate::state::VmState`], postcard-encoded
//! ([`state_capture`] on the source); the destination builds its VM from the received
//! RAM and state with [`crate::vmm::Vm::restore`], in either memory mode ([`receive`]),
//! and confirms; only then does the source end its run.

pub mod stream;
pub mod dirty;
pub mod figures;
pub mod precopy;
pub mod plot;
pub mod send;
pub mod receive;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pv_abi::MmuMode;

use crate::kvm::dirty_log::DirtyLogError;
use crate::state::{capture, CaptureInputs, VmState};
use crate::trace::TraceFormat;
use crate::vcpu::control::{ExitBoundary, VcpuGone};
use crate::vmm::{Vm, VmConfig};
pub use figures::{MigrationReport, RoundFigures};
pub use send::{send, SendOptions};
use stream::StreamError;

/// Why a migration failed (on the source, the guest then runs on as before).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The destination could not be reached.
    #[error("cannot connect to {to}: {source}")]
    Connect {
        /// The destination.
        to: String,
        /// Why.
        source: std::io::Error,
    },
    /// The stream broke or broke the rules.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The destination refused the VM (its message).
    #[error("{0}")]
    Refused(String),
    /// The VM does not fit the destination (RAM size, kernel).
    #[error("{0}")]
    Mismatch(String),
    /// KVM's dirty log could not be turned on.
    #[error("cannot turn on KVM's dirty log: {0}")]
    Logging(kvm_ioctls::Error),
    /// The dirty log could not be read.
    #[error(transparent)]
    Dirty(#[from] DirtyLogError),
    /// Guest memory could not be read or allocated.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The VM's state could not be taken or used.
    #[error("the VM state: {0}")]
    State(String),
    /// The guest stopped (by itself) before the migration was done.
    #[error(transparent)]
    Gone(#[from] VcpuGone),
}

impl From<std::io::Error> for MigrationError {
    fn from(e: std::io::Error) -> Self {
        MigrationError::Stream(StreamError::Io(e))
    }
}

/// The source's state capture for the VM `config` describes: run on the vCPU thread with
/// the guest paused, it drains the devices, reads the vCPU (`state::capture`) and
/// encodes the state with postcard, as the snapshot file does.
pub fn state_capture(config: &VmConfig) -> impl FnOnce(&mut ExitBoundary) -> Result<Vec<u8>, String> + Send + 'static {
    let disk = config.disk.clone();
    let notify_always = config.notify_policy == backend_drivers::runner::NotifyPolicy::Always;
    let guest_args = config.guest_args.clone();
    move |boundary: &mut ExitBoundary| {
        let inputs = CaptureInputs { disk: disk.as_ref(), notify_always, guest_args: &guest_args };
        let state = capture(boundary, &inputs).map_err(|e| e.to_string())?;
        postcard::to_stdvec(&state).map_err(|e| format!("cannot encode the state: {e}"))
    }
}

/// The identity of the kernel `config` boots (the built-in pv-guest, or `--kernel`'s
/// file), as the stream's header carries it: both sides must run the same kernel.
pub fn kernel_of(config: &VmConfig) -> Result<u64, String> {
    match &config.kernel {
        None => Ok(stream::kernel_identity(crate::boot::guest_image::PV_GUEST_ELF)),
        Some(path) => std::fs::read(path).map(|b| stream::kernel_identity(&b)).map_err(|e| format!("cannot read {}: {e}", path.display())),
    }
}

/// How the destination runs what it receives (`hv run --incoming`'s options).
#[derive(Clone, Debug)]
pub struct IncomingOptions {
    /// Guest RAM it accepts, MiB (`--mem`): the source's must be the same.
    pub mem_mib: u64,
    /// The memory mode to run the guest in (either, whatever the source's).
    pub mmu: MmuMode,
    /// The kernel's identity (`stream::kernel_identity`): the source's must be the same.
    pub kernel: u64,
    /// A trace of the continued run.
    pub trace: Option<(PathBuf, TraceFormat)>,
    /// Most events the trace may hold (`--trace-max`).
    pub trace_max_events: u64,
    /// `--timeout` for the continued run.
    pub timeout: Option<Duration>,
    /// Confine the continued run's threads (`crate::sandbox`).
    pub seccomp: bool,
}

/// A VM received, restored and confirmed: ready for [`Vm::run`].
pub struct Received {
    /// The guest, continued.
    pub vm: Vm,
    /// How it runs here: the state's RAM size, disk and words, this side's memory mode
    /// and trace (what a later snapshot or migration of it must know).
    pub config: VmConfig,
    /// Where it came from.
    pub peer: SocketAddr,
    /// The memory mode it ran in there.
    pub came_from: MmuMode,
    /// Rounds received (the paused one included).
    pub rounds: u32,
    /// Pages received.
    pub pages: u64,
    /// From the stream's last byte to the confirmation, milliseconds.
    pub restore_ms: f64,
}

/// Waits on `listener` for one VM, builds it here (`Vm::restore`) and confirms to the
/// source. On any error the source is told why (if it still listens), and no guest runs.
/// A guest with a network device continues on `port` (`Vm::restore_on_network`): one
/// without a port, or a port without a network device, is refused like any mismatch.
pub fn receive(
    listener: &TcpListener,
    options: &IncomingOptions,
    console: Box<dyn Write + Send>,
    started: Instant,
    port: Option<Box<dyn backend_drivers::frame_port::FramePort>>,
) -> Result<Received, MigrationError> {
    let expect = receive::Expect { ram_bytes: options.mem_mib << 20, kernel: options.kernel };
    let receive::Incoming { header, ram, state, rounds, pages, ended_at, peer, answer } = receive::accept_vm(listener, expect)?;
    let restored = postcard::from_bytes::<VmState>(&state)
        .map_err(|e| format!("the VM state does not decode: {e}"))
        .and_then(|state| {
            if state.ram_bytes != header.ram_bytes {
                return Err(format!("the VM state is of {} bytes of RAM, the stream's header says {}", state.ram_bytes, header.ram_bytes));
            }
            let mut config = VmConfig::for_state(&state, Some(options.mmu)).map_err(|e| e.to_string())?;
            config.trace = options.trace.clone();
            config.trace_max_events = options.trace_max_events;
            config.timeout = options.timeout;
            config.seccomp = options.seccomp;
            Vm::restore_on_network(&config, &state, ram, console, started, port).map(|vm| (vm, config)).map_err(|e| e.to_string())
        });
    let (vm, config) = match restored {
        Ok(restored) => restored,
        Err(why) => {
            answer.refuse(&format!("the destination cannot run the VM: {why}"));
            return Err(MigrationError::State(why));
        }
    };
    // Only a confirmed guest may run: if the source cannot hear it, it resumes its own.
    answer.confirm(ended_at)?;
    Ok(Received { vm, config, peer, came_from: header.mode, rounds, pages, restore_ms: ended_at.elapsed().as_secs_f64() * 1e3 })
}
