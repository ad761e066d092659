//! The destination's side: take one VM from the stream into fresh guest RAM, checking
//! every record against the format and against the order of a migration.
//!
//! The receiver trusts nothing it reads: the header must describe a VM this hv can run
//! (same RAM size, same kernel; the memory mode may differ, the guest's pseudo-physical
//! memory is the same in both), every page must lie inside RAM, rounds must come in
//! order and each end marker must count the pages its round really held, and the state
//! must come once, after the pages, right before `Done`. Any breach, or an early end, is
//! answered with a `Refuse` naming it (when the connection still works) and returned as
//! an error: a half-received guest is never run.

use std::io::{BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use pv_abi::addr::PAGE_SIZE;

use super::stream::{Header, PageData, Record, Reply, StreamError, MAX_ROUNDS};
use super::MigrationError;
use crate::memory::GuestRam;

/// How long the source may stay silent once connected (a live round can take a while
/// on a slow network; a source that stops sending for this long is taken as gone).
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

/// What the destination requires of an incoming VM.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Guest RAM, bytes (the destination's `--mem`).
    pub ram_bytes: u64,
    /// The destination's kernel (`stream::kernel_identity`).
    pub kernel: u64,
}

/// A VM's memory and state, received whole; the source waits for its [`Answer`].
pub struct Incoming {
    /// The source's header.
    pub header: Header,
    /// Guest RAM, filled.
    pub ram: GuestRam,
    /// The VM state's bytes.
    pub state: Vec<u8>,
    /// Rounds received (the paused one included).
    pub rounds: u32,
    /// Pages received over all rounds.
    pub pages: u64,
    /// When the last byte arrived.
    pub ended_at: Instant,
    /// Where it came from.
    pub peer: SocketAddr,
    /// The way back to the source.
    pub answer: Answer,
}

/// The destination's last word to the source.
pub struct Answer {
    reply: TcpStream,
}

impl Answer {
    /// Tells the source the guest is about to run here (`ended_at`: when the stream
    /// ended, to report the destination's share of the downtime): it may end its run.
    pub fn confirm(mut self, ended_at: Instant) -> Result<(), MigrationError> {
        let restore_us = ended_at.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        Reply::Running { restore_us }.write(&mut self.reply)?;
        self.reply.flush()?;
        Ok(())
    }

    /// Tells the source the VM cannot run here (it then resumes it).
    pub fn refuse(mut self, why: &str) {
        let _ = Reply::Refuse(why.to_string()).write(&mut self.reply);
    }
}

/// Waits for one source on `listener` and receives its VM into fresh RAM.
pub fn accept_vm(listener: &TcpListener, expect: Expect) -> Result<Incoming, MigrationError> {
    let (stream, peer) = listener.accept()?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(SILENCE_LIMIT))?;
    let mut reply = BufWriter::new(stream.try_clone()?);
    let mut input = BufReader::with_capacity(1 << 20, stream.try_clone()?);
    let refuse = |reply: &mut BufWriter<TcpStream>, e: &MigrationError| {
        let _ = Reply::Refuse(format!("the destination refused the VM: {e}")).write(reply);
        let _ = reply.flush();
    };
    let header = match Header::read(&mut input).map_err(MigrationError::from).and_then(|h| check_header(h, expect)) {
        Ok(h) => h,
        Err(e) => {
            refuse(&mut reply, &e);
            return Err(e);
        }
    };
    Reply::Accept.write(&mut reply)?;
    reply.flush()?;
    let ram = GuestRam::new(header.ram_bytes).map_err(|e| MigrationError::Memory(e.to_string()))?;
    match read_rounds(&mut input, &ram) {
        Ok((state, rounds, pages)) => {
            Ok(Incoming { header, ram, state, rounds, pages, ended_at: Instant::now(), peer, answer: Answer { reply: stream } })
        }
        Err(e) => {
            refuse(&mut reply, &e);
            Err(e)
        }
    }
}

pub(crate) fn check_header(header: Header, expect: Expect) -> Result<Header, MigrationError> {
    if header.ram_bytes != expect.ram_bytes {
        return Err(MigrationError::Mismatch(format!(
            "the source's guest has {} MiB of RAM, this destination {} MiB (--mem)",
            header.ram_bytes >> 20,
            expect.ram_bytes >> 20
        )));
    }
    if header.kernel != expect.kernel {
        return Err(MigrationError::Mismatch(format!(
            "the source runs another kernel (identity {:#018x}, here {:#018x})",
            header.kernel, expect.kernel
        )));
    }
    Ok(header)
}

/// Reads rounds of pages into `ram` until `Done`; returns the state, the rounds and the
/// pages received.
pub(crate) fn read_rounds(input: &mut impl std::io::Read, ram: &GuestRam) -> Result<(Vec<u8>, u32, u64), MigrationError> {
    let frames = ram.size() / PAGE_SIZE;
    let zero = [0u8; PAGE_SIZE as usize];
    let (mut round, mut in_round, mut total) = (0u32, 0u64, 0u64);
    let mut state = None;
    let malformed = |what: String| MigrationError::Stream(StreamError::Malformed(what));
    // Each record either carries pages (bounded by the rounds' limit times what a round
    // can hold: every frame once, or the stream is malformed), ends a round (at most
    // MAX_ROUNDS), or ends the stream: the loop ends on every well-formed stream.
    loop {
        match Record::read(input, frames)? {
            Record::Pages { round: r, pages } => {
                if state.is_some() || r != round {
                    return Err(malformed(format!("pages of round {r} while round {round} is open{}", if state.is_some() { " after the state" } else { "" })));
                }
                for (frame, data) in pages {
                    // Checked against RAM's frames by `Record::read`.
                    let at = frame.checked_address().ok_or_else(|| malformed(format!("frame {frame:?}")))?;
                    let bytes: &[u8] = match &data {
                        PageData::Zero => &zero,
                        PageData::Data(page) => &page[..],
                    };
                    ram.write(at, bytes).map_err(|e| malformed(e.to_string()))?;
                    in_round += 1;
                }
                if in_round > frames {
                    return Err(malformed(format!("round {round} holds more pages than the guest has ({frames})")));
                }
            }
            Record::EndOfRound { round: r, pages } => {
                if state.is_some() || r != round || pages != in_round {
                    return Err(malformed(format!("end of round {r} counting {pages} pages, while round {round} held {in_round}")));
                }
                total += in_round;
                in_round = 0;
                round += 1;
                if round > MAX_ROUNDS {
                    return Err(malformed(format!("more than {MAX_ROUNDS} rounds")));
                }
            }
            Record::State(bytes) => {
                if state.is_some() || round == 0 || in_round != 0 {
                    return Err(malformed("the VM state before the pages' last round ended, or twice".into()));
                }
                state = Some(bytes);
            }
            Record::Done { total_pages } => {
                let Some(state) = state else { return Err(malformed("the stream ended without the VM state".into())) };
                if total_pages != total {
                    return Err(malformed(format!("Done counts {total_pages} pages, the rounds held {total}")));
                }
                return Ok((state, round, total));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_abi::addr::{PseudoFrame, PseudoPhys};

    fn page(byte: u8) -> PageData {
        PageData::Data(Box::new([byte; PAGE_SIZE as usize]))
    }

    fn stream(records: &[Record]) -> Vec<u8> {
        let mut b = Vec::new();
        for r in records {
            r.write(&mut b).unwrap();
        }
        b
    }

    #[test]
    fn a_well_formed_stream_fills_ram_and_a_later_round_overwrites() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let b = stream(&[
            Record::Pages { round: 0, pages: vec![(PseudoFrame::new(1), page(7)), (PseudoFrame::new(2), page(8))] },
            Record::EndOfRound { round: 0, pages: 2 },
            Record::Pages { round: 1, pages: vec![(PseudoFrame::new(2), PageData::Zero)] },
            Record::EndOfRound { round: 1, pages: 1 },
            Record::State(vec![42]),
            Record::Done { total_pages: 3 },
        ]);
        let (state, rounds, pages) = read_rounds(&mut &b[..], &ram).unwrap();
        assert_eq!((state, rounds, pages), (vec![42], 2, 3));
        assert_eq!(ram.read_u64(PseudoPhys::new(0x1000)).unwrap(), 0x0707_0707_0707_0707);
        assert_eq!(ram.read_u64(PseudoPhys::new(0x2000)).unwrap(), 0, "round 1 sent the page as zero");
    }

    #[test]
    fn hostile_streams_out_of_order_are_refused() {
        let ram = GuestRam::new(1 << 20).unwrap();
        let err = |records: &[Record]| read_rounds(&mut &stream(records)[..], &ram).unwrap_err().to_string();
        let p = |round| Record::Pages { round, pages: vec![(PseudoFrame::new(1), page(1))] };
        assert!(err(&[p(1)]).contains("pages of round 1 while round 0 is open"));
        assert!(err(&[p(0), Record::EndOfRound { round: 0, pages: 5 }]).contains("counting 5 pages, while round 0 held 1"));
        assert!(err(&[Record::State(vec![1])]).contains("VM state before"));
        assert!(err(&[p(0), Record::EndOfRound { round: 0, pages: 1 }, Record::Done { total_pages: 1 }]).contains("without the VM state"));
        let end = [p(0), Record::EndOfRound { round: 0, pages: 1 }, Record::State(vec![1])];
        assert!(err(&[&end[..], &[Record::Done { total_pages: 9 }]].concat()).contains("Done counts 9 pages"));
        assert!(err(&[&end[..], &[p(1)]].concat()).contains("after the state"));
        assert!(err(&end).contains("ended early"), "a stream cut before Done is truncated");
    }

    #[test]
    fn hostile_headers_name_the_mismatch() {
        let expect = Expect { ram_bytes: 64 << 20, kernel: 1 };
        let h = |ram_bytes, kernel| Header { ram_bytes, mode: pv_abi::MmuMode::Ept, kernel };
        assert!(check_header(h(32 << 20, 1), expect).unwrap_err().to_string().contains("32 MiB of RAM, this destination 64 MiB"));
        assert!(check_header(h(64 << 20, 2), expect).unwrap_err().to_string().contains("another kernel"));
        assert!(check_header(h(64 << 20, 1), expect).is_ok());
    }
}
