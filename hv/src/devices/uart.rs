//! An emulated 16550 UART at COM1 (ports 0x3f8–0x3ff): **full device emulation**, the
//! other way to give a guest a device, for comparison with the split drivers.
//!
//! A split driver's guest writes whole requests into shared memory and rings a doorbell
//! that never leaves the kernel. An emulated device instead looks like hardware: the
//! guest's driver talks to registers with `in` and `out`, and since no real device sits
//! behind those ports, every access is a VM exit that hv completes by pretending to be the
//! chip. Printing one character to a 16550 takes at least two exits: read the line status
//! register (is the transmitter empty?), then write the transmit register. That is what
//! QEMU does for every legacy device, and why paravirtual devices were invented
//! (`hv demo emulated-vs-pv` measures both).
//!
//! What is emulated: enough of the chip for a polling driver to print. The transmitter
//! is always empty (the line status register reads 0x60: THR empty, transmitter idle);
//! there is never received data; interrupts are never raised; the divisor latch,
//! interrupt-enable, line-control, modem-control and scratch registers keep what is
//! written to them. The characters go to the guest's console (sanitised there), a line at
//! a time, so that a line printed through the UART reads the same as one printed through
//! the PV console. Its registers are not part of a snapshot (a restored guest finds the
//! chip as after reset, with nothing lost: there is no buffered data).

use super::console::ConsoleOutput;

/// COM1's first port.
pub const COM1: u16 = 0x3f8;
/// The eight ports of COM1.
pub const COM1_PORTS: std::ops::Range<u16> = COM1..COM1 + 8;
/// Line status when idle: transmit holding register empty (bit 5) and transmitter empty
/// (bit 6); no data ready (bit 0 clear).
const LSR_IDLE: u8 = 0x60;
/// Line control's divisor-latch access bit: registers 0 and 1 become the baud divisor.
const LCR_DLAB: u8 = 0x80;
/// Modem status: clear to send, data set ready, carrier detect.
const MSR_READY: u8 = 0xb0;
/// Interrupt identification: no interrupt pending (bit 0 set).
const IIR_NONE: u8 = 0x01;
/// Longest line held before it is written without its newline (a guest that never ends
/// its line cannot grow hv's memory).
const LINE_MAX: usize = 256;

/// One register access, as the trace shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartAccess {
    /// The register's name (`THR`, `LSR`…).
    pub register: &'static str,
    /// A write (or a read).
    pub write: bool,
    /// The byte written or read.
    pub value: u8,
}

/// The emulated chip.
pub struct Uart16550 {
    console: ConsoleOutput,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: [u8; 2],
    line: Vec<u8>,
    /// Characters transmitted, for `--stats` and the demo.
    pub transmitted: u64,
}

impl Uart16550 {
    /// A chip as after reset, printing to `console`.
    pub fn new(console: ConsoleOutput) -> Self {
        Uart16550 { console, ier: 0, lcr: 0, mcr: 0, scr: 0, divisor: [1, 0], line: Vec::new(), transmitted: 0 }
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    /// The guest wrote `value` to `port` (one of [`COM1_PORTS`]).
    pub fn write(&mut self, port: u16, value: u8) -> UartAccess {
        let register = match (port.wrapping_sub(COM1), self.dlab()) {
            (0, true) => {
                self.divisor[0] = value;
                "DLL"
            }
            (1, true) => {
                self.divisor[1] = value;
                "DLM"
            }
            (0, false) => {
                self.transmit(value);
                "THR"
            }
            (1, false) => {
                self.ier = value & 0x0f;
                "IER"
            }
            (2, _) => "FCR",
            (3, _) => {
                self.lcr = value;
                "LCR"
            }
            (4, _) => {
                self.mcr = value & 0x1f;
                "MCR"
            }
            (7, _) => {
                self.scr = value;
                "SCR"
            }
            // The status registers are read-only: a write is ignored, as by the chip.
            (5, _) => "LSR",
            _ => "MSR",
        };
        UartAccess { register, write: true, value }
    }

    /// The guest read `port` (one of [`COM1_PORTS`]).
    pub fn read(&mut self, port: u16) -> UartAccess {
        let (register, value) = match (port.wrapping_sub(COM1), self.dlab()) {
            (0, true) => ("DLL", self.divisor[0]),
            (1, true) => ("DLM", self.divisor[1]),
            (0, false) => ("RBR", 0),
            (1, false) => ("IER", self.ier),
            (2, _) => ("IIR", IIR_NONE),
            (3, _) => ("LCR", self.lcr),
            (4, _) => ("MCR", self.mcr),
            (5, _) => ("LSR", LSR_IDLE),
            (6, _) => ("MSR", MSR_READY),
            _ => ("SCR", self.scr),
        };
        UartAccess { register, write: false, value }
    }

    /// One character out of the transmitter: to the console, a line at a time.
    fn transmit(&mut self, byte: u8) {
        self.transmitted += 1;
        self.line.push(byte);
        if byte == b'\n' || self.line.len() >= LINE_MAX {
            self.console.write_guest_bytes(&self.line);
            self.line.clear();
        }
    }

    /// Writes out a line left unfinished (the guest stopped mid-line).
    pub fn flush(&mut self) {
        if !self.line.is_empty() {
            self.console.write_guest_bytes(&self.line);
            self.line.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::console::CapturedOutput;

    fn uart() -> (Uart16550, CapturedOutput) {
        let out = CapturedOutput::default();
        (Uart16550::new(ConsoleOutput::new(Box::new(out.clone()))), out)
    }

    #[test]
    fn a_polling_driver_prints_a_line() {
        let (mut u, out) = uart();
        for &b in b"hi\n" {
            assert_eq!(u.read(COM1 + 5).value & 0x20, 0x20, "the transmitter is always ready");
            assert_eq!(u.write(COM1, b).register, "THR");
        }
        assert_eq!(out.text(), "hi\n");
        assert_eq!(u.transmitted, 3);
    }

    #[test]
    fn the_divisor_latch_hides_the_data_registers() {
        let (mut u, out) = uart();
        u.write(COM1 + 3, LCR_DLAB | 0x03);
        assert_eq!(u.write(COM1, 0x01).register, "DLL");
        assert_eq!(u.write(COM1 + 1, 0x00).register, "DLM");
        assert_eq!(u.read(COM1).value, 0x01);
        u.write(COM1 + 3, 0x03);
        assert_eq!(u.read(COM1 + 3).value, 0x03);
        assert_eq!(out.text(), "", "divisor writes print nothing");
        u.write(COM1 + 7, 0x5a);
        assert_eq!(u.read(COM1 + 7).value, 0x5a, "the scratch register keeps its byte");
    }

    #[test]
    fn hostile_escape_sequences_and_endless_lines_are_tamed() {
        let (mut u, out) = uart();
        for &b in b"\x1b]52;c;ZXZpbA==\x07\x1b[2J" {
            u.write(COM1, b);
        }
        for _ in 0..(LINE_MAX * 2) {
            u.write(COM1, b'x');
        }
        u.flush();
        let text = out.text();
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "no escape reaches the terminal");
        assert!(text.len() >= LINE_MAX * 2, "nothing is lost");
        // Writes to read-only registers and reads of empty ones are harmless.
        assert_eq!(u.write(COM1 + 5, 0xff).register, "LSR");
        assert_eq!(u.read(COM1 + 5).value, LSR_IDLE);
        assert_eq!(u.read(COM1).value, 0, "no received data, ever");
    }
}
