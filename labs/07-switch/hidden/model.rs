//! Lab 7, hidden: a long random run of frames against a model of a learning bridge.

mod rig;

use std::collections::HashMap;
use std::time::Duration;

use backend_drivers::switch::forward::Decision;
use backend_drivers::switch::mac_table::PortId;
use rig::*;

/// 802.1D in a few lines, with an unbounded table: what `decide` must do while the
/// real table has room.
#[derive(Default)]
struct Model {
    seen: HashMap<[u8; 6], (u64, Duration)>,
}

impl Model {
    fn decide(&mut self, from: u64, frame: &[u8], now: Duration) -> Decision {
        if !(14..=1514).contains(&frame.len()) {
            return Decision::Bad;
        }
        let dst: [u8; 6] = frame[..6].try_into().unwrap();
        let src: [u8; 6] = frame[6..12].try_into().unwrap();
        if src[0] & 1 != 0 || src == [0; 6] {
            return Decision::Bad;
        }
        self.seen.insert(src, (from, now));
        if dst[0] & 1 != 0 {
            return Decision::Flood;
        }
        match self.lookup(dst, now) {
            Some(p) if p == from => Decision::Filter,
            Some(p) => Decision::To(PortId(p)),
            None => Decision::Flood,
        }
    }

    fn lookup(&mut self, mac: [u8; 6], now: Duration) -> Option<u64> {
        let (port, seen) = *self.seen.get(&mac)?;
        if now.saturating_sub(seen) >= AGEING {
            self.seen.remove(&mac);
            return None;
        }
        Some(port)
    }
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_long_random_run_matches_a_model_of_a_learning_bridge() {
    let mut t = roomy();
    let mut model = Model::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // Twelve hosts on six ports; hosts sometimes move; time moves in whole seconds, so
    // entries hit the ageing time exactly as well as pass it.
    let mut port_of: Vec<u64> = (0..12).map(|h| 1 + h % 6).collect();
    let mut now = Duration::ZERO;
    let mut history: Vec<String> = Vec::new();
    for step in 0..20_000 {
        match rng.below(10) {
            0 => now += Duration::from_secs(rng.below(200)),
            1 => {
                let h = rng.below(12) as usize;
                port_of[h] = 1 + rng.below(6);
                continue;
            }
            _ => {}
        }
        let h = rng.below(12) as usize;
        let src = host(h as u16 + 1);
        let dst = match rng.below(12) {
            0 => BROADCAST,
            1 => MULTICAST,
            2 => host(500), // never sends: always unknown
            3 => [0x01, 0, 0, 0, 0, 1],
            _ => host(rng.below(12) as u16 + 1),
        };
        let (src, len) = match rng.below(40) {
            0 => ([0; 6], 60),
            1 => (MULTICAST6, 60),
            2 => (src, 13),
            3 => (src, 1515),
            4 => (src, 14),
            5 => (src, 1514),
            _ => (src, 60 + rng.below(100) as usize),
        };
        let f = frame(dst, src, len);
        let from = port_of[h];
        let want = model.decide(from, &f, now);
        let got = send(&mut t, from, &f, now);
        history.push(format!("step {step} at {:?}: {len} bytes {src:02x?} -> {dst:02x?} on port {from}: model {want:?}", now));
        if got != want {
            let from_line = history.len().saturating_sub(8);
            panic!(
                "lab 7: a random run diverges from a learning bridge (802.1D: check, learn the source, flood groups and unknowns, filter the sender's own port, forget entries the ageing time old) at step {step}: decide returned {got:?}, the model {want:?}\nthe last frames:\n{}",
                history[from_line..].join("\n")
            );
        }
        if step % 7 == 0 {
            let probe = host(rng.below(12) as u16 + 1);
            let (want, got) = (model.lookup(probe, now).map(PortId), t.lookup(mac(probe), now));
            assert_eq!(got, want, "lab 7: at step {step} ({now:?}) MacTable::lookup({probe:02x?}) disagrees with the model of a learning bridge");
        }
    }
}
