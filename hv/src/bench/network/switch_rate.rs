//! Frames per second through the virtual switch alone, against the same frames through the
//! same kind of queue without the switch's decision.
//!
//! A switch port's frames end in a bounded [`PortQueue`] (copy in, eventfd, take out);
//! what the switch adds in front of it is its lock, the header checks, learning the
//! source and looking up the destination (`backend_drivers::switch::forward::decide`).
//! Both loops here move the same frames in the same bursts (64 frames, then one eventfd
//! read and the queue emptied, as a netback thread takes them) on one thread, so the
//! ratio is what learning and forwarding cost per frame, nothing else: no guest, no
//! thread switch, no KVM.
//!
//! The two are measured alternately, repetition by repetition, so that a host that gets
//! busier during the run slows both alike.

use std::time::Instant;

use backend_drivers::frame_port::FramePort;
use backend_drivers::switch::port::PortQueue;
use backend_drivers::switch::{Switch, SwitchConfig, SwitchPort};
use serde::Serialize;

use crate::bench::summary::Summary;

/// Frames per burst: what a netback takes per wake-up at most.
pub const BURST: usize = 64;
/// Queue size for both: a whole burst fits, nothing is dropped.
const QUEUE_FRAMES: usize = 4096;
const SENDER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const RECEIVER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];

/// One frame size's figures.
#[derive(Clone, Debug, Serialize)]
pub struct SwitchRate {
    /// Bytes per frame (Ethernet header included).
    pub frame_bytes: usize,
    /// Frames per repetition.
    pub frames_per_rep: usize,
    /// Time per frame through the switch (learned destination), ns.
    pub switch_ns_per_frame: Summary,
    /// Time per frame through a port queue alone, ns.
    pub queue_ns_per_frame: Summary,
}

/// A frame from [`SENDER`] to [`RECEIVER`] of `len` bytes.
fn frame(len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&RECEIVER);
    f[6..12].copy_from_slice(&SENDER);
    // An IPv4 EtherType: an ordinary frame, not one the switch treats specially.
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// A switch with two ports that have each learned the other's address, so every frame
/// measured is forwarded to one port (the common case), not flooded.
fn learned_pair() -> std::io::Result<(Switch, SwitchPort, SwitchPort)> {
    let switch = Switch::new(SwitchConfig { queue_frames: QUEUE_FRAMES, ..SwitchConfig::default() });
    let (a, b) = (switch.add_port("bench-a")?, switch.add_port("bench-b")?);
    let mut hello = frame(60);
    hello[..6].copy_from_slice(&SENDER);
    hello[6..12].copy_from_slice(&RECEIVER);
    b.transmit(&hello);
    a.transmit(&frame(60));
    while a.receive().is_some() || b.receive().is_some() {}
    let _ = (a.ready().read(), b.ready().read());
    Ok((switch, a, b))
}

/// Nanoseconds per frame to move `frames` of `f` from `a` to `b` through the switch.
fn through_switch(a: &SwitchPort, b: &SwitchPort, f: &[u8], frames: usize) -> f64 {
    let started = Instant::now();
    let mut moved = 0;
    for _ in 0..frames / BURST {
        for _ in 0..BURST {
            a.transmit(std::hint::black_box(f));
        }
        let _ = b.ready().read();
        while let Some(got) = b.receive() {
            moved += std::hint::black_box(got).len();
        }
    }
    std::hint::black_box(moved);
    started.elapsed().as_nanos() as f64 / frames as f64
}

/// Nanoseconds per frame to move `frames` of `f` through `queue` alone.
fn through_queue(queue: &PortQueue, f: &[u8], frames: usize) -> f64 {
    let started = Instant::now();
    let mut moved = 0;
    for _ in 0..frames / BURST {
        for _ in 0..BURST {
            queue.offer(std::hint::black_box(f));
        }
        let _ = queue.ready().read();
        while let Some(got) = queue.take() {
            moved += std::hint::black_box(got).len();
        }
    }
    std::hint::black_box(moved);
    started.elapsed().as_nanos() as f64 / frames as f64
}

/// Measures `frame_bytes`-byte frames, `reps` times `frames` (a multiple of [`BURST`])
/// each way; `interrupted` is asked between repetitions. Checks that every frame arrived
/// (the counters), so a fast figure cannot come from frames dropped.
pub fn measure(frame_bytes: usize, frames: usize, reps: usize, interrupted: &dyn Fn() -> bool) -> Result<SwitchRate, String> {
    let frames = (frames / BURST).max(1) * BURST;
    let f = frame(frame_bytes);
    let (_switch, a, b) = learned_pair().map_err(|e| format!("cannot make the switch's ports: {e}"))?;
    let queue = PortQueue::new("bench-queue".into(), QUEUE_FRAMES).map_err(|e| format!("cannot make a port queue: {e}"))?;
    let before = b.stats().tx_frames;
    let (mut switched, mut queued) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        if interrupted() {
            return Err("interrupted".into());
        }
        queued.push(through_queue(&queue, &f, frames));
        switched.push(through_switch(&a, &b, &f, frames));
    }
    let forwarded = b.stats().tx_frames - before;
    let (dropped, to_queue) = (b.stats().dropped_full + queue.stats().dropped_full, queue.stats().tx_frames);
    if forwarded != (frames * reps) as u64 || to_queue != (frames * reps) as u64 || dropped != 0 {
        return Err(format!("frames went missing: {forwarded} forwarded and {to_queue} queued of {} each, {dropped} dropped", frames * reps));
    }
    let summary = |v: &[f64]| Summary::of(v).ok_or_else(|| "no repetitions".to_string());
    Ok(SwitchRate { frame_bytes, frames_per_rep: frames, switch_ns_per_frame: summary(&switched)?, queue_ns_per_frame: summary(&queued)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_is_counted_through_both_paths() {
        let rate = measure(60, 1000, 2, &|| false).expect("measured");
        assert_eq!(rate.frames_per_rep, 960, "a whole number of bursts");
        assert!(rate.switch_ns_per_frame.median > 0.0 && rate.queue_ns_per_frame.median > 0.0);
        assert_eq!(rate.switch_ns_per_frame.count, 2);
    }

    #[test]
    fn an_interrupted_measurement_says_so() {
        assert!(measure(60, 64, 3, &|| true).is_err());
    }
}
