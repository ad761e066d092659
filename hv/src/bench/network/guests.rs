//! The guests of the network figures: a group (`crate::vmm::group`) run in this process
//! on a thread of its own, its console lines arriving here one by one, and each guest
//! stopped through its [`VcpuControl`] when the figures no longer need it.
//!
//! The benchmark talks to the guests only through their commands and their network:
//! it starts `net-serve` and `net-ping`, reads what they print, and pings or fetches from
//! the host. So it keeps working when the guest's network stack changes inside.
//!
//! **Threads.** The group's thread (`hv-bench-group`) runs
//! [`run_group_with_controls`]: it starts one vCPU thread per guest and then confines
//! itself with the vCPU filter (as `hv run --guests` does), so it must be started by a
//! thread that is not confined and that is in the namespace whose TAP it attaches (it
//! opens the TAP by name). Everything else here runs on the benchmark's own, unconfined
//! threads.
//!
//! A guest's console output is hostile input: lines are cut at [`MAX_LINE_BYTES`], and
//! `net-ping`'s lines are parsed with every field checked ([`ping_round_trips`]).

use std::io::Write;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::interrupt::Interrupts;
use crate::outcome::GuestStop;
use crate::vcpu::control::{AfterJob, VcpuControl};
use crate::vmm::group::{run_group_with_controls, GroupEnds, GroupError, GroupNetwork, GuestSpec};

/// The longest console line kept whole; a guest that prints more without a newline has
/// it cut into lines of this size.
pub const MAX_LINE_BYTES: usize = 4096;
/// Console lines kept for error messages, per group (the last ones).
const KEPT_LINES: usize = 2000;
/// How often a wait looks at Ctrl-C.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// A guest's console, turned into whole lines sent to the benchmark.
struct LineWriter {
    guest: String,
    partial: Vec<u8>,
    lines: Sender<(String, String)>,
}

impl LineWriter {
    fn send_partial(&mut self) {
        let line = String::from_utf8_lossy(&self.partial).trim_end_matches('\r').to_string();
        self.partial.clear();
        // The benchmark may have stopped listening (it failed): the line goes nowhere.
        let _ = self.lines.send((self.guest.clone(), line));
    }
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for &b in bytes {
            if b == b'\n' {
                self.send_partial();
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE_BYTES {
                    self.send_partial();
                }
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A group of guests running on their threads.
pub struct RunningGroup {
    controls: Vec<(String, VcpuControl)>,
    lines: Receiver<(String, String)>,
    seen: Vec<(String, String)>,
    thread: Option<JoinHandle<Result<GroupEnds, GroupError>>>,
}

/// Starts `specs` as a group (on `network` if given) on a thread of its own, and returns
/// once every guest runs.
pub fn start(specs: Vec<GuestSpec>, network: Option<GroupNetwork>) -> Result<RunningGroup, String> {
    let (line_tx, line_rx) = crossbeam_channel::unbounded();
    let (control_tx, control_rx) = crossbeam_channel::bounded(1);
    let console = move |name: &str| -> Box<dyn Write + Send> { Box::new(LineWriter { guest: name.to_string(), partial: Vec::new(), lines: line_tx.clone() }) };
    let thread = std::thread::Builder::new()
        .name("hv-bench-group".into())
        .spawn(move || {
            run_group_with_controls(specs, Instant::now(), console, network, move |controls| {
                let _ = control_tx.send(controls);
            })
        })
        .map_err(|e| format!("cannot start a thread for the guests: {e}"))?;
    match control_rx.recv() {
        Ok(controls) => Ok(RunningGroup { controls, lines: line_rx, seen: Vec::new(), thread: Some(thread) }),
        // The group ended before its guests ran: its error says why.
        Err(_) => Err(match thread.join() {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(_)) => "the guests ended before they started".into(),
            Err(_) => "the guests' thread panicked".into(),
        }),
    }
}

impl RunningGroup {
    /// Waits until guest `guest` prints a line for which `wanted` holds, and returns it.
    /// Fails after `limit`, if the guests all end first, or on Ctrl-C.
    pub fn wait_for_line(&mut self, guest: &str, wanted: impl Fn(&str) -> bool, limit: Duration, interrupts: &Interrupts) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(signal) = interrupts.caught() {
                return Err(format!("interrupted by {}", super::interrupt::name(signal)));
            }
            match self.lines.recv_timeout(WAIT_SLICE) {
                Ok((name, line)) => {
                    let hit = name == guest && wanted(&line);
                    self.keep(name, line.clone());
                    if hit {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let ended = self.thread.as_ref().is_none_or(JoinHandle::is_finished);
                    if ended && self.lines.is_empty() {
                        return Err(format!("the guests ended first; they printed:\n{}", self.tail()));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Err(format!("the guests ended first; they printed:\n{}", self.tail())),
            }
            if Instant::now() >= deadline {
                return Err(format!("{guest} printed no such line within {} s; the guests printed:\n{}", limit.as_secs(), self.tail()));
            }
        }
    }

    /// Guest `guest`'s control, to reach it while it runs.
    pub fn control(&self, guest: &str) -> Option<VcpuControl> {
        self.controls.iter().find(|(name, _)| name == guest).map(|(_, control)| control.clone())
    }

    /// Every line guest `guest` printed so far (that was read: call after a wait).
    pub fn lines_of(&self, guest: &str) -> Vec<String> {
        self.seen.iter().filter(|(name, _)| name == guest).map(|(_, line)| line.clone()).collect()
    }

    fn keep(&mut self, name: String, line: String) {
        if self.seen.len() == KEPT_LINES {
            self.seen.remove(0);
        }
        self.seen.push((name, line));
    }

    /// The last lines the guests printed, for an error message.
    fn tail(&self) -> String {
        let start = self.seen.len().saturating_sub(12);
        self.seen[start..].iter().map(|(name, line)| format!("  {name} | {line}")).collect::<Vec<_>>().join("\n")
    }

    /// Stops every guest still running (at its next exit) and waits for the group to end.
    pub fn stop(mut self) -> Result<GroupEnds, String> {
        for (name, control) in &self.controls {
            let why = format!("{name} stopped by hv bench: its figures are taken");
            // A guest that already ended has no vCPU to take the job: nothing to stop.
            let _ = control.call(move |_| ((), AfterJob::Stop(GuestStop::Ended { why })));
        }
        self.join()
    }

    fn join(&mut self) -> Result<GroupEnds, String> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(ends))) => Ok(ends),
            Some(Ok(Err(e))) => Err(e.to_string()),
            Some(Err(_)) => Err("the guests' thread panicked".into()),
            None => Err("the guests were already stopped".into()),
        }
    }
}

impl Drop for RunningGroup {
    /// A group given up on (an error, Ctrl-C) is stopped, not left running.
    fn drop(&mut self) {
        if self.thread.is_some() {
            for (_, control) in &self.controls {
                let _ = control.call(|_| ((), AfterJob::Stop(GuestStop::Ended { why: "hv bench gave up on this guest".into() })));
            }
            let _ = self.join();
        }
    }
}

/// What `net-ping` printed: the round trip of each reply (nanoseconds) and the requests
/// sent, from lines `net-ping: reply from A.B.C.D: seq=S time=T us` and the summary
/// `net-ping: N sent, M received, …`. A reply line or summary that does not read as such
/// is an error quoting it; other lines are not `net-ping`'s and are skipped.
pub fn ping_round_trips(lines: &[String]) -> Result<(Vec<f64>, usize), String> {
    let mut round_trips = Vec::new();
    let mut sent = None;
    for line in lines {
        let garbled = || format!("cannot read the guest's net-ping line {line:?}");
        let Some(rest) = line.strip_prefix("net-ping: ") else { continue };
        if let Some(reply) = rest.strip_prefix("reply from ") {
            let time = reply.split_whitespace().find_map(|w| w.strip_prefix("time=")).ok_or_else(garbled)?;
            if !reply.ends_with(" us") {
                return Err(garbled());
            }
            let micros: u64 = time.parse().map_err(|_| garbled())?;
            round_trips.push(micros as f64 * 1e3);
        } else if let Some((count, _)) = rest.split_once(" sent, ") {
            sent = Some(count.parse::<usize>().map_err(|_| garbled())?);
        }
    }
    let sent = sent.ok_or("the guest's net-ping printed no summary")?;
    if round_trips.len() > sent {
        return Err(format!("the guest's net-ping printed {} replies for {sent} requests", round_trips.len()));
    }
    Ok((round_trips, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn net_pings_replies_and_summary_are_read() {
        let out = lines(
            "pv-guest: hello\n\
             net-ping: reply from 10.0.0.3: seq=0 time=15321 us\n\
             net-ping: no reply from 10.0.0.3: seq=1 (Timeout)\n\
             net-ping: reply from 10.0.0.3: seq=2 time=14002 us\n\
             net-ping: 3 sent, 2 received, 33% loss; round trip min 14002 us, p50 14002 us, p99 15321 us, max 15321 us",
        );
        let (rtts, sent) = ping_round_trips(&out).expect("readable");
        assert_eq!(rtts, vec![15_321_000.0, 14_002_000.0]);
        assert_eq!(sent, 3);
    }

    #[test]
    fn hostile_ping_lines_are_errors_that_quote_them() {
        let no_summary = lines("net-ping: reply from 10.0.0.3: seq=0 time=15 us");
        assert!(ping_round_trips(&no_summary).is_err());
        for bad in [
            "net-ping: reply from 10.0.0.3: seq=0 time=-4 us",
            "net-ping: reply from 10.0.0.3: seq=0 time=99999999999999999999999 us",
            "net-ping: reply from 10.0.0.3: seq=0 time=15 ms",
            "net-ping: reply from 10.0.0.3: seq=0",
            "net-ping: many sent, 1 received",
        ] {
            let out = lines(&format!("{bad}\nnet-ping: 1 sent, 1 received"));
            let e = ping_round_trips(&out).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
        let too_many = lines("net-ping: reply from 10.0.0.3: seq=0 time=1 us\nnet-ping: reply from 10.0.0.3: seq=0 time=1 us\nnet-ping: 1 sent, 1 received");
        assert!(ping_round_trips(&too_many).is_err(), "more replies than requests");
    }

    #[test]
    fn hostile_console_output_is_cut_into_bounded_lines() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut w = LineWriter { guest: "g0".into(), partial: Vec::new(), lines: tx };
        w.write_all(&vec![b'x'; MAX_LINE_BYTES * 2 + 10]).expect("write");
        w.write_all(b"\r\nshort\n").expect("write");
        let got: Vec<(String, String)> = rx.try_iter().collect();
        let lens: Vec<usize> = got.iter().map(|(_, l)| l.len()).collect();
        assert_eq!(lens, vec![MAX_LINE_BYTES, MAX_LINE_BYTES, 10, 5]);
        assert!(got.iter().all(|(g, _)| g == "g0"));
    }
}
