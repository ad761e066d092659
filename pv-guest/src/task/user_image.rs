//! Loading a separately linked user program: an ELF executable's segments copied into
//! fresh frames of a task's address space.
//!
//! The user programs in [`super::programs`] are a page of assembly each, copied from
//! the kernel's own text. A program written in Rust, with libraries (the ring-3 network
//! task `pv-netd`, which carries a whole TCP/IP stack), is a program of its own: linked
//! at user addresses, built before the kernel and embedded in it as a file. Loading it
//! is what `exec` does in any kernel: read the ELF header, and for every `PT_LOAD`
//! program header map its pages where it was linked, with the bytes from the file and
//! zeros for the rest (`.bss`), writable or executable as the header says, never both.
//!
//! The image is embedded in the kernel at build time, so it is the kernel's own data,
//! but it is parsed as carefully as input: every offset and size is checked against the
//! file and the user half before it is used, and the number of segments and pages is
//! bounded. A bad image is an error, never a fault.

use pv_abi::addr::GuestVirt;

use crate::mm::address_space::{AddressSpace, USER_END};
use crate::mm::frames;
use crate::mm::writer::PageTableWriter;
use crate::mm::{PageSize, Protection};

/// The most `PT_LOAD` segments an image may have.
const MAX_SEGMENTS: usize = 8;
/// The most pages an image may occupy (4 MiB).
const MAX_PAGES: u64 = 1024;
/// The lowest address an image may be linked at (above the assembly programs' code page).
pub const IMAGE_LOWEST: GuestVirt = GuestVirt::new(0x1000_0000);
/// Pages are 4 KiB.
const PAGE: u64 = 4096;

/// ELF's constants, from the System V ABI.
const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const CLASS_64: u8 = 2;
const LITTLE_ENDIAN: u8 = 1;
const TYPE_EXEC: u16 = 2;
const MACHINE_X86_64: u16 = 62;
const PROGRAM_HEADER_SIZE: usize = 56;
const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;

/// Why an image cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Not a 64-bit little-endian x86-64 executable.
    NotAnExecutable,
    /// A header or segment lies (partly) outside the file.
    Truncated,
    /// A segment is outside `IMAGE_LOWEST..USER_END` or overlaps `reserved`, or its
    /// sizes do not add up.
    BadSegment,
    /// A segment is both writable and executable.
    WritableCode,
    /// More segments or pages than allowed, or none.
    TooLarge,
    /// Two segments share a page.
    Overlap,
    /// No frame or page table was left.
    NoMemory,
    /// The entry point is not inside an executable segment.
    BadEntry,
}

/// One `PT_LOAD` program header, as read (not yet trusted).
#[derive(Clone, Copy, Debug)]
struct Segment {
    flags: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
    mem_size: u64,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// A parsed image: its entry point and its segments, all checked.
pub struct UserImage<'a> {
    file: &'a [u8],
    /// Where the program starts.
    pub entry: GuestVirt,
    segments: [Option<Segment>; MAX_SEGMENTS],
}

impl<'a> UserImage<'a> {
    /// Parses and checks `file`; no segment may touch `reserved` (the addresses the
    /// kernel maps for itself in the task).
    pub fn parse(file: &'a [u8], reserved: core::ops::Range<GuestVirt>) -> Result<Self, ImageError> {
        let ident = file.get(..16).ok_or(ImageError::NotAnExecutable)?;
        if ident[..4] != ELF_MAGIC || ident[4] != CLASS_64 || ident[5] != LITTLE_ENDIAN {
            return Err(ImageError::NotAnExecutable);
        }
        if u16_at(file, 16) != Some(TYPE_EXEC) || u16_at(file, 18) != Some(MACHINE_X86_64) {
            return Err(ImageError::NotAnExecutable);
        }
        let entry = u64_at(file, 24).ok_or(ImageError::Truncated)?;
        let ph_offset = u64_at(file, 32).ok_or(ImageError::Truncated)?;
        let ph_size = u16_at(file, 54).ok_or(ImageError::Truncated)?;
        let ph_count = u16_at(file, 56).ok_or(ImageError::Truncated)?;
        if usize::from(ph_size) != PROGRAM_HEADER_SIZE {
            return Err(ImageError::NotAnExecutable);
        }
        let mut segments = [None; MAX_SEGMENTS];
        let mut loads = 0;
        let mut pages = 0u64;
        // ph_count is a u16: the loop is bounded, and every header is read in bounds.
        for i in 0..usize::from(ph_count) {
            let at = usize::try_from(ph_offset).ok().and_then(|o| o.checked_add(i * PROGRAM_HEADER_SIZE)).ok_or(ImageError::Truncated)?;
            let header = file.get(at..at.checked_add(PROGRAM_HEADER_SIZE).ok_or(ImageError::Truncated)?).ok_or(ImageError::Truncated)?;
            if u32_at(header, 0) != Some(PT_LOAD) {
                continue;
            }
            let segment = Segment {
                flags: u32_at(header, 4).ok_or(ImageError::Truncated)?,
                offset: u64_at(header, 8).ok_or(ImageError::Truncated)?,
                vaddr: u64_at(header, 16).ok_or(ImageError::Truncated)?,
                file_size: u64_at(header, 32).ok_or(ImageError::Truncated)?,
                mem_size: u64_at(header, 40).ok_or(ImageError::Truncated)?,
            };
            if segment.mem_size == 0 {
                continue;
            }
            check_segment(&segment, file.len() as u64, &reserved)?;
            pages += page_span(&segment).1;
            if loads == MAX_SEGMENTS || pages > MAX_PAGES {
                return Err(ImageError::TooLarge);
            }
            segments[loads] = Some(segment);
            loads += 1;
        }
        if loads == 0 {
            return Err(ImageError::TooLarge);
        }
        check_disjoint(&segments)?;
        let executable = segments.iter().flatten().any(|s| s.flags & PF_X != 0 && (s.vaddr..s.vaddr + s.mem_size).contains(&entry));
        if !executable {
            return Err(ImageError::BadEntry);
        }
        Ok(UserImage { file, entry: GuestVirt::new(entry), segments })
    }

    /// Maps every segment into `space`: fresh frames (owned by the task from now on,
    /// freed with its address space), the file's bytes copied in, the rest zero.
    pub fn load(&self, space: &mut AddressSpace, w: &mut PageTableWriter) -> Result<(), ImageError> {
        for segment in self.segments.iter().flatten() {
            let (first, count) = page_span(segment);
            let protection = if segment.flags & PF_X != 0 {
                Protection::USER_CODE
            } else if segment.flags & PF_W != 0 {
                Protection::USER_DATA
            } else {
                Protection::USER_READ_ONLY
            };
            for page in 0..count {
                let va = first + page * PAGE;
                let frame = frames::alloc().ok_or(ImageError::NoMemory)?;
                // SAFETY: the frame was just allocated and nothing else refers to it.
                let bytes = unsafe { frames::bytes(frame) };
                bytes.fill(0);
                self.copy_file_bytes(segment, va, bytes);
                if space.map(w, GuestVirt::new(va), frame, protection, PageSize::Small).is_err() {
                    frames::free(frame);
                    return Err(ImageError::NoMemory);
                }
            }
        }
        w.flush().map_err(|_| ImageError::NoMemory)
    }

    /// Copies the part of `segment`'s file bytes that falls in the page at `va`.
    fn copy_file_bytes(&self, segment: &Segment, va: u64, page: &mut [u8]) {
        // The segment's file bytes cover vaddr..vaddr + file_size (checked in parse).
        let start = va.max(segment.vaddr);
        let end = (va + PAGE).min(segment.vaddr + segment.file_size);
        if start >= end {
            return;
        }
        let from = (segment.offset + (start - segment.vaddr)) as usize;
        let len = (end - start) as usize;
        let to = (start - va) as usize;
        page[to..to + len].copy_from_slice(&self.file[from..from + len]);
    }
}

/// Checks one segment's sizes and place.
fn check_segment(s: &Segment, file_len: u64, reserved: &core::ops::Range<GuestVirt>) -> Result<(), ImageError> {
    if s.flags & PF_W != 0 && s.flags & PF_X != 0 {
        return Err(ImageError::WritableCode);
    }
    if s.file_size > s.mem_size {
        return Err(ImageError::BadSegment);
    }
    let file_end = s.offset.checked_add(s.file_size).ok_or(ImageError::Truncated)?;
    if file_end > file_len {
        return Err(ImageError::Truncated);
    }
    let end = s.vaddr.checked_add(s.mem_size).ok_or(ImageError::BadSegment)?;
    if s.vaddr < IMAGE_LOWEST.raw() || end > USER_END.raw() {
        return Err(ImageError::BadSegment);
    }
    if s.vaddr < reserved.end.raw() && reserved.start.raw() < end {
        return Err(ImageError::BadSegment);
    }
    Ok(())
}

/// The first page of a segment and how many pages it spans.
fn page_span(s: &Segment) -> (u64, u64) {
    let first = s.vaddr & !(PAGE - 1);
    let end = (s.vaddr + s.mem_size).div_ceil(PAGE) * PAGE;
    (first, (end - first) / PAGE)
}

/// No two segments may share a page (each page gets one protection).
fn check_disjoint(segments: &[Option<Segment>; MAX_SEGMENTS]) -> Result<(), ImageError> {
    for (i, a) in segments.iter().enumerate() {
        for b in segments.iter().skip(i + 1) {
            if let (Some(a), Some(b)) = (a, b) {
                let ((a0, an), (b0, bn)) = (page_span(a), page_span(b));
                if a0 < b0 + bn * PAGE && b0 < a0 + an * PAGE {
                    return Err(ImageError::Overlap);
                }
            }
        }
    }
    Ok(())
}
