//! Cutting a byte stream into lines, without trusting the other side to ever end one.
//!
//! The protocol is one JSON object per line. A peer decides where its lines end, so a
//! reader that waits for `\n` would buffer whatever a hostile peer sends. This reader
//! holds at most the bound plus one read's worth of bytes: a line longer than the bound
//! is reported as [`Frame::TooLong`] as soon as that is certain, without reading the
//! rest of it. Time is the caller's business: it gives a reader whose reads time out
//! (the server's per-connection deadline), and a timeout comes back as the `io::Error`
//! it is.

use std::io::{self, Read};

/// Bytes asked for per read.
const CHUNK: usize = 4096;

/// What the next line of the stream is.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its `\n`.
    Line(Vec<u8>),
    /// The line is longer than the bound; the stream cannot be resynchronized.
    TooLong,
    /// The peer closed its side; `partial` if it left an unfinished line behind.
    Closed {
        /// Bytes of an unfinished line were pending.
        partial: bool,
    },
}

/// Reads lines of at most `max` bytes from `inner`.
pub struct LineReader<R> {
    inner: R,
    max: usize,
    /// Bytes read but not yet returned (the start of the next line, or more).
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no `\n`.
    scanned: usize,
}

impl<R: Read> LineReader<R> {
    /// A reader of lines of at most `max` bytes (without `\n`).
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max, pending: Vec::new(), scanned: 0 }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The underlying stream, to change how it reads (a new deadline).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next line. An error from the stream (a timeout, a reset) is returned as is;
    /// bytes already read stay pending.
    pub fn next_line(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(at) = self.pending[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + at;
                if end > self.max {
                    return Ok(Frame::TooLong);
                }
                let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                line.pop(); // the '\n'
                self.scanned = 0;
                return Ok(Frame::Line(line));
            }
            self.scanned = self.pending.len();
            if self.pending.len() > self.max {
                return Ok(Frame::TooLong);
            }
            let mut chunk = [0u8; CHUNK];
            let n = match self.inner.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(Frame::Closed { partial: !self.pending.is_empty() });
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that hands out one byte per read, to exercise lines split across reads.
    struct Trickle(Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    fn line(s: &str) -> Frame {
        Frame::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_come_out_one_by_one() {
        let mut r = LineReader::new(Cursor::new(b"a\nbc\n\nd".to_vec()), 10);
        assert_eq!(r.next_line().unwrap(), line("a"));
        assert_eq!(r.next_line().unwrap(), line("bc"));
        assert_eq!(r.next_line().unwrap(), line(""));
        assert_eq!(r.next_line().unwrap(), Frame::Closed { partial: true });
    }

    #[test]
    fn a_line_split_over_many_reads_is_whole() {
        let mut r = LineReader::new(Trickle(Cursor::new(b"hello\nworld\n".to_vec())), 10);
        assert_eq!(r.next_line().unwrap(), line("hello"));
        assert_eq!(r.next_line().unwrap(), line("world"));
        assert_eq!(r.next_line().unwrap(), Frame::Closed { partial: false });
    }

    #[test]
    fn a_line_of_exactly_the_bound_is_accepted() {
        let mut data = vec![b'x'; 10];
        data.push(b'\n');
        let mut r = LineReader::new(Cursor::new(data), 10);
        assert_eq!(r.next_line().unwrap(), Frame::Line(vec![b'x'; 10]));
    }

    #[test]
    fn hostile_line_over_the_bound_with_its_newline() {
        let mut data = vec![b'x'; 11];
        data.push(b'\n');
        let mut r = LineReader::new(Cursor::new(data), 10);
        assert_eq!(r.next_line().unwrap(), Frame::TooLong);
    }

    #[test]
    fn hostile_endless_line_is_cut_without_reading_it_all() {
        /// An endless stream of 'x' that counts what was read from it.
        struct Endless(usize);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                buf.fill(b'x');
                self.0 += buf.len();
                Ok(buf.len())
            }
        }
        let mut r = LineReader::new(Endless(0), 64 * 1024);
        assert_eq!(r.next_line().unwrap(), Frame::TooLong);
        assert!(r.get_ref().0 <= 64 * 1024 + CHUNK, "read {} bytes", r.get_ref().0);
    }

    #[test]
    fn errors_are_passed_on() {
        struct Late;
        impl Read for Late {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::WouldBlock, "timed out"))
            }
        }
        let mut r = LineReader::new(Late, 10);
        assert_eq!(r.next_line().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
