//! Balloon reclaim: how fast a guest gives memory back, and how much hv's resident memory
//! really drops, against the host simply releasing the same amount of its own memory.
//!
//! The guest (`touch-mem` first, so that the memory it will give is resident) waits in
//! `balloon-wait`; hv sets a lower target through the vCPU's control, as `hv ctl …
//! balloon MIB` does, and the clock runs until the guest prints that its balloon is as
//! large as asked. In between: the guest picks frames and sends batches, the backend
//! checks each batch and `madvise(MADV_DONTNEED)`s the frames, answers, the guest sends
//! more (docs/balloon.md follows one inflate). hv's RSS is read from
//! `/proc/self/status` before and after: the guests run in this process.
//!
//! The baseline is the host's own floor for the same work: one `madvise(MADV_DONTNEED)`
//! of as many MiB of anonymous memory, made resident first, in this process. The ratio
//! says what the protocol (and, on this host, the emulated ring 0 that runs the guest's
//! half) costs on top of the release itself.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::guests;
use super::interrupt::Interrupts;
use crate::vmm::group::{guest_name, GuestSpec};
use crate::vmm::VmConfig;

/// Bytes in a MiB.
const MIB: usize = 1 << 20;
/// The page size `madvise` works in.
const PAGE: usize = 4096;

/// The guest's side of the figure.
#[derive(Clone, Debug, Serialize)]
pub struct BalloonFigures {
    /// Guest RAM, MiB.
    pub guest_mem_mib: u64,
    /// What the balloon took (the host's count, from the guest's status line), MiB.
    pub ballooned_mib: f64,
    /// From setting the target to the guest reporting its balloon full, seconds.
    pub seconds: f64,
    /// `ballooned_mib / seconds`.
    pub mib_per_second: f64,
    /// hv's resident memory before the target was set, MiB.
    pub rss_before_mib: f64,
    /// hv's resident memory after, MiB.
    pub rss_after_mib: f64,
}

/// The baseline: the host releasing the same amount itself.
#[derive(Clone, Debug, Serialize)]
pub struct MadviseFigures {
    /// Memory released, MiB.
    pub mib: u64,
    /// The `madvise` call alone, seconds.
    pub seconds: f64,
    /// `mib / seconds`.
    pub mib_per_second: f64,
    /// hv's resident memory with the memory touched, MiB.
    pub rss_before_mib: f64,
    /// And after the `madvise`, MiB.
    pub rss_after_mib: f64,
}

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct BalloonPlan {
    /// Guest RAM, MiB.
    pub mem_mib: u64,
    /// Memory the guest makes resident first, MiB.
    pub touch_mib: u64,
    /// The target set: RAM the guest keeps, MiB.
    pub target_mib: u64,
}

impl BalloonPlan {
    /// The balloon's size when the target is met.
    pub fn balloon_mib(&self) -> u64 {
        self.mem_mib - self.target_mib
    }
}

/// hv's resident memory in KiB, from `/proc/self/status` text.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    let value = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// This process's resident memory in MiB.
fn rss_mib() -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    vm_rss_kib(&status).map(|kib| kib as f64 / 1024.0).ok_or_else(|| "no VmRSS line in /proc/self/status".into())
}

/// The baseline: `mib` MiB of anonymous memory made resident, then released with one
/// `madvise(MADV_DONTNEED)`, timed.
pub fn madvise_baseline(mib: u64) -> Result<MadviseFigures, String> {
    let len = mib as usize * MIB;
    // SAFETY: a fresh anonymous private mapping; no existing memory is named.
    let base = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if base == libc::MAP_FAILED {
        return Err(format!("cannot map {mib} MiB: {}", std::io::Error::last_os_error()));
    }
    // No huge pages: the guest's RAM is released page by page too.
    // SAFETY: `base..base+len` is the mapping just made; madvise only changes its advice.
    unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
    for page in (0..len).step_by(PAGE) {
        // SAFETY: `page < len`, inside the writable mapping just made, which nothing else
        // uses; a volatile write so that every page is really made resident.
        unsafe { base.cast::<u8>().add(page).write_volatile(1) };
    }
    let result = (|| {
        let rss_before_mib = rss_mib()?;
        let started = Instant::now();
        // SAFETY: the range is the mapping made above, which holds nothing anyone needs.
        let released = unsafe { libc::madvise(base, len, libc::MADV_DONTNEED) };
        let seconds = started.elapsed().as_secs_f64();
        if released != 0 {
            return Err(format!("madvise(MADV_DONTNEED) failed: {}", std::io::Error::last_os_error()));
        }
        let rss_after_mib = rss_mib()?;
        Ok(MadviseFigures { mib, seconds, mib_per_second: mib as f64 / seconds, rss_before_mib, rss_after_mib })
    })();
    // SAFETY: unmaps exactly the mapping made above; no reference into it is left.
    unsafe { libc::munmap(base, len) };
    result
}

/// A `KiB` field `name N KiB` of the guest's `balloon: target …` line.
pub fn kib_field(line: &str, name: &str) -> Option<u64> {
    let at = line.find(&format!(" {name} "))?;
    let mut words = line[at + name.len() + 2..].split_whitespace();
    let number = words.next()?.parse().ok()?;
    words.next().filter(|unit| unit.trim_end_matches(',') == "KiB").map(|_| number)
}

/// The guest's side: a VM that makes `touch_mib` resident, then is asked to keep
/// `target_mib`; timed from the target to the guest's status line.
pub fn measure(plan: BalloonPlan, seccomp: bool, interrupts: &Interrupts) -> Result<BalloonFigures, String> {
    let touch = plan.touch_mib.to_string();
    let target = plan.target_mib.to_string();
    let mut config = VmConfig::builtin_guest(&["touch-mem", &touch, ";", "balloon-wait", &target, "120"]);
    config.mem_mib = plan.mem_mib;
    config.seccomp = seccomp;
    // A backstop only: the guest ends by itself once its balloon is full.
    config.timeout = Some(Duration::from_secs(300));
    let name = guest_name(0);
    let mut group = guests::start(vec![GuestSpec { name: name.clone(), config }], None)?;
    let touched = format!("touch-mem: {touch} MiB touched");
    group.wait_for_line(&name, |l| l == touched, Duration::from_secs(240), interrupts)?;
    let rss_before_mib = rss_mib()?;
    let pages = crate::devices::balloon::mib_to_pages(plan.target_mib);
    let control = group.control(&name).ok_or("the guest has no control")?;
    let started = Instant::now();
    let set = control.call(move |b| (b.devices.set_balloon_target(b.kvm, pages), crate::vcpu::control::AfterJob::Run)).map_err(|e| e.to_string())?;
    match set {
        Ok(true) => {}
        Ok(false) => return Err("the guest has no balloon device".into()),
        Err(e) => return Err(format!("cannot set the balloon target: {e}")),
    }
    let status = group.wait_for_line(&name, |l| l.starts_with("balloon: target"), Duration::from_secs(240), interrupts)?;
    let seconds = started.elapsed().as_secs_f64();
    let rss_after_mib = rss_mib()?;
    let _ = group.stop();
    let held_kib = kib_field(&status, "host").ok_or_else(|| format!("cannot read the balloon's size in {status:?}"))?;
    let ballooned_mib = held_kib as f64 / 1024.0;
    if held_kib != plan.balloon_mib() << 10 {
        return Err(format!("the balloon holds {ballooned_mib:.1} MiB, not the {} MiB asked for: {status}", plan.balloon_mib()));
    }
    Ok(BalloonFigures { guest_mem_mib: plan.mem_mib, ballooned_mib, seconds, mib_per_second: ballooned_mib / seconds, rss_before_mib, rss_after_mib })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_size_is_read_from_proc_status() {
        assert_eq!(vm_rss_kib("Name:\thv\nVmRSS:\t   58612 kB\nVmData: 1 kB\n"), Some(58612));
        assert_eq!(vm_rss_kib("VmRSS: lots kB\n"), None);
        assert_eq!(vm_rss_kib("VmHWM: 5 kB\n"), None);
        let now = std::fs::read_to_string("/proc/self/status").expect("procfs");
        assert!(vm_rss_kib(&now).is_some_and(|k| k > 0));
    }

    #[test]
    fn the_balloons_fields_are_read_from_its_status_line() {
        let line = "balloon: target 32768 KiB, floor 10548 KiB, current 32768 KiB, host 32768 KiB, taken back 0 KiB, not zero 0, lost 0";
        assert_eq!(kib_field(line, "host"), Some(32768));
        assert_eq!(kib_field(line, "current"), Some(32768));
        assert_eq!(kib_field(line, "taken back"), Some(0));
        assert_eq!(kib_field(line, "missing"), None);
        assert_eq!(kib_field("balloon: host many KiB", "host"), None);
        assert_eq!(kib_field("balloon: host 5 pages", "host"), None, "the unit must be KiB");
    }

    #[test]
    fn the_madvise_baseline_releases_what_it_touched() {
        let m = madvise_baseline(8).expect("8 MiB");
        assert!(m.seconds > 0.0 && m.mib_per_second > 0.0);
        assert!(m.rss_before_mib >= m.rss_after_mib + 4.0, "RSS {} -> {} MiB", m.rss_before_mib, m.rss_after_mib);
    }
}
