//! Hypercall dispatch: the VMM side of `pv_abi::hypercall`.
//!
//! The guest's `out dx, eax` to the hypercall port arrives here with the guest's
//! registers. [`dispatch`] decodes the number, checks every argument, and either answers
//! (a value or an error code for `rax`) or stops the guest. Nothing a guest passes can
//! make the VMM panic or touch memory outside guest RAM: addresses and lengths go
//! through [`GuestRam`]'s checked accessors, and lengths are bounded before any copy.

use std::ops::Range;

use kvm_bindings::kvm_regs;
use pv_abi::hypercall::{
    GuestCounters, CONSOLE_WRITE_MAX, EXCEPTION_VECTOR_MAX, GUEST_COUNTERS_SIZE, MMU_UPDATE_MAX, MMU_UPDATE_SIZE,
    SHUTDOWN_CODE_MAX,
};
use pv_abi::addr::{GuestVirt, MachineAddr, PseudoPhys};
use pv_abi::paging::{Pte, ENTRY_SIZE};
use pv_abi::{Hypercall, HypercallError};

use crate::devices::console::ConsoleOutput;
use crate::memory::GuestRam;
use crate::outcome::GuestStop;
use crate::shadow::ShadowPaging;

/// A hypercall as the guest made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallRequest {
    /// The number from `rax`.
    pub nr: u64,
    /// Arguments from `rdi`, `rsi`, `r8`, `r9`.
    pub args: [u64; 4],
}

impl HypercallRequest {
    /// Reads a request from the registers, as the calling convention says.
    pub fn from_regs(regs: &kvm_regs) -> Self {
        HypercallRequest { nr: regs.rax, args: [regs.rdi, regs.rsi, regs.r8, regs.r9] }
    }

    /// The hypercall's name for traces and statistics.
    pub fn name(&self) -> &'static str {
        Hypercall::from_number(self.nr).map_or("unknown", Hypercall::name)
    }
}

/// What a hypercall did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HypercallOutcome {
    /// The value for `rax` (when the guest continues).
    pub result: Result<u64, HypercallError>,
    /// `Some` if the guest must stop.
    pub stop: Option<GuestStop>,
    /// For console writes: the text, for the trace.
    pub text: Option<String>,
    /// For `shutdown`: what the guest counted.
    pub counters: Option<GuestCounters>,
    /// Shadow mode: the machine address CR3 must hold from now on.
    pub cr3: Option<MachineAddr>,
    /// ept mode: `mmu_update` changed or removed an entry the CPU may have cached.
    pub stale_translations: bool,
}

impl HypercallOutcome {
    fn value(v: u64) -> Self {
        HypercallOutcome { result: Ok(v), stop: None, text: None, counters: None, cr3: None, stale_translations: false }
    }

    fn error(e: HypercallError) -> Self {
        HypercallOutcome { result: Err(e), stop: None, text: None, counters: None, cr3: None, stale_translations: false }
    }

    fn stop(stop: GuestStop) -> Self {
        HypercallOutcome { result: Ok(0), stop: Some(stop), text: None, counters: None, cr3: None, stale_translations: false }
    }
}

/// What a hypercall may use.
pub struct HypercallContext<'a> {
    /// Guest RAM.
    pub ram: &'a GuestRam,
    /// The console.
    pub console: &'a ConsoleOutput,
    /// The page-table pool, the only place `mmu_update` may write.
    pub pt_pool: Range<PseudoPhys>,
    /// Shadow paging, in shadow mode.
    pub shadow: Option<&'a mut ShadowPaging>,
}

/// Carries out one hypercall.
///
/// This is where the guest's register values get their meaning: an argument that names
/// guest memory becomes a [`PseudoPhys`] here (the guest's page tables, buffers and
/// hypercall arguments all speak pseudo-physical), and every use of it below goes
/// through [`GuestRam`]'s bounds check. The addresses an exception report carries (where
/// it happened, the faulting address) are the guest's virtual ones.
pub fn dispatch(req: &HypercallRequest, cx: &mut HypercallContext) -> HypercallOutcome {
    // LAB 1 BEGIN: decode the number and hand the arguments to the call's handler; an unknown number is ENOSYS
    let [a0, a1, a2, a3] = req.args;
    let guest_address = PseudoPhys::new;
    match Hypercall::from_number(req.nr) {
        None => HypercallOutcome::error(HypercallError::NoSys),
        Some(Hypercall::Nop) => HypercallOutcome::value(0),
        Some(Hypercall::ConsoleWrite) => console_write(cx.ram, cx.console, guest_address(a0), a1),
        Some(Hypercall::Shutdown) => shutdown(cx.ram, a0, (a1 != 0).then(|| guest_address(a1))),
        Some(Hypercall::ReportPanic) => report_panic(cx.ram, guest_address(a0), a1),
        Some(Hypercall::ReportException) => report_exception(a0, GuestVirt::new(a1), a2, GuestVirt::new(a3)),
        Some(Hypercall::MmuUpdate) => mmu_update(cx, guest_address(a0), a1),
        Some(Hypercall::SetCr3) => set_cr3(cx, guest_address(a0)),
        Some(Hypercall::ReadClock) => HypercallOutcome::value(host_tsc()),
    }
    // LAB 1 STUB: todo!("lab 1: decode req.nr with Hypercall::from_number and call its handler with the arguments the ABI gives it (an unknown number is HypercallError::NoSys)")
    // LAB 1 END
}

/// `read_clock`: the host's time-stamp counter. Under `hv run --record` the recorder
/// logs this answer and under `hv replay` replaces it with the logged one (`crate::record`),
/// which is why the guest asks for it by hypercall when its clock is recorded.
fn host_tsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; it touches no memory.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The guest's own counts (page faults, CR3 loads…) handed over at shutdown, for
/// `--stats`. They are the guest's word, shown as such; nothing in the VMM depends on them.
fn read_counters(ram: &GuestRam, gpa: PseudoPhys) -> Result<GuestCounters, HypercallError> {
    let mut bytes = [0u8; GUEST_COUNTERS_SIZE as usize];
    ram.read(gpa, &mut bytes).map_err(|_| HypercallError::Fault)?;
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let counters = GuestCounters {
        page_faults: word(0),
        cr3_loads: word(1),
        syscalls: word(2),
        direct_pt_writes: word(3),
        batched_pt_writes: word(4),
    };
    Ok(counters)
}

/// Copies a guest buffer of at most [`CONSOLE_WRITE_MAX`] bytes out of guest RAM.
/// The length is checked before anything is allocated or copied.
fn read_guest_buffer(ram: &GuestRam, gpa: PseudoPhys, len: u64) -> Result<Vec<u8>, HypercallError> {
    // LAB 1 BEGIN: bound the length, then copy the buffer through GuestRam's checked read
    if len > CONSOLE_WRITE_MAX {
        return Err(HypercallError::TooBig);
    }
    let mut buf = vec![0u8; len as usize];
    ram.read(gpa, &mut buf).map_err(|_| HypercallError::Fault)?;
    Ok(buf)
    // LAB 1 STUB: todo!("lab 1: check the guest's buffer: a length over CONSOLE_WRITE_MAX is TooBig (before allocating), a range outside guest RAM is Fault")
    // LAB 1 END
}

fn console_write(ram: &GuestRam, console: &ConsoleOutput, gpa: PseudoPhys, len: u64) -> HypercallOutcome {
    match read_guest_buffer(ram, gpa, len) {
        Ok(bytes) => {
            console.write_guest_bytes(&bytes);
            let text = backend_drivers::console::sanitize_text(&String::from_utf8_lossy(&bytes));
            HypercallOutcome { text: Some(text), ..HypercallOutcome::value(len) }
        }
        Err(e) => HypercallOutcome::error(e),
    }
}

/// `shutdown(code, counters)`: `counters` is `None` when the guest passed 0 (no report).
fn shutdown(ram: &GuestRam, code: u64, counters_gpa: Option<PseudoPhys>) -> HypercallOutcome {
    let code = match u8::try_from(code) {
        Ok(code) if code as u64 <= SHUTDOWN_CODE_MAX => code,
        _ => return HypercallOutcome::error(HypercallError::Inval),
    };
    let counters = match counters_gpa {
        None => None,
        Some(gpa) => match read_counters(ram, gpa) {
            Ok(c) => Some(c),
            Err(e) => return HypercallOutcome::error(e),
        },
    };
    HypercallOutcome { counters, ..HypercallOutcome::stop(GuestStop::Shutdown { code }) }
}

fn report_panic(ram: &GuestRam, gpa: PseudoPhys, len: u64) -> HypercallOutcome {
    match read_guest_buffer(ram, gpa, len) {
        Ok(bytes) => {
            // Printed to the user's terminal: sanitized like all guest text.
            let message = backend_drivers::console::sanitize_text(&String::from_utf8_lossy(&bytes));
            HypercallOutcome::stop(GuestStop::Panicked { message })
        }
        Err(e) => HypercallOutcome::error(e),
    }
}

fn report_exception(vector: u64, rip: GuestVirt, error_code: u64, cr2: GuestVirt) -> HypercallOutcome {
    if vector > EXCEPTION_VECTOR_MAX {
        return HypercallOutcome::error(HypercallError::Inval);
    }
    HypercallOutcome::stop(GuestStop::Exception { vector, rip, error_code, cr2 })
}

/// `mmu_update`: many page-table writes for the price of one exit.
///
/// The whole batch is read and checked first (every entry address 8-byte aligned and
/// inside the page-table pool), then applied; a batch with one bad address changes
/// nothing. In `ept` mode the entries' *values* need no check: the guest could write
/// them directly anyway, and KVM confines whatever they point at to guest RAM.
fn mmu_update(cx: &mut HypercallContext, gpa: PseudoPhys, count: u64) -> HypercallOutcome {
    if count > MMU_UPDATE_MAX {
        return HypercallOutcome::error(HypercallError::TooBig);
    }
    let mut bytes = vec![0u8; (count * MMU_UPDATE_SIZE) as usize];
    if cx.ram.read(gpa, &mut bytes).is_err() {
        return HypercallOutcome::error(HypercallError::Fault);
    }
    // Each record is (entry's pseudo-physical address, new value), as pv-abi defines it.
    let updates: Vec<(PseudoPhys, Pte)> = bytes
        .chunks_exact(MMU_UPDATE_SIZE as usize)
        .map(|c| {
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
            (PseudoPhys::new(word(&c[..8])), Pte::from_raw(word(&c[8..])))
        })
        .collect();
    let in_pool = |entry: PseudoPhys| entry.is_aligned(ENTRY_SIZE) && cx.pt_pool.contains(&entry);
    if !updates.iter().all(|(entry, _)| in_pool(*entry)) {
        return HypercallOutcome::error(HypercallError::Inval);
    }
    if let Some(shadow) = cx.shadow.as_deref_mut() {
        // Shadow mode: the engine writes the guest's tables and brings the shadows in step.
        let before = shadow.current_cr3();
        return match shadow.mmu_update(cx.ram, &updates) {
            Ok(cr3) => HypercallOutcome { cr3, ..HypercallOutcome::value(count) },
            Err(e) => shadow_refusal(shadow, before, e),
        };
    }
    // In ept mode the CPU walks these very tables. Where KVM does that in software it
    // keeps its own copy and does not see these host-side writes, so replacing a
    // present entry means KVM must be told to forget (see `forget_stale_translations`).
    let mut stale_translations = false;
    for (entry, value) in updates {
        let old = Pte::from_raw(cx.ram.read_u64(entry).unwrap_or(0));
        if cx.ram.write_u64(entry, value.raw()).is_err() {
            return HypercallOutcome::error(HypercallError::Fault);
        }
        stale_translations |= old.is_present() && old != value;
    }
    HypercallOutcome { stale_translations, ..HypercallOutcome::value(count) }
}

/// `set_cr3`: load an address space. Only shadow mode needs it: in ept mode the guest
/// loads CR3 itself, so the call does not exist there (`ENOSYS`).
fn set_cr3(cx: &mut HypercallContext, root: PseudoPhys) -> HypercallOutcome {
    let Some(shadow) = cx.shadow.as_deref_mut() else {
        return HypercallOutcome::error(HypercallError::NoSys);
    };
    let before = shadow.current_cr3();
    match shadow.load_root(cx.ram, root) {
        Ok(machine) => HypercallOutcome { cr3: Some(machine), ..HypercallOutcome::value(0) },
        Err(e) => shadow_refusal(shadow, before, e),
    }
}

/// A refused `set_cr3` or `mmu_update` in shadow mode: the guest gets the error code and
/// runs on in the address space it was in. That space still has a shadow (the engine
/// keeps or rebuilds it), but if it was rebuilt elsewhere CR3 must follow it.
fn shadow_refusal(shadow: &ShadowPaging, before: Option<MachineAddr>, e: shadow_mmu::ShadowError) -> HypercallOutcome {
    let now = shadow.current_cr3();
    HypercallOutcome { cr3: now.filter(|_| now != before), ..HypercallOutcome::error(shadow_error(e)) }
}

/// The guest's error code for an engine refusal.
fn shadow_error(e: shadow_mmu::ShadowError) -> HypercallError {
    match e {
        shadow_mmu::ShadowError::NotInPool(_) => HypercallError::Inval,
        shadow_mmu::ShadowError::AreaTooSmall => HypercallError::TooBig,
        shadow_mmu::ShadowError::AreaOverlapsGuest(_) | shadow_mmu::ShadowError::Memory(_) => HypercallError::Fault,
    }
}

#[cfg(test)]
mod tests;
