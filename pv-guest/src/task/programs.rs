//! The user programs: tiny position-independent routines that run in ring 3.
//!
//! Each program is a few instructions of assembly between two labels. To start a task
//! the kernel copies those bytes into a fresh frame mapped at [`USER_CODE_BASE`] (user,
//! read + execute) and jumps there with the program's two arguments in `rdi` and `rsi`.
//! Writing them in assembly keeps them honest: they cannot call into the kernel's code
//! or read its data, which is not mapped for ring 3; all they can do is compute, touch
//! their own memory, and make system calls (`int 0x80`, see `syscall.rs`).

use pv_abi::addr::GuestVirt;

/// Where a task's code page is mapped.
pub const USER_CODE_BASE: GuestVirt = GuestVirt::new(0x40_0000);

/// A user program: its code bytes.
#[derive(Clone, Copy)]
pub struct UserProgram {
    /// Name for messages.
    pub name: &'static str,
    start: unsafe extern "C" fn(),
    end: unsafe extern "C" fn(),
}

impl UserProgram {
    /// A program whose code lies between the labels `start` and `end` (for programs
    /// defined outside this file, such as the benchmark workloads in `commands/bench/`).
    ///
    /// # Safety
    /// `start` and `end` must be two labels in the kernel's text around one program,
    /// `end` after `start`: [`UserProgram::code`] reads the bytes between them.
    pub const unsafe fn new(name: &'static str, start: unsafe extern "C" fn(), end: unsafe extern "C" fn()) -> Self {
        UserProgram { name, start, end }
    }

    /// The program's machine code.
    pub fn code(&self) -> &'static [u8] {
        let (start, end) = (self.start as *const () as usize, self.end as *const () as usize);
        // SAFETY: start and end are labels around one program in the kernel's text
        // (the programs below, and UserProgram::new's contract), which is mapped and
        // never changes; a start after end gives an empty slice (saturating_sub).
        unsafe { core::slice::from_raw_parts(start as *const u8, end.saturating_sub(start)) }
    }
}

extern "C" {
    fn user_hello();
    fn user_hello_end();
    fn user_touch_pages();
    fn user_touch_pages_end();
    fn user_write_own_code();
    fn user_write_own_code_end();
    fn user_read_address();
    fn user_read_address_end();
    fn user_yield_loop();
    fn user_yield_loop_end();
    fn user_map_unmap_loop();
    fn user_map_unmap_loop_end();
    fn user_use_after_unmap();
    fn user_use_after_unmap_end();
    fn user_count();
    fn user_count_end();
    fn user_sensitive();
    fn user_sensitive_end();
}

/// Writes a greeting with the `write` system call and exits with 0.
pub const HELLO: UserProgram = UserProgram { name: "hello", start: user_hello, end: user_hello_end };
/// `touch_pages(base, n)`: checks that each of n fresh pages from `base` reads as zero,
/// then writes it; exits 0 if all were zero (demand-zero paging works), 1 if not.
pub const TOUCH_PAGES: UserProgram = UserProgram { name: "touch-pages", start: user_touch_pages, end: user_touch_pages_end };
/// Writes to its own (read-only) code page: must be killed with a page fault.
pub const WRITE_OWN_CODE: UserProgram =
    UserProgram { name: "write-own-code", start: user_write_own_code, end: user_write_own_code_end };
/// `read_address(addr)`: reads a byte at `addr`; used with a kernel address, must be killed.
pub const READ_ADDRESS: UserProgram = UserProgram { name: "read-address", start: user_read_address, end: user_read_address_end };
/// `yield_loop(n)`: yields n times, then exits with 0.
pub const YIELD_LOOP: UserProgram = UserProgram { name: "yield-loop", start: user_yield_loop, end: user_yield_loop_end };
/// `use_after_unmap(addr)`: maps a page at addr, writes it, unmaps it, then reads it
/// again: must be killed with a page fault at addr (exits 0 only if a stale mapping
/// survived the unmap).
pub const USE_AFTER_UNMAP: UserProgram =
    UserProgram { name: "use-after-unmap", start: user_use_after_unmap, end: user_use_after_unmap_end };
/// `map_unmap_loop(addr, n)`: n times: map a page at addr, write and read it back, unmap.
pub const MAP_UNMAP_LOOP: UserProgram =
    UserProgram { name: "map-unmap-loop", start: user_map_unmap_loop, end: user_map_unmap_loop_end };

/// `count(n, spin)`: for i = 1..=n, spins `spin` times (at least once), then writes
/// `i` in decimal on a line; exits 0. Ring 3 runs natively, so this is a guest that
/// counts at full speed between system calls (a snapshot's or migration's test subject).
pub const COUNT: UserProgram = UserProgram { name: "count", start: user_count, end: user_count_end };

/// `sensitive(which)`: runs one of x86's *sensitive but unprivileged* instructions in
/// ring 3 and reports what it saw with `bench_report(which, value)`, then exits 0:
/// 0 `pushf` (RFLAGS), 1 `popf` clearing IF then `pushf` (RFLAGS after), 2 `smsw` (CR0, into
/// a 64-bit register), 3 `sgdt` (the GDT's base), 4 `sidt` (the IDT's base), 5 `str` (the task
/// register's selector). None of them is privileged, so none traps: that is why classic
/// x86 could not be virtualized by trap-and-emulate (Popek and Goldberg's condition),
/// unless the CPU's UMIP bit makes the last four fault in ring 3.
pub const SENSITIVE: UserProgram = UserProgram { name: "sensitive", start: user_sensitive, end: user_sensitive_end };

// System call numbers are those of syscall.rs: 0 exit, 1 yield, 2 map, 3 unmap, 4 write,
// 5 bench_report.
core::arch::global_asm!(
    ".section .text.user_programs, \"ax\"",
    // sensitive(rdi = which): r12 = which; the value seen goes to rsi, then bench_report.
    ".global user_sensitive",
    "user_sensitive:",
    "    mov r12, rdi",
    "    xor esi, esi",
    "    cmp r12, 0",
    "    je 10f",
    "    cmp r12, 1",
    "    je 11f",
    "    cmp r12, 2",
    "    je 12f",
    "    cmp r12, 3",
    "    je 13f",
    "    cmp r12, 4",
    "    je 14f",
    "    cmp r12, 5",
    "    je 15f",
    "    jmp 19f",
    "10: pushfq",
    "    pop rsi",
    "    jmp 19f",
    // popf with IF cleared: in ring 3 (IOPL 0) the CPU leaves IF as it was, silently.
    "11: pushfq",
    "    pop rax",
    "    and rax, -513",
    "    push rax",
    "    popfq",
    "    pushfq",
    "    pop rsi",
    "    jmp 19f",
    "12: smsw rsi",
    "    jmp 19f",
    "13: sub rsp, 16",
    "    sgdt [rsp]",
    "    mov rsi, [rsp + 2]",
    "    add rsp, 16",
    "    jmp 19f",
    "14: sub rsp, 16",
    "    sidt [rsp]",
    "    mov rsi, [rsp + 2]",
    "    add rsp, 16",
    "    jmp 19f",
    "15: str si",
    "    movzx esi, si",
    "19: mov rdi, r12",
    "    mov eax, 5",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "    ud2",
    ".global user_sensitive_end",
    "user_sensitive_end:",
);

core::arch::global_asm!(
    ".section .text.user_programs, \"ax\"",
    // count(rdi = n, rsi = spin): r12 = n, r13 = spin, r14 = i
    ".global user_count",
    "user_count:",
    "    mov r12, rdi",
    "    mov r13, rsi",
    "    or r13, 1",
    "    xor r14d, r14d",
    "2:  inc r14",
    "    mov rcx, r13",
    "3:  dec rcx",
    "    jnz 3b",
    // The digits of r14, right to left, into 32 bytes below the stack pointer.
    "    sub rsp, 32",
    "    lea rdi, [rsp + 31]",
    "    mov byte ptr [rdi], 10",
    "    mov rax, r14",
    "    mov r8, 10",
    "4:  xor edx, edx",
    "    div r8",
    "    add dl, 48",
    "    dec rdi",
    "    mov byte ptr [rdi], dl",
    "    test rax, rax",
    "    jnz 4b",
    "    lea rsi, [rsp + 32]",
    "    sub rsi, rdi",
    "    mov eax, 4",
    "    int 0x80",
    "    add rsp, 32",
    "    cmp r14, r12",
    "    jb 2b",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "    ud2",
    ".global user_count_end",
    "user_count_end:",
    // hello: write(message, length); exit(0)
    ".global user_hello",
    "user_hello:",
    "    lea rdi, [rip + 2f]",
    "    lea rsi, [rip + 3f]",
    "    sub rsi, rdi",
    "    mov eax, 4",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "    ud2",
    "2:  .ascii \"hello from ring 3\\n\"",
    "3:",
    ".global user_hello_end",
    "user_hello_end:",
    // touch_pages(rdi = base, rsi = pages)
    ".global user_touch_pages",
    "user_touch_pages:",
    "    xor edx, edx",
    "2:  cmp byte ptr [rdi], 0",
    "    setne cl",
    "    or dl, cl",
    "    mov byte ptr [rdi], 0xaa",
    "    add rdi, 4096",
    "    dec rsi",
    "    jnz 2b",
    "    movzx edi, dl",
    "    xor eax, eax",
    "    int 0x80",
    "    ud2",
    ".global user_touch_pages_end",
    "user_touch_pages_end:",
    // write_own_code: store into the code page (mapped read + execute)
    ".global user_write_own_code",
    "user_write_own_code:",
    "    lea rdi, [rip]",
    "    mov byte ptr [rdi], 0x90",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    ".global user_write_own_code_end",
    "user_write_own_code_end:",
    // read_address(rdi = address)
    ".global user_read_address",
    "user_read_address:",
    "    mov al, byte ptr [rdi]",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    ".global user_read_address_end",
    "user_read_address_end:",
    // yield_loop(rdi = count)
    ".global user_yield_loop",
    "user_yield_loop:",
    "    mov rbx, rdi",
    "2:  mov eax, 1",
    "    int 0x80",
    "    dec rbx",
    "    jnz 2b",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    ".global user_yield_loop_end",
    "user_yield_loop_end:",
    // map_unmap_loop(rdi = address, rsi = count)
    ".global user_map_unmap_loop",
    "user_map_unmap_loop:",
    "    mov r12, rdi",
    "    mov r13, rsi",
    "2:  mov rdi, r12",
    "    mov esi, 4096",
    "    mov eax, 2",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 3f",
    "    mov byte ptr [r12], 0x5a",
    "    cmp byte ptr [r12], 0x5a",
    "    jne 3f",
    "    mov rdi, r12",
    "    mov esi, 4096",
    "    mov eax, 3",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 3f",
    "    dec r13",
    "    jnz 2b",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "3:  mov edi, 1",
    "    xor eax, eax",
    "    int 0x80",
    ".global user_map_unmap_loop_end",
    "user_map_unmap_loop_end:",
    // use_after_unmap(rdi = address)
    ".global user_use_after_unmap",
    "user_use_after_unmap:",
    "    mov r12, rdi",
    "    mov esi, 4096",
    "    xor edx, edx",
    "    mov eax, 2",
    "    int 0x80",
    "    mov byte ptr [r12], 0x5a",
    "    mov rdi, r12",
    "    mov esi, 4096",
    "    mov eax, 3",
    "    int 0x80",
    "    mov al, byte ptr [r12]",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    ".global user_use_after_unmap_end",
    "user_use_after_unmap_end:",
    ".text",
);
