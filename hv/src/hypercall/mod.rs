//! Hypercall dispatch: the VMM side of `pv_abi::hypercall`.
//!
//! The guest's `out dx, eax` to the hypercall port arrives here with the guest's
//! registers. [`dispatch`] decodes the number, checks every argument, and either answers
//! (a value or an error code for `rax`) or stops the guest. Nothing a guest passes can
//! make the VMM panic or touch memory outside guest RAM: addresses and lengths go
//! through [`GuestRam`]'s checked accessors, and lengths are bounded before any copy.

use kvm_bindings::kvm_regs;
use pv_abi::hypercall::{CONSOLE_WRITE_MAX, EXCEPTION_VECTOR_MAX, SHUTDOWN_CODE_MAX};
use pv_abi::{Hypercall, HypercallError};

use crate::console::ConsoleOutput;
use crate::guest_ram::GuestRam;
use crate::outcome::GuestStop;

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
}

impl HypercallOutcome {
    fn value(v: u64) -> Self {
        HypercallOutcome { result: Ok(v), stop: None, text: None }
    }

    fn error(e: HypercallError) -> Self {
        HypercallOutcome { result: Err(e), stop: None, text: None }
    }

    fn stop(stop: GuestStop) -> Self {
        HypercallOutcome { result: Ok(0), stop: Some(stop), text: None }
    }
}

/// Carries out one hypercall.
pub fn dispatch(req: &HypercallRequest, ram: &GuestRam, console: &ConsoleOutput) -> HypercallOutcome {
    let [a0, a1, a2, a3] = req.args;
    match Hypercall::from_number(req.nr) {
        None => HypercallOutcome::error(HypercallError::NoSys),
        Some(Hypercall::Nop) => HypercallOutcome::value(0),
        Some(Hypercall::ConsoleWrite) => console_write(ram, console, a0, a1),
        Some(Hypercall::Shutdown) => shutdown(a0),
        Some(Hypercall::ReportPanic) => report_panic(ram, a0, a1),
        Some(Hypercall::ReportException) => report_exception(a0, a1, a2, a3),
    }
}

/// Copies a guest buffer of at most [`CONSOLE_WRITE_MAX`] bytes out of guest RAM.
/// The length is checked before anything is allocated or copied.
fn read_guest_buffer(ram: &GuestRam, gpa: u64, len: u64) -> Result<Vec<u8>, HypercallError> {
    if len > CONSOLE_WRITE_MAX {
        return Err(HypercallError::TooBig);
    }
    let mut buf = vec![0u8; len as usize];
    ram.read(gpa, &mut buf).map_err(|_| HypercallError::Fault)?;
    Ok(buf)
}

fn console_write(ram: &GuestRam, console: &ConsoleOutput, gpa: u64, len: u64) -> HypercallOutcome {
    match read_guest_buffer(ram, gpa, len) {
        Ok(bytes) => {
            console.write_guest_bytes(&bytes);
            HypercallOutcome { text: Some(String::from_utf8_lossy(&bytes).into_owned()), ..HypercallOutcome::value(len) }
        }
        Err(e) => HypercallOutcome::error(e),
    }
}

fn shutdown(code: u64) -> HypercallOutcome {
    match u8::try_from(code) {
        Ok(code) if code as u64 <= SHUTDOWN_CODE_MAX => HypercallOutcome::stop(GuestStop::Shutdown { code }),
        _ => HypercallOutcome::error(HypercallError::Inval),
    }
}

fn report_panic(ram: &GuestRam, gpa: u64, len: u64) -> HypercallOutcome {
    match read_guest_buffer(ram, gpa, len) {
        Ok(bytes) => {
            let message = String::from_utf8_lossy(&bytes).into_owned();
            HypercallOutcome::stop(GuestStop::Panicked { message })
        }
        Err(e) => HypercallOutcome::error(e),
    }
}

fn report_exception(vector: u64, rip: u64, error_code: u64, cr2: u64) -> HypercallOutcome {
    if vector > EXCEPTION_VECTOR_MAX {
        return HypercallOutcome::error(HypercallError::Inval);
    }
    HypercallOutcome::stop(GuestStop::Exception { vector, rip, error_code, cr2 })
}

#[cfg(test)]
mod tests;
