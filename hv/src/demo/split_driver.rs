//! `hv demo split-driver`: one block request from the guest's frontend through the ring,
//! the doorbell (no exit), the backend thread, the grant check, and the upcall.

use pv_abi::MmuMode;

use super::guest::{DemoGuest, DemoRun};
use super::stage::Stage;
use super::DemoError;
use crate::bench::blk_bench::ScratchImage;

/// Runs the demo.
pub fn run(stage: &mut Stage) -> Result<(), DemoError> {
    stage.step("a disk, and a guest that reads it");
    stage.say(
        "hv attaches a 1 MiB disk image. The guest's block frontend will read its first 8 sectors: it grants the \
         frames the data should land in, puts a request on the shared ring, and rings the backend's doorbell.",
    );
    let disk = ScratchImage::create(1 << 20).map_err(|e| DemoError::Measure(format!("the demo's disk image: {e}")))?;
    let mut guest = DemoGuest::new(&["blk-read-sum", "0", "8"], MmuMode::Ept);
    guest.disk = Some((disk.path().to_path_buf(), true));
    let run = guest.run()?;
    let result: Vec<&str> = run.console.lines().filter(|l| l.contains("blk-read-sum")).collect();
    stage.evidence(&result);

    stage.step("the request's path, from the trace");
    stage.say(
        "Every line below happened on the backend's own thread. The doorbell was an `out` to port 0x701, which KVM \
         turned into an eventfd signal (ioeventfd) without leaving the kernel: the backend woke, copied the request \
         out of the ring, checked the grant before touching the frame, read the disk, answered, and raised the upcall.",
    );
    let request: Vec<String> = one_request(&run.lines_of("blk")).iter().map(|l| DemoRun::strip_seq(l)).collect();
    stage.evidence(&request);

    stage.step("what the vCPU loop saw");
    stage.say("None of it went through hv's exit loop: the doorbell writes that reached it are counted, and there were none.");
    stage.figure("doorbell exits to the vCPU loop", &run.stats.vcpu.doorbell_exits.to_string());
    let blk = run.stats.devices.iter().find(|(n, _)| *n == "blk").map(|(_, s)| s.clone()).unwrap_or_default();
    stage.figure("requests served by the backend thread", &blk.requests.to_string());
    stage.figure("grant refusals", &blk.grant_refusals.to_string());
    stage.lesson(
        "A split driver: the guest's frontend and hv's backend share a ring and granted frames; a doorbell and an \
         upcall are all they need from the hypervisor, and neither is an exit.",
    );
    Ok(())
}

/// The lines of the first request: from the doorbell that woke the backend to its publish.
fn one_request(lines: &[String]) -> Vec<String> {
    let start = lines.iter().position(|l| l.contains("doorbell woke")).unwrap_or(0);
    let end = lines.iter().skip(start).position(|l| l.contains("publish responses")).map_or(lines.len(), |i| start + i + 1);
    lines[start..end].to_vec()
}
