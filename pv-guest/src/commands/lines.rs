//! `lines uart|pv N`: prints N lines through an emulated device or through the
//! paravirtual console, and says how long each line took (the guest half of
//! `hv demo emulated-vs-pv`).
//!
//! - `uart`: a polling driver for a 16550 UART at COM1, as an operating system on a PC
//!   would have: for every character, read the line status register until the
//!   transmitter is empty, then write the character to the transmit register. No chip is
//!   there: each `in` and each `out` is a VM exit that hv answers by emulating one
//!   (`hv/src/devices/uart.rs`).
//! - `pv`: the console split driver: the whole line goes into a shared ring, and the
//!   doorbell never leaves the kernel (no exit).
//!
//! The timing line itself is printed through the PV console afterwards.

use pv_abi::BootInfo;

use crate::arch::cpu;
use crate::hv::clock;
use crate::println;

/// COM1's transmit register (write) and line status register (read).
const COM1_THR: u16 = 0x3f8;
const COM1_LSR: u16 = 0x3fd;
/// Line status: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 0x20;
/// Reads of the line status register before a character is given up on (a chip that
/// never becomes ready must not hang the kernel).
const MAX_POLLS: u32 = 1000;
/// Exit code for bad arguments.
const EXIT_USAGE: u8 = 2;

/// Sends one character through the UART; false if the chip never became ready.
fn uart_putc(byte: u8) -> bool {
    for _ in 0..MAX_POLLS {
        if cpu::uart_inb(COM1_LSR) & LSR_THR_EMPTY != 0 {
            cpu::uart_outb(COM1_THR, byte);
            return true;
        }
    }
    false
}

/// `lines uart|pv N`.
pub fn run<'a>(info: &BootInfo, mut words: impl Iterator<Item = &'a str>) -> u8 {
    let path = words.next();
    let count = words.next().and_then(|w| w.parse::<u64>().ok()).filter(|n| (1..=100_000).contains(n));
    let (Some(path @ ("uart" | "pv")), Some(count)) = (path, count) else {
        println!("lines: usage: lines uart|pv N (1..=100000)");
        return EXIT_USAGE;
    };
    let start = clock::read();
    for i in 1..=count {
        if path == "pv" {
            println!("line {i} through the paravirtual console");
        } else {
            let mut digits = [0u8; 20];
            let mut n = i;
            let mut at = digits.len();
            loop {
                at -= 1;
                digits[at] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            let text = b" through the emulated UART\n";
            for &byte in b"line ".iter().chain(&digits[at..]).chain(text.iter()) {
                if !uart_putc(byte) {
                    println!("lines: the UART never became ready");
                    return 1;
                }
            }
        }
    }
    let cycles = clock::read() - start;
    let per_line_ns = cycles.saturating_mul(1_000_000).checked_div(info.tsc_khz).map_or(0, |ns| ns / count);
    println!("lines: {count} lines through the {path}, {per_line_ns} ns per line");
    0
}
