//! `hv trace explain FILE`: a text trace with a short explanation the first time each
//! kind of event appears, so a student can read the trace of their own lab run.
//!
//! A trace line is terse on purpose (`00054 pt-write   trapped store machine=… entry=…`):
//! it is meant to be compared and grepped. What it *means* (why a store to a page table
//! became an exit, why a flush followed) is in the course notes and in hv's docs; this
//! module puts the two side by side. Each line of the trace is classified into a
//! [`Kind`]; the first line of each kind is followed by its explanation, indented:
//!
//! ```text
//! 00054 pt-write   trapped store machine=0x101c08800 entry=0x3c08800 value=0x3c01003
//!     ↳ A store to one of the guest's page tables, trapped. In shadow mode hv maps the …
//! ```
//!
//! The file may come from anywhere (a student's submission), so it is read as hostile
//! text: every line is sanitised before it reaches the terminal (the console's
//! `sanitize_text`: no escape sequences), and a line is read at most
//! [`MAX_LINE_BYTES`] long, so a file without newlines cannot make hv buffer it whole.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use backend_drivers::console::sanitize_text;

/// Longest trace line read whole; the rest of a longer line is skipped and the line is
/// marked cut. hv's own lines are far shorter (a console write's text is at most a few KiB).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Where an explanation is wrapped.
const WRAP_COLUMN: usize = 92;

/// What a trace line is, for explaining: each has one explanation, which is also what
/// each variant means ([`explanation`]).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Boot,
    Restore,
    HypercallExit,
    DoorbellExit,
    OtherPortExit,
    PortInExit,
    MmioWriteExit,
    MmioReadExit,
    HltExit,
    ShutdownExit,
    OtherExit,
    Nop,
    ConsoleWrite,
    Shutdown,
    ReportPanic,
    ReportException,
    MmuUpdate,
    SetCr3,
    ReadClock,
    UnknownHypercall,
    RefusedHypercall,
    UnhandledPort,
    UartRegister,
    PtWrite,
    ShadowRootBuilt,
    ShadowRootEvicted,
    ShadowRootDropped,
    ShadowSync,
    ShadowRefused,
    ShadowWriteProtected,
    ShadowAllDropped,
    ShadowRecycled,
    ShadowAreaWrite,
    Flush,
    Doorbell,
    RequestPopped,
    GrantOk,
    GrantRefused,
    ResponsePushed,
    PublishedNotified,
    PublishedSuppressed,
    RingError,
    DeviceRefused,
    Stop,
    Cut,
    Unknown,
}

/// Which kind `line` (one line of a text trace) is.
pub fn classify(line: &str) -> Kind {
    // "SEQ KIND DETAIL": the sequence number, the kind column, then the rest.
    let mut words = line.split_whitespace();
    let (Some(_seq), Some(kind)) = (words.next(), words.next()) else { return Kind::Unknown };
    let detail = line.splitn(3, char::is_whitespace).nth(2).unwrap_or("").trim_start();
    let first = detail.split_whitespace().next().unwrap_or("");
    match kind {
        "boot" => Kind::Boot,
        "restore" => Kind::Restore,
        "trace-cut" => Kind::Cut,
        "stop" => Kind::Stop,
        "flush" => Kind::Flush,
        "pt-write" => Kind::PtWrite,
        "port" => Kind::UnhandledPort,
        "uart" => Kind::UartRegister,
        "exit" => classify_exit(first, detail),
        "hypercall" => classify_hypercall(detail),
        "shadow" => classify_shadow(detail),
        // Device lines carry the device's name in the kind column.
        _ => classify_device(detail),
    }
}

fn classify_exit(reason: &str, detail: &str) -> Kind {
    let port = detail.split_whitespace().find_map(|w| w.strip_prefix("port=0x")).and_then(|p| u16::from_str_radix(p, 16).ok());
    match reason {
        "io-out" => match port {
            Some(p) if p == pv_abi::hypercall::HYPERCALL_PORT => Kind::HypercallExit,
            Some(p) if (pv_abi::event_channel::DOORBELL_PORT_BASE..pv_abi::event_channel::doorbell_port(pv_abi::event_channel::MAX_CHANNELS as u32)).contains(&p) => Kind::DoorbellExit,
            _ => Kind::OtherPortExit,
        },
        "io-in" => Kind::PortInExit,
        "mmio-write" => Kind::MmioWriteExit,
        "mmio-read" => Kind::MmioReadExit,
        "hlt" => Kind::HltExit,
        "shutdown" => Kind::ShutdownExit,
        _ => Kind::OtherExit,
    }
}

fn classify_hypercall(detail: &str) -> Kind {
    // A refused call ends "= -EINVAL" (an errno name); its kind is the refusal, which is
    // the more instructive thing to explain the first time.
    if detail.split(" = ").nth(1).is_some_and(|r| r.starts_with('-')) && !detail.starts_with("unknown_") {
        return Kind::RefusedHypercall;
    }
    let name = detail.split('(').next().unwrap_or("");
    match name {
        "nop" => Kind::Nop,
        "console_write" => Kind::ConsoleWrite,
        "shutdown" => Kind::Shutdown,
        "report_panic" => Kind::ReportPanic,
        "report_exception" => Kind::ReportException,
        "mmu_update" => Kind::MmuUpdate,
        "set_cr3" => Kind::SetCr3,
        "read_clock" => Kind::ReadClock,
        _ => Kind::UnknownHypercall,
    }
}

fn classify_shadow(detail: &str) -> Kind {
    if detail.starts_with("root built") {
        Kind::ShadowRootBuilt
    } else if detail.starts_with("root evicted") {
        Kind::ShadowRootEvicted
    } else if detail.starts_with("root dropped") {
        Kind::ShadowRootDropped
    } else if detail.starts_with("sync") {
        Kind::ShadowSync
    } else if detail.starts_with("REFUSED store to the shadow area") {
        Kind::ShadowAreaWrite
    } else if detail.starts_with("REFUSED") {
        Kind::ShadowRefused
    } else if detail.starts_with("write-protected") {
        Kind::ShadowWriteProtected
    } else if detail.starts_with("shadow area full") {
        Kind::ShadowAllDropped
    } else if detail.starts_with("fresh shadow frames used up") {
        Kind::ShadowRecycled
    } else {
        Kind::Unknown
    }
}

fn classify_device(detail: &str) -> Kind {
    if detail.starts_with("doorbell woke") {
        Kind::Doorbell
    } else if detail.starts_with("pop request") {
        Kind::RequestPopped
    } else if detail.starts_with("grant check") {
        if detail.contains("REFUSED") {
            Kind::GrantRefused
        } else {
            Kind::GrantOk
        }
    } else if detail.starts_with("push response") {
        Kind::ResponsePushed
    } else if detail.starts_with("publish responses: notify") {
        Kind::PublishedNotified
    } else if detail.starts_with("publish responses") {
        Kind::PublishedSuppressed
    } else if detail.starts_with("RING ERROR") {
        Kind::RingError
    } else if detail.starts_with("REFUSED") {
        Kind::DeviceRefused
    } else {
        Kind::Unknown
    }
}

/// What a line of `kind` means, in a few sentences, with the concept it shows.
pub fn explanation(kind: Kind) -> &'static str {
    match kind {
        Kind::Boot => "hv has built the VM (KVM VM, RAM, devices), loaded the kernel's ELF segments and its first page tables, and is about to enter the guest at its entry point. Everything after this line is the guest running and hv reacting to it.",
        Kind::Restore => "The guest was not booted but continued from a saved state (a snapshot, or a live migration's stream): registers, memory and device rings as they were, possibly in the other memory mode.",
        Kind::HypercallExit => "A VM exit: the guest ran `out` to port 0x600, hv's hypercall port. Port I/O is privileged, so under hardware virtualization the CPU stops the guest and KVM returns from KVM_RUN to hv with the port and the value (trap-and-emulate). hv reads the registers and serves the hypercall on the next line. A paravirtual guest makes such traps on purpose: it asks instead of being caught.",
        Kind::DoorbellExit => "A VM exit for a device doorbell (port 0x700 + channel). Normally KVM turns a doorbell write into an eventfd signal (ioeventfd) and resumes the guest without any exit reaching hv; in a recorded run (`--record`) the doorbell exits so that hv serves the ring on the vCPU thread, at a point the log can name.",
        Kind::OtherPortExit => "A VM exit for an `out` to a port hv has no device on. hv drops the write (the `port` line after it), as a PC with nothing at that port would.",
        Kind::PortInExit => "A VM exit for an `in` from a port: hv emulates the read (all ones where no device is, as on a PC).",
        Kind::MmioWriteExit => "A VM exit for a store to a guest-physical address with no writable RAM behind it. In shadow mode this is how the guest's page-table writes trap: hv keeps the page-table pool read-only in KVM, so every store to a page table stops the guest; hv applies the store and brings its shadow tables up to date (the pt-write and shadow lines after it).",
        Kind::MmioReadExit => "A VM exit for a read from a guest-physical address with no RAM behind it: hv emulates it or stops the guest for touching memory it was not given.",
        Kind::HltExit => "The guest ran `hlt` with nothing to wake it: hv stops it (a halted guest never exits to hv by itself otherwise).",
        Kind::ShutdownExit => "The virtual CPU shut down: a triple fault (an exception while delivering an exception while delivering one). On real hardware the machine resets; hv stops the guest with a register dump.",
        Kind::OtherExit => "A VM exit of a kind hv does not serve; it stops the guest and says why.",
        Kind::Nop => "The null hypercall: does nothing and returns 0. Its round trip is the price of one guest → hv → guest transition (`hv bench`'s hypercall row).",
        Kind::ConsoleWrite => "console_write: the guest hands hv a buffer (address and length in registers) to print; hv checks the range is the guest's RAM, copies it out, sanitises it and prints it. Early boot and panics use it; afterwards the console split driver does the printing without exits.",
        Kind::Shutdown => "shutdown: the guest asks to stop, with its exit code (hv's exit code) and the address of its counters page.",
        Kind::ReportPanic => "report_panic: the guest kernel panicked and sends hv its message to print (sanitised) before it stops.",
        Kind::ReportException => "report_exception: the guest took a CPU exception it cannot handle and tells hv the vector, instruction pointer, error code and CR2, so hv can say what happened.",
        Kind::MmuUpdate => "mmu_update: a batch of page-table entries the guest wants written, in one exit instead of one trap per store (Xen's hypercall of the same name). hv checks the whole batch before applying any entry; in shadow mode it updates the shadows once for all of them. Batching is what makes paravirtual page-table updates cheap.",
        Kind::SetCr3 => "set_cr3: in shadow mode the guest may not load CR3 itself (the CPU must run on hv's shadow tables, not the guest's), so it asks hv, which finds or builds the shadow of that root and loads it instead.",
        Kind::ReadClock => "read_clock: the guest reads its clock through hv instead of `rdtsc`, so that a recorded run can log the value and a replay feed the same one back (record and replay, ReVirt).",
        Kind::UnknownHypercall => "A hypercall number hv does not know. It returns ENOSYS to the guest, which runs on: a bad argument is never fatal.",
        Kind::RefusedHypercall => "A hypercall hv refused: an argument failed its check (an address outside the guest's RAM, a length too long, a page-table entry that would map memory the guest was not given). The guest gets a negative errno in rax and runs on; hv's memory and the other guests are untouched. This is isolation: check everything a guest hands over.",
        Kind::UnhandledPort => "Port I/O to a port nothing handles: a write is dropped, a read sees all ones. Only a 4-byte `out dx, eax` to 0x600 is a hypercall; any other size or a `rep outs` there is just a dropped write.",
        Kind::UartRegister => "The guest's serial driver touched a register of the emulated 16550 UART at COM1 (0x3f8). No chip is there: the `in` or `out` exited to hv, which played the chip's part (THR: a character to print; LSR: \"ready to send\"). Full device emulation costs an exit per register access, at least two per character; a paravirtual console sends whole lines through a ring with no exit at all.",
        Kind::PtWrite => "The store that trapped, as hv applied it: where it landed (machine address, in shadow mode hv's placement of the guest's frame), which entry, and the value. The guest's page table now holds the value; the shadow line that follows says what hv did to its copy.",
        Kind::ShadowRootBuilt => "hv built shadow page tables for a guest root: a copy of the guest's tables in which every guest frame is replaced by the machine frame hv placed it at, and page tables are mapped so that stores to them trap. The CPU walks this copy, never the guest's own tables.",
        Kind::ShadowRootEvicted => "hv keeps shadows of a few roots so that switching address spaces is cheap; the cache was full, so the least recently used root's shadow was dropped (it is rebuilt if that root is loaded again).",
        Kind::ShadowRootDropped => "A root that is not loaded was written to: rather than keeping its shadow in step, hv drops it and rebuilds it when the root is next loaded (cheaper when address spaces are torn down).",
        Kind::ShadowSync => "hv brought its shadow tables in step with one guest entry: the shadows of the table written get the translated entry (`shadows=N`: how many shadow tables were updated). This is the work shadow paging adds to every page-table write, and what EPT/NPT hardware makes unnecessary.",
        Kind::ShadowRefused => "hv refused a guest page-table entry: it would map memory outside the guest, use reserved bits or a 1 GiB page, or point at a table outside the pool. The shadow gets a not-present entry instead, so the guest cannot reach what it was not given; the guest's own table still holds the value.",
        Kind::ShadowWriteProtected => "The entry maps a page-table frame: hv mirrors it read-only in the shadow, so that a store through it traps and the shadows stay in step.",
        Kind::ShadowAllDropped => "The shadow area is full: hv dropped every shadow and rebuilds only the loaded root's. A guest with more page tables than the area holds gets E2BIG on set_cr3 or mmu_update instead of growing hv without bound.",
        Kind::ShadowRecycled => "hv had handed out every fresh frame of the shadow area and now reuses freed ones; because the CPU (or KVM's software MMU) may still cache translations through them, KVM is told to forget the area first.",
        Kind::ShadowAreaWrite => "A store to hv's own shadow area, which no honest guest can reach: refused and dropped. Only page tables loaded behind hv's back could produce it.",
        Kind::Flush => "hv changed a page-table entry the processor may have cached (a TLB, or KVM's own software MMU on a host without EPT/NPT), so it made KVM forget its cached translations (by removing and re-adding a memory slot). Flushes are a large part of what shadow paging costs.",
        Kind::Doorbell => "A device's backend thread woke: the guest wrote the device's doorbell port, which KVM turned into an eventfd signal without any exit reaching hv's vCPU loop (the guest kept running). `count` is how many doorbells arrived since the backend last looked.",
        Kind::RequestPopped => "The backend took a request off the shared ring, a copy of the slot the guest filled, then checked it field by field before acting on it (the guest could change the slot at any time).",
        Kind::GrantOk => "The backend checked a grant: the guest said, in its grant table, that this device may touch this frame (read, or write). Only then does the backend copy data to or from it; it never reaches a frame the guest did not grant.",
        Kind::GrantRefused => "A grant check failed: the reference was not granted, revoked, read-only for a write, or outside the guest's RAM. The request is answered with an error; no data moved.",
        Kind::ResponsePushed => "The backend wrote its response (status, bytes moved) into the ring for the guest's frontend to collect.",
        Kind::PublishedNotified => "The backend published its responses and the guest had asked to be told (its event index was reached), so it set the channel's pending flag and signalled the irqfd: KVM injects the upcall interrupt into the guest.",
        Kind::PublishedSuppressed => "The backend published its responses without an upcall: the guest had not asked for one yet (event-index notification suppression, as in Xen's rings), so no interrupt was needed. This is how split drivers avoid one interrupt per request.",
        Kind::RingError => "The ring's indices were impossible (the guest claims more requests than the ring holds): the backend refuses to read it and says so, rate-limited, until the next doorbell.",
        Kind::DeviceRefused => "A backend refused what the guest asked: for the balloon, a frame given twice, outside its RAM, in the page-table pool or the kernel, or taken back without having been given. The request is answered with an error and nothing is done; the guest's memory and the host's are as before.",
        Kind::Stop => "How the guest stopped: a clean shutdown with its exit code, or what hv caught (a panic, an exception, a triple fault, a timeout, memory it was not given).",
        Kind::Cut => "The trace reached its `--trace-max` limit and recorded nothing more, so a guest in an exit storm cannot fill the disk.",
        Kind::Unknown => "A line hv's trace explainer does not recognise (a newer trace format, or a file that is not an hv text trace).",
    }
}

/// What [`explain`] saw.
#[derive(Debug, Default)]
pub struct ExplainSummary {
    /// Lines read.
    pub lines: u64,
    /// Lines of each kind.
    pub kinds: BTreeMap<Kind, u64>,
    /// Lines longer than [`MAX_LINE_BYTES`], cut.
    pub cut_lines: u64,
}

/// Copies the trace from `input` to `out`, each line sanitised, with an explanation after
/// the first line of each kind. With `first_only`, only those first lines are printed (a
/// glossary of the trace). Ends with a count of each kind.
pub fn explain(mut input: impl BufRead, out: &mut dyn Write, first_only: bool) -> std::io::Result<ExplainSummary> {
    let mut summary = ExplainSummary::default();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let (read, cut) = read_bounded_line(&mut input, &mut raw)?;
        if read == 0 {
            break;
        }
        summary.lines += 1;
        summary.cut_lines += u64::from(cut);
        let text = String::from_utf8_lossy(&raw);
        let line = sanitize_text(text.trim_end_matches(['\n', '\r']));
        let kind = classify(&line);
        let count = summary.kinds.entry(kind).or_insert(0);
        *count += 1;
        let first = *count == 1;
        if first || !first_only {
            writeln!(out, "{line}{}", if cut { " …(line cut)" } else { "" })?;
        }
        if first {
            for (i, wrapped) in wrap(explanation(kind), WRAP_COLUMN - 6).iter().enumerate() {
                writeln!(out, "    {} {wrapped}", if i == 0 { '↳' } else { ' ' })?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "{} lines, {} kinds of event:", summary.lines, summary.kinds.len())?;
    for (kind, n) in &summary.kinds {
        writeln!(out, "  {n:>8}  {kind:?}")?;
    }
    Ok(summary)
}

/// Reads one line (through its newline) into `line`, at most [`MAX_LINE_BYTES`] of it;
/// the rest of a longer line is read and thrown away. Returns the bytes consumed and
/// whether the line was cut.
fn read_bounded_line(input: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut cut = false;
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok((consumed, cut));
        }
        let (take, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(newline) => (newline + 1, true),
            None => (buffer.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(&buffer[..take.min(room)]);
        cut |= take > room;
        input.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, cut));
        }
    }
}

/// `text` in lines of at most `width` characters, broken at spaces (a longer word gets a
/// line of its own). The one word-wrap of hv's text for people: `hv top` and `hv demo`
/// use it too.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests;
