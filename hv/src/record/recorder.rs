//! Recording: log every input the guest gets from outside its own instructions.
//!
//! The exit loop calls [`Recorder`] at each guest exit ([`Recorder::exit`]), at each
//! `read_clock` hypercall ([`Recorder::clock`]) and at each doorbell write
//! ([`Recorder::doorbell`]), where the device is served right there, on the vCPU thread,
//! and everything it did is logged: the bytes it wrote into guest memory (found with
//! vm-memory's dirty bitmap, `super::guest_memory`), its trace lines, the text it
//! printed, and whether it raised the upcall, which is raised here, synchronously, so the
//! guest takes it at the first instruction after this exit where it has interrupts on.

use std::path::Path;

use pv_abi::addr::{PseudoPhys, PAGE_SIZE};
use pv_abi::layout::SHARED_INFO_GPA;

use super::framing::{fnv, to_hex};
use super::guest_memory::{memory_hash, DirtyPages};
use super::log::{DeviceRecord, Event, ExitRecord, Header, LogError, LogWriter, MemoryWrite};
use super::SessionReport;
use crate::devices::{raise_upcall, Devices};
use crate::kvm::KvmVm;
use crate::memory::GuestRam;
use crate::outcome::{GuestStop, KvmFailure};
use crate::trace::RecordedLine;

/// Two changed runs of bytes closer than this are logged as one write (each write costs
/// its address and a few characters of JSON).
const MERGE_GAP: usize = 16;

/// A run being recorded.
pub struct Recorder {
    log: LogWriter,
    exits: u64,
    events: u64,
}

impl Recorder {
    /// Creates the log and writes its header.
    pub fn create(path: &Path, header: &Header) -> Result<Self, LogError> {
        Ok(Recorder { log: LogWriter::create(path, header)?, exits: 0, events: 0 })
    }

    fn append(&mut self, event: &Event) {
        self.events += 1;
        self.log.append(event);
    }

    /// A guest exit: numbered and logged.
    pub fn exit(&mut self, record: ExitRecord) {
        self.exits = record.n;
        self.append(&Event::Exit(record));
    }

    /// How many exits the guest has made.
    pub fn exits(&self) -> u64 {
        self.exits
    }

    /// The answer to `read_clock`: logged as it is.
    pub fn clock(&mut self, tsc: u64) {
        let n = self.exits;
        self.append(&Event::Clock { n, tsc });
    }

    /// The guest rang doorbell `port`: serve the device now and log what it did.
    pub fn doorbell(&mut self, vm: &mut KvmVm, devices: &Devices, port: u16) -> Option<GuestStop> {
        let ring = devices.ring_of(port)?;
        let rip = match vm.guest_regs() {
            Ok(regs) => regs.rip,
            Err(e) => return Some(GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "KVM_GET_REGS", source: e }, dump: None }),
        };
        let shared_info = PseudoPhys::new(SHARED_INFO_GPA);
        let ring_before = read_page(vm.ram(), ring);
        let shared_before = read_page(vm.ram(), shared_info);
        let earlier = DirtyPages::take(vm.ram());
        let served = devices.serve_doorbell(port)?;
        let dirty = DirtyPages::take(vm.ram());
        let mut writes = Vec::new();
        for page in dirty.pages() {
            let now = read_page(vm.ram(), page);
            match page {
                p if p == ring => writes.extend(changes(page, &ring_before, &now)),
                p if p == shared_info => writes.extend(changes(page, &shared_before, &now)),
                // A granted frame: the device may have written any of it.
                _ => writes.push(MemoryWrite { gpa: page.raw(), data: to_hex(&now) }),
            }
        }
        earlier.put_back(vm.ram());
        dirty.put_back(vm.ram());
        let n = self.exits;
        self.append(&Event::Device(Box::new(DeviceRecord {
            n,
            port,
            rip,
            ring_hash: format!("{:016x}", fnv(&ring_before)),
            writes,
            lines: served.events.iter().map(RecordedLine::of).collect(),
            printed: to_hex(&served.printed),
            upcall: served.served.notify,
        })));
        if served.served.notify {
            if let Err(e) = raise_upcall(vm) {
                return Some(GuestStop::KvmFailure { what: KvmFailure::Ioctl { ioctl: "KVM_SIGNAL_MSI", source: e }, dump: None });
            }
        }
        None
    }

    /// The guest stopped: log the end and close the log.
    pub fn finish(mut self, stop: &GuestStop, ram: &GuestRam) -> SessionReport {
        let hash = memory_hash(ram);
        let exits = self.exits;
        self.append(&Event::End { exits, stop: super::stop_line(stop), memory_hash: format!("{hash:016x}") });
        let events = self.events;
        let problem = self.log.finish().err().map(|e| e.to_string());
        SessionReport { memory_hash: hash, exits, events, problem, note: None }
    }
}

/// One page of guest memory (zeros if it were outside RAM, which a ring page is not).
fn read_page(ram: &GuestRam, page: PseudoPhys) -> Vec<u8> {
    let mut bytes = vec![0u8; PAGE_SIZE as usize];
    let _ = ram.read(page, &mut bytes);
    bytes
}

/// The runs of bytes that differ between `before` and `after` (one page at `page`).
fn changes(page: PseudoPhys, before: &[u8], after: &[u8]) -> Vec<MemoryWrite> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for i in (0..after.len()).filter(|&i| before.get(i) != after.get(i)) {
        match runs.last_mut() {
            Some((_, end)) if i <= *end + MERGE_GAP => *end = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    runs.into_iter().map(|(start, end)| MemoryWrite { gpa: page.raw() + start as u64, data: to_hex(&after[start..end]) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_merged_runs() {
        let before = vec![0u8; 64];
        let mut after = before.clone();
        after[3] = 1;
        after[5] = 2;
        after[40] = 3;
        let w = changes(PseudoPhys::new(0x1000), &before, &after);
        assert_eq!(w, vec![
            MemoryWrite { gpa: 0x1003, data: "010002".into() },
            MemoryWrite { gpa: 0x1028, data: "03".into() },
        ]);
        assert!(changes(PseudoPhys::new(0), &before, &before).is_empty());
    }
}
