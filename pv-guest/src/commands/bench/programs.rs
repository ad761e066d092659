//! The ring-3 halves of the benchmark workloads.
//!
//! Each is a few dozen instructions of position-independent assembly, copied into a
//! task's code page like the programs in `task/programs.rs`. Their loops run natively
//! in ring 3 on every host; only the system calls and faults they cause enter the
//! (possibly emulated) ring-0 kernel. Each program times its own loop with `rdtsc` and
//! computes a checksum of what it read, and hands both to the kernel with the
//! `bench_report` system call (nr 5). The kernel prints them; hv checks the checksum
//! against the value it expects, so a run that is fast because it skipped work fails.
//!
//! System calls (see `task/syscall.rs`): 0 exit, 1 yield, 2 map, 3 unmap, 5 bench_report.
//! `rdtsc` leaves the counter split over edx:eax; `shl rdx, 32; or rax, rdx` joins it.

use crate::task::programs::UserProgram;

extern "C" {
    fn bench_pt_update();
    fn bench_pt_update_end();
    fn bench_pagefault();
    fn bench_pagefault_end();
    fn bench_ping_pong();
    fn bench_ping_pong_end();
    fn bench_tlb_miss();
    fn bench_tlb_miss_end();
    fn bench_aspace_child();
    fn bench_aspace_child_end();
}

/// Pages one `pt-update` round maps and unmaps (one `map` and one `unmap` call).
pub const PT_UPDATE_PAGES_PER_ROUND: u64 = 16;

/// `pt_update(base, rounds)`: each round maps 16 pages at `base`, reads each page
/// (a demand-zero fault: one page-table write) and writes it, then unmaps all 16 (16
/// page-table writes in one system call). Reports (cycles, checksum); the checksum is
/// the sum of everything read: zeros for the fresh pages, then `rounds_left + i` for
/// page i.
// SAFETY: `bench_pt_update` and `bench_pt_update_end` are the labels around this program in
// the assembly below.
pub const PT_UPDATE: UserProgram = unsafe { UserProgram::new("bench-pt-update", bench_pt_update, bench_pt_update_end) };

/// `pagefault(base, pages)`: maps pages + 1 pages (so even 0 pages makes the same
/// system calls), and times the first touch of `pages` of them: a read (a demand-zero
/// fault) and a write of `i + 1`. A second, untimed pass adds the written values to
/// the checksum: pages·(pages+1)/2 if every page read zero first and kept its write.
// SAFETY: `bench_pagefault` and `bench_pagefault_end` are the labels around this program in
// the assembly below.
pub const PAGEFAULT: UserProgram = unsafe { UserProgram::new("bench-pagefault", bench_pagefault, bench_pagefault_end) };

/// `ping_pong(yields, seed)`: advances a 64-bit LCG state (seed) once per round and
/// yields, `yields` times. The state lives in a register, so the checksum (the final
/// state) shows that every switch saved and restored this task's registers.
// SAFETY: `bench_ping_pong` and `bench_ping_pong_end` are the labels around this program in
// the assembly below.
pub const PING_PONG: UserProgram = unsafe { UserProgram::new("bench-ping-pong", bench_ping_pong, bench_ping_pong_end) };

/// Where `tlb_miss` maps its working set (2 MiB aligned).
pub const TLB_MISS_BASE: u64 = 0x1_0000_0000;
/// What `tlb_miss` stores at offset o of its working set: o · this (hv/src/bench/checks.rs
/// uses the same constant to predict the checksum).
pub const TLB_MISS_FILL_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// `tlb_miss(ws | large, steps | reps << 40)`: maps a working set of `ws` bytes at
/// [`TLB_MISS_BASE`] (2 MiB pages if `large` = 1), fills word o with o · multiplier
/// (faulting every page in: untimed), then `reps` times runs the shared pointer chase
/// (`tlb_walk.s`) for `steps` steps with seed rep + 1, reporting each run's cycles and
/// sum separately.
// SAFETY: `bench_tlb_miss` and `bench_tlb_miss_end` are the labels around this program in
// the assembly below.
pub const TLB_MISS: UserProgram = unsafe { UserProgram::new("bench-tlb-miss", bench_tlb_miss, bench_tlb_miss_end) };

/// `aspace_child(base, pages)`: maps `pages` pages, reads (demand-zero) and writes each,
/// then exits *without* unmapping, with the checksum as its exit code: the kernel's
/// task exit destroys the address space. Exit code pages·(pages+1)/2 means all went
/// well.
// SAFETY: `bench_aspace_child` and `bench_aspace_child_end` are the labels around this program in
// the assembly below.
pub const ASPACE_CHILD: UserProgram = unsafe { UserProgram::new("bench-aspace-child", bench_aspace_child, bench_aspace_child_end) };

core::arch::global_asm!(
    ".section .text.user_programs, \"ax\"",
    // ---- pt_update(rdi = base, rsi = rounds) ----
    ".global bench_pt_update",
    "bench_pt_update:",
    "    mov r12, rdi",
    "    mov r13, rsi",
    "    xor r15d, r15d",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov r14, rax",
    "    test r13, r13",
    "    jz 4f",
    "2:  mov rdi, r12",
    "    mov esi, {round_bytes}",
    "    xor edx, edx",
    "    mov eax, 2",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 9f",
    "    xor ecx, ecx",
    "3:  mov rax, rcx",
    "    shl rax, 12",
    "    add rax, r12",
    "    add r15, qword ptr [rax]",
    "    lea rbx, [r13 + rcx]",
    "    mov qword ptr [rax], rbx",
    "    add r15, qword ptr [rax]",
    "    inc ecx",
    "    cmp ecx, {round_pages}",
    "    jb 3b",
    "    mov rdi, r12",
    "    mov esi, {round_bytes}",
    "    mov eax, 3",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 9f",
    "    dec r13",
    "    jnz 2b",
    "4:  rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    sub rax, r14",
    "    mov rdi, rax",
    "    mov rsi, r15",
    "    mov eax, 5",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "9:  mov edi, 1",
    "    xor eax, eax",
    "    int 0x80",
    ".global bench_pt_update_end",
    "bench_pt_update_end:",
    // ---- pagefault(rdi = base, rsi = pages) ----
    ".global bench_pagefault",
    "bench_pagefault:",
    "    mov r12, rdi",
    "    mov r13, rsi",
    "    xor r15d, r15d",
    "    lea rsi, [r13 + 1]",
    "    shl rsi, 12",
    "    xor edx, edx",
    "    mov eax, 2",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 9f",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov r14, rax",
    "    xor ecx, ecx",
    "    test r13, r13",
    "    jz 4f",
    "3:  mov rax, rcx",
    "    shl rax, 12",
    "    add rax, r12",
    "    add r15, qword ptr [rax]",
    "    lea rbx, [rcx + 1]",
    "    mov qword ptr [rax], rbx",
    "    inc rcx",
    "    cmp rcx, r13",
    "    jb 3b",
    "4:  rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    sub rax, r14",
    "    mov r14, rax",
    "    xor ecx, ecx",
    "    test r13, r13",
    "    jz 6f",
    "5:  mov rax, rcx",
    "    shl rax, 12",
    "    add rax, r12",
    "    add r15, qword ptr [rax]",
    "    inc rcx",
    "    cmp rcx, r13",
    "    jb 5b",
    "6:  mov rdi, r12",
    "    lea rsi, [r13 + 1]",
    "    shl rsi, 12",
    "    mov eax, 3",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 9f",
    "    mov rdi, r14",
    "    mov rsi, r15",
    "    mov eax, 5",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "9:  mov edi, 1",
    "    xor eax, eax",
    "    int 0x80",
    ".global bench_pagefault_end",
    "bench_pagefault_end:",
    // ---- ping_pong(rdi = yields, rsi = seed) ----
    ".global bench_ping_pong",
    "bench_ping_pong:",
    "    mov rbx, rdi",
    "    mov r12, rsi",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov r14, rax",
    "    test rbx, rbx",
    "    jz 3f",
    "2:  mov rax, {lcg_multiplier}",
    "    imul r12, rax",
    "    mov rax, {lcg_increment}",
    "    add r12, rax",
    "    mov eax, 1",
    "    int 0x80",
    "    dec rbx",
    "    jnz 2b",
    "3:  rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    sub rax, r14",
    "    mov rdi, rax",
    "    mov rsi, r12",
    "    mov eax, 5",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    ".global bench_ping_pong_end",
    "bench_ping_pong_end:",
    // ---- tlb_miss(rdi = ws | large, rsi = steps | reps << 40) ----
    ".global bench_tlb_miss",
    "bench_tlb_miss:",
    "    mov r12, rdi",
    "    and r12, -2",
    "    mov r13, rdi",
    "    and r13, 1",
    "    mov r14, rsi",
    "    shr r14, 40",
    "    mov r15, rsi",
    "    shl r15, 24",
    "    shr r15, 24",
    "    mov rdi, {tlb_base}",
    "    mov rsi, r12",
    "    mov rdx, r13",
    "    mov eax, 2",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 9f",
    // Touch the stack now, so its demand-zero fault is not inside the first timed run.
    "    push rax",
    "    pop rax",
    // Fill word o with o * multiplier; this faults every page in.
    "    mov rdi, {tlb_base}",
    "    mov r8, {fill_multiplier}",
    "    xor ecx, ecx",
    "2:  mov rax, rcx",
    "    imul rax, r8",
    "    mov qword ptr [rdi + rcx], rax",
    "    add rcx, 8",
    "    cmp rcx, r12",
    "    jb 2b",
    "    xor ebx, ebx",
    "3:  cmp rbx, r14",
    "    jae 5f",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov rbp, rax",
    "    mov rdi, {tlb_base}",
    "    lea rsi, [r12 - 8]",
    "    mov rdx, r15",
    "    lea rcx, [rbx + 1]",
    "    call 8f",
    "    mov r13, rax",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    sub rax, rbp",
    "    mov rdi, rax",
    "    mov rsi, r13",
    "    mov eax, 5",
    "    int 0x80",
    "    inc rbx",
    "    jmp 3b",
    "5:  mov rdi, {tlb_base}",
    "    mov rsi, r12",
    "    mov eax, 3",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "9:  mov edi, 1",
    "    xor eax, eax",
    "    int 0x80",
    "8:",
    include_str!("tlb_walk.s"),
    ".global bench_tlb_miss_end",
    "bench_tlb_miss_end:",
    // ---- aspace_child(rdi = base, rsi = pages) ----
    ".global bench_aspace_child",
    "bench_aspace_child:",
    "    mov r12, rdi",
    "    mov r13, rsi",
    "    xor r15d, r15d",
    "    xor ecx, ecx",
    "    test r13, r13",
    "    jz 3f",
    "    mov rsi, r13",
    "    shl rsi, 12",
    "    xor edx, edx",
    "    mov eax, 2",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 9f",
    "2:  mov rax, rcx",
    "    shl rax, 12",
    "    add rax, r12",
    "    add r15, qword ptr [rax]",
    "    lea rbx, [rcx + 1]",
    "    mov qword ptr [rax], rbx",
    "    add r15, qword ptr [rax]",
    "    inc rcx",
    "    cmp rcx, r13",
    "    jb 2b",
    "3:  mov rdi, r15",
    "    xor eax, eax",
    "    int 0x80",
    "9:  mov rdi, -1",
    "    xor eax, eax",
    "    int 0x80",
    ".global bench_aspace_child_end",
    "bench_aspace_child_end:",
    ".text",
    round_pages = const PT_UPDATE_PAGES_PER_ROUND,
    round_bytes = const PT_UPDATE_PAGES_PER_ROUND * 4096,
    lcg_multiplier = const LCG_MULTIPLIER,
    lcg_increment = const LCG_INCREMENT,
    tlb_base = const TLB_MISS_BASE,
    fill_multiplier = const TLB_MISS_FILL_MULTIPLIER,
);

/// The LCG of `ping_pong` (Knuth's MMIX constants): state · multiplier + increment.
pub const LCG_MULTIPLIER: u64 = 6_364_136_223_846_793_005;
/// See [`LCG_MULTIPLIER`].
pub const LCG_INCREMENT: u64 = 1_442_695_040_888_963_407;
