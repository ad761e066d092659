//! The vCPU exit loop: the heart of any KVM-based VMM.
//!
//! `KVM_RUN` runs guest code on the real CPU until something happens that the kernel
//! cannot (or will not) handle by itself; then it returns to us with an *exit reason*.
//! This is trap-and-emulate in its plainest form: the guest runs natively until it does
//! something sensitive, the hypervisor takes over, emulates it, and resumes the guest.
//!
//! ```text
//!   loop {
//!       exit = KVM_RUN            // guest runs until it needs us
//!       match exit {              // we emulate what it asked for
//!           port write to HYPERCALL_PORT => hypercall::dispatch, set rax
//!           triple fault, failed entry, … => stop with a message
//!       }
//!   }
//! ```

use std::time::Instant;

use kvm_ioctls::VcpuExit;

use super::control::{ExitBoundary, VcpuMailbox};
use super::counters::VcpuCounters;
use super::handling::HandledAs;
use super::hypercall::{self, HypercallRequest};
use super::watchdog::Watchdog;
use crate::devices::console::ConsoleOutput;
use crate::devices::uart::{Uart16550, UartAccess, COM1_PORTS};
use crate::devices::Devices;
use crate::kvm::KvmVm;
use crate::outcome::{GuestStop, KvmFailure};
use crate::record::Session;
use crate::shadow::{MmioWrite, ShadowPaging};
use crate::trace::{ExitReason, TraceEvent, Tracer};
use pv_abi::event_channel::{DOORBELL_PORT_BASE, MAX_CHANNELS};
use pv_abi::hypercall::HYPERCALL_PORT;
use pv_abi::addr::{MachineAddr, PseudoPhys};
use pv_abi::Hypercall;

/// An exit, copied out of KVM's shared `kvm_run` page so the vCPU can be used again.
enum Exit {
    IoOut { port: u16, size: usize, first_byte: u8 },
    /// `uart`: the emulated UART's answer, when the port is one of its registers.
    IoIn { port: u16, size: usize, uart: Option<UartAccess> },
    Mmio { gpa: MachineAddr, len: usize, write: bool, data: [u8; 8] },
    Hlt,
    Shutdown,
    FailEntry { reason: u64 },
    InternalError,
    Interrupted,
    Other(String),
}

impl Exit {
    fn reason(&self) -> ExitReason {
        match self {
            Exit::IoOut { .. } => ExitReason::IoOut,
            Exit::IoIn { .. } => ExitReason::IoIn,
            Exit::Mmio { write: false, .. } => ExitReason::MmioRead,
            Exit::Mmio { write: true, .. } => ExitReason::MmioWrite,
            Exit::Hlt => ExitReason::Hlt,
            Exit::Shutdown => ExitReason::Shutdown,
            Exit::FailEntry { .. } => ExitReason::FailEntry,
            Exit::InternalError => ExitReason::InternalError,
            Exit::Interrupted => ExitReason::Interrupted,
            Exit::Other(_) => ExitReason::Other,
        }
    }
}

/// The size of the one port write that is a hypercall (`out dx, eax`).
const HYPERCALL_WRITE_BYTES: usize = 4;

/// Value a read from a port with no device returns, as on a real PC bus.
const FLOATING_BUS: u8 = 0xff;

/// Everything the loop reports into.
pub struct LoopContext<'a> {
    /// The guest's console.
    pub console: &'a ConsoleOutput,
    /// The trace.
    pub tracer: &'a Tracer,
    /// The counters.
    pub counters: &'a mut VcpuCounters,
    /// The page-table pool, for `mmu_update`.
    pub pt_pool: std::ops::Range<PseudoPhys>,
    /// The devices (jobs may need them: a snapshot drains their rings).
    pub devices: &'a Devices,
    /// Where jobs from other threads arrive (`super::control`).
    pub mailbox: Option<&'a VcpuMailbox>,
    /// The `--timeout` watchdog, if armed.
    pub watchdog: Option<&'a Watchdog>,
    /// Shadow paging, in shadow mode.
    pub shadow: Option<&'a mut ShadowPaging>,
    /// Set when an ept-mode `mmu_update` changed an entry the CPU may have cached.
    pub stale_translations: bool,
    /// Whether KVM must be told to forget translations after hv changed a page-table
    /// entry from the host side: true wherever KVM implements the guest's paging in
    /// software (see `KvmVm::forget_cached_translations`).
    pub flush_after_host_writes: bool,
    /// Record or replay (`crate::record`): called at each exit the guest makes, each
    /// `read_clock` and each doorbell write. `None` in a normal run.
    pub session: Option<&'a mut Session>,
    /// The emulated UART at COM1 (`crate::devices::uart`).
    pub uart: &'a mut Uart16550,
}

/// Runs the vCPU until the guest stops.
pub fn run(vm: &mut KvmVm, cx: &mut LoopContext) -> GuestStop {
    let mut deferred_since = None;
    loop {
        cx.tracer.mark_guest_entry();
        let exit = match next_exit(vm, cx.uart) {
            Ok(exit) => exit,
            Err(e) => {
                return GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "KVM_RUN", source: e }, dump: vm.register_dump() }
            }
        };
        let handling_from = Instant::now();
        let reason = exit.reason();
        cx.counters.count_exit(reason);
        // Recording or replaying, an exit a signal caused is no guest event: it is left
        // out of the trace and the log, so the two runs' traces can be the same.
        let guest_made = reason != ExitReason::Interrupted || cx.session.is_none();
        if guest_made {
            cx.tracer.emit(|| trace_exit(&exit));
        }
        let stop = session_exit(cx, &exit, guest_made)
            .or_else(|| handle_exit(vm, cx, exit))
            .or_else(|| forget_stale_translations(vm, cx))
            .or_else(|| if guest_made { cx.session.as_deref_mut().and_then(Session::after_exit) } else { None })
            .or_else(|| serve_jobs(vm, cx, reason == ExitReason::Interrupted, &mut deferred_since))
            // Checked after every exit, not only when the watchdog's signal interrupted
            // KVM_RUN: a guest whose exits keep hv busy (a storm of costly page-table
            // batches) spends most of its time outside KVM_RUN, where the signal is
            // handled and lost, and would otherwise outlive --timeout by far.
            .or_else(|| timed_out(vm, cx));
        if let Some(stop) = stop {
            cx.tracer.emit(|| TraceEvent::Stop(Box::new(stop.clone())));
            return stop;
        }
        let handled_as = match (cx.counters.current_hypercall.take(), reason) {
            (Some(name), _) => HandledAs::Hypercall(name),
            (None, ExitReason::MmioWrite) if cx.shadow.is_some() => HandledAs::TrappedPageTableWrite,
            (None, reason) => HandledAs::Exit(reason),
        };
        cx.counters.handling.record(handled_as, handling_from.elapsed());
    }
}

/// Runs the jobs other threads left for this exit boundary (`super::control`), if any.
fn serve_jobs(vm: &mut KvmVm, cx: &mut LoopContext, hv_caused: bool, deferred_since: &mut Option<std::time::Instant>) -> Option<GuestStop> {
    let mailbox = cx.mailbox.filter(|m| m.has_jobs())?;
    let mut boundary = ExitBoundary {
        kvm: vm,
        shadow: cx.shadow.as_deref_mut(),
        devices: cx.devices,
        counters: cx.counters,
        tracer: cx.tracer,
        console: cx.console,
        paused: false,
        in_cr3_section: false,
    };
    mailbox.serve(&mut boundary, hv_caused, deferred_since)
}

/// Record or replay: logs the exit, or checks it against the log.
fn session_exit(cx: &mut LoopContext, exit: &Exit, guest_made: bool) -> Option<GuestStop> {
    let session = cx.session.as_deref_mut().filter(|_| guest_made)?;
    let TraceEvent::Exit { reason, port, gpa } = trace_exit(exit) else { return None };
    session.exit(reason, port, gpa)
}

fn trace_exit(exit: &Exit) -> TraceEvent {
    let (port, gpa) = match exit {
        Exit::IoOut { port, .. } | Exit::IoIn { port, .. } => (Some(*port), None),
        Exit::Mmio { gpa, .. } => (None, Some(*gpa)),
        _ => (None, None),
    };
    TraceEvent::Exit { reason: exit.reason(), port, gpa }
}

/// Runs the guest once and copies out why it stopped.
fn next_exit(vm: &mut KvmVm, uart: &mut Uart16550) -> Result<Exit, kvm_ioctls::Error> {
    let vcpu = vm.vcpu_mut();
    let exit = match vcpu.run() {
        Ok(VcpuExit::IoOut(port, data)) => Exit::IoOut { port, size: data.len(), first_byte: data.first().copied().unwrap_or(0) },
        Ok(VcpuExit::IoIn(port, data)) => {
            // Complete the `in` now: KVM copies `data` into the guest's register on the
            // next KVM_RUN. A one-byte read of a UART register gets the chip's answer;
            // anything else reads the floating bus.
            data.fill(FLOATING_BUS);
            let uart = match (COM1_PORTS.contains(&port), data.len()) {
                (true, 1) => {
                    let access = uart.read(port);
                    data[0] = access.value;
                    Some(access)
                }
                _ => None,
            };
            Exit::IoIn { port, size: data.len(), uart }
        }
        Ok(VcpuExit::MmioRead(gpa, data)) => Exit::Mmio { gpa: MachineAddr::new(gpa), len: data.len(), write: false, data: [0; 8] },
        Ok(VcpuExit::MmioWrite(gpa, data)) => {
            let mut bytes = [0u8; 8];
            let len = data.len().min(8);
            bytes[..len].copy_from_slice(&data[..len]);
            Exit::Mmio { gpa: MachineAddr::new(gpa), len, write: true, data: bytes }
        }
        Ok(VcpuExit::Hlt) => Exit::Hlt,
        Ok(VcpuExit::Shutdown) => Exit::Shutdown,
        Ok(VcpuExit::FailEntry(reason, _cpu)) => Exit::FailEntry { reason },
        Ok(VcpuExit::InternalError) => Exit::InternalError,
        Ok(VcpuExit::Intr) => Exit::Interrupted,
        Ok(other) => Exit::Other(format!("{other:?}")),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Interrupted,
        Err(e) => return Err(e),
    };
    Ok(exit)
}

/// Emulates one exit; `Some` when the guest must stop.
fn handle_exit(vm: &mut KvmVm, cx: &mut LoopContext, exit: Exit) -> Option<GuestStop> {
    match exit {
        // The ABI's hypercall is exactly one `out dx, eax`: four bytes, once. Any other
        // write to the port (a byte, a word, a `rep outs` of thousands) is not a
        // hypercall and is ignored like a write to a port nothing handles, so one
        // instruction can never make more than one hypercall.
        Exit::IoOut { port: HYPERCALL_PORT, size: HYPERCALL_WRITE_BYTES, .. } => handle_hypercall(vm, cx),
        // Full device emulation: one register write of the UART, one exit.
        Exit::IoOut { port, size: 1, first_byte } if COM1_PORTS.contains(&port) => {
            let access = cx.uart.write(port, first_byte);
            cx.tracer.emit(|| TraceEvent::Uart { register: access.register, write: access.write, value: access.value });
            None
        }
        Exit::IoIn { uart: Some(access), .. } => {
            cx.tracer.emit(|| TraceEvent::Uart { register: access.register, write: access.write, value: access.value });
            None
        }
        Exit::IoOut { port, size, .. } => {
            // With ioeventfd registered, doorbell writes never get here; count any that
            // do, so --stats can show the doorbells bypassed this loop.
            if (DOORBELL_PORT_BASE..DOORBELL_PORT_BASE + MAX_CHANNELS as u16).contains(&port) {
                cx.counters.doorbell_exits += 1;
                // Recording or replaying, there is no ioeventfd: the device is served here.
                if let (Some(session), Some(_)) = (cx.session.as_deref_mut(), cx.devices.ring_of(port)) {
                    return session.doorbell(vm, cx.devices, cx.tracer, cx.console, port);
                }
            }
            cx.tracer.emit(|| TraceEvent::UnhandledPort { port, write: true, size });
            None
        }
        Exit::IoIn { port, size, uart: None } => {
            cx.tracer.emit(|| TraceEvent::UnhandledPort { port, write: false, size });
            None
        }
        Exit::Mmio { gpa, len, write: true, data } if cx.shadow.is_some() => handle_mmio_write(vm, cx, gpa, &data[..len]),
        Exit::Mmio { gpa, len, write, .. } => Some(GuestStop::NotRam { machine: gpa, write, len, dump: vm.register_dump() }),
        Exit::Hlt => Some(GuestStop::Halted { dump: vm.register_dump() }),
        Exit::Shutdown => Some(GuestStop::TripleFault { dump: vm.register_dump() }),
        Exit::FailEntry { reason } => Some(GuestStop::KvmFailure {
            what: KvmFailure::EntryFailed { reason },
            dump: vm.register_dump(),
        }),
        Exit::InternalError => Some(GuestStop::KvmFailure {
            what: KvmFailure::InternalError { suberror: internal_error_suberror(vm) },
            dump: vm.register_dump(),
        }),
        // A signal interrupted KVM_RUN: the watchdog's, if its time is up.
        Exit::Interrupted => timed_out(vm, cx),
        Exit::Other(what) => {
            Some(GuestStop::KvmFailure { what: KvmFailure::UnexpectedExit { exit: what }, dump: vm.register_dump() })
        }
    }
}

/// The guest's stop if the `--timeout` watchdog has fired.
fn timed_out(vm: &mut KvmVm, cx: &LoopContext) -> Option<GuestStop> {
    let w = cx.watchdog.filter(|w| w.fired())?;
    Some(GuestStop::TimedOut { millis: w.timeout().as_millis() as u64, dump: vm.register_dump() })
}

/// Reads the suberror of a KVM_EXIT_INTERNAL_ERROR (1 = emulation failure, …).
fn internal_error_suberror(vm: &mut KvmVm) -> u32 {
    let run = vm.vcpu_mut().get_kvm_run();
    // SAFETY: called only right after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR, so the
    // `internal` member is the active one of the exit union; it is plain integers.
    unsafe { run.__bindgen_anon_1.internal.suberror }
}

/// Shadow mode: a store to a read-only slot. A page-table write is applied and the
/// shadows synced; a store to the shadow area is dropped (ROM semantics) and traced.
fn handle_mmio_write(vm: &mut KvmVm, cx: &mut LoopContext, gpa: MachineAddr, data: &[u8]) -> Option<GuestStop> {
    let shadow = cx.shadow.as_deref_mut()?;
    let result = shadow.trapped_write(vm.ram(), gpa, data);
    let events = shadow.drain_events();
    match result {
        Ok(MmioWrite::PageTable(w)) => {
            cx.tracer.emit(|| TraceEvent::PtWrite { machine: gpa, entry: w.entry, value: w.value });
            events.into_iter().for_each(|e| cx.tracer.emit(|| TraceEvent::Shadow(e)));
            w.reload.and_then(|cr3| load_cr3(vm, cr3))
        }
        Ok(MmioWrite::ShadowArea) => {
            cx.tracer.emit(|| TraceEvent::ShadowAreaWrite { machine: gpa });
            None
        }
        Ok(MmioWrite::Elsewhere) => Some(GuestStop::NotRam { machine: gpa, write: true, len: data.len(), dump: vm.register_dump() }),
        Err(e) => Some(GuestStop::PageTableStoreRefused { what: format!("store at machine {gpa:#x}: {e}"), dump: vm.register_dump() }),
    }
}

/// If hv changed or removed, from the host side, a page-table entry the CPU may have
/// used (a shadow sync, a recycle, or an ept-mode `mmu_update`), KVM must forget its
/// cached translations before the guest runs again (`KvmVm::forget_cached_translations`).
fn forget_stale_translations(vm: &mut KvmVm, cx: &mut LoopContext) -> Option<GuestStop> {
    let shadow_stale = cx.shadow.as_deref_mut().is_some_and(ShadowPaging::take_flush_needed);
    if !(std::mem::take(&mut cx.stale_translations) || shadow_stale) || !cx.flush_after_host_writes {
        return None;
    }
    cx.counters.translation_flushes += 1;
    cx.tracer.emit(|| TraceEvent::TranslationFlush);
    let flush_from = Instant::now();
    let flushed = vm.forget_cached_translations();
    cx.counters.handling.record_flush(flush_from.elapsed());
    match flushed {
        Ok(()) => None,
        Err(e) => Some(GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "re-registering a memslot", source: e }, dump: None }),
    }
}

/// Points the vCPU at a new shadow root.
fn load_cr3(vm: &mut KvmVm, cr3: MachineAddr) -> Option<GuestStop> {
    match vm.set_cr3(cr3) {
        Ok(()) => None,
        Err(e) => Some(GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "KVM_SET_SREGS (CR3)", source: e }, dump: None }),
    }
}

/// A hypercall: read the registers, dispatch, write the result to `rax`.
fn handle_hypercall(vm: &mut KvmVm, cx: &mut LoopContext) -> Option<GuestStop> {
    let regs = match vm.guest_regs() {
        Ok(regs) => regs,
        Err(e) => return Some(GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "KVM_GET_REGS", source: e }, dump: None }),
    };
    let req = HypercallRequest::from_regs(&regs);
    let mut hcx = hypercall::HypercallContext {
        ram: vm.ram(),
        console: cx.console,
        pt_pool: cx.pt_pool.clone(),
        shadow: cx.shadow.as_deref_mut(),
    };
    let mut outcome = hypercall::dispatch(&req, &mut hcx);
    // The one hypercall answered from the host: record or replay its answer.
    if let (Some(session), Some(Hypercall::ReadClock), Ok(tsc)) = (cx.session.as_deref_mut(), Hypercall::from_number(req.nr), outcome.result) {
        match session.clock(tsc) {
            Ok(tsc) => outcome.result = Ok(tsc),
            Err(diverged) => return diverged.stop(),
        }
    }
    let shadow_events = cx.shadow.as_deref_mut().map(ShadowPaging::drain_events).unwrap_or_default();
    if let (Some(Hypercall::MmuUpdate), Ok(n)) = (Hypercall::from_number(req.nr), outcome.result) {
        cx.counters.mmu_update_entries += n;
    }
    cx.stale_translations |= outcome.stale_translations;
    if let Some(counters) = outcome.counters {
        cx.counters.guest = Some(counters);
    }
    cx.counters.count_hypercall(req.name(), outcome.result.is_err());
    cx.tracer.emit(|| TraceEvent::Hypercall {
        nr: req.nr,
        name: req.name(),
        args: req.args,
        result: outcome.result,
        text: outcome.text.clone(),
    });
    shadow_events.into_iter().for_each(|e| cx.tracer.emit(|| TraceEvent::Shadow(e)));
    if let Some(cr3) = outcome.cr3 {
        if let Some(stop) = load_cr3(vm, cr3) {
            return Some(stop);
        }
    }
    if outcome.stop.is_some() {
        return outcome.stop;
    }
    let rax = match outcome.result {
        Ok(v) => v,
        Err(e) => e.to_rax(),
    };
    match vm.set_guest_rax(rax) {
        Ok(()) => None,
        Err(e) => Some(GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "KVM_SET_REGS", source: e }, dump: None }),
    }
}
