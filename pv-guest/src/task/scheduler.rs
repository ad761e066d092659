//! Which tasks exist and which one runs.
//!
//! Scheduling is cooperative: a task runs until it makes a system call that yields or
//! exits, or until it faults. A switch saves the running task's registers from the trap
//! frame, puts the next task's in their place, and loads the next address space into
//! CR3 (with `mov cr3`: the guest owns its page tables in `ept` mode). The trap then
//! "returns" into the other task. When no task is left the kernel takes the `longjmp`
//! back to [`run_all`] (`arch::user_entry`).
//!
//! All of this state is one [`VcpuCell`]. It is borrowed by kernel code between tasks
//! and by trap handlers while a task runs, never both at once: every function here
//! drops its borrow before it enters ring 3 or leaves a trap for good.

use core::sync::atomic::{AtomicU64, Ordering};

use pv_abi::addr::{GuestVirt, PseudoPhys};

use super::demand_paging::TaskMemory;
use super::programs::{UserProgram, USER_CODE_BASE};
use crate::arch::cpu_local::{VcpuCell, VcpuRefMut};
use crate::arch::trap_frame::TrapFrame;
use crate::arch::{cpu, gdt, user_entry};
use crate::counters::{self, CR3_LOADS};
use crate::hv::{hypercall, memory_mode};
use crate::mm::address_space::AddressSpace;
use crate::mm::frames;
use crate::mm::writer::PageTableWriter;
use crate::mm::{MmuError, PageSize, Protection};
use crate::println;

/// Tasks that can exist at once.
pub const MAX_TASKS: usize = 8;
/// Top of every task's stack.
pub const USER_STACK_TOP: GuestVirt = GuestVirt::new(0x7fff_0000_0000);
/// Bottom of every task's stack region.
/// (Checked at compile time: an overflow would stop the build.)
const USER_STACK_BOTTOM: GuestVirt = USER_STACK_TOP.checked_sub(USER_STACK_BYTES).unwrap();
/// Size of the stack region (demand-zero, like any anonymous memory).
const USER_STACK_BYTES: u64 = 64 * 1024;
/// RFLAGS for ring 3: interrupts on (bit 9) and the always-one bit 1.
const USER_RFLAGS: u64 = 0x202;
/// Largest user program: one code page.
const USER_CODE_MAX: usize = 4096;
/// End of a task's code page: its anonymous memory must lie above.
pub const USER_CODE_END: GuestVirt = USER_CODE_BASE.checked_add(USER_CODE_MAX as u64).unwrap();

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
        rip: GuestVirt,
        /// The faulting address (CR2), for page faults; 0 otherwise.
        address: GuestVirt,
    },
}

struct Task {
    program: &'static str,
    memory: TaskMemory,
    context: TrapFrame,
    /// Pages the kernel lent the task (a device's rings and buffers): unmapped, never
    /// freed, when the task ends.
    borrowed: core::ops::Range<GuestVirt>,
}

/// Every task, how the ended ones ended, which one runs, and the page-table writer
/// their address spaces are edited with.
struct Scheduler {
    tasks: [Option<Task>; MAX_TASKS],
    results: [Option<TaskExit>; MAX_TASKS],
    current: usize,
    writer: PageTableWriter,
}

static SCHEDULER: VcpuCell<Scheduler> = VcpuCell::new(Scheduler {
    tasks: [const { None }; MAX_TASKS],
    results: [None; MAX_TASKS],
    current: 0,
    writer: PageTableWriter::Direct,
});

fn scheduler() -> VcpuRefMut<'static, Scheduler> {
    SCHEDULER.borrow_mut()
}

/// The kernel's own page-table root (the VMM's boot PML4), a guest-physical address.
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

fn kernel_root() -> PseudoPhys {
    PseudoPhys::new(KERNEL_ROOT.load(Ordering::Relaxed))
}
/// Records the kernel's own page-table root (the VMM's boot PML4).
pub fn init(info: &pv_abi::BootInfo) {
    KERNEL_ROOT.store(info.boot_page_table_root, Ordering::Relaxed);
}

/// Chooses how page-table writes reach the tables: direct stores or `mmu_update` batches.
pub fn use_batched_updates(batched: bool) {
    scheduler().writer = if batched { PageTableWriter::batched() } else { PageTableWriter::Direct };
}

/// `mmu_update` hypercalls made by the task page-table writer.
pub fn mmu_hypercalls() -> u64 {
    scheduler().writer.hypercalls()
}

/// Loads an address space. In ept mode the kernel writes CR3 itself; in shadow mode
/// the CPU must never see the guest's own tables, so the VMM does it (`set_cr3`) and
/// points CR3 at its shadow of them. The mode is read now, inside the CR3 section
/// (`hv::memory_mode`): a restore may have changed it since the last load.
fn load_cr3(root: PseudoPhys) {
    counters::bump(&CR3_LOADS);
    memory_mode::in_cr3_section(|mode| {
        // SAFETY (both branches): every root loaded here is the kernel's own (the boot
        // PML4) or that of an AddressSpace, whose upper half is a copy of the boot
        // PML4's: the kernel stays mapped where it is.
        if mode == Some(pv_abi::MmuMode::Shadow) {
            // SAFETY: see above.
            if unsafe { hypercall::set_cr3(root) }.is_err() {
                panic!("the VMM refused to load address space {root:#x}");
            }
        } else {
            // SAFETY: see above.
            unsafe { cpu::write_cr3(root) };
        }
    });
}

/// Runs `f` with `space` loaded, then returns to the kernel's own address space (for
/// kernel code that must see a user mapping). `f` gets the space back to edit it.
pub fn with_address_space<R>(space: &mut AddressSpace, f: impl FnOnce(&mut AddressSpace) -> R) -> R {
    load_cr3(space.root());
    let r = f(space);
    load_cr3(kernel_root());
    r
}

/// Creates a task running `program` with `args` in rdi and rsi; returns its slot.
pub fn spawn(program: &UserProgram, args: [u64; 2]) -> Result<usize, MmuError> {
    spawn_with(program, [args[0], args[1], 0])
}

/// [`spawn`] with a third argument, in rdx.
pub fn spawn_with(program: &UserProgram, args: [u64; 3]) -> Result<usize, MmuError> {
    let mut guard = scheduler();
    let s = &mut *guard;
    let slot = s.tasks.iter().position(Option::is_none).ok_or(MmuError::NoTables)?;
    let code = program.code();
    if code.is_empty() || code.len() > USER_CODE_MAX {
        return Err(MmuError::BadAddress);
    }
    let mut space = AddressSpace::new(&mut s.writer, kernel_root())?;
    let frame = frames::alloc().ok_or(MmuError::NoTables)?;
    // SAFETY: the frame was just allocated, and this is the only reference to it.
    let page = unsafe { frames::bytes(frame) };
    page.fill(0);
    page[..code.len()].copy_from_slice(code);
    space.map(&mut s.writer, USER_CODE_BASE, frame, Protection::USER_CODE, PageSize::Small)?;
    s.writer.flush()?;
    install(s, slot, program.name, space, USER_CODE_BASE, args, NOTHING_BORROWED);
    Ok(slot)
}

/// Puts a task whose address space is ready into `slot`: its stack is the demand-zero
/// region under [`USER_STACK_TOP`], and it starts at `entry` in ring 3 with interrupts
/// on and `args` in rdi, rsi and rdx.
fn install(s: &mut Scheduler, slot: usize, program: &'static str, space: AddressSpace, entry: GuestVirt, args: [u64; 3], borrowed: core::ops::Range<GuestVirt>) {
    let memory = TaskMemory::new(space, USER_STACK_BOTTOM..USER_STACK_TOP);
    let context = TrapFrame {
        rip: entry.raw(),
        cs: u64::from(gdt::USER_CODE),
        rflags: USER_RFLAGS,
        rsp: USER_STACK_TOP.raw(),
        ss: u64::from(gdt::USER_DATA),
        rdi: args[0],
        rsi: args[1],
        rdx: args[2],
        ..TrapFrame::ZERO
    };
    s.tasks[slot] = Some(Task { program, memory, context, borrowed });
    s.results[slot] = None;
}

/// A task that borrowed nothing.
const NOTHING_BORROWED: core::ops::Range<GuestVirt> = GuestVirt::new(0)..GuestVirt::new(0);

/// Creates a task from a separately linked program (`super::user_image`): `build`
/// fills its fresh address space (the image's segments and whatever the kernel lends
/// it), and it starts at `entry` with `args` in rdi, rsi, rdx. Pages mapped in
/// `borrowed` are the kernel's: they are unmapped, never freed, when the task ends.
pub fn spawn_image<E>(
    name: &'static str,
    entry: GuestVirt,
    args: [u64; 3],
    borrowed: core::ops::Range<GuestVirt>,
    build: impl FnOnce(&mut AddressSpace, &mut PageTableWriter) -> Result<(), E>,
) -> Result<usize, SpawnError<E>> {
    let mut guard = scheduler();
    let s = &mut *guard;
    let slot = s.tasks.iter().position(Option::is_none).ok_or(SpawnError::Mmu(MmuError::NoTables))?;
    let mut space = AddressSpace::new(&mut s.writer, kernel_root()).map_err(SpawnError::Mmu)?;
    if let Err(e) = build(&mut space, &mut s.writer) {
        release_space(space, &borrowed, &mut s.writer);
        return Err(SpawnError::Build(e));
    }
    install(s, slot, name, space, entry, args, borrowed);
    Ok(slot)
}

/// Why [`spawn_image`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError<E> {
    /// No task slot, page table or frame.
    Mmu(MmuError),
    /// The caller's `build` failed.
    Build(E),
}

/// Frees an address space that is not loaded: first unmaps the pages in `borrowed`
/// (they belong to someone else), then frees every other frame and every table.
fn release_space(mut space: AddressSpace, borrowed: &core::ops::Range<GuestVirt>, w: &mut PageTableWriter) {
    let mut va = borrowed.start;
    // Bounded by the window's size, which the kernel chose.
    while va < borrowed.end {
        let _ = space.unmap(w, va);
        va = va.checked_add(PageSize::Small.bytes()).unwrap_or(borrowed.end);
    }
    let destroyed = space.destroy(w, &mut |frame, size| match size {
        PageSize::Small => frames::free(frame),
        PageSize::Large => frames::free_large(frame),
    });
    if destroyed.is_err() {
        println!("pv-guest: the VMM refused a page-table write while freeing an address space");
    }
}

/// RFLAGS.IOPL (bits 12–13) at 3: ring 3 may use `in`/`out` on every port (and `cli`).
const RFLAGS_IOPL3: u64 = 3 << 12;

/// Lets the task in `slot` use port I/O (IOPL 3) when it runs. For the ring-3 doorbell
/// experiment of `net-ring3-probe` only: IOPL 3 opens *every* port and `cli`/`sti` to
/// the task, so a real ring-3 driver would get its one doorbell port through the TSS's
/// I/O permission bitmap instead.
pub fn allow_port_io(slot: usize) -> Result<(), MmuError> {
    let mut guard = scheduler();
    let task = guard.tasks.get_mut(slot).and_then(Option::as_mut).ok_or(MmuError::NotMapped)?;
    task.context.rflags |= RFLAGS_IOPL3;
    Ok(())
}

/// Lets `edit` change the address space of the task in `slot` before it runs.
pub fn edit_space(slot: usize, edit: impl FnOnce(&mut AddressSpace, &mut PageTableWriter) -> Result<(), MmuError>) -> Result<(), MmuError> {
    let mut guard = scheduler();
    let s = &mut *guard;
    let task = s.tasks.get_mut(slot).and_then(Option::as_mut).ok_or(MmuError::NotMapped)?;
    edit(&mut task.memory.space, &mut s.writer)
}

/// Lends `f` the running task's memory and the page-table writer; `None` if no task
/// is running. For the page-fault handler and the system calls.
pub fn with_current_memory<R>(f: impl FnOnce(&mut TaskMemory, &mut PageTableWriter) -> R) -> Option<R> {
    let mut guard = scheduler();
    let s = &mut *guard;
    let task = s.tasks[s.current].as_mut()?;
    Some(f(&mut task.memory, &mut s.writer))
}

/// The slot of the running task (meaningful only while a task runs: in its traps).
pub fn current_task() -> usize {
    scheduler().current
}

/// Runs every task until all have ended; returns how each slot's task ended.
pub fn run_all() -> [Option<TaskExit>; MAX_TASKS] {
    let first = {
        let mut s = scheduler();
        let first = s.tasks.iter().position(Option::is_some);
        first.and_then(|first| {
            s.current = first;
            s.tasks[first].as_ref().map(|t| (t.context, t.memory.space.root()))
        })
    };
    // The borrow has ended: the tasks' traps use the scheduler while they run.
    if let Some((context, root)) = first {
        load_cr3(root);
        user_entry::enter_user(&context);
    }
    let mut s = scheduler();
    let results = s.results;
    s.results = [None; MAX_TASKS];
    results
}

/// Saves the running task's registers (if it still exists) and switches to the next
/// runnable task, or back to the kernel when none is left.
fn switch_away(frame: &mut TrapFrame) {
    let mut s = scheduler();
    let current = s.current;
    if let Some(task) = s.tasks[current].as_mut() {
        task.context = *frame;
    }
    let next = (1..=MAX_TASKS).map(|i| (current + i) % MAX_TASKS).find(|&i| s.tasks[i].is_some());
    match next {
        Some(i) => {
            s.current = i;
            if let Some(task) = s.tasks[i].as_ref() {
                *frame = task.context;
                if i != current {
                    load_cr3(task.memory.space.root());
                }
            }
        }
        None => {
            drop(s);
            load_cr3(kernel_root());
            // SAFETY: we are in a trap taken from a task that run_all entered, and no
            // scheduler borrow is alive: this one was just dropped, and every caller
            // (yield_current, exit_current, and the trap handler above them) holds none.
            unsafe { user_entry::back_to_kernel() }
        }
    }
}

/// `yield`: let the next task run.
pub fn yield_current(frame: &mut TrapFrame) {
    switch_away(frame);
}

/// Ends the running task and runs the next one.
pub fn exit_current(frame: &mut TrapFrame, how: TaskExit) {
    {
        let mut guard = scheduler();
        let s = &mut *guard;
        let current = s.current;
        s.results[current] = Some(how);
        // A buffer granted to the block device is let go (its requests drained, its
        // grants revoked) before the frames can be freed below.
        if super::blk_io::release(current) == Err(super::blk_io::BlkIoError::Io) {
            println!("task {current}: the block device failed while its buffer was released");
        }
        let Some(task) = s.tasks[current].take() else { return };
        // Leave its address space before freeing it.
        load_cr3(kernel_root());
        release_space(task.memory.space, &task.borrowed, &mut s.writer);
    }
    switch_away(frame);
}

/// Kills the running task after exception `vector` and runs the next one.
pub fn kill_current(frame: &mut TrapFrame, vector: u64, address: GuestVirt) {
    let (current, program) = {
        let s = scheduler();
        (s.current, s.tasks[s.current].as_ref().map_or("?", |t| t.program))
    };
    println!(
        "pv-guest: task {} ({program}) killed: {} at rip={:#x} address={:#x}",
        current,
        pv_abi::exception::exception_mnemonic(vector),
        frame.rip,
        address.raw()
    );
    let rip = GuestVirt::new(frame.rip);
    exit_current(frame, TaskExit::Killed { vector, rip, address });
}
