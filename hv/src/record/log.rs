//! The record log: what `hv run --record LOG` writes and `hv replay LOG` reads.
//!
//! A header ([`Header`]: what the guest was booted with), then one [`Event`] per line in
//! the order they happened, ending with [`Event::End`]; each line framed and chained by
//! a checksum (`super::framing`). The events are of four kinds:
//!
//! | event | when | what it carries |
//! | --- | --- | --- |
//! | `exit` | every VM exit the guest made (not the ones hv or a signal caused) | its number, reason, port or address |
//! | `clock` | a `read_clock` hypercall | the counter value the guest got |
//! | `device` | a doorbell write, served on the vCPU thread | where the guest was (rip), a hash of the ring page it published, every byte the device wrote into guest memory, the device's trace lines, what the console printed, whether the upcall was raised |
//! | `end` | the guest stopped | the number of exits, how it stopped, a hash of all guest memory |
//!
//! Everything else the guest does follows from its memory and registers, which replay
//! rebuilds by running the same guest code on KVM from the same boot.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::framing::{frame, Chain, FrameError, LineReader};
use crate::trace::RecordedLine;

/// The header's magic string: a file without it on its first line is not a record log.
pub const MAGIC: &str = "hv-record-log";
/// The format's version; a log of another version is refused by name.
pub const VERSION: u32 = 1;

/// The disk of a recorded run, as far as the replay needs it (a replay reads no disk:
/// the log holds what the device wrote into guest memory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskIdentity {
    /// The image's path when recorded (for messages).
    pub path: String,
    /// Its size in 512-byte sectors (the boot-info page announces it).
    pub sectors: u64,
    /// Whether it was attached read-only.
    pub read_only: bool,
}

/// What the guest was booted with: everything the boot depends on besides the code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: String,
    /// [`VERSION`].
    pub version: u32,
    /// FNV-1a of the kernel ELF file, in hex (a replay must boot the same bytes).
    pub kernel_hash: String,
    /// The kernel file's size in bytes.
    pub kernel_bytes: u64,
    /// The kernel file given with `--kernel`, or `None` for the built-in pv-guest.
    pub kernel_path: Option<PathBuf>,
    /// The guest's command line words.
    pub guest_args: Vec<String>,
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// The memory mode (`ept` or `shadow`): the guest behaves differently in each.
    pub mmu: String,
    /// The TSC frequency the boot-info page announced (the host's: replay announces
    /// the recorded one).
    pub tsc_khz: u64,
    /// Whether the host CPU had no-execute pages (the first page tables depend on it).
    pub nx: bool,
    /// The disk, if one was attached.
    pub disk: Option<DiskIdentity>,
}

/// One byte range a device wrote into guest memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryWrite {
    /// Pseudo-physical address of the first byte.
    pub gpa: u64,
    /// The bytes, in hex.
    pub data: String,
}

/// One guest exit, as logged and as compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Its number among the guest's exits, from 1.
    pub n: u64,
    /// The exit reason's trace name (`io-out`, `mmio-write`, …).
    pub reason: String,
    /// The port, for port I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The machine address, for MMIO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpa: Option<u64>,
}

impl std::fmt::Display for ExitRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {} {}", self.n, self.reason)?;
        if let Some(port) = self.port {
            write!(f, " port={port:#x}")?;
        }
        if let Some(gpa) = self.gpa {
            write!(f, " gpa={gpa:#x}")?;
        }
        Ok(())
    }
}

/// What a device did at one doorbell exit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The exit it happened at.
    pub n: u64,
    /// The doorbell port.
    pub port: u16,
    /// The guest's rip at the doorbell write.
    pub rip: u64,
    /// FNV-1a of the ring page before the device served it (the requests the guest
    /// published), in hex.
    pub ring_hash: String,
    /// Everything the device wrote into guest memory, in order.
    pub writes: Vec<MemoryWrite>,
    /// The device's trace lines.
    pub lines: Vec<RecordedLine>,
    /// What the device printed (the console), in hex.
    pub printed: String,
    /// Whether the upcall was raised after the service.
    pub upcall: bool,
}

/// One line of the log after the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// A guest exit.
    Exit(ExitRecord),
    /// The answer to a `read_clock` hypercall (at exit `n`).
    Clock {
        /// The exit.
        n: u64,
        /// The counter value the guest got.
        tsc: u64,
    },
    /// A device served at a doorbell exit.
    Device(Box<DeviceRecord>),
    /// The guest stopped.
    End {
        /// Exits the guest made.
        exits: u64,
        /// How it stopped (its trace line, without the sequence number).
        stop: String,
        /// FNV-1a of all guest memory at the stop, in hex.
        memory_hash: String,
    },
}

impl Event {
    /// A one-line description for messages.
    pub fn describe(&self) -> String {
        match self {
            Event::Exit(x) => x.to_string(),
            Event::Clock { n, tsc } => format!("read_clock at exit {n} = {tsc}"),
            Event::Device(d) => format!("doorbell port={:#x} at exit {} rip={:#x} ring={}", d.port, d.n, d.rip, d.ring_hash),
            Event::End { exits, stop, memory_hash } => format!("end after {exits} exits: {stop}; memory hash {memory_hash}"),
        }
    }
}

/// Text from a log file on its way to a terminal (a divergence message quotes the
/// log): a hostile log could otherwise carry escape sequences, as a guest could
/// (docs/security.md). The log hv writes holds only text that passes unchanged.
fn clean(text: String) -> String {
    backend_drivers::console::sanitize_text(&text)
}

impl Header {
    /// The first text field a message may quote that holds characters a terminal would
    /// act on (hv never records such a header: it is refused, not cleaned, because
    /// its fields name files and modes).
    fn unprintable_field(&self) -> Option<&'static str> {
        let bad = |text: &str| backend_drivers::console::sanitize_text(text) != text;
        let path_bad = |path: &Path| bad(&path.to_string_lossy());
        if bad(&self.magic) || bad(&self.kernel_hash) || bad(&self.mmu) {
            Some("magic, kernel hash or memory mode")
        } else if self.kernel_path.as_deref().is_some_and(path_bad) {
            Some("kernel path")
        } else if self.disk.as_ref().is_some_and(|d| bad(&d.path)) {
            Some("disk path")
        } else if self.guest_args.iter().any(|a| bad(a)) {
            Some("guest command line")
        } else {
            None
        }
    }
}

impl Event {
    /// The event with every text field a message may quote sanitized (a no-op on what
    /// hv records; a hostile log's escape sequences become visible characters).
    fn cleaned(self) -> Event {
        match self {
            Event::Exit(mut x) => {
                x.reason = clean(x.reason);
                Event::Exit(x)
            }
            Event::Device(mut d) => {
                d.ring_hash = clean(d.ring_hash);
                for line in &mut d.lines {
                    line.kind = clean(std::mem::take(&mut line.kind));
                    line.detail = clean(std::mem::take(&mut line.detail));
                }
                Event::Device(d)
            }
            Event::End { exits, stop, memory_hash } => Event::End { exits, stop: clean(stop), memory_hash: clean(memory_hash) },
            clock @ Event::Clock { .. } => clock,
        }
    }
}

/// Why a log cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file cannot be created, written or opened.
    #[error("record log {path}: {source}")]
    Io {
        /// The log.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is damaged.
    #[error("record log {path}: {source}")]
    Frame {
        /// The log.
        path: PathBuf,
        /// What is wrong.
        source: FrameError,
    },
    /// The first line is not a record-log header.
    #[error("{path} is not an hv record log (its first line has no `{MAGIC}` header)")]
    NotALog {
        /// The file.
        path: PathBuf,
    },
    /// The log is of another format version.
    #[error("record log {path} is version {found}; this hv reads version {VERSION}")]
    Version {
        /// The log.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// A line is framed correctly but is no event.
    #[error("record log {path}, line {line}: not an event ({what})")]
    BadEvent {
        /// The log.
        path: PathBuf,
        /// Line number.
        line: u64,
        /// What is wrong.
        what: String,
    },
    /// The log ends without its end record.
    #[error("record log {path} ends after line {line} without its end record (truncated?)")]
    Truncated {
        /// The log.
        path: PathBuf,
        /// The last line read.
        line: u64,
    },
}

/// Writes a log, line by line.
pub struct LogWriter {
    path: PathBuf,
    out: BufWriter<File>,
    chain: Chain,
    error: Option<std::io::Error>,
}

impl LogWriter {
    /// Creates the log and writes its header.
    pub fn create(path: &Path, header: &Header) -> Result<Self, LogError> {
        let io = |source| LogError::Io { path: path.to_path_buf(), source };
        let out = BufWriter::new(File::create(path).map_err(io)?);
        let mut w = LogWriter { path: path.to_path_buf(), out, chain: Chain::default(), error: None };
        w.write_json(&serde_json::to_string(header).map_err(|e| io(e.into()))?);
        match w.error.take() {
            Some(e) => Err(io(e)),
            None => Ok(w),
        }
    }

    fn write_json(&mut self, json: &str) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(frame(&mut self.chain, json).as_bytes()) {
                self.error = Some(e);
            }
        }
    }

    /// Appends one event. The first write error is kept for [`LogWriter::finish`]
    /// (the guest runs on).
    pub fn append(&mut self, event: &Event) {
        match serde_json::to_string(event) {
            Ok(json) => self.write_json(&json),
            Err(e) => self.error = self.error.take().or(Some(e.into())),
        }
    }

    /// Flushes; returns the first error.
    pub fn finish(mut self) -> Result<(), LogError> {
        let flushed = self.out.flush();
        match self.error.take().map_or(flushed, Err) {
            Ok(()) => Ok(()),
            Err(source) => Err(LogError::Io { path: self.path, source }),
        }
    }
}

/// Reads a log: the header at once, then one event at a time.
pub struct LogReader {
    path: PathBuf,
    lines: LineReader<BufReader<File>>,
    header: Header,
}

impl LogReader {
    /// Opens a log and reads and checks its header.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        let file = File::open(path).map_err(|source| LogError::Io { path: path.to_path_buf(), source })?;
        let mut lines = LineReader::new(BufReader::new(file));
        let not_a_log = || LogError::NotALog { path: path.to_path_buf() };
        // A first line that is not a framed JSON object at all is "not a log", whatever
        // the framing error (a checksum that fails on line 1 means a damaged header).
        let (json, intact) = match lines.next_framed() {
            Ok(Some(line)) => line,
            Ok(None) | Err(FrameError::Malformed { .. } | FrameError::TooLong { .. } | FrameError::Cut { .. }) => return Err(not_a_log()),
            Err(source) => return Err(LogError::Frame { path: path.to_path_buf(), source }),
        };
        let value: serde_json::Value = serde_json::from_str(&json).map_err(|_| not_a_log())?;
        if value.get("magic").and_then(|m| m.as_str()) != Some(MAGIC) {
            return Err(not_a_log());
        }
        let found = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != u64::from(VERSION) {
            return Err(LogError::Version { path: path.to_path_buf(), found: u32::try_from(found).unwrap_or(u32::MAX) });
        }
        if !intact {
            return Err(LogError::Frame { path: path.to_path_buf(), source: FrameError::BadChecksum { line: 1 } });
        }
        let header: Header = serde_json::from_value(value)
            .map_err(|e| LogError::BadEvent { path: path.to_path_buf(), line: 1, what: clean(format!("header: {e}")) })?;
        if let Some(field) = header.unprintable_field() {
            return Err(LogError::BadEvent { path: path.to_path_buf(), line: 1, what: format!("header: its {field} holds control characters") });
        }
        Ok(LogReader { path: path.to_path_buf(), lines, header })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The number of the line last read (the header is line 1).
    pub fn line(&self) -> u64 {
        self.lines.line()
    }

    /// The next event. A log that ends is an error: its last event is `end`, after
    /// which the reader is not asked again.
    pub fn next_event(&mut self) -> Result<Event, LogError> {
        let json = match self.lines.next_json() {
            Ok(Some(json)) => json,
            Ok(None) => return Err(LogError::Truncated { path: self.path.clone(), line: self.lines.line() }),
            Err(source) => return Err(LogError::Frame { path: self.path.clone(), source }),
        };
        let event: Event = serde_json::from_str(&json).map_err(|e| LogError::BadEvent { path: self.path.clone(), line: self.lines.line(), what: clean(e.to_string()) })?;
        Ok(event.cleaned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            magic: MAGIC.into(),
            version: VERSION,
            kernel_hash: "0123456789abcdef".into(),
            kernel_bytes: 1,
            kernel_path: None,
            guest_args: vec!["count".into()],
            mem_mib: 8,
            mmu: "ept".into(),
            tsc_khz: 1,
            nx: true,
            disk: None,
        }
    }

    fn write_log(name: &str, header: &Header, events: &[Event]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("hv-log-test-{}-{name}", std::process::id()));
        let mut w = LogWriter::create(&path, header).unwrap();
        for e in events {
            w.append(e);
        }
        w.finish().unwrap();
        path
    }

    #[test]
    fn hostile_log_text_reaches_messages_sanitized() {
        let exit = Event::Exit(ExitRecord { n: 1, reason: "\u{1b}]52;c;eA==\u{7}".into(), port: None, gpa: None });
        let end = Event::End { exits: 1, stop: "\u{9b}2J\rhv: forged".into(), memory_hash: "00".into() };
        let path = write_log("escapes", &header(), &[exit, end]);
        let mut log = LogReader::open(&path).unwrap();
        let first = log.next_event().unwrap().describe();
        let second = log.next_event().unwrap().describe();
        let _ = std::fs::remove_file(&path);
        for text in [first, second] {
            assert!(!text.chars().any(|c| c.is_control()), "a terminal would act on {text:?}");
        }
    }

    #[test]
    fn hostile_header_with_control_characters_is_refused() {
        let mut h = header();
        h.mmu = "\u{1b}[2Jept".into();
        let path = write_log("header", &h, &[]);
        let e = LogReader::open(&path).err().expect("refused").to_string();
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("memory mode holds control characters"), "{e}");
        assert!(!e.contains('\u{1b}'));
    }
}
