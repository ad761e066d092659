//! The snapshot file: a VM's state and memory, in a form that restores lazily.
//!
//! ```text
//!   offset 0          header (one page; the first 64 bytes are used, little-endian)
//!                       0  magic        "HVSNAP\r\n"  (a text-mode copy breaks it, as PNG's does)
//!                       8  version      u32 = 3: any other is refused
//!                      12  header_len   u32 = 64
//!                      16  state_off    u64 = 4096
//!                      24  state_len    u64  (at most 16 MiB)
//!                      32  memory_off   u64  page-aligned, after the state
//!                      40  memory_len   u64  = the guest's RAM size
//!                      48  state_crc    u32  CRC-32 of the state section
//!                      52  memory_crc   u32  CRC-32 of the stored pages, in extent order
//!                      56  reserved     u32 = 0
//!                      60  header_crc   u32  CRC-32 of bytes 0..60
//!   state_off         state section: postcard-encoded `SavedState` (the `VmState` and
//!                     the list of stored page extents)
//!   memory_off        memory image: RAM byte for byte (page p at memory_off + p * 4096),
//!                     written only where the guest's pages are not zero; the rest is a
//!                     hole in the file (no disk space; reads as zeros).
//! ```
//!
//! The memory image is laid out like RAM so that a restore can **map** it (`mmap`,
//! private, copy-on-write: `GuestRam::from_file`) instead of reading it: the guest starts
//! at once and pages come in as they are touched. What a restore does read is the
//! state and the stored pages once, to check their checksums (the data a damaged file
//! would feed the guest), plus any data the file holds outside the stored extents,
//! which must be zeros.
//!
//! A snapshot file is untrusted input: [`read`] checks every offset, length, count,
//! address and enum and names the first problem it finds, in one line; it never panics.
//! Checksums catch damage, not malice (anyone can recompute a CRC): what keeps a hostile
//! file harmless is that every value is checked, and that KVM checks the vCPU's.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use pv_abi::addr::{PseudoPhys, PAGE_SIZE};
use serde::{Deserialize, Serialize};

use super::memory_image::{check_extents, stored_extents_except, PageExtent};
use super::VmState;
use crate::memory::GuestRam;

/// The file's first eight bytes.
pub const MAGIC: [u8; 8] = *b"HVSNAP\r\n";
/// The format version this hv writes and reads.
pub const VERSION: u32 = 3;
const HEADER_LEN: u32 = 64;
const STATE_OFF: u64 = PAGE_SIZE;
/// The state section is a few KiB; anything much larger is not a real snapshot.
const MAX_STATE_LEN: u64 = 16 << 20;

/// The state section.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedState {
    /// The VM.
    pub vm: VmState,
    /// Which pages the memory image stores, in address order.
    pub extents: Vec<PageExtent>,
}

/// What a snapshot cost.
#[derive(Clone, Debug)]
pub struct SnapshotSummary {
    /// Where it went.
    pub path: PathBuf,
    /// Pages stored (not zero).
    pub pages_stored: u64,
    /// Pages of RAM.
    pub ram_pages: u64,
    /// The file's apparent size (RAM size plus the header and state).
    pub file_bytes: u64,
    /// The bytes the file really takes (stored pages, header and state).
    pub stored_bytes: u64,
}

/// Why a snapshot file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// An I/O error.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file is not a valid hv snapshot.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The first problem found.
        problem: String,
    },
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SnapshotFileError + 'a {
    move |source| SnapshotFileError::Io { path: path.to_path_buf(), what, source }
}

fn invalid(path: &Path, problem: impl Into<String>) -> SnapshotFileError {
    SnapshotFileError::Invalid { path: path.to_path_buf(), problem: problem.into() }
}

/// The header's fields.
struct Header {
    state_len: u64,
    memory_off: u64,
    memory_len: u64,
    state_crc: u32,
    memory_crc: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_LEN.to_le_bytes());
        h[16..24].copy_from_slice(&STATE_OFF.to_le_bytes());
        h[24..32].copy_from_slice(&self.state_len.to_le_bytes());
        h[32..40].copy_from_slice(&self.memory_off.to_le_bytes());
        h[40..48].copy_from_slice(&self.memory_len.to_le_bytes());
        h[48..52].copy_from_slice(&self.state_crc.to_le_bytes());
        h[52..56].copy_from_slice(&self.memory_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Decodes and checks a header against the file's length.
    fn decode(h: &[u8; HEADER_LEN as usize], file_len: u64) -> Result<Header, String> {
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or([0; 8]));
        if h[0..8] != MAGIC {
            return Err("not an hv snapshot (wrong magic bytes)".into());
        }
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!("snapshot format version {version}; this hv reads version {VERSION}"));
        }
        if u32_at(60) != crc32fast::hash(&h[..60]) {
            return Err("the header is damaged (checksum mismatch)".into());
        }
        let header = Header { state_len: u64_at(24), memory_off: u64_at(32), memory_len: u64_at(40), state_crc: u32_at(48), memory_crc: u32_at(52) };
        if u32_at(12) != HEADER_LEN || u64_at(16) != STATE_OFF || u32_at(56) != 0 {
            return Err("the header's layout fields are not this version's".into());
        }
        if header.state_len == 0 || header.state_len > MAX_STATE_LEN {
            return Err(format!("a state section of {} bytes (expected 1..={MAX_STATE_LEN})", header.state_len));
        }
        let state_end = STATE_OFF + header.state_len;
        if header.memory_off < state_end || !header.memory_off.is_multiple_of(PAGE_SIZE) {
            return Err(format!("the memory image at {:#x} overlaps the state or is not page-aligned", header.memory_off));
        }
        match header.memory_off.checked_add(header.memory_len) {
            Some(end) if end == file_len => Ok(header),
            _ => Err(format!(
                "the file is {file_len} bytes but its header says it ends at {:#x}+{:#x} (truncated or extended)",
                header.memory_off, header.memory_len
            )),
        }
    }
}

/// Writes `state` and `ram` to `path` (through a temporary name, renamed at the end, so
/// that a failed snapshot never leaves a half file under the name asked for).
pub fn write(path: &Path, state: VmState, ram: &GuestRam) -> Result<SnapshotSummary, SnapshotFileError> {
    // The balloon's frames are not the guest's memory any more: not saved.
    let extents = match &state.balloon {
        Some(balloon) => stored_extents_except(ram, |page| balloon.ballooned.contains(page)),
        None => stored_extents_except(ram, |_| false),
    };
    let saved = SavedState { vm: state, extents };
    let state_bytes = postcard::to_stdvec(&saved).map_err(|e| invalid(path, format!("cannot encode the state: {e}")))?;
    let memory_off = (STATE_OFF + state_bytes.len() as u64).next_multiple_of(PAGE_SIZE);
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = File::create(&partial).map_err(io_err(path, "creating the file"))?;
    let result = (|| {
        file.write_all_at(&state_bytes, STATE_OFF).map_err(io_err(path, "writing the state"))?;
        let mut crc = crc32fast::Hasher::new();
        let mut buf = Vec::new();
        for extent in &saved.extents {
            buf.resize(extent.bytes() as usize, 0);
            ram.read(extent.start(), &mut buf).map_err(|e| invalid(path, e.to_string()))?;
            crc.update(&buf);
            file.write_all_at(&buf, memory_off + extent.start().raw()).map_err(io_err(path, "writing memory"))?;
        }
        // The rest of RAM is zeros: a hole up to the end.
        file.set_len(memory_off + ram.size()).map_err(io_err(path, "sizing the file"))?;
        let header = Header {
            state_len: state_bytes.len() as u64,
            memory_off,
            memory_len: ram.size(),
            state_crc: crc32fast::hash(&state_bytes),
            memory_crc: crc.finalize(),
        };
        (&file).write_all(&header.encode()).map_err(io_err(path, "writing the header"))?;
        std::fs::rename(&partial, path).map_err(io_err(path, "renaming the finished file"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
    let pages_stored = saved.extents.iter().map(|e| e.count).sum::<u64>();
    Ok(SnapshotSummary {
        path: path.to_path_buf(),
        pages_stored,
        ram_pages: ram.size() / PAGE_SIZE,
        file_bytes: memory_off + ram.size(),
        stored_bytes: memory_off + pages_stored * PAGE_SIZE,
    })
}

/// A checked snapshot file, ready to restore.
pub struct OpenSnapshot {
    /// The state section.
    pub saved: SavedState,
    /// The file, for mapping its memory image.
    pub file: File,
    /// Where the memory image starts in it.
    pub memory_off: u64,
}

impl OpenSnapshot {
    /// Guest RAM mapped from the file, lazily and copy-on-write.
    pub fn map_ram(self) -> Result<(VmState, GuestRam), SnapshotFileError> {
        let ram_bytes = self.saved.vm.ram_bytes;
        let stored = self.saved.extents.iter().map(|e| e.first..e.first + e.count).collect();
        let ram = GuestRam::from_file(self.file, self.memory_off, ram_bytes, stored)
            .map_err(|e| SnapshotFileError::Invalid { path: PathBuf::new(), problem: e.to_string() })?;
        Ok((self.saved.vm, ram))
    }
}

/// Opens and checks a snapshot file: header, state, extents, checksums, and that the
/// file holds nothing but zeros outside the pages it says it stores.
pub fn read(path: &Path) -> Result<OpenSnapshot, SnapshotFileError> {
    let meta = std::fs::metadata(path).map_err(io_err(path, "cannot open it"))?;
    if !meta.file_type().is_file() || meta.file_type().is_fifo() {
        return Err(invalid(path, "not a regular file"));
    }
    let file = File::open(path).map_err(io_err(path, "cannot open it"))?;
    let file_len = meta.len();
    let mut h = [0u8; HEADER_LEN as usize];
    if file_len < PAGE_SIZE {
        return Err(invalid(path, format!("{file_len} bytes is too short for an hv snapshot (truncated?)")));
    }
    file.read_exact_at(&mut h, 0).map_err(io_err(path, "reading the header"))?;
    let header = Header::decode(&h, file_len).map_err(|p| invalid(path, p))?;
    let mut state_bytes = vec![0u8; header.state_len as usize];
    file.read_exact_at(&mut state_bytes, STATE_OFF).map_err(io_err(path, "reading the state"))?;
    if crc32fast::hash(&state_bytes) != header.state_crc {
        return Err(invalid(path, "the state section is damaged (checksum mismatch)"));
    }
    let saved: SavedState = postcard::from_bytes(&state_bytes).map_err(|e| invalid(path, format!("the state section does not decode: {e}")))?;
    saved.vm.validate().map_err(|e| invalid(path, e.to_string()))?;
    if saved.vm.ram_bytes != header.memory_len {
        return Err(invalid(path, format!("the state says {} bytes of RAM, the memory image holds {}", saved.vm.ram_bytes, header.memory_len)));
    }
    check_extents(&saved.extents, saved.vm.ram_bytes).map_err(|p| invalid(path, p))?;
    check_memory(&file, &header, &saved.extents).map_err(|p| invalid(path, p))?;
    Ok(OpenSnapshot { saved, file, memory_off: header.memory_off })
}

/// The stored pages' checksum, and zeros everywhere else in the memory image.
fn check_memory(file: &File, header: &Header, extents: &[PageExtent]) -> Result<(), String> {
    let mut crc = crc32fast::Hasher::new();
    let mut buf = Vec::new();
    for e in extents {
        buf.resize(e.bytes() as usize, 0);
        file.read_exact_at(&mut buf, header.memory_off + e.start().raw()).map_err(|e| format!("reading memory: {e}"))?;
        crc.update(&buf);
    }
    if crc.finalize() != header.memory_crc {
        return Err("the memory image is damaged (checksum mismatch)".into());
    }
    // Data outside the extents: the file system reports where the file has data
    // (SEEK_DATA/SEEK_HOLE); any such byte not inside an extent must be zero.
    let mut uncovered = Vec::new();
    let mut at = 0u64;
    for e in extents {
        if e.start().raw() > at {
            uncovered.push((at, e.start().raw()));
        }
        at = e.start().raw() + e.bytes();
    }
    if at < header.memory_len {
        uncovered.push((at, header.memory_len));
    }
    for (start, end) in uncovered {
        check_zero_or_hole(file, header.memory_off, start, end)?;
    }
    Ok(())
}

/// Checks that bytes `start..end` of the memory image (at `base` in the file) are holes
/// or zeros. Each step moves forward, so the loop ends within the range.
fn check_zero_or_hole(file: &File, base: u64, start: u64, end: u64) -> Result<(), String> {
    let mut at = start;
    let mut buf = vec![0u8; 1 << 16];
    while at < end {
        let data = seek(file, base + at, libc::SEEK_DATA).map(|d| d.saturating_sub(base));
        let data_start = match data {
            Some(d) if d < end => d.max(at),
            _ => return Ok(()), // no more data before `end`: holes only
        };
        let hole = seek(file, base + data_start, libc::SEEK_HOLE).map_or(end, |h| h.saturating_sub(base)).min(end);
        let mut pos = data_start;
        while pos < hole {
            let n = ((hole - pos) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], base + pos).map_err(|e| format!("reading memory: {e}"))?;
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Err(format!(
                    "the memory image holds data at guest page {:#x} that no stored extent covers (damaged)",
                    PseudoPhys::new(pos + i as u64).raw() / PAGE_SIZE
                ));
            }
            pos += n as u64;
        }
        at = hole.max(at + 1);
    }
    Ok(())
}

/// `lseek(fd, offset, whence)`, `None` when there is no such place (ENXIO) or the file
/// system cannot say.
fn seek(file: &File, offset: u64, whence: i32) -> Option<u64> {
    let offset = i64::try_from(offset).ok()?;
    // SAFETY: lseek on a file descriptor we own only moves its offset (which nothing
    // else here uses: all reads are positioned), and reports errors by return value.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    u64::try_from(r).ok()
}
