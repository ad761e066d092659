//! The vCPU's register state: the registers a hypercall reads and answers in, the ones
//! the boot sets, and the dump that explains where a guest died.

use kvm_bindings::{kvm_regs, kvm_sregs};

/// The registers that explain where a guest died.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterDump {
    /// General registers: rip, rsp, rflags, rax, rbx, rcx, rdx, rsi, rdi, rbp.
    pub general: [(&'static str, u64); 10],
    /// Control registers and EFER: cr0, cr2, cr3, cr4, efer.
    pub control: [(&'static str, u64); 5],
    /// Code and stack selectors.
    pub cs: u16,
    /// Stack selector.
    pub ss: u16,
    /// IDT base and limit.
    pub idt: (u64, u16),
}

impl RegisterDump {
    /// The dump of these general and special registers.
    pub fn new(r: &kvm_regs, s: &kvm_sregs) -> Self {
        RegisterDump {
            general: [
                ("rip", r.rip),
                ("rsp", r.rsp),
                ("rflags", r.rflags),
                ("rax", r.rax),
                ("rbx", r.rbx),
                ("rcx", r.rcx),
                ("rdx", r.rdx),
                ("rsi", r.rsi),
                ("rdi", r.rdi),
                ("rbp", r.rbp),
            ],
            control: [("cr0", s.cr0), ("cr2", s.cr2), ("cr3", s.cr3), ("cr4", s.cr4), ("efer", s.efer)],
            cs: s.cs.selector,
            ss: s.ss.selector,
            idt: (s.idt.base, s.idt.limit),
        }
    }

    /// The value of the instruction pointer.
    pub fn rip(&self) -> u64 {
        self.general[0].1
    }
}

impl std::fmt::Display for RegisterDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for row in self.general.chunks(4) {
            write!(f, " ")?;
            for (name, v) in row {
                write!(f, " {name:>6}={v:#018x}")?;
            }
            writeln!(f)?;
        }
        write!(f, " ")?;
        for (name, v) in &self.control {
            write!(f, " {name:>6}={v:#018x}")?;
        }
        writeln!(f)?;
        write!(f, "      cs={:#06x}     ss={:#06x}    idt={:#x}/{:#x}", self.cs, self.ss, self.idt.0, self.idt.1)
    }
}
