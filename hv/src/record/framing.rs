//! The record log's framing: one checksummed line per record, chained.
//!
//! ```text
//! 5c1e0f2a9b7d3e41 {"magic":"hv-record-log","version":1,…}      ← line 1: the header
//! 0d3b6f8e21a4c977 {"e":"exit","n":1,"reason":"io-out","port":1536}
//! …
//! 77a0c3d2e1f4b865 {"e":"end","exits":5123,…}                    ← the last line
//! ```
//!
//! Each line is a 64-bit checksum in hex, a space, and one JSON object (serde_json).
//! The checksum is FNV-1a over the previous line's checksum (8 bytes, little-endian)
//! followed by the JSON text, starting from FNV's offset basis: so a flipped byte, a
//! line removed, two lines swapped or a log cut short are all found at the first line
//! that is not what was written. FNV is not a cryptographic hash: this protects against
//! damage and careless edits, not against someone who recomputes the chain (they are
//! then caught by replay itself, at the first event the guest does not repeat).

use std::io::{BufRead, Read};

/// FNV-1a's 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Longest line a log may have: a block request moves at most 11 segments of 4 KiB
/// (88 KiB as hex), plus ring-page changes; 4 MiB leaves room and bounds the memory a
/// hostile log can make the reader take.
pub const MAX_LINE: usize = 4 << 20;

/// FNV-1a over `bytes`, continuing from `hash`.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// FNV-1a over `bytes` from the offset basis.
pub fn fnv(bytes: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, bytes)
}

/// The checksum chain.
#[derive(Clone, Copy, Debug)]
pub struct Chain(u64);

impl Default for Chain {
    fn default() -> Self {
        Chain(FNV_OFFSET)
    }
}

impl Chain {
    /// The checksum of a line holding `json`, after the lines so far.
    pub fn next(&self, json: &str) -> u64 {
        fnv1a(fnv1a(FNV_OFFSET, &self.0.to_le_bytes()), json.as_bytes())
    }

    /// Moves past a line with checksum `sum`.
    pub fn advance(&mut self, sum: u64) {
        self.0 = sum;
    }
}

/// Formats one line (with its newline) and advances the chain.
pub fn frame(chain: &mut Chain, json: &str) -> String {
    let sum = chain.next(json);
    chain.advance(sum);
    format!("{sum:016x} {json}\n")
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading failed.
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    /// The line is longer than [`MAX_LINE`].
    #[error("line {line} is longer than {MAX_LINE} bytes")]
    TooLong {
        /// Line number (1-based).
        line: u64,
    },
    /// The input ends in the middle of a line.
    #[error("line {line} is cut short: the log is truncated")]
    Cut {
        /// Line number.
        line: u64,
    },
    /// The line is not `CHECKSUM JSON`.
    #[error("line {line} is not a checksum and a JSON object")]
    Malformed {
        /// Line number.
        line: u64,
    },
    /// The checksum is wrong.
    #[error("line {line}: checksum mismatch (the log was changed or damaged from here on)")]
    BadChecksum {
        /// Line number.
        line: u64,
    },
}

/// Reads framed lines, checking each checksum.
pub struct LineReader<R> {
    input: R,
    chain: Chain,
    line: u64,
}

impl<R: BufRead> LineReader<R> {
    /// A reader at the start of a log.
    pub fn new(input: R) -> Self {
        LineReader { input, chain: Chain::default(), line: 0 }
    }

    /// The number of the last line read.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next line's JSON, checked; `None` at the end of the input.
    pub fn next_json(&mut self) -> Result<Option<String>, FrameError> {
        match self.next_framed()? {
            None => Ok(None),
            Some((json, true)) => Ok(Some(json)),
            Some((_, false)) => Err(FrameError::BadChecksum { line: self.line }),
        }
    }

    /// The next line's JSON and whether its checksum holds (the chain moves on either
    /// way); `None` at the end of the input. For a header, whose version must be read
    /// before its checksum can be trusted to mean the same thing.
    pub fn next_framed(&mut self) -> Result<Option<(String, bool)>, FrameError> {
        let mut bytes = Vec::new();
        let read = (&mut self.input).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut bytes)?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        let line = self.line;
        if bytes.last() != Some(&b'\n') {
            // Either longer than allowed, or the file ends in the middle of a line.
            return Err(if bytes.len() > MAX_LINE { FrameError::TooLong { line } } else { FrameError::Cut { line } });
        }
        bytes.pop();
        let text = String::from_utf8(bytes).map_err(|_| FrameError::Malformed { line })?;
        let (sum, json) = text.split_once(' ').ok_or(FrameError::Malformed { line })?;
        if sum.len() != 16 {
            return Err(FrameError::Malformed { line });
        }
        let sum = u64::from_str_radix(sum, 16).map_err(|_| FrameError::Malformed { line })?;
        let intact = sum == self.chain.next(json);
        self.chain.advance(sum);
        Ok(Some((json.to_string(), intact)))
    }
}

/// Bytes as lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Hex back to bytes; `None` if it is not an even number of hex digits.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes().chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(lines: &[&str]) -> Vec<u8> {
        let mut chain = Chain::default();
        lines.iter().map(|l| frame(&mut chain, l)).collect::<String>().into_bytes()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<String>, FrameError> {
        let mut r = LineReader::new(bytes);
        let mut out = Vec::new();
        while let Some(json) = r.next_json()? {
            out.push(json);
        }
        Ok(out)
    }

    #[test]
    fn lines_round_trip() {
        let bytes = log(&["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(read_all(&bytes).unwrap(), vec!["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn hostile_flipped_byte_is_found_on_its_line() {
        let mut bytes = log(&["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        let at = bytes.len() - 4; // inside the third line's JSON
        bytes[at] ^= 1;
        assert!(matches!(read_all(&bytes), Err(FrameError::BadChecksum { line: 3 })));
    }

    #[test]
    fn hostile_removed_or_swapped_lines_break_the_chain() {
        let bytes = log(&["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let removed = [lines[0], lines[2]].concat();
        assert!(matches!(read_all(removed.as_bytes()), Err(FrameError::BadChecksum { line: 2 })));
        let swapped = [lines[1], lines[0]].concat();
        assert!(matches!(read_all(swapped.as_bytes()), Err(FrameError::BadChecksum { line: 1 })));
    }

    #[test]
    fn hostile_cut_line_and_garbage_are_malformed() {
        let bytes = log(&["{\"a\":1}"]);
        assert!(matches!(read_all(&bytes[..bytes.len() - 3]), Err(FrameError::Cut { line: 1 })));
        assert!(matches!(read_all(b"not a log at all\n"), Err(FrameError::Malformed { line: 1 })));
        assert!(matches!(read_all(&[0xff, 0xfe, b'\n']), Err(FrameError::Malformed { line: 1 })));
    }

    #[test]
    fn hex_round_trips_and_refuses_bad_digits() {
        assert_eq!(from_hex(&to_hex(&[0, 1, 0xab, 0xff])), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
