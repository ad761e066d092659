//! Booting: everything the VMM puts in place before the guest's first instruction.
//!
//! [`prepare`] is the whole story in order: check the ELF, copy its segments into guest
//! RAM, build the first page tables, write the boot GDT and the boot-info page. The
//! result, a [`BootPlan`], says where to start the vCPU; `cpu_state` turns it into
//! register values.

pub mod cpu_state;
pub mod elf;
pub mod guest_image;
pub mod page_tables;

use vm_memory::ByteValued;

use crate::memory::{GuestRam, OutsideRam};
use elf::{ElfError, KernelImage};
use page_tables::{BootPageTables, PageTableError};
use pv_abi::addr::{GuestVirt, PseudoPhys};
use pv_abi::layout::{pt_pool, BOOT_INFO_GPA, GRANT_TABLE_FRAMES, GRANT_TABLE_GPA, PAGE_SIZE, SHARED_INFO_GPA};
use pv_abi::{BootInfo, CmdlineError, DeviceInfo, MmuMode};

/// Where and how the vCPU starts.
#[derive(Clone, Debug)]
pub struct BootPlan {
    /// Virtual address of the kernel's entry point.
    pub entry: GuestVirt,
    /// Pseudo-physical address of the PML4.
    pub page_table_root: PseudoPhys,
    /// Pseudo-physical address of the boot-info page (passed in `rdi`).
    pub boot_info_gpa: PseudoPhys,
    /// The boot-info page as written.
    pub boot_info: BootInfo,
    /// Number of loaded segments.
    pub segments: usize,
}

/// Where each device lives, as the boot-info page announces it (the devices layer
/// fills it in; booting only copies it into the page).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLayout {
    /// The console.
    pub console: DeviceInfo,
    /// The block device (absent without a disk).
    pub block: DeviceInfo,
    /// Disk size in sectors.
    pub block_sectors: u64,
    /// The disk's `BlockFlags`, as the boot-info page carries them.
    pub block_flags: u32,
    /// The balloon (absent in a recorded or replayed run).
    pub balloon: DeviceInfo,
    /// The network device and the guest's identity on the network (absent without one).
    pub net: Option<NetLayout>,
}

/// The network device as the boot-info page announces it (`pv_abi::BootInfo`'s `net_*`
/// block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetLayout {
    /// The transmit ring.
    pub tx: DeviceInfo,
    /// The receive ring.
    pub rx: DeviceInfo,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// Its IPv4 address.
    pub ipv4: [u8; 4],
    /// Its network's prefix length.
    pub prefix_len: u8,
    /// The host's address on that network.
    pub gateway: [u8; 4],
}

/// What the boot inputs are.
pub struct BootInputs<'a> {
    /// The kernel ELF file.
    pub kernel: &'a [u8],
    /// The same file, checked by [`elf::parse_kernel`].
    pub image: &'a KernelImage,
    /// Words for the guest command line.
    pub guest_args: &'a [String],
    /// Memory mode announced to the guest.
    pub mmu: MmuMode,
    /// TSC frequency to announce, 0 if unknown.
    pub tsc_khz: u64,
    /// Whether the CPU supports no-execute pages.
    pub nx: bool,
    /// Where the devices are.
    pub devices: DeviceLayout,
    /// The run is recorded or replayed: the guest must read its clock through hv
    /// (`pv_abi::boot_info::BOOT_FLAG_CLOCK_RECORDED`).
    pub clock_recorded: bool,
}

/// Why the guest could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file is bad.
    #[error("the kernel is not bootable: {0}")]
    Elf(#[from] ElfError),
    /// The page tables could not be built.
    #[error(transparent)]
    PageTables(#[from] PageTableError),
    /// The guest command line does not fit.
    #[error("the guest command line does not fit in the boot-info page ({0:?}; at most {max} bytes)", max = pv_abi::boot_info::CMDLINE_MAX)]
    Cmdline(CmdlineError),
    /// A write outside RAM (only with a RAM too small for the layout).
    #[error(transparent)]
    Memory(#[from] OutsideRam),
}

/// The boot-info page as bytes for vm-memory.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct BootInfoPage(BootInfo);

// SAFETY: BootInfo is #[repr(C)] and made only of integers and a byte array, with no
// padding (pv-abi's layout test checks every offset and the total size), so any byte
// pattern is a valid value and its bytes may be read and written freely.
unsafe impl ByteValued for BootInfoPage {}

/// Loads the kernel and builds everything the first instruction relies on. The image
/// must have been checked against a RAM of this size.
pub fn prepare(ram: &GuestRam, inputs: &BootInputs) -> Result<BootPlan, BootError> {
    let image = inputs.image;
    load_segments(ram, inputs.kernel, image)?;

    let pool = pt_pool(ram.size());
    let mut tables = BootPageTables::new(ram, inputs.nx, pool.clone())?;
    tables.map_direct(ram.size())?;
    for segment in &image.segments {
        tables.map_segment(segment)?;
    }
    tables.map_local_apic()?;
    cpu_state::write_boot_gdt(ram)?;

    // Empty segments cover no page, so they neither start nor end the kernel.
    let occupied = || image.segments.iter().filter(|s| s.mem_size > 0);
    let kernel_start = occupied().map(|s| s.phys_pages().0).min().unwrap_or_default().raw();
    let kernel_end = occupied().map(|s| s.phys_pages().1).max().unwrap_or_default().raw();
    let mut info = BootInfo {
        mmu_mode: inputs.mmu as u32,
        mem_bytes: ram.size(),
        kernel_start,
        kernel_end,
        free_mem_start: kernel_end.next_multiple_of(PAGE_SIZE),
        free_mem_end: pool.start.raw(),
        pt_pool_start: pool.start.raw(),
        pt_pool_end: pool.end.raw(),
        pt_pool_free: tables.next_free().raw(),
        boot_page_table_root: tables.root.raw(),
        tsc_khz: inputs.tsc_khz,
        shared_info_gpa: SHARED_INFO_GPA,
        grant_table_gpa: GRANT_TABLE_GPA,
        grant_table_frames: GRANT_TABLE_FRAMES,
        console: inputs.devices.console,
        block: inputs.devices.block,
        block_sectors: inputs.devices.block_sectors,
        block_flags: inputs.devices.block_flags,
        balloon: inputs.devices.balloon,
        flags: if inputs.clock_recorded { pv_abi::boot_info::BOOT_FLAG_CLOCK_RECORDED } else { 0 },
        ..BootInfo::empty()
    };
    if let Some(net) = inputs.devices.net {
        info.net_tx = net.tx;
        info.net_rx = net.rx;
        info.net_mac = net.mac;
        info.net_ipv4 = net.ipv4;
        info.net_prefix_len = net.prefix_len;
        info.net_gateway = net.gateway;
    }
    info.set_cmdline(inputs.guest_args.iter().map(String::as_str)).map_err(BootError::Cmdline)?;
    ram.write(PseudoPhys::new(BOOT_INFO_GPA), BootInfoPage(info).as_slice())?;

    Ok(BootPlan {
        entry: image.entry,
        page_table_root: tables.root,
        boot_info_gpa: PseudoPhys::new(BOOT_INFO_GPA),
        boot_info: info,
        segments: image.segments.len(),
    })
}

/// Where the page-table pool starts (pv-abi's [`pt_pool`]): everything below is for the
/// kernel image and the guest's free memory, so an ELF segment must end below it.
pub fn kernel_memory_limit(ram_bytes: u64) -> PseudoPhys {
    pt_pool(ram_bytes).start
}

/// Copies each segment's file bytes and zeroes the rest of its memory (`.bss`).
fn load_segments(ram: &GuestRam, file: &[u8], image: &KernelImage) -> Result<(), OutsideRam> {
    for s in &image.segments {
        // Bounds were checked by parse_kernel; the slicing below cannot fail.
        let data = &file[s.file_offset as usize..(s.file_offset + s.file_size) as usize];
        // Checked by parse_kernel too: the segment ends inside RAM, below the pool.
        let start = s.paddr;
        let bss = start.checked_add(s.file_size).ok_or(OutsideRam { gpa: start, len: s.mem_size, ram: ram.size() })?;
        ram.write(start, data)?;
        let zeros = vec![0u8; (s.mem_size - s.file_size) as usize];
        ram.write(bss, &zeros)?;
    }
    Ok(())
}
