//! `hv demo event-index`: the same block workload with and without notification
//! suppression: how many upcalls each request costs.

use backend_drivers::runner::NotifyPolicy;
use pv_abi::MmuMode;

use super::guest::DemoGuest;
use super::stage::Stage;
use super::DemoError;
use crate::bench::blk_bench::ScratchImage;

/// Runs the demo with `requests` block reads per configuration.
pub fn run(stage: &mut Stage, requests: u64) -> Result<(), DemoError> {
    let disk = ScratchImage::create(16 << 20).map_err(|e| DemoError::Measure(format!("the demo's disk image: {e}")))?;
    let count = requests.to_string();
    let upcalls_per_request = |always: bool| -> Result<(f64, f64), DemoError> {
        let mut args = vec!["blk-bench", "8", count.as_str()];
        if always {
            args.push("always");
        }
        let mut guest = DemoGuest::new(&args, MmuMode::Ept);
        guest.disk = Some((disk.path().to_path_buf(), true));
        guest.notify = if always { NotifyPolicy::Always } else { NotifyPolicy::EventIndex };
        let run = guest.run()?;
        let blk = run.stats.devices.iter().find(|(n, _)| *n == "blk").map(|(_, s)| s.clone()).unwrap_or_default();
        let n = blk.requests.max(1) as f64;
        Ok((blk.notifications as f64 / n, blk.doorbells as f64 / n))
    };

    stage.step("every response announced");
    stage.say(&format!(
        "The guest reads {requests} times 4 KiB with 32 requests in flight. First without suppression: the backend \
         raises an upcall after every batch of responses it publishes, whether or not the guest is waiting for one."
    ));
    let (upcalls, doorbells) = upcalls_per_request(true)?;
    stage.figure("upcalls per request", &format!("{upcalls:.3}"));
    stage.figure("doorbells per request", &format!("{doorbells:.3}"));

    stage.step("only when the other side asked");
    stage.say(
        "Now with event indices, as in Xen's rings: the guest writes into the ring where it wants to be woken \
         (rsp_event), the backend writes where it wants a doorbell (req_event), and each side signals only when \
         the other's index is crossed. A guest that is busy submitting does not need an interrupt per response.",
    );
    let (upcalls, doorbells) = upcalls_per_request(false)?;
    stage.figure("upcalls per request", &format!("{upcalls:.3}"));
    stage.figure("doorbells per request", &format!("{doorbells:.3}"));
    stage.lesson(
        "Notification suppression: a shared-memory protocol costs interrupts only when a side is asleep. The data \
         moved is the same; the events are what a split driver pays for.",
    );
    Ok(())
}
