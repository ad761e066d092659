//! Block reads done by a ring-3 task into its own frames (`task::blk_io`), and the
//! commands that run them:
//!
//! - `blk-user-read-sum LBA COUNT`: a task reads COUNT sectors from LBA into its own
//!   buffer and hashes them (FNV-1a 64, in ring 3); the kernel prints the hash as
//!   `blk-user-read-sum: HASH`, for a test to compare with the image on the host.
//! - `blk-user-hostile`: a task makes every kind of bad `blk_setup` / `blk_io` call
//!   (kernel address, unmapped buffer, its own code page, too many buffers or requests,
//!   a buffer twice, a pinned region unmapped, a completion array it cannot write) and
//!   reports each result; the kernel checks each is the error it must be. Then it exits
//!   with reads in flight, which the exit must drain before the frames are freed.
//! - [`bench`]: the `blk` workload of `hv bench`, timed by the task itself.
//!
//! The task program ([`BLK_USER`]) is the same for all three. Its loop keeps every
//! buffer in flight: one `blk_io` call submits a request for each buffer that came back
//! and reaps what has completed, so the trap into the kernel (and the ring-0 entry
//! that some hosts emulate) is paid once per batch, not once per request.

use frontend_drivers::block::MAX_IN_FLIGHT;
use pv_abi::device::block::{BLOCK_MAX_SEGMENTS, SECTORS_PER_SEGMENT};
use pv_abi::BootInfo;

use crate::hv::drivers;
use crate::println;
use crate::task::programs::UserProgram;
use crate::task::reports;
use crate::task::scheduler::{self, TaskExit};

/// Where the task maps its buffer.
pub const BLK_USER_BASE: u64 = 0x5000_0000;
/// Sectors of one full request (16 pages: 64 KiB).
const MAX_REQUEST_SECTORS: u64 = BLOCK_MAX_SEGMENTS as u64 * SECTORS_PER_SEGMENT as u64;
/// Exit code for bad arguments or a missing device.
const EXIT_USAGE: u8 = 2;

extern "C" {
    fn user_blk_io();
    fn user_blk_io_end();
    fn user_blk_hostile();
    fn user_blk_hostile_end();
}

/// `blk_io(rdi = sectors | buffers << 16 | reps << 24, rsi = count | wrap << 32,
/// rdx = verify_sectors | verify_lba << 32)`: maps `buffers` buffers of
/// ceil(sectors / 8) pages at [`BLK_USER_BASE`] and registers them (`blk_setup`).
/// Then `reps` times: reads `count` requests of `sectors` sectors, sequentially from
/// sector 0 (back to 0 where the next would pass `wrap`), every buffer in flight, and
/// reports (cycles, requests completed). Then reads `verify_sectors` from `verify_lba`
/// into the buffers in order, and reports (0, FNV-1a 64 of those bytes). Exits 0, or 1
/// if a call or a request failed. Its buffer is released by the exit.
// SAFETY: `user_blk_io` and `user_blk_io_end` are the labels around this program below.
pub const BLK_USER: UserProgram = unsafe { UserProgram::new("blk-io", user_blk_io, user_blk_io_end) };

/// `blk_hostile(rdi = a kernel address)`: the bad calls of `blk-user-hostile`, each
/// result reported as (result, step).
// SAFETY: `user_blk_hostile` and `user_blk_hostile_end` are the labels around this program below.
pub const BLK_HOSTILE: UserProgram = unsafe { UserProgram::new("blk-hostile", user_blk_hostile, user_blk_hostile_end) };

/// FNV-1a, 64-bit: offset basis and prime (as `commands::blk` and hv's checks).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

// System calls: 0 exit, 2 map, 3 unmap, 5 bench_report, 6 blk_setup, 7 blk_io.
// Stack frame of blk_io: [rsp, +512) the requests, [+512, +768) the completions,
// +768 pages per buffer, +784 repetition, +800 buffers, +808 start TSC.
core::arch::global_asm!(
    ".section .text.user_programs, \"ax\"",
    ".global user_blk_io",
    "user_blk_io:",
    "    sub rsp, 1024",
    "    movzx r12d, di",
    "    mov rax, rdi",
    "    shr rax, 16",
    "    movzx eax, al",
    "    mov [rsp + 800], rax",
    "    mov r10, rdi",
    "    shr r10, 24",
    "    movzx r10d, r10b",
    "    mov ebp, esi",
    "    mov r9, rsi",
    "    shr r9, 32",
    "    mov r11, rdx",
    "    lea rax, [r12 + 7]",
    "    shr rax, 3",
    "    mov [rsp + 768], rax",
    // map(base, buffers * pages * 4096, 0)
    "    imul rax, [rsp + 800]",
    "    shl rax, 12",
    "    mov rsi, rax",
    "    mov rdi, {base}",
    "    xor edx, edx",
    "    mov eax, 2",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 90f",
    // blk_setup(base, buffers, pages)
    "    mov rdi, {base}",
    "    mov rsi, [rsp + 800]",
    "    mov rdx, [rsp + 768]",
    "    mov eax, 6",
    "    int 0x80",
    "    test rax, rax",
    "    jnz 90f",
    "    mov qword ptr [rsp + 784], 0",
    // ---- one repetition ----
    "20: cmp [rsp + 784], r10",
    "    jae 40f",
    "    mov rcx, [rsp + 800]",
    "    mov r8d, 1",
    "    shl r8, cl",
    "    dec r8",
    "    xor r13d, r13d",
    "    xor r14d, r14d",
    "    xor r15d, r15d",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov [rsp + 808], rax",
    // Queue a request for every free buffer (r8: free mask) while requests remain.
    "21: xor ebx, ebx",
    "22: cmp r13, rbp",
    "    jae 24f",
    "    test r8, r8",
    "    jz 24f",
    "    bsf rcx, r8",
    "    btr r8, rcx",
    "    lea rax, [r15 + r12]",
    "    cmp rax, r9",
    "    jbe 23f",
    "    xor r15d, r15d",
    "23: mov rax, rbx",
    "    shl rax, 4",
    "    mov [rsp + rax], r15",
    "    mov [rsp + rax + 8], r12d",
    "    mov [rsp + rax + 12], cx",
    "    mov word ptr [rsp + rax + 14], 0",
    "    add r15, r12",
    "    inc r13",
    "    inc rbx",
    "    jmp 22b",
    "24: cmp r14, rbp",
    "    jae 30f",
    "    mov rdi, rsp",
    "    mov rsi, rbx",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    test rax, rax",
    "    js 90f",
    "    xor ecx, ecx",
    "25: cmp rcx, rax",
    "    jae 21b",
    "    cmp dword ptr [rsp + rcx * 8 + 516], 0",
    "    jne 90f",
    "    mov edx, dword ptr [rsp + rcx * 8 + 512]",
    "    bts r8, rdx",
    "    inc r14",
    "    inc rcx",
    "    jmp 25b",
    "30: rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    sub rax, [rsp + 808]",
    "    mov rdi, rax",
    "    mov rsi, r14",
    "    mov eax, 5",
    "    int 0x80",
    "    inc qword ptr [rsp + 784]",
    "    jmp 20b",
    // ---- the verification read: r14 sectors left, r15 the next sector ----
    "40: mov r14d, r11d",
    "    mov r15, r11",
    "    shr r15, 32",
    "    xor ebx, ebx",
    "41: test r14, r14",
    "    jz 43f",
    "    cmp rbx, [rsp + 800]",
    "    jae 90f",
    "    mov rcx, r12",
    "    cmp rcx, r14",
    "    jbe 42f",
    "    mov rcx, r14",
    "42: mov rax, rbx",
    "    shl rax, 4",
    "    mov [rsp + rax], r15",
    "    mov [rsp + rax + 8], ecx",
    "    mov [rsp + rax + 12], bx",
    "    mov word ptr [rsp + rax + 14], 0",
    "    add r15, rcx",
    "    sub r14, rcx",
    "    inc rbx",
    "    jmp 41b",
    "43: mov r13, rbx",
    "    mov rdi, rsp",
    "    mov rsi, rbx",
    "    lea rdx, [rsp + 512]",
    "44: test r13, r13",
    "    jz 46f",
    "    mov eax, 7",
    "    int 0x80",
    "    test rax, rax",
    "    js 90f",
    "    jz 90f",
    "    xor ecx, ecx",
    "45: cmp rcx, rax",
    "    jae 47f",
    "    cmp dword ptr [rsp + rcx * 8 + 516], 0",
    "    jne 90f",
    "    inc rcx",
    "    jmp 45b",
    "47: sub r13, rax",
    "    xor esi, esi",
    "    jmp 44b",
    // FNV-1a over the verified bytes, which are contiguous from the base.
    "46: mov rsi, {base}",
    "    mov ecx, r11d",
    "    shl rcx, 9",
    "    add rcx, rsi",
    "    mov rax, {fnv_offset}",
    "    mov r8, {fnv_prime}",
    "48: cmp rsi, rcx",
    "    jae 49f",
    "    movzx edx, byte ptr [rsi]",
    "    xor rax, rdx",
    "    imul rax, r8",
    "    inc rsi",
    "    jmp 48b",
    "49: mov rsi, rax",
    "    xor edi, edi",
    "    mov eax, 5",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    "90: mov edi, 1",
    "    xor eax, eax",
    "    int 0x80",
    ".global user_blk_io_end",
    "user_blk_io_end:",
    // ---- blk_hostile(rdi = kernel address); r12 = step, each result reported ----
    ".global user_blk_hostile",
    "user_blk_hostile:",
    "    sub rsp, 1024",
    "    mov r13, rdi",
    "    xor r12d, r12d",
    // 1: setup on a kernel address
    "    mov rdi, r13",
    "    mov esi, 1",
    "    mov edx, 1",
    "    mov eax, 6",
    "    int 0x80",
    "    call 80f",
    // 2: setup on memory never mapped
    "    mov rdi, {unmapped}",
    "    mov esi, 1",
    "    mov edx, 1",
    "    mov eax, 6",
    "    int 0x80",
    "    call 80f",
    // 3: setup on the task's own code page (not writable)
    "    mov rdi, {code}",
    "    mov esi, 1",
    "    mov edx, 1",
    "    mov eax, 6",
    "    int 0x80",
    "    call 80f",
    // 4: 33 buffers
    "    mov rdi, {base}",
    "    mov esi, 33",
    "    mov edx, 1",
    "    mov eax, 6",
    "    int 0x80",
    "    call 80f",
    // map 4 pages at base for what follows
    "    mov rdi, {base}",
    "    mov esi, 4 * 4096",
    "    xor edx, edx",
    "    mov eax, 2",
    "    int 0x80",
    // 5: 32 buffers of 16 pages, the most a registration may have: the 512 grants fit
    // the table, but only 4 of the pages are mapped (the grants made are taken back)
    "    mov rdi, {base}",
    "    mov esi, 32",
    "    mov edx, 16",
    "    mov eax, 6",
    "    int 0x80",
    "    call 80f",
    // 6: 4 buffers of 1 page: must work
    "    mov rdi, {base}",
    "    mov esi, 4",
    "    mov edx, 1",
    "    mov eax, 6",
    "    int 0x80",
    "    call 80f",
    // 7: a second registration
    "    mov rdi, {base}",
    "    mov esi, 1",
    "    mov edx, 1",
    "    mov eax, 6",
    "    int 0x80",
    "    call 80f",
    // A valid request for buffer 0 at [rsp], read of sector 0, 8 sectors.
    "    mov qword ptr [rsp], 0",
    "    mov dword ptr [rsp + 8], 8",
    "    mov dword ptr [rsp + 12], 0",
    // 8: 33 requests in one call
    "    mov rdi, rsp",
    "    mov esi, 33",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    call 80f",
    // 9: the request array at a kernel address
    "    mov rdi, r13",
    "    mov esi, 1",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    call 80f",
    // 10: buffer 4 (there are 4: 0..3)
    "    mov word ptr [rsp + 12], 4",
    "    mov rdi, rsp",
    "    mov esi, 1",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    call 80f",
    // 11: 9 sectors into a one-page buffer
    "    mov word ptr [rsp + 12], 0",
    "    mov dword ptr [rsp + 8], 9",
    "    mov rdi, rsp",
    "    mov esi, 1",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    call 80f",
    // 12: the same buffer twice in one batch
    "    mov dword ptr [rsp + 8], 8",
    "    mov rax, [rsp]",
    "    mov [rsp + 16], rax",
    "    mov rax, [rsp + 8]",
    "    mov [rsp + 24], rax",
    "    mov rdi, rsp",
    "    mov esi, 2",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    call 80f",
    // 13: an unknown operation
    "    mov byte ptr [rsp + 14], 7",
    "    mov rdi, rsp",
    "    mov esi, 1",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    call 80f",
    "    mov byte ptr [rsp + 14], 0",
    // 14: unmap the registered buffer
    "    mov rdi, {base}",
    "    mov esi, 4 * 4096",
    "    mov eax, 3",
    "    int 0x80",
    "    call 80f",
    // 15: a valid read whose completions go to a kernel address
    "    mov rdi, rsp",
    "    mov esi, 1",
    "    mov rdx, r13",
    "    mov eax, 7",
    "    int 0x80",
    "    call 80f",
    // 16: the same read, properly: one completion
    "    mov rdi, rsp",
    "    mov esi, 1",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    call 80f",
    // Last: reads for buffers 1, 2 and 3, then exit at once, some maybe still in
    // flight: the exit must drain them before it revokes and frees the frames.
    "    mov ecx, 1",
    "81: mov rax, rcx",
    "    shl rax, 4",
    "    mov qword ptr [rsp + rax], rcx",
    "    mov dword ptr [rsp + rax + 8], 8",
    "    mov dword ptr [rsp + rax + 12], ecx",
    "    inc ecx",
    "    cmp ecx, 4",
    "    jb 81b",
    "    lea rdi, [rsp + 16]",
    "    mov esi, 3",
    "    lea rdx, [rsp + 512]",
    "    mov eax, 7",
    "    int 0x80",
    "    xor edi, edi",
    "    xor eax, eax",
    "    int 0x80",
    // report(rax = result, step)
    "80: inc r12",
    "    mov rdi, rax",
    "    mov rsi, r12",
    "    mov eax, 5",
    "    int 0x80",
    "    ret",
    ".global user_blk_hostile_end",
    "user_blk_hostile_end:",
    ".text",
    base = const BLK_USER_BASE,
    unmapped = const 0x6000_0000u64,
    code = const 0x40_0000u64,
    fnv_offset = const FNV_OFFSET_BASIS,
    fnv_prime = const FNV_PRIME,
);

/// How many buffers of `sectors`-sector requests the task may register: one per
/// request in flight, as many as the grant table has entries for.
fn buffers_for(sectors: u64) -> Option<u64> {
    let pages = sectors.div_ceil(u64::from(SECTORS_PER_SEGMENT));
    let free = u64::from(drivers::block().as_ref()?.grants_free());
    Some((free / pages).min(MAX_IN_FLIGHT as u64)).filter(|&b| b > 0)
}

/// A task's reports, (cycles, checksum) each, and how many there are.
type Reports = ([(u64, u64); reports::MAX_REPORTS], usize);

/// Runs the task with its arguments; returns its reports, or why it failed.
fn run_task(program: &UserProgram, args: [u64; 3]) -> Result<Reports, &'static str> {
    reports::take();
    scheduler::spawn_with(program, args).map_err(|_| "could not spawn the task")?;
    let results = scheduler::run_all();
    let reported = reports::take();
    match results.iter().flatten().next() {
        Some(TaskExit::Exited(0)) => Ok(reported),
        Some(TaskExit::Exited(_)) => Err("the task's block call or request failed"),
        _ => Err("the task was killed"),
    }
}

/// Sectors per request must fill whole pages (so the buffers hold the data contiguously).
fn request_ok(sectors: u64) -> bool {
    (1..=MAX_REQUEST_SECTORS).contains(&sectors) && sectors.is_multiple_of(u64::from(SECTORS_PER_SEGMENT))
}

/// The `blk` workload of `hv bench`: `reps` repetitions of `ops` reads of `sectors`
/// sectors by the task, each printed as `bench-rep:`, then the hash of the first
/// `verify_sectors` sectors read the same way, printed as `blk-read-sum:`.
pub fn bench(info: &BootInfo, reps: u64, ops: u64, sectors: u64, verify_sectors: u64) -> Result<(), &'static str> {
    if !request_ok(sectors) || ops >= 1 << 32 || reps >= 1 << 8 {
        return Err("blk: sectors must be a multiple of 8 up to 128");
    }
    let buffers = buffers_for(sectors).ok_or("blk: no block device, or no grant entries")?;
    if verify_sectors > buffers * sectors {
        return Err("blk: the verification read does not fit the buffers");
    }
    // With no operations (hv's zero-work run) there are no timed repetitions either.
    let reps = if ops == 0 { 0 } else { reps };
    let wrap = info.block_sectors.min(u64::from(u32::MAX));
    let (reported, n) = run_task(&BLK_USER, [sectors | buffers << 16 | reps << 24, ops | wrap << 32, verify_sectors])?;
    if n as u64 != reps + 1 {
        return Err("blk: the task did not report every repetition");
    }
    println!("blk: {buffers} buffers of {} KiB in flight, read by a ring-3 task into its own frames", sectors / 2);
    print_reports(&reported, reps, ops);
    Ok(())
}

/// The task's reports as `hv bench` reads them: one `bench-rep:` line per timed
/// repetition (cycles, requests completed), then `blk-read-sum:` (the last report's hash).
fn print_reports(reported: &[(u64, u64); reports::MAX_REPORTS], reps: u64, ops: u64) {
    for (rep, (cycles, completed)) in reported[..reps as usize].iter().enumerate() {
        println!("bench-rep: rep={rep} ops={ops} cycles={cycles} check={completed:#x}");
    }
    println!("blk-read-sum: {:016x}", reported[reps as usize].1);
}

/// The `blk-direct` workload of `hv bench`: the same reads as [`bench`], made by
/// `pv-blkd`, a ring-3 task that drives the block ring itself (`task::blk_task`): no
/// system call and no ring-0 work per request.
pub fn bench_direct(info: &BootInfo, reps: u64, ops: u64, sectors: u64, verify_sectors: u64) -> Result<(), &'static str> {
    use crate::task::blk_task::{self, BlkTaskError, BlkTaskReads};
    if !request_ok(sectors) || ops >= 1 << 32 || reps >= 1 << 8 {
        return Err("blk-direct: sectors must be a multiple of 8 up to 128");
    }
    let reps = if ops == 0 { 0 } else { reps };
    reports::take();
    let exit = blk_task::run(info, BlkTaskReads { reps, ops, sectors, verify_sectors }).map_err(|e| match e {
        BlkTaskError::NoDevice => "blk-direct: no block device (start hv with --disk PATH)",
        BlkTaskError::Busy => "blk-direct: the kernel's block frontend has requests in flight",
        BlkTaskError::BadShape => "blk-direct: sectors must be a multiple of 8 up to 128, and the verification read must fit the buffers",
        BlkTaskError::NoGrants => "blk-direct: not one buffer's worth of grant entries or frames is free",
        BlkTaskError::Image(_) => "blk-direct: the embedded pv-blkd is not a loadable image",
        BlkTaskError::NoMemory => "blk-direct: no memory for the task",
        BlkTaskError::PortNotOpenable => "blk-direct: the block doorbell's port cannot be opened to ring 3",
        BlkTaskError::RingNotReturned => "blk-direct: the backend did not answer everything the task sent",
    })?;
    let (reported, n) = reports::take();
    match exit {
        TaskExit::Exited(0) => {}
        TaskExit::Exited(_) => return Err("blk-direct: a read failed (pv-blkd said why above)"),
        TaskExit::Killed { .. } => return Err("blk-direct: pv-blkd was killed"),
    }
    if n as u64 != reps + 1 {
        return Err("blk-direct: the task did not report every repetition");
    }
    println!("blk-direct: {} KiB reads by pv-blkd, straight through the block ring from ring 3", sectors / 2);
    print_reports(&reported, reps, ops);
    Ok(())
}

fn parse_u64(word: Option<&str>) -> Option<u64> {
    word?.parse().ok()
}

/// `blk-user-read-sum LBA COUNT`.
pub fn read_sum<'a>(mut args: impl Iterator<Item = &'a str>) -> u8 {
    let (Some(lba), Some(count)) = (parse_u64(args.next()), parse_u64(args.next())) else {
        println!("blk-user-read-sum: usage: blk-user-read-sum LBA COUNT");
        return EXIT_USAGE;
    };
    let Some(buffers) = buffers_for(MAX_REQUEST_SECTORS) else {
        println!("blk-user-read-sum: no block device (start hv with --disk PATH)");
        return EXIT_USAGE;
    };
    if count > buffers * MAX_REQUEST_SECTORS || lba >= 1 << 32 {
        println!("blk-user-read-sum: COUNT must be at most {} (the task's buffers), LBA below 2^32", buffers * MAX_REQUEST_SECTORS);
        return EXIT_USAGE;
    }
    match run_task(&BLK_USER, [MAX_REQUEST_SECTORS | buffers << 16, 0, count | lba << 32]) {
        Ok((reported, 1)) => {
            println!("blk-user-read-sum: {:016x}", reported[0].1);
            0
        }
        Ok(_) => {
            println!("blk-user-read-sum: the task did not report its hash");
            1
        }
        Err(why) => {
            println!("blk-user-read-sum: {why}");
            1
        }
    }
}

/// What each step of `blk-user-hostile` must get (negated errno, or a count).
const HOSTILE_EXPECTED: [(&str, i64); 16] = [
    ("setup on a kernel address", -14),
    ("setup on unmapped memory", -14),
    ("setup on the task's code page", -14),
    ("setup with 33 buffers", -22),
    ("setup of 32 × 16 pages, 4 of them mapped", -14),
    ("setup of 4 one-page buffers", 0),
    ("a second setup", -16),
    ("33 requests in one call", -7),
    ("the request array at a kernel address", -14),
    ("buffer 4 of 4", -22),
    ("9 sectors into one page", -22),
    ("one buffer twice in a batch", -16),
    ("an unknown operation", -22),
    ("unmap of the registered buffer", -16),
    ("completions to a kernel address", -14),
    ("a valid read", 1),
];

/// `blk-user-hostile`.
pub fn hostile() -> u8 {
    if drivers::block().is_none() {
        println!("blk-user-hostile: no block device (start hv with --disk PATH)");
        return EXIT_USAGE;
    }
    // A page of the kernel's own code: mapped, but not for ring 3.
    let kernel_address = hostile as *const () as u64 & !0xfff;
    let (reported, n) = match run_task(&BLK_HOSTILE, [kernel_address, 0, 0]) {
        Ok(r) => r,
        Err(why) => {
            println!("blk-user-hostile: {why}");
            return 1;
        }
    };
    let mut failed = n != HOSTILE_EXPECTED.len();
    for (i, (result, _)) in reported[..n].iter().enumerate() {
        let (what, expected) = HOSTILE_EXPECTED.get(i).copied().unwrap_or(("?", 0));
        let got = *result as i64;
        let verdict = if got == expected { "ok" } else { "WRONG" };
        failed |= got != expected;
        println!("blk-user-hostile: {}: {what}: {got} ({verdict})", i + 1);
    }
    println!("blk-user-hostile: {}", if failed { "FAILED" } else { "all refused as they must be" });
    u8::from(failed)
}
