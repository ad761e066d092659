//! Hypercalls: how the guest asks the hypervisor for something.
//!
//! A hypercall is to a hypervisor what a system call is to a kernel: a deliberate trap
//! from the less-privileged side, with a number and arguments, answered with a result.
//!
//! ## Why a port write and not `vmcall`
//!
//! On Intel, `vmcall` (AMD: `vmmcall`) is the instruction made for this. But under KVM
//! the kernel module consumes it: KVM implements its own hypercalls on it and answers
//! anything else with an error, so the exit never reaches a user-space VMM like hv.
//! A write to an I/O port, by contrast, is exactly what KVM hands to user space
//! (`KVM_EXIT_IO`) when no in-kernel device claims the port. So hv's hypercall is
//! `out dx, eax` to [`HYPERCALL_PORT`].
//!
//! ## Calling convention
//!
//! | register | on entry | on return |
//! | --- | --- | --- |
//! | `dx`  | [`HYPERCALL_PORT`] | unchanged |
//! | `rax` | hypercall number ([`Hypercall`]) | result: `>= 0` success, `< 0` a negated [`HypercallError`] code |
//! | `rdi` | argument 0 | unchanged |
//! | `rsi` | argument 1 | unchanged |
//! | `r8`  | argument 2 | unchanged |
//! | `r9`  | argument 3 | unchanged |
//!
//! Only that exact instruction is a hypercall: one 4-byte write to the port. A write of
//! another size, or a string write (`rep outsb`, which KVM hands over as one exit of
//! many bytes), is not a hypercall: hv ignores it as it ignores a write to any port
//! nothing handles, and `rax` is left as it was. So one instruction makes at most one
//! hypercall.
//!
//! All other registers are preserved. Addresses passed to hypercalls are
//! **guest-physical**: the hypervisor never walks the guest's page tables on the
//! guest's behalf, so a buffer must be physically contiguous (within one call).
//!
//! ## The hypercalls
//!
//! | nr | name | arguments | result | errors |
//! | --- | --- | --- | --- | --- |
//! | 0 | `nop` | none | 0 | none. Exists to measure the bare round trip. |
//! | 1 | `console_write` | a0 = gpa of bytes, a1 = length | bytes written (= length) | `EFAULT` range not inside guest RAM; `E2BIG` length > [`CONSOLE_WRITE_MAX`] |
//! | 2 | `shutdown` | a0 = exit code, a1 = gpa of the guest's [`GuestCounters`] (0: none) | does not return | `EINVAL` code > 255; `EFAULT` counters outside guest RAM |
//! | 3 | `report_panic` | a0 = gpa of message, a1 = length | does not return | `EFAULT`; `E2BIG` length > [`CONSOLE_WRITE_MAX`] |
//! | 4 | `report_exception` | a0 = vector, a1 = rip, a2 = error code, a3 = cr2 | does not return | `EINVAL` vector > 31 |
//! | 5 | `mmu_update` | a0 = gpa of an array of [`MmuUpdate`], a1 = count | count (all applied) | `EFAULT` array outside RAM; `E2BIG` count > [`MMU_UPDATE_MAX`]; `EINVAL` an entry address outside the page-table pool or not 8-byte aligned (then none is applied) |
//! | 6 | `set_cr3` | a0 = gpa of a PML4 (in the page-table pool, 4 KiB aligned) | 0 | `EINVAL` not a pool frame or not aligned; `E2BIG` the address space does not fit in the VMM's shadow area; `ENOSYS` in ept mode (there the guest loads CR3 itself) |
//! | 16 | `read_clock` | none | the time-stamp counter, as the VMM gives it | none. The guest uses it instead of `rdtsc` when the boot-info page says the clock is recorded ([`crate::boot_info::BOOT_FLAG_CLOCK_RECORDED`]): under `hv run --record` the VMM answers with the host's counter and logs it, under `hv replay` with the logged value. |
//!
//! `read_clock` is 16, apart from the others, because tests of the ABI use the numbers
//! just past `set_cr3` (7 and 8) as numbers that are no hypercall. Any other number
//! returns `ENOSYS`. Every call, good or bad, appears in hv's trace.
//! A bad argument is never fatal: the guest gets the error code and carries on, so a
//! guest can hurt only itself.

/// The I/O port the guest writes to make a hypercall. Chosen above the legacy PC port
/// range (0x000..0x400) so it can never collide with an emulated PC device.
pub const HYPERCALL_PORT: u16 = 0x0600;

const _: () = assert!(HYPERCALL_PORT >= 0x400, "the hypercall port must be outside the legacy PC range");

/// Largest number of bytes one `console_write` or `report_panic` may carry. Bounding it
/// keeps one hypercall from making the VMM copy an arbitrary amount of memory.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// Largest exit code `shutdown` accepts (a process exit status is one byte).
pub const SHUTDOWN_CODE_MAX: u64 = 255;

/// Highest exception vector `report_exception` accepts (0..=31 are the CPU exceptions).
pub const EXCEPTION_VECTOR_MAX: u64 = 31;

/// Largest number of page-table writes one `mmu_update` may carry.
pub const MMU_UPDATE_MAX: u64 = 512;

/// One page-table write for `mmu_update`: store `value` at guest-physical `entry`.
/// In memory: two little-endian u64, `entry` first (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct MmuUpdate {
    /// Guest-physical address of the page-table entry (inside the page-table pool).
    pub entry: u64,
    /// The new entry.
    pub value: u64,
}

/// Size of one [`MmuUpdate`] in the array.
pub const MMU_UPDATE_SIZE: u64 = 16;

/// What the guest kernel counted that the VMM cannot see: events that never leave the
/// guest (a page fault KVM delivers straight to the guest's IDT, a `mov cr3` under
/// ept). The guest hands them over with `shutdown` (so that reporting them costs no
/// extra exit), and
/// `--stats` and `hv bench` show them. In memory: little-endian u64s in this order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GuestCounters {
    /// Page faults taken by the guest kernel (demand-zero faults and fatal ones).
    pub page_faults: u64,
    /// Address-space loads (`mov cr3` in ept mode, `set_cr3` in shadow mode).
    pub cr3_loads: u64,
    /// System calls from ring-3 tasks.
    pub syscalls: u64,
    /// Page-table entries the guest wrote directly (each one traps in shadow mode).
    pub direct_pt_writes: u64,
    /// Page-table entries the guest sent through `mmu_update`.
    pub batched_pt_writes: u64,
}

/// Size of [`GuestCounters`] in memory.
pub const GUEST_COUNTERS_SIZE: u64 = 40;
const _: () = assert!(core::mem::size_of::<GuestCounters>() as u64 == GUEST_COUNTERS_SIZE);

/// The hypercall numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Hypercall {
    /// Do nothing and return 0: the bare cost of a round trip to the VMM.
    Nop = 0,
    /// Write bytes to the console.
    ConsoleWrite = 1,
    /// Stop the guest with an exit code.
    Shutdown = 2,
    /// Tell the VMM the guest kernel panicked, with the message; stops the guest.
    ReportPanic = 3,
    /// Tell the VMM an unexpected CPU exception happened; stops the guest.
    ReportException = 4,
    /// Apply a batch of page-table writes in one exit (the paravirtual MMU interface).
    MmuUpdate = 5,
    /// Load an address space (shadow mode: the VMM points CR3 at its shadow).
    SetCr3 = 6,
    /// Read the time-stamp counter through the VMM (so that a recorded run can be replayed).
    ReadClock = 16,
}

impl Hypercall {
    /// Every hypercall, in number order.
    pub const ALL: [Hypercall; 8] = [
        Hypercall::Nop,
        Hypercall::ConsoleWrite,
        Hypercall::Shutdown,
        Hypercall::ReportPanic,
        Hypercall::ReportException,
        Hypercall::MmuUpdate,
        Hypercall::SetCr3,
        Hypercall::ReadClock,
    ];

    /// Decodes a number from `rax`; `None` for a number hv does not know.
    pub fn from_number(nr: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|h| *h as u64 == nr)
    }

    /// The number that goes in `rax`.
    pub const fn number(self) -> u64 {
        self as u64
    }

    /// The name used in the table above, in traces and in statistics.
    pub const fn name(self) -> &'static str {
        match self {
            Hypercall::Nop => "nop",
            Hypercall::ConsoleWrite => "console_write",
            Hypercall::Shutdown => "shutdown",
            Hypercall::ReportPanic => "report_panic",
            Hypercall::ReportException => "report_exception",
            Hypercall::MmuUpdate => "mmu_update",
            Hypercall::SetCr3 => "set_cr3",
            Hypercall::ReadClock => "read_clock",
        }
    }
}

/// Why a hypercall failed. The guest sees the negated code in `rax`. The codes are
/// Linux's errno values, so they read the same in a debugger as a system call's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i64)]
pub enum HypercallError {
    /// An argument is out of its allowed range.
    Inval = 22,
    /// A guest-physical range is not entirely inside guest RAM.
    Fault = 14,
    /// A length is larger than the hypercall allows.
    TooBig = 7,
    /// No hypercall has this number.
    NoSys = 38,
}

impl HypercallError {
    /// Every error, for decoding.
    pub const ALL: [HypercallError; 4] = [
        HypercallError::Inval,
        HypercallError::Fault,
        HypercallError::TooBig,
        HypercallError::NoSys,
    ];

    /// The value the guest finds in `rax`: the negated code.
    pub const fn to_rax(self) -> u64 {
        (-(self as i64)) as u64
    }

    /// Decodes a hypercall's `rax` result: `Ok(value)` for success, `Err` for a known
    /// error code, and `Err(Inval)` for a negative value that is no known code.
    pub fn decode(rax: u64) -> Result<u64, HypercallError> {
        let signed = rax as i64;
        if signed >= 0 {
            return Ok(rax);
        }
        Err(Self::ALL
            .into_iter()
            .find(|e| *e as i64 == -signed)
            .unwrap_or(HypercallError::Inval))
    }

    /// The errno-style name, as traces print it.
    pub const fn name(self) -> &'static str {
        match self {
            HypercallError::Inval => "EINVAL",
            HypercallError::Fault => "EFAULT",
            HypercallError::TooBig => "E2BIG",
            HypercallError::NoSys => "ENOSYS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for h in Hypercall::ALL {
            assert_eq!(Hypercall::from_number(h.number()), Some(h));
        }
        assert_eq!(Hypercall::from_number(7), None);
        assert_eq!(Hypercall::from_number(u64::MAX), None);
    }

    #[test]
    fn errors_round_trip_through_rax() {
        for e in HypercallError::ALL {
            assert_eq!(HypercallError::decode(e.to_rax()), Err(e));
        }
        assert_eq!(HypercallError::decode(0), Ok(0));
        assert_eq!(HypercallError::decode(4096), Ok(4096));
        // A negative value that is no known code still reads as an error.
        assert_eq!(HypercallError::decode((-1000i64) as u64), Err(HypercallError::Inval));
    }

}
