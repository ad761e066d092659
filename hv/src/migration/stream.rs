//! The migration stream: what one hv sends another over TCP, documented where it is
//! defined, and checked field by field on receipt.
//!
//! ```text
//!  source (sender)                                     destination (receiver)
//!  ── Header ──────────────────────────────────────────►  checks magic, version, page
//!                                                         size, RAM size, kernel
//!  ◄───────────────────────────────────── Accept | Refuse(why)
//!  ── Pages(round 0, ≤256 pages) … EndOfRound(0, n) ───►  round 0: touched memory
//!  ── Pages(round 1) … EndOfRound(1, n) ───────────────►  pages dirtied during round 0
//!     …                          (the guest runs on the source all along)
//!  [source pauses the guest]
//!  ── Pages(last) … EndOfRound(last, n) ───────────────►  the last dirty pages
//!  ── State(bytes) ────────────────────────────────────►  vCPU and device state
//!  ── Done(total pages) ───────────────────────────────►  builds the VM, enters it
//!  ◄──────────────────────────────────── Running(µs) | Refuse(why)
//!  [source ends its run]                                  [guest runs here]
//! ```
//!
//! Every integer is little-endian. The header is 40 bytes:
//!
//! | bytes | field | checked against |
//! | --- | --- | --- |
//! | 0..8 | magic `HVMIGRAT` | [`MAGIC`]: another program's bytes are refused |
//! | 8..12 | version | [`STREAM_VERSION`]: any other is refused |
//! | 12..16 | page size | 4096 |
//! | 16..24 | RAM bytes | the destination's `--mem` |
//! | 24..28 | memory mode the source runs in (1 ept, 2 shadow) | a known mode (the destination may run in the other) |
//! | 28..32 | reserved, 0 | 0 |
//! | 32..40 | kernel identity (FNV-1a of the kernel ELF) | the destination's kernel |
//!
//! Then records, each a one-byte tag and its fields:
//!
//! | tag | record | fields |
//! | --- | --- | --- |
//! | 0x10 | `Pages` | round u32, count u32 (1..=[`MAX_BATCH_PAGES`]), then per page: frame u64 (< RAM frames), kind u8 (0 zero, 1 data followed by 4096 bytes) |
//! | 0x11 | `EndOfRound` | round u32, pages u64: how many pages the round's batches held (the receiver counts them too) |
//! | 0x12 | `State` | length u32 (1..=[`MAX_STATE_BYTES`]), the VM state's bytes |
//! | 0x13 | `Done` | total pages u64 over all rounds |
//!
//! and the destination's replies: 0x01 `Accept`, 0x02 `Running` (µs u64 from the end
//! of the stream to the guest being ready to enter), 0x7f `Refuse` (length u16 ≤
//! [`MAX_MESSAGE_BYTES`], a UTF-8 message). Rounds are numbered from 0 and only ever
//! go up by one; `State` comes after the last round and `Done` right after it.
//!
//! What the stream does *not* guarantee: integrity against a peer that lies within the
//! rules (TCP's checksum catches line noise, not a malicious sender that sends wrong but
//! well-formed pages), nor secrecy. Like QEMU's and Xen's own streams, it is meant for a
//! trusted network between two hosts of the same operator; what it does guarantee is that
//! a stream that breaks the rules, or ends early, is refused with a message naming the
//! problem, and never makes the receiver panic or run a half-received guest.

use std::io::{self, Read, Write};

use pv_abi::addr::{PseudoFrame, PAGE_SIZE};
use pv_abi::MmuMode;

/// The first bytes of every migration stream.
pub const MAGIC: [u8; 8] = *b"HVMIGRAT";
/// The stream format's version. Bump it on any change to this file's tables.
pub const STREAM_VERSION: u32 = 3;
/// Most pages one `Pages` record carries (1 MiB of data): bounds the receiver's buffer.
pub const MAX_BATCH_PAGES: u32 = 256;
/// Most bytes of VM state a `State` record may carry.
pub const MAX_STATE_BYTES: u32 = 16 << 20;
/// Longest message a `Refuse` reply may carry.
pub const MAX_MESSAGE_BYTES: u16 = 1024;
/// Most rounds a stream may have (the sender's `--max-rounds` is far below it).
pub const MAX_ROUNDS: u32 = 10_000;

const TAG_PAGES: u8 = 0x10;
const TAG_END_OF_ROUND: u8 = 0x11;
const TAG_STATE: u8 = 0x12;
const TAG_DONE: u8 = 0x13;
const TAG_ACCEPT: u8 = 0x01;
const TAG_RUNNING: u8 = 0x02;
const TAG_REFUSE: u8 = 0x7f;
const PAGE_ZERO: u8 = 0;
const PAGE_DATA: u8 = 1;
const PAGE_BYTES: usize = PAGE_SIZE as usize;

/// What the source says about the VM before sending it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// The memory mode the guest runs in on the source.
    pub mode: MmuMode,
    /// FNV-1a of the kernel ELF: both sides must run the same kernel.
    pub kernel: u64,
}

/// One page in a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageData {
    /// All zeros (sent as one byte: a page dirtied back to zero must still reach the
    /// destination, which may hold an older copy).
    Zero,
    /// The page's bytes.
    Data(Box<[u8; PAGE_BYTES]>),
}

/// A record of the stream after the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Pages of a round.
    Pages {
        /// The round.
        round: u32,
        /// The pages, frame and contents.
        pages: Vec<(PseudoFrame, PageData)>,
    },
    /// A round is complete.
    EndOfRound {
        /// The round.
        round: u32,
        /// Pages sent in it.
        pages: u64,
    },
    /// The VM's state, serialized (`crate::state`).
    State(Vec<u8>),
    /// The stream is complete.
    Done {
        /// Pages sent over all rounds.
        total_pages: u64,
    },
}

/// The destination's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The header is acceptable: send the VM.
    Accept,
    /// The guest is restored and about to run; the source may end its run.
    Running {
        /// Microseconds from the end of the stream to the guest being ready.
        restore_us: u64,
    },
    /// The destination will not (or could not) take the VM.
    Refuse(String),
}

/// Why a stream was refused, or could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The connection failed or ended.
    #[error("the connection failed: {0}")]
    Io(#[from] io::Error),
    /// The stream ended before its end.
    #[error("the stream ended early (truncated: {0})")]
    Truncated(&'static str),
    /// Not a migration stream.
    #[error("not an hv migration stream (magic {0:02x?})")]
    BadMagic([u8; 8]),
    /// Another version of the format.
    #[error("migration stream version {found}, this hv speaks version {STREAM_VERSION}")]
    Version {
        /// The version in the stream.
        found: u32,
    },
    /// A field holds a value the format does not allow.
    #[error("malformed migration stream: {0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> StreamError {
    StreamError::Malformed(what.into())
}

/// Reads exactly `buf.len()` bytes; an early end is [`StreamError::Truncated`].
fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), StreamError> {
    r.read_exact(buf).map_err(|e| if e.kind() == io::ErrorKind::UnexpectedEof { StreamError::Truncated(what) } else { StreamError::Io(e) })
}

fn read_u8(r: &mut impl Read, what: &'static str) -> Result<u8, StreamError> {
    let mut b = [0u8; 1];
    read_exact(r, &mut b, what)?;
    Ok(b[0])
}

fn read_u16(r: &mut impl Read, what: &'static str) -> Result<u16, StreamError> {
    let mut b = [0u8; 2];
    read_exact(r, &mut b, what)?;
    Ok(u16::from_le_bytes(b))
}

fn read_u32(r: &mut impl Read, what: &'static str) -> Result<u32, StreamError> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, what)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read, what: &'static str) -> Result<u64, StreamError> {
    let mut b = [0u8; 8];
    read_exact(r, &mut b, what)?;
    Ok(u64::from_le_bytes(b))
}

/// FNV-1a (64-bit) of `bytes`: the kernel's identity in the header.
pub fn kernel_identity(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

impl Header {
    /// Writes the header.
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let mut b = Vec::with_capacity(40);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&STREAM_VERSION.to_le_bytes());
        b.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        b.extend_from_slice(&self.ram_bytes.to_le_bytes());
        b.extend_from_slice(&(self.mode as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.kernel.to_le_bytes());
        w.write_all(&b)
    }

    /// Reads and checks a header: the magic and the version first (so a stream from
    /// another program or another hv is named as such), then every field.
    pub fn read(r: &mut impl Read) -> Result<Header, StreamError> {
        let mut magic = [0u8; 8];
        read_exact(r, &mut magic, "in the header")?;
        if magic != MAGIC {
            return Err(StreamError::BadMagic(magic));
        }
        let version = read_u32(r, "in the header")?;
        if version != STREAM_VERSION {
            return Err(StreamError::Version { found: version });
        }
        let page_size = read_u32(r, "in the header")?;
        if u64::from(page_size) != PAGE_SIZE {
            return Err(malformed(format!("page size {page_size}, expected {PAGE_SIZE}")));
        }
        let ram_bytes = read_u64(r, "in the header")?;
        if ram_bytes == 0 || !ram_bytes.is_multiple_of(PAGE_SIZE) {
            return Err(malformed(format!("RAM size {ram_bytes:#x} is not a positive number of pages")));
        }
        let mode_raw = read_u32(r, "in the header")?;
        let mode = MmuMode::from_u32(mode_raw).ok_or_else(|| malformed(format!("unknown memory mode {mode_raw}")))?;
        let reserved = read_u32(r, "in the header")?;
        if reserved != 0 {
            return Err(malformed(format!("reserved header field is {reserved:#x}, not 0")));
        }
        let kernel = read_u64(r, "in the header")?;
        Ok(Header { ram_bytes, mode, kernel })
    }
}

impl Record {
    /// Writes the record.
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Record::Pages { round, pages } => write_pages(w, *round, pages.iter().map(|(f, d)| (*f, d))),
            Record::EndOfRound { round, pages } => {
                w.write_all(&[TAG_END_OF_ROUND])?;
                w.write_all(&round.to_le_bytes())?;
                w.write_all(&pages.to_le_bytes())
            }
            Record::State(bytes) => {
                w.write_all(&[TAG_STATE])?;
                w.write_all(&(bytes.len() as u32).to_le_bytes())?;
                w.write_all(bytes)
            }
            Record::Done { total_pages } => {
                w.write_all(&[TAG_DONE])?;
                w.write_all(&total_pages.to_le_bytes())
            }
        }
    }

    /// Reads one record, checking each field against the format and `ram_frames`
    /// (the guest's size in frames). An end of stream here is a truncation: a complete
    /// stream ends with `Done`, after which nothing is read.
    pub fn read(r: &mut impl Read, ram_frames: u64) -> Result<Record, StreamError> {
        let tag = read_u8(r, "before the Done record")?;
        match tag {
            TAG_PAGES => {
                let round = read_u32(r, "in a Pages record")?;
                let count = read_u32(r, "in a Pages record")?;
                if count == 0 || count > MAX_BATCH_PAGES {
                    return Err(malformed(format!("a batch of {count} pages (1..={MAX_BATCH_PAGES} allowed)")));
                }
                let mut pages = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let frame = read_u64(r, "in a Pages record")?;
                    if frame >= ram_frames {
                        return Err(malformed(format!("page frame {frame:#x} outside the guest's {ram_frames:#x} frames")));
                    }
                    let data = match read_u8(r, "in a Pages record")? {
                        PAGE_ZERO => PageData::Zero,
                        PAGE_DATA => {
                            let mut page = Box::new([0u8; PAGE_BYTES]);
                            read_exact(r, &mut page[..], "inside a page")?;
                            PageData::Data(page)
                        }
                        kind => return Err(malformed(format!("page kind {kind} (0 zero, 1 data)"))),
                    };
                    pages.push((PseudoFrame::new(frame), data));
                }
                Ok(Record::Pages { round, pages })
            }
            TAG_END_OF_ROUND => Ok(Record::EndOfRound { round: read_u32(r, "in an EndOfRound record")?, pages: read_u64(r, "in an EndOfRound record")? }),
            TAG_STATE => {
                let len = read_u32(r, "in a State record")?;
                if len == 0 || len > MAX_STATE_BYTES {
                    return Err(malformed(format!("VM state of {len} bytes (1..={MAX_STATE_BYTES} allowed)")));
                }
                let mut bytes = vec![0u8; len as usize];
                read_exact(r, &mut bytes, "inside the VM state")?;
                Ok(Record::State(bytes))
            }
            TAG_DONE => Ok(Record::Done { total_pages: read_u64(r, "in the Done record")? }),
            other => Err(malformed(format!("unknown record tag {other:#04x}"))),
        }
    }
}

/// Writes one `Pages` record from borrowed pages (the sender's way: no copy per page).
pub fn write_pages<'a>(w: &mut impl Write, round: u32, pages: impl ExactSizeIterator<Item = (PseudoFrame, &'a PageData)>) -> io::Result<()> {
    w.write_all(&[TAG_PAGES])?;
    w.write_all(&round.to_le_bytes())?;
    w.write_all(&(pages.len() as u32).to_le_bytes())?;
    for (frame, data) in pages {
        w.write_all(&frame.raw().to_le_bytes())?;
        match data {
            PageData::Zero => w.write_all(&[PAGE_ZERO])?,
            PageData::Data(bytes) => {
                w.write_all(&[PAGE_DATA])?;
                w.write_all(&bytes[..])?;
            }
        }
    }
    Ok(())
}

impl Reply {
    /// Writes the reply.
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Reply::Accept => w.write_all(&[TAG_ACCEPT]),
            Reply::Running { restore_us } => {
                w.write_all(&[TAG_RUNNING])?;
                w.write_all(&restore_us.to_le_bytes())
            }
            Reply::Refuse(message) => {
                // Cut at a character boundary so the message stays UTF-8.
                let mut end = message.len().min(usize::from(MAX_MESSAGE_BYTES));
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                w.write_all(&[TAG_REFUSE])?;
                w.write_all(&(end as u16).to_le_bytes())?;
                w.write_all(&message.as_bytes()[..end])
            }
        }
    }

    /// Reads and checks a reply.
    pub fn read(r: &mut impl Read) -> Result<Reply, StreamError> {
        match read_u8(r, "before the destination's reply")? {
            TAG_ACCEPT => Ok(Reply::Accept),
            TAG_RUNNING => Ok(Reply::Running { restore_us: read_u64(r, "in the destination's reply")? }),
            TAG_REFUSE => {
                let len = read_u16(r, "in the destination's reply")?;
                if len > MAX_MESSAGE_BYTES {
                    return Err(malformed(format!("a refusal message of {len} bytes (at most {MAX_MESSAGE_BYTES})")));
                }
                let mut bytes = vec![0u8; usize::from(len)];
                read_exact(r, &mut bytes, "in the destination's reply")?;
                let text = String::from_utf8_lossy(&bytes);
                // A message is shown on one line: control characters are the peer's, not ours.
                Ok(Reply::Refuse(text.chars().map(|c| if c.is_control() { '?' } else { c }).collect()))
            }
            other => Err(malformed(format!("unknown reply tag {other:#04x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header { ram_bytes: 64 << 20, mode: MmuMode::Shadow, kernel: 0x1234 }
    }

    fn header_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        header().write(&mut b).unwrap();
        b
    }

    #[test]
    fn every_record_reads_back_as_written() {
        let mut page = Box::new([0u8; PAGE_BYTES]);
        page[17] = 0xab;
        let records = [
            Record::Pages { round: 0, pages: vec![(PseudoFrame::new(3), PageData::Data(page)), (PseudoFrame::new(9), PageData::Zero)] },
            Record::EndOfRound { round: 0, pages: 2 },
            Record::State(vec![1, 2, 3]),
            Record::Done { total_pages: 2 },
        ];
        let mut b = header_bytes();
        assert_eq!(b.len(), 40);
        for r in &records {
            r.write(&mut b).unwrap();
        }
        let mut r = &b[..];
        assert_eq!(Header::read(&mut r).unwrap(), header());
        for want in &records {
            assert_eq!(&Record::read(&mut r, 16384).unwrap(), want);
        }
        for reply in [Reply::Accept, Reply::Running { restore_us: 77 }, Reply::Refuse("no: différent".into())] {
            let mut b = Vec::new();
            reply.write(&mut b).unwrap();
            assert_eq!(Reply::read(&mut &b[..]).unwrap(), reply);
        }
    }

    #[test]
    fn hostile_headers_are_refused_naming_the_problem() {
        let bad = |at: usize, value: &[u8]| {
            let mut b = header_bytes();
            b[at..at + value.len()].copy_from_slice(value);
            Header::read(&mut &b[..]).unwrap_err().to_string()
        };
        assert!(bad(0, b"ELF\x7f").contains("not an hv migration stream"));
        assert!(bad(8, &1u32.to_le_bytes()).contains("version 1, this hv speaks version 3"));
        assert!(bad(12, &8192u32.to_le_bytes()).contains("page size 8192"));
        assert!(bad(16, &0x1001u64.to_le_bytes()).contains("RAM size"));
        assert!(bad(24, &9u32.to_le_bytes()).contains("unknown memory mode 9"));
        assert!(bad(28, &1u32.to_le_bytes()).contains("reserved"));
        for len in 0..40 {
            let e = Header::read(&mut &header_bytes()[..len]).unwrap_err();
            assert!(matches!(e, StreamError::Truncated(_) | StreamError::BadMagic(_)), "{len}: {e}");
        }
    }

    #[test]
    fn hostile_records_are_refused_naming_the_problem() {
        let read = |b: &[u8]| Record::read(&mut &b[..], 16).unwrap_err().to_string();
        let pages = |count: u32, frame: u64, kind: u8| {
            let mut b = vec![TAG_PAGES];
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&count.to_le_bytes());
            b.extend_from_slice(&frame.to_le_bytes());
            b.push(kind);
            b
        };
        assert!(read(&pages(0, 0, 0)).contains("a batch of 0 pages"));
        assert!(read(&pages(MAX_BATCH_PAGES + 1, 0, 0)).contains("a batch of 257 pages"));
        assert!(read(&pages(1, 16, 0)).contains("outside the guest"));
        assert!(read(&pages(1, u64::MAX, 0)).contains("outside the guest"));
        assert!(read(&pages(1, 3, 7)).contains("page kind 7"));
        assert!(read(&pages(1, 3, PAGE_DATA)).contains("truncated: inside a page"));
        assert!(read(&pages(2, 3, PAGE_ZERO)).contains("truncated"));
        assert!(read(&[0x99]).contains("unknown record tag 0x99"));
        assert!(read(&[]).contains("ended early"));
        let mut state = vec![TAG_STATE];
        state.extend_from_slice(&(MAX_STATE_BYTES + 1).to_le_bytes());
        assert!(read(&state).contains("VM state of"));
        let mut refuse = vec![TAG_REFUSE];
        refuse.extend_from_slice(&u16::MAX.to_le_bytes());
        assert!(Reply::read(&mut &refuse[..]).unwrap_err().to_string().contains("refusal message of 65535 bytes"));
        let mut refuse = vec![TAG_REFUSE, 3, 0];
        refuse.extend_from_slice(b"a\nb");
        assert_eq!(Reply::read(&mut &refuse[..]).unwrap(), Reply::Refuse("a?b".into()));
    }
}
