//! The JSON-lines trace: one object per event, for scripts and notebooks.
//!
//! Every object has `seq` and `event`; the other keys depend on the event. Addresses are
//! hex strings, because many JSON readers lose precision on integers above 2^53.

use serde_json::{json, Value};

use super::{text, TraceEvent};
use backend_drivers::events::DeviceEvent;
use pv_abi::grant::GrantAccess;
use crate::outcome::GuestStop;

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// Formats one event as a JSON object (without the newline).
pub fn format_event(seq: u64, event: &TraceEvent) -> Value {
    let mut v = match event {
        TraceEvent::Boot { entry, mem_bytes, mmu, segments, cmdline } => json!({
            "event": "boot", "entry": hex(entry.raw()), "mem_bytes": mem_bytes, "mmu": mmu,
            "segments": segments, "cmdline": cmdline,
        }),
        TraceEvent::Cut { limit } => json!({"event": "trace_cut", "limit": limit}),
        TraceEvent::Restore { rip, mem_bytes, mmu, taken_in } => json!({
            "event": "restore", "rip": hex(rip.raw()), "mem_bytes": mem_bytes, "mmu": mmu, "taken_in": taken_in,
        }),
        TraceEvent::Exit { reason, port, gpa } => json!({
            "event": "exit", "reason": reason.name(), "port": port, "gpa": gpa.map(|g| hex(g.raw())),
        }),
        TraceEvent::Hypercall { nr, name, args, result, text: console_text } => {
            let (value, error) = match result {
                Ok(v) => (Some(*v), None),
                Err(e) => (None, Some(e.name())),
            };
            json!({
                "event": "hypercall", "nr": nr, "name": name, "call": text::describe_call(*nr, args),
                "args": args.iter().map(|a| hex(*a)).collect::<Vec<_>>(),
                "result": value, "error": error, "text": console_text,
            })
        }
        TraceEvent::UnhandledPort { port, write, size } => json!({
            "event": "unhandled_port", "port": port, "write": write, "size": size,
        }),
        TraceEvent::Uart { register, write, value } => json!({"event": "uart", "register": register, "write": write, "value": value}),
        TraceEvent::Device(event) => device_json(event),
        TraceEvent::Replayed(line) => line.json.clone(),
        TraceEvent::PtWrite { machine, entry, value } => json!({
            "event": "pt_write", "machine": hex(machine.raw()), "entry": hex(entry.raw()), "value": hex(value.raw()),
        }),
        TraceEvent::Shadow(event) => json!({"event": "shadow", "what": text::describe_shadow(event)}),
        TraceEvent::TranslationFlush => json!({"event": "translation_flush"}),
        TraceEvent::ShadowAreaWrite { machine } => json!({"event": "shadow_area_write", "machine": hex(machine.raw())}),
        TraceEvent::Stop(stop) => stop_json(stop),
    };
    v["seq"] = json!(seq);
    v
}

/// A backend's event as a JSON object (without its sequence number).
pub fn device_json(event: &DeviceEvent) -> Value {
    match event {
        DeviceEvent::Doorbell { device, count } => json!({"event": "doorbell", "device": device, "count": count}),
        DeviceEvent::RequestPopped { device, id, summary } => {
            json!({"event": "ring_pop", "device": device, "id": id, "request": summary})
        }
        DeviceEvent::GrantCheck { device, gref, access, result } => json!({
            "event": "grant_check", "device": device, "gref": gref,
            "access": match access { GrantAccess::Read => "read", GrantAccess::Write => "write" },
            "gpa": result.as_ref().ok().map(|g| hex(g.raw())),
            "refused": result.as_ref().err().map(|p| p.name()),
        }),
        DeviceEvent::ResponsePushed { device, id, status } => {
            json!({"event": "ring_push", "device": device, "id": id, "status": status})
        }
        DeviceEvent::Published { device, notified } => json!({"event": "publish", "device": device, "upcall": notified}),
        DeviceEvent::RingError { device, what } => json!({"event": "ring_error", "device": device, "what": what.to_string()}),
        DeviceEvent::Refused { device, reason } => json!({"event": "refused", "device": device, "reason": reason}),
    }
}

fn stop_json(stop: &GuestStop) -> Value {
    let rip = |d: &Option<crate::kvm::RegisterDump>| d.as_ref().map(|d| hex(d.rip()));
    match stop {
        GuestStop::Shutdown { code } => json!({"event": "stop", "kind": "shutdown", "code": code}),
        GuestStop::Panicked { message } => json!({"event": "stop", "kind": "panic", "message": message}),
        GuestStop::Exception { vector, rip, error_code, cr2 } => json!({
            "event": "stop", "kind": "exception", "vector": vector,
            "name": pv_abi::exception::exception_mnemonic(*vector),
            "rip": hex(rip.raw()), "error_code": hex(*error_code), "cr2": hex(cr2.raw()),
        }),
        GuestStop::TripleFault { dump } => json!({"event": "stop", "kind": "triple_fault", "rip": rip(dump)}),
        GuestStop::Halted { dump } => json!({"event": "stop", "kind": "halted", "rip": rip(dump)}),
        GuestStop::NotRam { machine, write, len, dump } => json!({
            "event": "stop", "kind": "not_ram", "gpa": hex(machine.raw()), "write": write, "len": len, "rip": rip(dump),
        }),
        GuestStop::TimedOut { millis, dump } => json!({"event": "stop", "kind": "timed_out", "millis": millis, "rip": rip(dump)}),
        GuestStop::PageTableStoreRefused { what, dump } => {
            json!({"event": "stop", "kind": "page_table_store_refused", "what": what, "rip": rip(dump)})
        }
        GuestStop::Ended { why } => json!({"event": "stop", "kind": "ended", "why": why}),
        GuestStop::KvmFailure { what, dump } => {
            json!({"event": "stop", "kind": "kvm_failure", "what": what.to_string(), "rip": rip(dump)})
        }
    }
}
