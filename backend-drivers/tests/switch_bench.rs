//! How fast the switch forwards, as ratios to copying the frame alone (a benchmark,
//! not a test: it asserts nothing about speed and is ignored by default).
//!
//! ```sh
//! cargo test --release -p backend-drivers --test switch_bench -- --ignored --nocapture
//! ```
//!
//! Two receivers: one that takes frames as a busy backend does, in bursts (the port
//! signals its eventfd once per burst), and one that waits for every frame alone, as in
//! a ping-pong (one eventfd write and one read per frame: the system calls dominate).

use std::time::{Duration, Instant};

use backend_drivers::frame_port::FramePort;
use backend_drivers::switch::{Switch, SwitchConfig, SwitchPort};

const FRAMES: u32 = 300_000;
const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// A switch whose two ports have each learned the other's host.
fn two_ports() -> (Switch, SwitchPort, SwitchPort) {
    let sw = Switch::new(SwitchConfig { queue_frames: 4096, ..SwitchConfig::default() });
    let (a, b) = (sw.add_port("a").expect("eventfd"), sw.add_port("b").expect("eventfd"));
    a.transmit(&frame(B, A, 60));
    b.transmit(&frame(A, B, 60));
    while a.receive().is_some() || b.receive().is_some() {}
    let _ = (a.ready().read(), b.ready().read());
    (sw, a, b)
}

fn per_frame(elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / f64::from(FRAMES)
}

#[test]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
fn switch_forwarding_rate() {
    for len in [60, 1514] {
        let f = frame(B, A, len);
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..FRAMES {
            bytes += std::hint::black_box(&f).to_vec().len();
        }
        let copy = per_frame(start.elapsed());

        let (_sw, a, b) = two_ports();
        let start = Instant::now();
        for _ in 0..FRAMES / 64 {
            for _ in 0..64 {
                a.transmit(&f);
            }
            let _ = b.ready().read();
            while let Some(got) = b.receive() {
                bytes += got.len();
            }
        }
        let burst = per_frame(start.elapsed());

        let (_sw, a, b) = two_ports();
        let start = Instant::now();
        for _ in 0..FRAMES {
            a.transmit(&f);
            let _ = b.ready().read();
            while let Some(got) = b.receive() {
                bytes += got.len();
            }
        }
        let single = per_frame(start.elapsed());
        println!(
            "switch, {len}-byte frames: in bursts of 64 {burst:.0} ns/frame ({:.2} M frames/s, {:.1}x the copy alone); one at a time {single:.0} ns/frame ({:.2} M frames/s, {:.1}x); the copy alone {copy:.0} ns ({bytes} bytes moved)",
            1e3 / burst,
            burst / copy,
            1e3 / single,
            single / copy
        );
    }
}
