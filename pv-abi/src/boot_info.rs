//! The boot-info page: what the VMM tells the guest before its first instruction.
//!
//! A real PC kernel discovers its machine by probing firmware tables (e820, ACPI). A
//! paravirtual kernel is simply *told*: the VMM fills one page at
//! [`crate::layout::BOOT_INFO_GPA`] and starts the vCPU with its guest-physical address
//! in `rdi` (the first argument register of the System V ABI, so the kernel's entry
//! function receives it as a parameter). Xen's `start_info` page plays the same role.
//!
//! The layout is `#[repr(C)]`, every field a fixed-size integer or byte array, with no
//! padding (checked by the tests below), so both sides see the same bytes.

/// The value of [`BootInfo::magic`]: "hvBOOTv1" read as a little-endian u64.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"hvBOOTv1");

/// [`BootInfo::flags`]: the clock is recorded. The guest must read the time-stamp counter
/// with the `read_clock` hypercall instead of `rdtsc`, because KVM cannot make `rdtsc`
/// exit to the VMM and a recorded run must see, on replay, the values it saw.
pub const BOOT_FLAG_CLOCK_RECORDED: u32 = 1 << 0;

/// Room for the guest command line (the words after `--` on hv's command line).
pub const CMDLINE_MAX: usize = 2048;

/// How guest memory is translated; see the memory-modes documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MmuMode {
    /// KVM translates guest-physical addresses (hardware EPT/NPT where the host has it).
    Ept = 1,
    /// The VMM translates with its own write-protected shadow page tables.
    Shadow = 2,
}

impl MmuMode {
    /// Decodes [`BootInfo::mmu_mode`].
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(MmuMode::Ept),
            2 => Some(MmuMode::Shadow),
            _ => None,
        }
    }

    /// The name used on hv's command line (`--mmu ept|shadow`).
    pub const fn name(self) -> &'static str {
        match self {
            MmuMode::Ept => "ept",
            MmuMode::Shadow => "shadow",
        }
    }
}

/// A locally administered, unicast MAC address for guest `index` (0-based), as hv
/// announces in [`BootInfo::net_mac`]: the first byte `0x02` sets the "locally
/// administered" bit and clears the "multicast" bit, as for any address a VMM invents;
/// the last four bytes are the index.
pub const fn guest_mac(index: u32) -> [u8; 6] {
    let i = index.to_be_bytes();
    [0x02, 0x68, i[0], i[1], i[2], i[3]]
}

/// Whether `mac` is unicast (bit 0 of the first byte clear) and locally administered
/// (bit 1 set): the kind of address hv gives its guests.
pub const fn is_local_unicast(mac: [u8; 6]) -> bool {
    mac[0] & 0x01 == 0 && mac[0] & 0x02 != 0
}

/// Where one split-driver device lives: its ring page, event channel and doorbell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct DeviceInfo {
    /// Guest-physical address of the device's ring page.
    pub ring_gpa: u64,
    /// Its event channel (index into the shared-info page's pending flags).
    pub channel: u32,
    /// The port the frontend writes to ring the backend's doorbell.
    pub doorbell_port: u16,
    /// 1 if the device exists, 0 if not.
    pub present: u16,
}

impl DeviceInfo {
    /// No device.
    pub const ABSENT: DeviceInfo = DeviceInfo { ring_gpa: 0, channel: 0, doorbell_port: 0, present: 0 };
}


/// The boot-info page. All addresses are guest-physical unless the name says otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`]: lets the guest check it was really given a boot-info page.
    pub magic: u64,
    /// [`crate::cpuid::HV_ABI_VERSION`] of the VMM that wrote this page.
    pub abi_version: u32,
    /// A [`MmuMode`] value.
    pub mmu_mode: u32,
    /// Size of guest RAM in bytes; RAM is the guest-physical range `0..mem_bytes`.
    pub mem_bytes: u64,
    /// First byte of the kernel image (lowest ELF segment), page-aligned down.
    pub kernel_start: u64,
    /// End of the kernel image (highest segment end), page-aligned up.
    pub kernel_end: u64,
    /// First byte of memory the guest may use freely (page-aligned).
    pub free_mem_start: u64,
    /// End (exclusive) of the free memory (page-aligned).
    pub free_mem_end: u64,
    /// Virtual address where guest-physical 0 is mapped ([`crate::layout::PHYS_MAP_BASE`]).
    pub phys_map_base: u64,
    /// Frequency of the guest's time-stamp counter in kHz, 0 if the VMM could not tell.
    pub tsc_khz: u64,
    /// Number of valid bytes in [`BootInfo::cmdline`].
    pub cmdline_len: u32,
    /// `BOOT_FLAG_*` bits (was a reserved zero field: a guest that knows no flag reads 0).
    pub flags: u32,
    /// Guest-physical address of the shared-info page (see `event_channel`).
    pub shared_info_gpa: u64,
    /// Guest-physical address of the grant table's first frame (see `grant`).
    pub grant_table_gpa: u64,
    /// The console device.
    pub console: DeviceInfo,
    /// The block device (`present` is 0 without `hv run --disk`).
    pub block: DeviceInfo,
    /// Size of the block device in 512-byte sectors.
    pub block_sectors: u64,
    /// The block device's [`crate::device::block::BlockFlags`] (e.g. read-only).
    pub block_flags: u32,
    /// Frames of the grant table, contiguous from `grant_table_gpa`: always
    /// [`crate::layout::GRANT_TABLE_FRAMES`] (was a reserved zero field up to ABI 5, when
    /// the table was one frame). Here rather than next to `grant_table_gpa` so that no
    /// other field moves.
    pub grant_table_frames: u32,
    /// First frame of the page-table pool: every page table the guest uses must be a
    /// frame of `pt_pool_start..pt_pool_end` (see `layout`, "the page-table pool").
    pub pt_pool_start: u64,
    /// End (exclusive) of the page-table pool.
    pub pt_pool_end: u64,
    /// First pool frame the VMM's boot page tables did not use: the guest's own page
    /// tables come from `pt_pool_free..pt_pool_end`.
    pub pt_pool_free: u64,
    /// Guest-physical address of the PML4 the VMM built (the guest's first CR3).
    pub boot_page_table_root: u64,
    // ---- the network device (`device::net`): one block, kept together ----
    /// The network device's transmit ring (`present` is 0 if the guest has no network).
    pub net_tx: DeviceInfo,
    /// The network device's receive ring (present exactly when `net_tx` is).
    pub net_rx: DeviceInfo,
    /// The guest's MAC address: locally administered unicast ([`guest_mac`]).
    pub net_mac: [u8; 6],
    /// The prefix length of the guest's IPv4 network (e.g. 24 for a /24), at most 32.
    pub net_prefix_len: u8,
    /// Reserved, zero.
    pub net_reserved: u8,
    /// The guest's IPv4 address, in network byte order (`[10, 0, 0, 2]` is 10.0.0.2).
    pub net_ipv4: [u8; 4],
    /// The address of the host (or gateway) on that network, network byte order; all
    /// zeros if there is none.
    pub net_gateway: [u8; 4],
    /// The balloon device (`present` is 0 when hv serves no balloon, e.g. in a recorded
    /// run); its target and floor are in its ring page (`device::balloon`).
    pub balloon: DeviceInfo,
    /// The guest command line: the words after `hv run --`, each followed by one zero
    /// byte (so a word may contain spaces), UTF-8.
    pub cmdline: [u8; CMDLINE_MAX],
}

impl BootInfo {
    /// A page with every field zero except the magic and version.
    pub const fn empty() -> Self {
        BootInfo {
            magic: BOOT_INFO_MAGIC,
            abi_version: crate::cpuid::HV_ABI_VERSION,
            mmu_mode: MmuMode::Ept as u32,
            mem_bytes: 0,
            kernel_start: 0,
            kernel_end: 0,
            free_mem_start: 0,
            free_mem_end: 0,
            phys_map_base: crate::layout::PHYS_MAP_BASE,
            tsc_khz: 0,
            cmdline_len: 0,
            flags: 0,
            shared_info_gpa: 0,
            grant_table_gpa: 0,
            console: DeviceInfo::ABSENT,
            block: DeviceInfo::ABSENT,
            block_sectors: 0,
            block_flags: 0,
            grant_table_frames: 0,
            pt_pool_start: 0,
            pt_pool_end: 0,
            pt_pool_free: 0,
            boot_page_table_root: 0,
            net_tx: DeviceInfo::ABSENT,
            net_rx: DeviceInfo::ABSENT,
            net_mac: [0; 6],
            net_prefix_len: 0,
            net_reserved: 0,
            net_ipv4: [0; 4],
            net_gateway: [0; 4],
            balloon: DeviceInfo::ABSENT,
            cmdline: [0; CMDLINE_MAX],
        }
    }

    /// The command line as bytes, clamped to the array so a bad length cannot overrun.
    pub fn cmdline_bytes(&self) -> &[u8] {
        let len = (self.cmdline_len as usize).min(CMDLINE_MAX);
        &self.cmdline[..len]
    }

    /// Encodes `words` into [`BootInfo::cmdline`]: each word followed by a zero byte.
    /// Fails (leaving the command line empty) if a word contains a zero byte or the
    /// words do not fit.
    pub fn set_cmdline<'a>(&mut self, words: impl IntoIterator<Item = &'a str>) -> Result<(), CmdlineError> {
        let mut len = 0usize;
        self.cmdline_len = 0;
        for word in words {
            if word.as_bytes().contains(&0) {
                return Err(CmdlineError::ZeroByte);
            }
            let end = len + word.len() + 1;
            if end > CMDLINE_MAX {
                return Err(CmdlineError::TooLong);
            }
            self.cmdline[len..end - 1].copy_from_slice(word.as_bytes());
            self.cmdline[end - 1] = 0;
            len = end;
        }
        self.cmdline_len = len as u32;
        Ok(())
    }

    /// Checks what a guest relies on: magic, version, and a free-memory range that lies
    /// inside RAM, above the kernel and above the VMM's reserved area.
    pub fn check(&self) -> Result<(), BootInfoProblem> {
        use crate::layout::{PAGE_SIZE, VMM_RESERVED_END};
        if self.magic != BOOT_INFO_MAGIC {
            return Err(BootInfoProblem::BadMagic);
        }
        if self.abi_version != crate::cpuid::HV_ABI_VERSION {
            return Err(BootInfoProblem::WrongVersion);
        }
        if MmuMode::from_u32(self.mmu_mode).is_none() {
            return Err(BootInfoProblem::UnknownMmuMode);
        }
        let aligned = |a: u64| a.is_multiple_of(PAGE_SIZE);
        let ordered = VMM_RESERVED_END <= self.kernel_start
            && self.kernel_start < self.kernel_end
            && self.kernel_end <= self.free_mem_start
            && self.free_mem_start <= self.free_mem_end
            && self.free_mem_end <= self.mem_bytes;
        if !ordered || !aligned(self.free_mem_start) || !aligned(self.free_mem_end) {
            return Err(BootInfoProblem::BadMemoryRanges);
        }
        let pool_ok = self.free_mem_end <= self.pt_pool_start
            && self.pt_pool_start <= self.pt_pool_free
            && self.pt_pool_free <= self.pt_pool_end
            && self.pt_pool_end <= self.mem_bytes
            && (self.pt_pool_start..self.pt_pool_free).contains(&self.boot_page_table_root)
            && aligned(self.pt_pool_start)
            && aligned(self.pt_pool_end);
        if !pool_ok {
            return Err(BootInfoProblem::BadPageTablePool);
        }
        if self.cmdline_len as usize > CMDLINE_MAX {
            return Err(BootInfoProblem::CmdlineTooLong);
        }
        // The guest's grant allocator is sized for exactly this table; it must lie in the
        // reserved area, where no grant can point at it.
        let table_end = self.grant_table_gpa.checked_add(crate::layout::GRANT_TABLE_BYTES);
        if self.grant_table_frames != crate::layout::GRANT_TABLE_FRAMES || !aligned(self.grant_table_gpa) || table_end.is_none_or(|end| end > VMM_RESERVED_END) {
            return Err(BootInfoProblem::BadGrantTable);
        }
        if self.net_tx.present != 0 || self.net_rx.present != 0 {
            let both = self.net_tx.present != 0 && self.net_rx.present != 0;
            if !both || !is_local_unicast(self.net_mac) || self.net_prefix_len > 32 {
                return Err(BootInfoProblem::BadNetwork);
            }
        }
        Ok(())
    }
}

/// Why a command line could not be put in the boot-info page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    /// A word contains a zero byte, which separates words.
    ZeroByte,
    /// The words need more than [`CMDLINE_MAX`] bytes.
    TooLong,
}

/// What [`BootInfo::check`] found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoProblem {
    /// `magic` is not [`BOOT_INFO_MAGIC`].
    BadMagic,
    /// `abi_version` is not the version this guest was built for.
    WrongVersion,
    /// `mmu_mode` is no [`MmuMode`].
    UnknownMmuMode,
    /// The kernel and free-memory ranges are unordered, unaligned or outside RAM.
    BadMemoryRanges,
    /// `cmdline_len` is larger than the array.
    CmdlineTooLong,
    /// The page-table pool is not a page-aligned range after free memory and inside RAM.
    BadPageTablePool,
    /// The grant table is not [`crate::layout::GRANT_TABLE_FRAMES`] page-aligned frames
    /// inside the VMM's reserved area.
    BadGrantTable,
    /// The network device has only one of its two rings, a MAC that is not locally
    /// administered unicast, or a prefix length above 32.
    BadNetwork,
}

/// Size of [`BootInfo`] in bytes; it must fit in one page.
pub const BOOT_INFO_SIZE: usize = core::mem::size_of::<BootInfo>();
const _: () = assert!(BOOT_INFO_SIZE <= crate::layout::PAGE_SIZE as usize);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layout_has_no_padding_and_fixed_offsets() {
        // These offsets are the ABI: changing one is a new ABI version.
        assert_eq!(offset_of!(BootInfo, magic), 0);
        assert_eq!(offset_of!(BootInfo, abi_version), 8);
        assert_eq!(offset_of!(BootInfo, mmu_mode), 12);
        assert_eq!(offset_of!(BootInfo, mem_bytes), 16);
        assert_eq!(offset_of!(BootInfo, kernel_start), 24);
        assert_eq!(offset_of!(BootInfo, kernel_end), 32);
        assert_eq!(offset_of!(BootInfo, free_mem_start), 40);
        assert_eq!(offset_of!(BootInfo, free_mem_end), 48);
        assert_eq!(offset_of!(BootInfo, phys_map_base), 56);
        assert_eq!(offset_of!(BootInfo, tsc_khz), 64);
        assert_eq!(offset_of!(BootInfo, cmdline_len), 72);
        assert_eq!(offset_of!(BootInfo, flags), 76);
        assert_eq!(offset_of!(BootInfo, shared_info_gpa), 80);
        assert_eq!(offset_of!(BootInfo, grant_table_gpa), 88);
        assert_eq!(offset_of!(BootInfo, console), 96);
        assert_eq!(offset_of!(BootInfo, block), 112);
        assert_eq!(offset_of!(BootInfo, block_sectors), 128);
        assert_eq!(offset_of!(BootInfo, block_flags), 136);
        assert_eq!(offset_of!(BootInfo, grant_table_frames), 140);
        assert_eq!(offset_of!(BootInfo, pt_pool_start), 144);
        assert_eq!(offset_of!(BootInfo, pt_pool_end), 152);
        assert_eq!(offset_of!(BootInfo, pt_pool_free), 160);
        assert_eq!(offset_of!(BootInfo, boot_page_table_root), 168);
        assert_eq!(offset_of!(BootInfo, net_tx), 176);
        assert_eq!(offset_of!(BootInfo, net_rx), 192);
        assert_eq!(offset_of!(BootInfo, net_mac), 208);
        assert_eq!(offset_of!(BootInfo, net_prefix_len), 214);
        assert_eq!(offset_of!(BootInfo, net_reserved), 215);
        assert_eq!(offset_of!(BootInfo, net_ipv4), 216);
        assert_eq!(offset_of!(BootInfo, net_gateway), 220);
        assert_eq!(offset_of!(BootInfo, balloon), 224);
        assert_eq!(offset_of!(BootInfo, cmdline), 240);
        assert_eq!(core::mem::size_of::<DeviceInfo>(), 16);
        assert_eq!(BOOT_INFO_SIZE, 240 + CMDLINE_MAX, "no trailing padding");
    }

    fn sane() -> BootInfo {
        BootInfo {
            mem_bytes: 64 << 20,
            kernel_start: 0x20_0000,
            kernel_end: 0x24_0000,
            free_mem_start: 0x24_0000,
            free_mem_end: 60 << 20,
            pt_pool_start: 60 << 20,
            pt_pool_free: (60 << 20) + 0x8000,
            pt_pool_end: 64 << 20,
            boot_page_table_root: 60 << 20,
            grant_table_gpa: crate::layout::GRANT_TABLE_GPA,
            grant_table_frames: crate::layout::GRANT_TABLE_FRAMES,
            ..BootInfo::empty()
        }
    }

    #[test]
    fn cmdline_words_round_trip_including_spaces() {
        let mut b = BootInfo::empty();
        b.set_cmdline(["echo", "two words", ""]).unwrap();
        let words: [&[u8]; 4] = [b"echo", b"two words", b"", b""];
        assert!(b.cmdline_bytes().split(|c| *c == 0).eq(words));
    }

    #[test]
    fn cmdline_too_long_or_with_zero_byte_is_refused() {
        let mut b = BootInfo::empty();
        let long = "x".repeat(CMDLINE_MAX - 2);
        assert_eq!(b.set_cmdline(["x", long.as_str()]), Err(CmdlineError::TooLong));
        assert_eq!(b.cmdline_len, 0);
        assert_eq!(b.set_cmdline(["a\0b"]), Err(CmdlineError::ZeroByte));
        // Exactly full is fine.
        let fits = "y".repeat(CMDLINE_MAX - 1);
        assert_eq!(b.set_cmdline([fits.as_str()]), Ok(()));
    }

    #[test]
    fn check_accepts_a_sane_page() {
        assert_eq!(sane().check(), Ok(()));
    }

    #[test]
    fn hostile_boot_info_values_are_rejected() {
        let mut b = sane();
        b.magic = 0;
        assert_eq!(b.check(), Err(BootInfoProblem::BadMagic));
        let mut b = sane();
        b.free_mem_end = b.mem_bytes + 4096;
        assert_eq!(b.check(), Err(BootInfoProblem::BadMemoryRanges));
        let mut b = sane();
        b.kernel_start = 0x1000;
        assert_eq!(b.check(), Err(BootInfoProblem::BadMemoryRanges));
        let mut b = sane();
        b.pt_pool_end = b.mem_bytes + 4096;
        assert_eq!(b.check(), Err(BootInfoProblem::BadPageTablePool));
        let mut b = sane();
        b.boot_page_table_root = 0x1000;
        assert_eq!(b.check(), Err(BootInfoProblem::BadPageTablePool));
        let mut b = sane();
        b.mmu_mode = 7;
        assert_eq!(b.check(), Err(BootInfoProblem::UnknownMmuMode));
        let mut b = sane();
        b.cmdline_len = u32::MAX;
        assert_eq!(b.check(), Err(BootInfoProblem::CmdlineTooLong));
        assert!(b.cmdline_bytes().len() == CMDLINE_MAX, "a bad length is clamped");
    }

    #[test]
    fn hostile_grant_table_announcements_are_rejected() {
        use crate::layout::{GRANT_TABLE_BYTES, GRANT_TABLE_FRAMES, VMM_RESERVED_END};
        let mut b = sane();
        b.grant_table_frames = 1;
        assert_eq!(b.check(), Err(BootInfoProblem::BadGrantTable), "the one-frame table of ABI 5");
        let mut b = sane();
        b.grant_table_frames = GRANT_TABLE_FRAMES + 1;
        assert_eq!(b.check(), Err(BootInfoProblem::BadGrantTable), "a table the guest's allocator does not fit");
        let mut b = sane();
        b.grant_table_gpa += 8;
        assert_eq!(b.check(), Err(BootInfoProblem::BadGrantTable), "unaligned");
        let mut b = sane();
        b.grant_table_gpa = VMM_RESERVED_END - GRANT_TABLE_BYTES + 4096;
        assert_eq!(b.check(), Err(BootInfoProblem::BadGrantTable), "its last frame past the reserved area");
        b.grant_table_gpa -= 4096;
        assert_eq!(b.check(), Ok(()), "ending exactly at the reserved area's end");
        b.grant_table_gpa = !0xfff;
        assert_eq!(b.check(), Err(BootInfoProblem::BadGrantTable), "an end that overflows");
    }

    fn with_network() -> BootInfo {
        let ring = |gpa, channel| DeviceInfo { ring_gpa: gpa, channel, doorbell_port: crate::event_channel::doorbell_port(channel), present: 1 };
        BootInfo {
            net_tx: ring(crate::layout::NET_TX_RING_GPA, crate::event_channel::NET_TX_CHANNEL),
            net_rx: ring(crate::layout::NET_RX_RING_GPA, crate::event_channel::NET_RX_CHANNEL),
            net_mac: crate::device::net::guest_mac(0),
            net_prefix_len: 24,
            net_ipv4: [10, 0, 0, 2],
            net_gateway: [10, 0, 0, 1],
            ..sane()
        }
    }

    #[test]
    fn hostile_network_announcements_are_rejected() {
        assert_eq!(with_network().check(), Ok(()));
        let mut b = with_network();
        b.net_rx.present = 0;
        assert_eq!(b.check(), Err(BootInfoProblem::BadNetwork), "half a device");
        let mut b = with_network();
        b.net_mac = [0xff; 6];
        assert_eq!(b.check(), Err(BootInfoProblem::BadNetwork), "a broadcast MAC");
        let mut b = with_network();
        b.net_mac[0] = 0x00;
        assert_eq!(b.check(), Err(BootInfoProblem::BadNetwork), "a globally administered MAC");
        let mut b = with_network();
        b.net_prefix_len = 33;
        assert_eq!(b.check(), Err(BootInfoProblem::BadNetwork));
    }
}
