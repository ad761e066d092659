//! Ring-3 tasks, each in its own address space.
//!
//! A task is a user program (see `programs.rs`), an [`AddressSpace`] whose lower half
//! holds its code page, its stack and whatever anonymous memory it maps, and its saved
//! registers. Scheduling is cooperative: a task runs until it makes a system call that
//! yields or exits, or until it faults. A switch saves the running task's registers from
//! the trap frame, puts the next task's in their place, and loads the next address
//! space into CR3 (with `mov cr3`: the guest owns its page tables in `ept` mode). The
//! trap then "returns" into the other task.
//!
//! Anonymous memory is **demand-zero**: `map` only records a region; the first touch of
//! each page faults, and the page-fault handler maps a zeroed frame and retries the
//! instruction. A task that touches anything else (the kernel, a read-only page, memory
//! it never mapped) is killed with a message. The kernel and the other tasks go on.

mod entry;
pub mod programs;
pub mod syscall;

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::mmu::address_space::{AddressSpace, USER_END};
use crate::mmu::writer::PageTableWriter;
use crate::mmu::{MmuError, PageSize, Protection};
use crate::trap::TrapFrame;
use crate::{cpu, frames, gdt, println};
use programs::{UserProgram, USER_CODE_BASE};

/// Tasks that can exist at once.
pub const MAX_TASKS: usize = 8;
/// Anonymous regions per task (the stack is one).
const MAX_REGIONS: usize = 4;
/// Top of every task's stack.
pub const USER_STACK_TOP: u64 = 0x7fff_0000_0000;
/// Size of the stack region (demand-zero, like any anonymous memory).
const USER_STACK_BYTES: u64 = 64 * 1024;
/// RFLAGS for ring 3: interrupts on (bit 9) and the always-one bit 1.
const USER_RFLAGS: u64 = 0x202;

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskExit {
    /// It called exit(code).
    Exited(u64),
    /// The kernel killed it after an exception.
    Killed {
        /// The exception vector.
        vector: u64,
        /// Where (rip).
        rip: u64,
        /// The faulting address, for page faults.
        address: u64,
    },
}

/// A range of anonymous, demand-zero memory.
#[derive(Clone, Copy)]
struct Region {
    start: u64,
    end: u64,
    size: PageSize,
}

struct Task {
    program: &'static str,
    space: AddressSpace,
    context: TrapFrame,
    regions: [Option<Region>; MAX_REGIONS],
}

/// Why `map` failed.
pub enum MapError {
    /// Bad address, length or alignment, or no region slot left.
    Invalid,
    /// Out of frames or page tables.
    NoMemory,
}

static mut TASKS: [Option<Task>; MAX_TASKS] = [const { None }; MAX_TASKS];
static mut RESULTS: [Option<TaskExit>; MAX_TASKS] = [None; MAX_TASKS];
static mut CURRENT: usize = 0;
static mut WRITER: PageTableWriter = PageTableWriter::Direct;
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

/// Counters for the self-tests and statistics.
pub static CR3_LOADS: AtomicU64 = AtomicU64::new(0);
/// Demand-zero page faults served.
pub static DEMAND_FAULTS: AtomicU64 = AtomicU64::new(0);
/// System calls made.
pub static SYSCALLS: AtomicU64 = AtomicU64::new(0);

/// All mutable task state, reached through one function so each use is one borrow.
struct State {
    tasks: &'static mut [Option<Task>; MAX_TASKS],
    results: &'static mut [Option<TaskExit>; MAX_TASKS],
    current: &'static mut usize,
    writer: &'static mut PageTableWriter,
}

fn state() -> State {
    // SAFETY: one vCPU. Task state is used by the kernel between tasks and by trap
    // handlers while a task runs, never both at once (the kernel does not run tasks'
    // traps while it is itself in this module), so no two States are used together.
    #[allow(static_mut_refs)]
    unsafe {
        State { tasks: &mut TASKS, results: &mut RESULTS, current: &mut CURRENT, writer: &mut WRITER }
    }
}

/// Whether address spaces are loaded with the `set_cr3` hypercall (shadow mode).
static SET_CR3_BY_HYPERCALL: AtomicBool = AtomicBool::new(false);

/// Records the kernel's own page-table root (the VMM's boot PML4), and how address
/// spaces are loaded in this memory mode.
pub fn init(info: &pv_abi::BootInfo) {
    KERNEL_ROOT.store(info.boot_page_table_root, Ordering::Relaxed);
    let shadow = pv_abi::MmuMode::from_u32(info.mmu_mode) == Some(pv_abi::MmuMode::Shadow);
    SET_CR3_BY_HYPERCALL.store(shadow, Ordering::Relaxed);
}

/// Chooses how page-table writes reach the tables: direct stores or `mmu_update` batches.
pub fn use_batched_updates(batched: bool) {
    *state().writer = if batched { PageTableWriter::batched() } else { PageTableWriter::Direct };
}

/// `mmu_update` hypercalls made by the task page-table writer.
pub fn mmu_hypercalls() -> u64 {
    state().writer.hypercalls()
}

pub(crate) fn count_syscall() {
    SYSCALLS.fetch_add(1, Ordering::Relaxed);
}

/// Loads an address space. In ept mode the kernel writes CR3 itself; in shadow mode
/// the CPU must never see the guest's own tables, so the VMM does it (`set_cr3`) and
/// points CR3 at its shadow of them.
fn load_cr3(root: u64) {
    CR3_LOADS.fetch_add(1, Ordering::Relaxed);
    if SET_CR3_BY_HYPERCALL.load(Ordering::Relaxed) {
        if crate::hypercall::set_cr3(root).is_err() {
            panic!("the VMM refused to load address space {root:#x}");
        }
    } else {
        cpu::write_cr3(root);
    }
}

/// Runs `f` with the address space whose PML4 is `root` loaded, then returns to the
/// kernel's own address space (for kernel code that must see a user mapping).
pub fn with_address_space<R>(root: u64, f: impl FnOnce() -> R) -> R {
    load_cr3(root);
    let r = f();
    load_cr3(KERNEL_ROOT.load(Ordering::Relaxed));
    r
}

/// Creates a task running `program` with `args` in rdi and rsi; returns its slot.
pub fn spawn(program: &UserProgram, args: [u64; 2]) -> Result<usize, MmuError> {
    let st = state();
    let slot = st.tasks.iter().position(Option::is_none).ok_or(MmuError::NoTables)?;
    let code = program.code();
    if code.is_empty() || code.len() > 4096 {
        return Err(MmuError::BadAddress);
    }
    let mut space = AddressSpace::new(st.writer, KERNEL_ROOT.load(Ordering::Relaxed))?;
    let frame = frames::alloc().ok_or(MmuError::NoTables)?;
    let page = frames::bytes(frame);
    page.fill(0);
    page[..code.len()].copy_from_slice(code);
    space.map(st.writer, USER_CODE_BASE, frame, Protection::USER_CODE, PageSize::Small)?;
    st.writer.flush()?;
    let mut regions = [None; MAX_REGIONS];
    regions[0] = Some(Region { start: USER_STACK_TOP - USER_STACK_BYTES, end: USER_STACK_TOP, size: PageSize::Small });
    let context = TrapFrame {
        rip: USER_CODE_BASE,
        cs: u64::from(gdt::USER_CODE),
        rflags: USER_RFLAGS,
        rsp: USER_STACK_TOP,
        ss: u64::from(gdt::USER_DATA),
        rdi: args[0],
        rsi: args[1],
        ..TrapFrame::ZERO
    };
    st.tasks[slot] = Some(Task { program: program.name, space, context, regions });
    st.results[slot] = None;
    Ok(slot)
}

/// Lets `edit` change the address space of the task in `slot` before it runs.
pub fn edit_space(slot: usize, edit: impl FnOnce(&mut AddressSpace, &mut PageTableWriter) -> Result<(), MmuError>) -> Result<(), MmuError> {
    let st = state();
    let task = st.tasks.get_mut(slot).and_then(Option::as_mut).ok_or(MmuError::NotMapped)?;
    edit(&mut task.space, st.writer)
}

/// Runs every task until all have ended; returns how each slot's task ended.
pub fn run_all() -> [Option<TaskExit>; MAX_TASKS] {
    let st = state();
    if let Some(first) = st.tasks.iter().position(Option::is_some) {
        *st.current = first;
        let context = st.tasks[first].as_ref().map(|t| (t.context, t.space.root()));
        if let Some((context, root)) = context {
            load_cr3(root);
            entry::enter_user(&context);
        }
    }
    let results = *state().results;
    *state().results = [None; MAX_TASKS];
    results
}

/// Saves the running task's registers (if it still exists) and switches to the next
/// runnable task, or back to the kernel when none is left.
fn switch_away(frame: &mut TrapFrame) {
    let st = state();
    let current = *st.current;
    if let Some(task) = st.tasks[current].as_mut() {
        task.context = *frame;
    }
    let next = (1..=MAX_TASKS).map(|i| (current + i) % MAX_TASKS).find(|&i| st.tasks[i].is_some());
    match next {
        Some(i) => {
            *st.current = i;
            if let Some(task) = st.tasks[i].as_ref() {
                *frame = task.context;
                if i != current {
                    load_cr3(task.space.root());
                }
            }
        }
        None => {
            load_cr3(KERNEL_ROOT.load(Ordering::Relaxed));
            entry::back_to_kernel();
        }
    }
}

/// `yield`: let the next task run.
pub fn yield_current(frame: &mut TrapFrame) {
    switch_away(frame);
}

/// Ends the running task and runs the next one.
pub fn exit_current(frame: &mut TrapFrame, how: TaskExit) {
    let st = state();
    let current = *st.current;
    st.results[current] = Some(how);
    let Some(task) = st.tasks[current].take() else { return };
    // Leave its address space before freeing it.
    load_cr3(KERNEL_ROOT.load(Ordering::Relaxed));
    let destroyed = task.space.destroy(st.writer, &mut |frame, size| match size {
        PageSize::Small => frames::free(frame),
        PageSize::Large => frames::free_large(frame),
    });
    if destroyed.is_err() {
        crate::println!("task {current}: the VMM refused a page-table write while freeing its address space");
    }
    switch_away(frame);
}

/// Kills the running task after exception `vector` and runs the next one.
pub fn kill_current(frame: &mut TrapFrame, vector: u64, address: u64) {
    let st = state();
    let program = st.tasks[*st.current].as_ref().map_or("?", |t| t.program);
    println!(
        "pv-guest: task {} ({program}) killed: {} at rip={:#x} address={address:#x}",
        *st.current,
        pv_abi::exception::exception_mnemonic(vector),
        frame.rip
    );
    exit_current(frame, TaskExit::Killed { vector, rip: frame.rip, address });
}

/// The page-fault handler's part for tasks: serves demand-zero faults in the running
/// task's regions. Returns false if the fault is not one it can serve.
pub fn serve_demand_fault(address: u64, error_code: u64) -> bool {
    const NOT_PRESENT_BIT: u64 = 1;
    if address >= USER_END || error_code & NOT_PRESENT_BIT != 0 {
        return false;
    }
    let st = state();
    let Some(task) = st.tasks[*st.current].as_mut() else { return false };
    let Some(region) = task.regions.iter().flatten().find(|r| (r.start..r.end).contains(&address)).copied() else {
        return false;
    };
    let base = address & !(region.size.bytes() - 1);
    let frame = match region.size {
        PageSize::Small => frames::alloc(),
        PageSize::Large => frames::alloc_large(),
    };
    let Some(frame) = frame else { return false };
    frames::zero(frame, region.size.bytes());
    if task.space.map(st.writer, base, frame, Protection::USER_DATA, region.size).and_then(|_| st.writer.flush()).is_err() {
        return false;
    }
    DEMAND_FAULTS.fetch_add(1, Ordering::Relaxed);
    true
}

/// `map`: records a demand-zero region.
pub fn map_anonymous(address: u64, len: u64, large: bool) -> Result<(), MapError> {
    let size = if large { PageSize::Large } else { PageSize::Small };
    let end = address.checked_add(len).ok_or(MapError::Invalid)?;
    if len == 0 || !address.is_multiple_of(size.bytes()) || !len.is_multiple_of(size.bytes()) || end > USER_END || address < USER_CODE_BASE + 4096 {
        return Err(MapError::Invalid);
    }
    let st = state();
    let task = st.tasks[*st.current].as_mut().ok_or(MapError::Invalid)?;
    if task.regions.iter().flatten().any(|r| address < r.end && r.start < end) {
        return Err(MapError::Invalid);
    }
    let slot = task.regions.iter().position(Option::is_none).ok_or(MapError::NoMemory)?;
    task.regions[slot] = Some(Region { start: address, end, size });
    Ok(())
}

/// `unmap`: removes a whole region made by `map`, freeing the frames it touched.
pub fn unmap_anonymous(address: u64, len: u64) -> bool {
    let st = state();
    let Some(task) = st.tasks[*st.current].as_mut() else { return false };
    let Some(slot) = task.regions.iter().position(|r| r.is_some_and(|r| r.start == address && r.end - r.start == len)) else {
        return false;
    };
    let Some(region) = task.regions[slot].take() else { return false };
    // The order matters: the entries must be gone from the tables (the batch sent)
    // before the TLB entries are dropped, or the CPU could refill them from the old
    // entries; and a frame may be reused only after no mapping of it can remain.
    let mut unmapped = UnmappedPages::new();
    let mut va = region.start;
    let mut ok = true;
    while va < region.end {
        if let Ok((frame, size)) = task.space.unmap(st.writer, va) {
            if unmapped.is_full() {
                ok &= unmapped.release(st.writer);
            }
            unmapped.push(va, frame, size);
        }
        va += region.size.bytes();
    }
    ok & unmapped.release(st.writer)
}

/// Pages taken out of an address space whose TLB entries and frames are released
/// together once their page-table writes have been sent.
struct UnmappedPages {
    pages: [(u64, u64, PageSize); 64],
    len: usize,
}

impl UnmappedPages {
    fn new() -> Self {
        UnmappedPages { pages: [(0, 0, PageSize::Small); 64], len: 0 }
    }

    fn is_full(&self) -> bool {
        self.len == self.pages.len()
    }

    fn push(&mut self, va: u64, frame: u64, size: PageSize) {
        self.pages[self.len] = (va, frame, size);
        self.len += 1;
    }

    /// Sends the writes, then drops each TLB entry and frees each frame.
    fn release(&mut self, w: &mut PageTableWriter) -> bool {
        let sent = w.flush().is_ok();
        for &(va, frame, size) in &self.pages[..self.len] {
            cpu::invlpg(va);
            match size {
                PageSize::Small => frames::free(frame),
                PageSize::Large => frames::free_large(frame),
            }
        }
        self.len = 0;
        sent
    }
}

/// Copies from the running task's memory through its page tables; false if any byte is
/// not mapped for the user (demand-zero pages are faulted in first).
pub fn copy_from_user(address: u64, buf: &mut [u8]) -> bool {
    // Each lookup borrows the task state only for its own duration.
    let lookup = |va: u64| {
        let st = state();
        st.tasks[*st.current].as_ref().and_then(|t| t.space.translate(va))
    };
    let mut done = 0usize;
    while done < buf.len() {
        let va = address + done as u64;
        let translated = lookup(va).or_else(|| if serve_demand_fault(va, 0) { lookup(va) } else { None });
        let Some((gpa, entry)) = translated else { return false };
        if entry & crate::mmu::PTE_USER == 0 {
            return false;
        }
        let n = (4096 - (va % 4096) as usize).min(buf.len() - done);
        let page_offset = (gpa % 4096) as usize;
        buf[done..done + n].copy_from_slice(&frames::bytes(gpa - page_offset as u64)[page_offset..page_offset + n]);
        done += n;
    }
    true
}

/// Reads the two bytes at a user `rip` (for recognising `int 0x80` after a #UD).
pub fn user_code_bytes(rip: u64) -> Option<[u8; 2]> {
    let mut bytes = [0u8; 2];
    copy_from_user(rip, &mut bytes).then_some(bytes)
}
