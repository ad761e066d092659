//! The text trace: one line per event, identical for identical runs.
//!
//! ```text
//! 00002 exit       io-out port=0x600
//! 00003 hypercall  console_write(gpa=0x20a2c0, len=77) = 77 "pv-guest: hello! …\n"
//! ```
//!
//! Only values the guest and hv's own logic determine appear: sequence numbers, guest
//! addresses, arguments. Never wall-clock times or host addresses, which change from run
//! to run.

use super::{ExitReason, TraceEvent};
use backend_drivers::events::DeviceEvent;
use pv_abi::grant::GrantAccess;
use crate::outcome::GuestStop;
use pv_abi::addr::MachineAddr;
use pv_abi::exception::exception_mnemonic;
use pv_abi::Hypercall;

/// Formats one event as a line (without the newline).
pub fn format_event(seq: u64, event: &TraceEvent) -> String {
    let (kind, detail) = describe(event);
    format!("{seq:05} {kind:<10} {detail}")
}

fn describe(event: &TraceEvent) -> (&str, String) {
    match event {
        TraceEvent::Boot { entry, mem_bytes, mmu, segments, cmdline } => (
            "boot",
            format!("entry={:#x} mem={}MiB mmu={mmu} segments={segments} cmdline={cmdline:?}", entry.raw(), mem_bytes >> 20),
        ),
        TraceEvent::Cut { limit } => ("trace-cut", format!("the trace reached --trace-max {limit} events; nothing more is recorded")),
        TraceEvent::Restore { rip, mem_bytes, mmu, taken_in } => {
            ("restore", format!("rip={:#x} mem={}MiB mmu={mmu} taken-in={taken_in}", rip.raw(), mem_bytes >> 20))
        }
        TraceEvent::Exit { reason, port, gpa } => ("exit", describe_exit(*reason, *port, *gpa)),
        TraceEvent::Hypercall { nr, args, result, text, .. } => {
            let mut line = format!("{} = {}", describe_call(*nr, args), describe_result(result));
            if let Some(text) = text {
                line.push_str(&format!(" {text:?}"));
            }
            ("hypercall", line)
        }
        TraceEvent::UnhandledPort { port, write, size } => (
            "port",
            format!("{} port={port:#x} size={size} (no device: {})", if *write { "out" } else { "in" }, if *write { "dropped" } else { "reads all ones" }),
        ),
        TraceEvent::Uart { register, write, value } => {
            // A character written to the transmit register is shown as itself.
            let printable = *write && *register == "THR" && (value.is_ascii_graphic() || *value == b' ');
            let shown = if printable { format!(" {:?}", char::from(*value)) } else { String::new() };
            ("uart", format!("{} {register}={value:#04x}{shown}", if *write { "out" } else { "in" }))
        }
        TraceEvent::Device(event) => describe_device(event),
        TraceEvent::Replayed(line) => (line.kind.as_str(), line.detail.clone()),
        TraceEvent::PtWrite { machine, entry, value } => {
            ("pt-write", format!("trapped store machine={:#x} entry={:#x} value={:#x}", machine.raw(), entry.raw(), value.raw()))
        }
        TraceEvent::Shadow(event) => ("shadow", describe_shadow(event)),
        TraceEvent::TranslationFlush => ("flush", "KVM told to forget cached translations (memslot re-registered)".to_string()),
        TraceEvent::ShadowAreaWrite { machine } => ("shadow", format!("REFUSED store to the shadow area machine={:#x}", machine.raw())),
        TraceEvent::Stop(stop) => ("stop", describe_stop(stop)),
    }
}

/// What the shadow-paging engine did.
pub fn describe_shadow(event: &shadow_mmu::ShadowEvent) -> String {
    use shadow_mmu::ShadowEvent as E;
    match event {
        E::RootBuilt { guest, shadow } => format!("root built guest={:#x} shadow={:#x}", guest.raw(), shadow.raw()),
        E::RootEvicted { guest } => format!("root evicted (cache full) guest={:#x}", guest.raw()),
        E::RootInvalidated { guest } => format!("root dropped (written while not loaded) guest={:#x}", guest.raw()),
        E::Refused { value, level, why } => format!("REFUSED entry={:#x} level={level}: {}", value.raw(), why.name()),
        E::WriteProtected { value } => format!("write-protected entry={:#x} (maps a page table)", value.raw()),
        E::Synced { entry, value, shadows } => format!("sync entry={:#x} value={:#x} shadows={shadows}", entry.raw(), value.raw()),
        E::AllDropped => "shadow area full: every shadow dropped".to_string(),
        E::AreaRecycled => "fresh shadow frames used up: freed frames recycled (KVM told to forget the area)".to_string(),
    }
}

/// A backend's event: the device name is the kind column.
pub fn describe_device(event: &DeviceEvent) -> (&'static str, String) {
    match event {
        DeviceEvent::Doorbell { device, count } => (device, format!("doorbell woke the backend (count={count})")),
        DeviceEvent::RequestPopped { device, id, summary } => (device, format!("pop request id={id}: {summary}")),
        DeviceEvent::GrantCheck { device, gref, access, result } => {
            let access = match access {
                GrantAccess::Read => "read",
                GrantAccess::Write => "write",
            };
            let result = match result {
                Ok(gpa) => format!("ok gpa={gpa:#x}"),
                Err(problem) => format!("REFUSED {}", problem.name()),
            };
            (device, format!("grant check gref={gref} {access}: {result}"))
        }
        DeviceEvent::ResponsePushed { device, id, status } => (device, format!("push response id={id}: {status}")),
        DeviceEvent::Published { device, notified } => {
            (device, format!("publish responses: {}", if *notified { "notify guest (upcall)" } else { "guest not waiting, no upcall" }))
        }
        DeviceEvent::RingError { device, what } => (device, format!("RING ERROR {what}")),
        DeviceEvent::Refused { device, reason } => (device, format!("REFUSED {reason}")),
    }
}

fn describe_exit(reason: ExitReason, port: Option<u16>, gpa: Option<MachineAddr>) -> String {
    let mut s = reason.name().to_string();
    if let Some(port) = port {
        s.push_str(&format!(" port={port:#x}"));
    }
    if let Some(gpa) = gpa {
        s.push_str(&format!(" gpa={:#x}", gpa.raw()));
    }
    s
}

/// `name(arg=value, …)` with each hypercall's own argument names.
pub fn describe_call(nr: u64, a: &[u64; 4]) -> String {
    match Hypercall::from_number(nr) {
        Some(Hypercall::Nop) => "nop()".into(),
        Some(Hypercall::ConsoleWrite) => format!("console_write(gpa={:#x}, len={})", a[0], a[1]),
        Some(Hypercall::Shutdown) => format!("shutdown(code={}, counters={:#x})", a[0], a[1]),
        Some(Hypercall::ReportPanic) => format!("report_panic(gpa={:#x}, len={})", a[0], a[1]),
        Some(Hypercall::ReportException) => {
            format!("report_exception(vector={}, rip={:#x}, error={:#x}, cr2={:#x})", a[0], a[1], a[2], a[3])
        }
        Some(Hypercall::MmuUpdate) => format!("mmu_update(gpa={:#x}, count={})", a[0], a[1]),
        Some(Hypercall::SetCr3) => format!("set_cr3(root={:#x})", a[0]),
        Some(Hypercall::ReadClock) => "read_clock()".into(),
        None => format!("unknown_{nr:#x}({:#x}, {:#x}, {:#x}, {:#x})", a[0], a[1], a[2], a[3]),
    }
}

fn describe_result(result: &Result<u64, pv_abi::HypercallError>) -> String {
    match result {
        Ok(v) => v.to_string(),
        Err(e) => format!("-{}", e.name()),
    }
}

fn describe_stop(stop: &GuestStop) -> String {
    let rip = |d: &Option<crate::kvm::RegisterDump>| d.as_ref().map_or("?".to_string(), |d| format!("{:#x}", d.rip()));
    match stop {
        GuestStop::Shutdown { code } => format!("shutdown code={code}"),
        GuestStop::Panicked { message } => format!("panic {message:?}"),
        GuestStop::Exception { vector, rip, error_code, cr2 } => {
            format!("exception {} rip={:#x} error={error_code:#x} cr2={:#x}", exception_mnemonic(*vector), rip.raw(), cr2.raw())
        }
        GuestStop::TripleFault { dump } => format!("triple-fault rip={}", rip(dump)),
        GuestStop::Halted { dump } => format!("halted rip={}", rip(dump)),
        GuestStop::NotRam { machine, write, len, dump } => {
            format!("not-ram {} gpa={:#x} len={len} rip={}", if *write { "write" } else { "read" }, machine.raw(), rip(dump))
        }
        GuestStop::TimedOut { millis, dump } => format!("timed-out after={millis}ms rip={}", rip(dump)),
        GuestStop::PageTableStoreRefused { what, dump } => format!("page-table-store-refused {what:?} rip={}", rip(dump)),
        GuestStop::Ended { why } => format!("ended {why:?}"),
        GuestStop::KvmFailure { what, dump } => format!("kvm-failure {:?} rip={}", what.to_string(), rip(dump)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pv_abi::HypercallError;

    #[test]
    fn a_hypercall_line_names_its_arguments_and_result() {
        let ev = TraceEvent::Hypercall {
            nr: 1,
            name: "console_write",
            args: [0x2000, 3, 0, 0],
            result: Ok(3),
            text: Some("hi\n".into()),
        };
        assert_eq!(format_event(7, &ev), r#"00007 hypercall  console_write(gpa=0x2000, len=3) = 3 "hi\n""#);
    }

    #[test]
    fn a_refused_hypercall_shows_the_error_name() {
        let ev = TraceEvent::Hypercall { nr: 0x7777, name: "unknown", args: [1, 2, 3, 4], result: Err(HypercallError::NoSys), text: None };
        assert_eq!(format_event(1, &ev), "00001 hypercall  unknown_0x7777(0x1, 0x2, 0x3, 0x4) = -ENOSYS");
    }
}
