//! Reading and checking the guest kernel's ELF file.
//!
//! The VMM is the guest's bootloader: it reads the kernel's program headers and copies
//! each loadable (`PT_LOAD`) segment to the guest-physical address the segment asks for
//! (`p_paddr`). The file comes from the user, and may be anything, so every field the
//! loader relies on is checked *before* anything is copied, and each problem gets its
//! own message. goblin parses the headers; the policy lives here.

use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};
use pv_abi::addr::{GuestVirt, PseudoPhys};
use pv_abi::layout::{KERNEL_VIRT_BASE, PAGE_SIZE, VMM_RESERVED_END};

/// Largest kernel file hv reads; no guest RAM could hold more.
pub const MAX_KERNEL_FILE_BYTES: u64 = 1 << 30;

/// A validated kernel image: where to start, and what to copy where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// Virtual address of the first instruction.
    pub entry: GuestVirt,
    /// The loadable segments, in file order.
    pub segments: Vec<LoadSegment>,
}

/// One `PT_LOAD` segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// Virtual address the kernel is linked at.
    pub vaddr: GuestVirt,
    /// Pseudo-physical address to load it at.
    pub paddr: PseudoPhys,
    /// Where its bytes are in the file.
    pub file_offset: u64,
    /// How many bytes come from the file; the rest up to `mem_size` is zero (`.bss`).
    pub file_size: u64,
    /// Size in memory.
    pub mem_size: u64,
    /// The kernel may write to it.
    pub writable: bool,
    /// The kernel may execute it.
    pub executable: bool,
}

impl LoadSegment {
    /// Pseudo-physical pages it covers: (first page address, end page address),
    /// exclusive. `parse_kernel` checked that the segment ends inside RAM; for a segment
    /// that would run past the top of the address space, the end is the last page's start.
    ///
    /// An empty segment (`mem_size` 0, which ELF allows) covers no page at all: were it
    /// given the page its address falls in, that page would be mapped again with the
    /// empty segment's permissions, and an empty data segment inside the text page
    /// would make the kernel's code non-executable.
    pub fn phys_pages(&self) -> (PseudoPhys, PseudoPhys) {
        let start = self.paddr.page_start();
        if self.mem_size == 0 {
            return (start, start);
        }
        let end = self
            .paddr
            .checked_add(self.mem_size)
            .and_then(|end| end.checked_align_up(PAGE_SIZE))
            .unwrap_or(PseudoPhys::new(u64::MAX).page_start());
        (start, end)
    }
}

/// Which header of a kernel file cannot be read, and the values that show it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedElf {
    /// The ELF parser (goblin) rejected the file header.
    #[error("{0}")]
    FileHeader(ParserError),
    /// The program header table does not fit in the file.
    #[error("the program header table ({entries} entries at offset {offset:#x}) runs past the end of the file")]
    ProgramHeadersPastEnd {
        /// Entries the header announces.
        entries: u16,
        /// Where the table starts.
        offset: u64,
    },
    /// Program header entries of a size other than the 64-bit one.
    #[error("program header entries are {size} bytes, not {expected}")]
    ProgramHeaderSize {
        /// The size the header announces.
        size: u16,
        /// The size of a 64-bit program header.
        expected: usize,
    },
    /// The ELF parser rejected the program headers.
    #[error("{0}")]
    ProgramHeaders(ParserError),
}

/// An error of goblin, the ELF parser, kept whole. goblin's error type has no equality,
/// so two are equal when their messages are (enough for tests that compare results).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ParserError(#[from] goblin::error::Error);

impl PartialEq for ParserError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for ParserError {}

/// What is wrong with a kernel file. Each message names the problem; the fields are the
/// values the message quotes.
#[allow(missing_docs)]
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Fewer bytes than an ELF header.
    #[error("the file is too short to be an ELF kernel ({len} bytes; an ELF header alone is 64)")]
    TooShort { len: usize },
    /// No ELF magic.
    #[error("not an ELF file: it does not start with the ELF magic bytes 7f 45 4c 46")]
    NotElf,
    /// 32-bit ELF.
    #[error("it is a 32-bit ELF file; hv boots 64-bit (ELFCLASS64) kernels only")]
    WrongClass,
    /// Big-endian ELF.
    #[error("it is a big-endian ELF file; x86-64 kernels are little-endian")]
    WrongEndian,
    /// Built for another CPU.
    #[error("it is built for machine {machine} ({name}); hv runs x86-64 (EM_X86_64) kernels only")]
    WrongMachine { machine: u16, name: &'static str },
    /// Not an executable.
    #[error("it is not an executable (ELF type {kind}); link the kernel as a static executable")]
    NotExecutable { kind: &'static str },
    /// The headers cannot be read.
    #[error("malformed ELF headers: {0}")]
    Malformed(MalformedElf),
    /// Nothing to load.
    #[error("it has no loadable (PT_LOAD) segments")]
    NoLoadableSegments,
    /// Segment data past the end of the file.
    #[error("the file is truncated: segment {index} needs bytes {offset:#x}..{end:#x} but the file has only {len:#x}")]
    SegmentDataOutsideFile { index: usize, offset: u64, end: u64, len: u64 },
    /// p_filesz > p_memsz.
    #[error("segment {index} claims {file_size:#x} bytes of file data but only {mem_size:#x} bytes of memory")]
    FileSizeExceedsMemSize { index: usize, file_size: u64, mem_size: u64 },
    /// Segment outside the memory available to the kernel.
    #[error("segment {index} ({paddr:#x}..{end:#x}) lies outside the guest memory available to the kernel (0..{limit:#x}, below the page-table pool); give the guest more memory with --mem")]
    SegmentOutsideRam { index: usize, paddr: PseudoPhys, end: PseudoPhys, limit: PseudoPhys },
    /// Segment in the VMM's reserved area.
    #[error("segment {index} ({paddr:#x}..{end:#x}) overlaps the area hv reserves for boot info and page tables (below {reserved:#x})")]
    SegmentInReservedArea { index: usize, paddr: PseudoPhys, end: PseudoPhys, reserved: u64 },
    /// Linked at the wrong virtual address.
    #[error("segment {index} is linked at {vaddr:#x} but loaded at {paddr:#x}; hv's kernel map needs virtual = {base:#x} + physical")]
    WrongVirtualAddress { index: usize, vaddr: GuestVirt, paddr: PseudoPhys, base: u64 },
    /// Two segments share a page.
    #[error("segments {first} and {second} overlap (or share a page); each page must belong to one segment")]
    SegmentsOverlap { first: usize, second: usize },
    /// The entry point is not in executable loaded code.
    #[error("the entry point {entry:#x} is not inside any executable loadable segment")]
    EntryOutsideSegments { entry: GuestVirt },
}

/// Parses and checks `bytes` as a kernel whose segments must lie below `limit` (the
/// start of the page-table pool: see `boot::kernel_memory_limit`).
pub fn parse_kernel(bytes: &[u8], limit: PseudoPhys) -> Result<KernelImage, ElfError> {
    let header = check_header(bytes)?;
    let phdrs = parse_program_headers(bytes, &header)?;
    let mut segments = Vec::new();
    for (index, ph) in phdrs.iter().enumerate().filter(|(_, ph)| ph.p_type == program_header::PT_LOAD) {
        let segment = LoadSegment {
            vaddr: GuestVirt::new(ph.p_vaddr),
            paddr: PseudoPhys::new(ph.p_paddr),
            file_offset: ph.p_offset,
            file_size: ph.p_filesz,
            mem_size: ph.p_memsz,
            writable: ph.is_write(),
            executable: ph.is_executable(),
        };
        check_segment(index, &segment, bytes.len() as u64, limit)?;
        segments.push((index, segment));
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegments);
    }
    check_no_overlap(&segments)?;
    let entry = GuestVirt::new(header.e_entry);
    let entry_ok = segments
        .iter()
        .any(|(_, s)| s.executable && entry.offset_from(s.vaddr).is_some_and(|offset| offset < s.mem_size));
    if !entry_ok {
        return Err(ElfError::EntryOutsideSegments { entry });
    }
    Ok(KernelImage { entry, segments: segments.into_iter().map(|(_, s)| s).collect() })
}

/// The identification bytes and header fields, checked one by one for clear messages.
fn check_header(bytes: &[u8]) -> Result<Header, ElfError> {
    if bytes.len() < goblin::elf64::header::SIZEOF_EHDR {
        if !bytes.starts_with(header::ELFMAG) {
            return Err(ElfError::NotElf);
        }
        return Err(ElfError::TooShort { len: bytes.len() });
    }
    if &bytes[..header::SELFMAG] != header::ELFMAG {
        return Err(ElfError::NotElf);
    }
    if bytes[header::EI_CLASS] != header::ELFCLASS64 {
        return Err(ElfError::WrongClass);
    }
    if bytes[header::EI_DATA] != header::ELFDATA2LSB {
        return Err(ElfError::WrongEndian);
    }
    let header = goblin::elf::Elf::parse_header(bytes).map_err(|e| ElfError::Malformed(MalformedElf::FileHeader(e.into())))?;
    if header.e_machine != header::EM_X86_64 {
        return Err(ElfError::WrongMachine {
            machine: header.e_machine,
            name: header::machine_to_str(header.e_machine),
        });
    }
    if header.e_type != header::ET_EXEC {
        return Err(ElfError::NotExecutable { kind: header::et_to_str(header.e_type) });
    }
    Ok(header)
}

fn parse_program_headers(bytes: &[u8], header: &Header) -> Result<Vec<ProgramHeader>, ElfError> {
    let table_end = (header.e_phnum as u64)
        .checked_mul(header.e_phentsize as u64)
        .and_then(|size| size.checked_add(header.e_phoff));
    match table_end {
        Some(end) if end <= bytes.len() as u64 => {}
        _ => {
            return Err(ElfError::Malformed(MalformedElf::ProgramHeadersPastEnd {
                entries: header.e_phnum,
                offset: header.e_phoff,
            }))
        }
    }
    if header.e_phnum > 0 && header.e_phentsize as usize != goblin::elf64::program_header::SIZEOF_PHDR {
        return Err(ElfError::Malformed(MalformedElf::ProgramHeaderSize {
            size: header.e_phentsize,
            expected: goblin::elf64::program_header::SIZEOF_PHDR,
        }));
    }
    let ctx = goblin::container::Ctx::new(goblin::container::Container::Big, goblin::container::Endian::Little);
    ProgramHeader::parse(bytes, header.e_phoff as usize, header.e_phnum as usize, ctx)
        .map_err(|e| ElfError::Malformed(MalformedElf::ProgramHeaders(e.into())))
}

fn check_segment(index: usize, s: &LoadSegment, file_len: u64, limit: PseudoPhys) -> Result<(), ElfError> {
    if s.file_size > s.mem_size {
        return Err(ElfError::FileSizeExceedsMemSize { index, file_size: s.file_size, mem_size: s.mem_size });
    }
    match s.file_offset.checked_add(s.file_size) {
        Some(end) if end <= file_len => {}
        end => {
            return Err(ElfError::SegmentDataOutsideFile {
                index,
                offset: s.file_offset,
                end: end.unwrap_or(u64::MAX),
                len: file_len,
            })
        }
    }
    let end = match s.paddr.checked_add(s.mem_size) {
        Some(end) if end <= limit => end,
        end => {
            let end = end.unwrap_or(PseudoPhys::new(u64::MAX));
            return Err(ElfError::SegmentOutsideRam { index, paddr: s.paddr, end, limit });
        }
    };
    if s.paddr < PseudoPhys::new(VMM_RESERVED_END) {
        return Err(ElfError::SegmentInReservedArea { index, paddr: s.paddr, end, reserved: VMM_RESERVED_END });
    }
    // The kernel map: virtual = KERNEL_VIRT_BASE + pseudo-physical, the one place an
    // address crosses from one space to the other by adding a constant.
    if KERNEL_VIRT_BASE.checked_add(s.paddr.raw()) != Some(s.vaddr.raw()) {
        return Err(ElfError::WrongVirtualAddress { index, vaddr: s.vaddr, paddr: s.paddr, base: KERNEL_VIRT_BASE });
    }
    Ok(())
}

/// Segments are mapped page by page with their own permissions, so no two may share a page.
///
/// Sorted by first page, a segment shares a page with an earlier one exactly when it
/// starts before the furthest end seen so far: one pass after an O(n log n) sort, so the
/// 65,535 program headers a file may have are checked in milliseconds (comparing every
/// pair took seconds). Empty segments cover no page and cannot overlap.
fn check_no_overlap(segments: &[(usize, LoadSegment)]) -> Result<(), ElfError> {
    let mut spans: Vec<(u64, u64, usize)> = segments
        .iter()
        .filter(|(_, s)| s.mem_size > 0)
        .map(|(index, s)| {
            let (start, end) = s.phys_pages();
            (start.raw(), end.raw(), *index)
        })
        .collect();
    spans.sort_unstable();
    // (furthest end so far, the segment it belongs to)
    let mut furthest: Option<(u64, usize)> = None;
    for (start, end, index) in spans {
        match furthest {
            Some((reach, owner)) if start < reach => {
                return Err(ElfError::SegmentsOverlap { first: owner.min(index), second: owner.max(index) });
            }
            Some((reach, _)) if reach >= end => {}
            _ => furthest = Some((end, index)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
