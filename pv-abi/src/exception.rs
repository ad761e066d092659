//! The x86 exception vectors, by name, so the guest and the VMM print them the same way.
//!
//! Vectors 0..=31 are reserved by the CPU for exceptions; the guest installs a handler
//! for every one of them and reports any it does not expect through the
//! `report_exception` hypercall.

/// Mnemonic of an exception vector (`"#GP"`), or `"#??"` for a reserved or unknown one.
pub const fn exception_mnemonic(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        9 => "CSO",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        28 => "#HV",
        29 => "#VC",
        30 => "#SX",
        _ => "#??",
    }
}

/// Whether the CPU pushes an error code for this vector (the guest's entry stubs push a
/// zero for the others so every trap frame has the same shape).
pub const fn pushes_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The vector of a page fault, whose handler also reads CR2 (the faulting address).
pub const PAGE_FAULT: u64 = 14;
/// The vector of an invalid-opcode fault (`ud2`, or an instruction the CPU lacks).
pub const INVALID_OPCODE: u64 = 6;
/// The vector of the breakpoint exception raised by `int3`.
pub const BREAKPOINT: u64 = 3;
/// The vector of a double fault: an exception while delivering another one.
pub const DOUBLE_FAULT: u64 = 8;
