//! `hv demo switch`: two guests, one virtual switch: a ping from one to the other, and
//! what the switch did with the frames (flooded the first, learned, then forwarded).

use std::collections::BTreeMap;
use std::time::Instant;

use super::stage::Stage;
use super::DemoError;
use crate::devices::console::CapturedOutput;
use crate::vmm::group::{run_group, GroupNetwork, GuestSpec};
use crate::vmm::VmConfig;

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    stage.step("two guests on one switch");
    stage.say(
        "hv starts two guests in one process, each with its own vCPU thread and a network device: netfront in the \
         guest, netback on a thread of hv's. Both backends are ports of one virtual L2 switch hv runs, as Xen's guests \
         hang off dom0's bridge. g0 (10.0.0.2) answers pings; g1 (10.0.0.3) pings it three times:",
    );
    let specs = [("g0", vec!["net-serve", "5"]), ("g1", vec!["net-ping", "10.0.0.2", "3"])]
        .into_iter()
        .map(|(name, words)| GuestSpec { name: name.to_string(), config: VmConfig { seccomp: true, ..VmConfig::builtin_guest(&words) } })
        .collect();
    let consoles: BTreeMap<&str, CapturedOutput> = [("g0", CapturedOutput::default()), ("g1", CapturedOutput::default())].into_iter().collect();
    let sink = |name: &str| -> Box<dyn std::io::Write + Send> { Box::new(consoles.get(name).cloned().unwrap_or_default()) };
    let ends = run_group(specs, Instant::now(), sink, Some(GroupNetwork::default())).map_err(|e| DemoError::Measure(e.to_string()))?;
    let pings: Vec<String> = consoles["g1"].text().lines().filter(|l| l.starts_with("net-ping")).map(|l| format!("g1 | {l}")).collect();
    stage.evidence(&pings);
    for end in &ends.guests {
        if let Err(e) = &end.result {
            return Err(DemoError::Measure(format!("{}: {e}", end.name)));
        }
    }

    stage.step("what the switch did");
    stage.say(
        "The first frame g1 sent was an ARP broadcast (who has 10.0.0.2?): the switch does not know where anyone is \
         yet, so it floods it to every other port, and learns on the way that g1's MAC lives on g1's port. g0's reply \
         teaches it where g0 is; from then on each frame goes to its one port. A frame is never sent back to the port \
         it came from, and each port's queue is bounded: a full one drops and counts.",
    );
    let Some(switch) = ends.switch else { return Err(DemoError::Measure("the group had no switch".into())) };
    for port in switch.ports.iter().chain(&switch.departed) {
        let s = &port.stats;
        stage.figure(
            &format!("port {}", port.name),
            &format!("{} frames in ({} flooded), {} frames out, {} dropped", s.rx_frames, s.flooded, s.tx_frames, s.dropped_full + s.dropped_bad),
        );
    }
    stage.lesson(
        "A learning bridge: flood what it does not know, learn source addresses, forward what it knows, forget what it \
         has not seen for a while. Guests share the host's network through it without seeing each other's traffic.",
    );
    Ok(())
}
