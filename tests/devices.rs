//! End-to-end: the split-driver devices with a real guest on KVM.

mod common;
use common::{hv, temp_path};

/// FNV-1a 64, as the guest's blk-read-sum computes it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// A disk image with a recognisable pattern, removed when dropped.
struct Image(std::path::PathBuf);
impl Image {
    fn new(sectors: u64) -> Self {
        let path = temp_path("disk.img");
        let data: Vec<u8> = (0..sectors * 512).map(|i| (i % 251) as u8 ^ (i / 512) as u8).collect();
        std::fs::write(&path, data).unwrap();
        Image(path)
    }
    fn arg(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.0.display())
    }
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}
impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn blk_read_sum_matches_the_hash_of_the_image_on_the_host() {
    require_kvm!();
    let image = Image::new(2048);
    for (lba, count) in [(0u64, 1u64), (3, 200), (100, 1000)] {
        let disk = image.arg("");
        let r = hv(&["run", "--disk", &disk, "--", "blk-read-sum", &lba.to_string(), &count.to_string()]);
        r.expect_code(0);
        let bytes = image.bytes();
        let expected = fnv1a(&bytes[(lba * 512) as usize..((lba + count) * 512) as usize]);
        r.expect(r.stdout.contains(&format!("blk-read-sum: {expected:016x}")), &format!("hash of {count} sectors at {lba}"));
    }
}

#[test]
fn blk_fill_writes_exactly_those_sectors_durably() {
    require_kvm!();
    let image = Image::new(512);
    let before = image.bytes();
    let disk = image.arg("");
    let r = hv(&["run", "--disk", &disk, "--", "blk-fill", "7", "300", "0x5a"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("blk-fill: ok"), "fill reported ok");
    let after = image.bytes();
    assert!(after[7 * 512..307 * 512].iter().all(|b| *b == 0x5a), "the filled sectors");
    assert_eq!(after[..7 * 512], before[..7 * 512], "sectors before are untouched");
    assert_eq!(after[307 * 512..], before[307 * 512..], "sectors after are untouched");
}

#[test]
fn hostile_writes_to_a_read_only_disk_are_refused() {
    require_kvm!();
    let image = Image::new(64);
    let before = image.bytes();
    let disk = image.arg(",ro");
    let r = hv(&["run", "--disk", &disk, "--", "blk-fill", "0", "8", "1"]);
    r.expect_code(1);
    r.expect(r.stdout.contains("EROFS"), "the guest sees the refusal");
    assert_eq!(image.bytes(), before);
}

#[test]
fn hostile_reads_past_the_end_of_the_disk_are_error_responses() {
    require_kvm!();
    let image = Image::new(64);
    let disk = image.arg("");
    let r = hv(&["run", "--disk", &disk, "--", "blk-read-sum", "60", "8"]);
    r.expect_code(1);
    r.expect(r.stdout.contains("EINVAL"), "the backend refused the range");
}

#[test]
fn a_missing_disk_image_is_named_before_the_guest_runs() {
    let r = hv(&["run", "--disk", "/nonexistent/disk.img"]);
    r.expect_code(1);
    r.expect(r.stderr.contains("cannot open the disk image /nonexistent/disk.img"), "names the file");
}

#[test]
fn console_output_goes_through_the_ring_in_order() {
    require_kvm!();
    // selftest prints ~20 lines: all through the console device once it is up.
    let r = hv(&["run", "--stats", "--", "selftest"]);
    r.expect_code(0);
    let lines: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("selftest: ")).collect();
    assert!(lines.len() >= 17);
    assert!(lines.last().unwrap().contains(" passed, 0 failed"), "the summary comes last");
    let console = device_stats(&r.stderr, "console");
    assert!(console.requests >= 17, "the lines went through the ring: {console:?}");
    assert_eq!(doorbell_exits(&r.stderr), Some(0), "doorbells never reached the vCPU loop");
}

#[test]
fn stats_count_doorbells_and_upcalls_for_the_block_device() {
    require_kvm!();
    let image = Image::new(256);
    let disk = image.arg("");
    let r = hv(&["run", "--stats", "--disk", &disk, "--", "blk-read-sum", "0", "256"]);
    r.expect_code(0);
    let blk = device_stats(&r.stderr, "blk");
    assert_eq!(blk.requests, 2, "256 sectors = two 64 KiB requests");
    assert!(blk.doorbells >= 1 && blk.upcalls >= 1, "{blk:?}");
    assert_eq!(doorbell_exits(&r.stderr), Some(0));
}

#[derive(Debug, Default)]
struct DeviceRows {
    doorbells: u64,
    requests: u64,
    upcalls: u64,
}

/// Reads one device's rows from the --stats table.
fn device_stats(stderr: &str, device: &str) -> DeviceRows {
    let mut rows = DeviceRows::default();
    let mut inside = false;
    for line in stderr.lines() {
        if line.trim() == format!("device {device}") {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("    ") {
                break;
            }
            let value: u64 = line.split_whitespace().last().unwrap().parse().unwrap();
            let t = line.trim_start();
            if t.starts_with("doorbells") {
                rows.doorbells = value;
            } else if t.starts_with("requests") {
                rows.requests = value;
            } else if t.starts_with("upcalls (") {
                rows.upcalls = value;
            }
        }
    }
    rows
}

fn doorbell_exits(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with("doorbell exits to the vCPU loop"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

#[test]
fn blk_bench_reports_every_configuration_with_ratios_and_notification_counts() {
    require_kvm!();
    // A few requests only: this checks the report's shape and sanity, never its times.
    let r = hv(&["blk-bench", "--requests", "40"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("host:"), "the host is described");
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("4 KiB") || l.trim_start().starts_with("64 KiB"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 4, "two sizes × two notification modes:\n{}", r.stdout);
    for row in &rows {
        // size(2) mode(2 or 1) then 6 numbers
        let numbers: Vec<f64> = row.iter().rev().take(6).map(|v| v.parse().unwrap()).collect();
        let (upcalls, doorbells, ratio, host, guest) = (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4]);
        assert!(guest > 0.0 && host > 0.0, "{row:?}");
        assert!((ratio - guest / host).abs() <= 0.0001 + ratio * 0.01, "ratio computed from the figures: {row:?}");
        assert!(doorbells > 0.0 && doorbells <= 1.0 && upcalls > 0.0 && upcalls <= 1.0, "{row:?}");
    }
    let always: Vec<f64> = rows.iter().filter(|r| r.contains(&"always")).map(|r| r[r.len() - 1].parse().unwrap()).collect();
    assert!(always.iter().all(|u| *u == 1.0), "always-notify means one upcall per request: {always:?}");
}

#[test]
fn a_ring3_tasks_read_lands_byte_exact_in_its_own_frames() {
    require_kvm!();
    // The task reads into its own pinned, granted frames (task::blk_io) and hashes them
    // in ring 3; odd starts and lengths, one request and many in flight.
    let image = Image::new(2048);
    let bytes = image.bytes();
    let disk = image.arg(",ro");
    for (lba, count) in [(0u64, 1u64), (3, 200), (100, 1900)] {
        let r = hv(&["run", "--disk", &disk, "--", "blk-user-read-sum", &lba.to_string(), &count.to_string()]);
        r.expect_code(0);
        let expected = fnv1a(&bytes[(lba * 512) as usize..((lba + count) * 512) as usize]);
        r.expect(r.stdout.contains(&format!("blk-user-read-sum: {expected:016x}")), &format!("hash of {count} sectors at {lba}"));
    }
    // Then the kernel's own path still works after a task held the device (its grants
    // were revoked at the task's exit, and the ring goes on where the task left it).
    let r = hv(&["run", "--disk", &disk, "--", "blk-user-read-sum", "0", "64", ";", "blk-read-sum", "8", "16"]);
    r.expect_code(0);
    r.expect(r.stdout.contains(&format!("blk-read-sum: {:016x}", fnv1a(&bytes[8 * 512..24 * 512]))), "kernel read after the task");
}

#[test]
fn pv_blkd_reads_straight_through_the_ring_and_gives_it_back() {
    require_kvm!();
    // pv-blkd (a separately linked ring-3 program) adopts the block ring from the
    // kernel, reads 4 KiB and 64 KiB requests with every buffer in flight, and hashes
    // the first 64 sectors; then the kernel takes the ring back and reads on it, and a
    // ring-3 task of the other kind (task::blk_io) does too.
    let image = Image::new(2048);
    let bytes = image.bytes();
    let disk = image.arg(",ro");
    let first_64 = fnv1a(&bytes[..64 * 512]);
    for sectors in ["8", "128"] {
        let r = hv(&["run", "--disk", &disk, "--", "bench", "blk-direct", "2", "100", sectors, ";", "blk-read-sum", "8", "16", ";", "blk-user-read-sum", "3", "200"]);
        r.expect_code(0);
        r.expect(r.stdout.contains("by pv-blkd, straight through the block ring from ring 3"), "pv-blkd ran");
        r.expect(r.stdout.lines().filter(|l| l.starts_with("bench-rep:") && l.contains("ops=100")).count() == 2, "two repetitions of 100 reads, each reported");
        r.expect(r.stdout.contains(&format!("blk-read-sum: {first_64:016x}")), "the task's reads land byte-exact in its buffers");
        r.expect(r.stdout.contains(&format!("blk-read-sum: {:016x}", fnv1a(&bytes[8 * 512..24 * 512]))), "the kernel reads on the ring it took back");
        r.expect(r.stdout.contains(&format!("blk-user-read-sum: {:016x}", fnv1a(&bytes[3 * 512..203 * 512]))), "and so does a blk_io task");
    }
}

#[test]
fn a_ring3_task_keeps_32_reads_of_64_kib_in_flight() {
    require_kvm!();
    // 32 buffers of 16 pages: 512 persistent grants, which the 4-frame grant table holds
    // (one frame held 15 such buffers). One batch of 32 reads, 2 MiB, hashed in ring 3.
    let image = Image::new(4096 + 8);
    let bytes = image.bytes();
    let disk = image.arg(",ro");
    let r = hv(&["run", "--disk", &disk, "--", "blk-user-read-sum", "8", "4096"]);
    r.expect_code(0);
    r.expect(r.stdout.contains(&format!("blk-user-read-sum: {:016x}", fnv1a(&bytes[8 * 512..(8 + 4096) * 512]))), "hash of 32 × 64 KiB");
    // The bench workload registers as many buffers as fit, and says how many.
    let r = hv(&["run", "--disk", &disk, "--", "bench", "blk", "1", "64", "128"]);
    r.expect_code(0);
    r.expect(r.stdout.contains("blk: 32 buffers of 64 KiB in flight"), "32 requests of 64 KiB in flight");
}

#[test]
fn hostile_ring3_block_calls_get_errors_never_a_grant_of_someone_elses_frame() {
    require_kvm!();
    // A kernel address, memory never mapped, the task's own code page, too many buffers,
    // the largest registration over memory mostly unmapped, a second registration, too many requests, a bad
    // buffer number, sector count or operation, a buffer twice, an unmap of the pinned
    // buffer, completions aimed at kernel memory: each gets its error, the kernel runs on.
    // The task then exits with reads in flight; the exit drains them before its frames
    // are freed, and the kernel's own reads go on working.
    let image = Image::new(64);
    let r = hv(&["run", "--disk", &image.arg(",ro"), "--", "blk-user-hostile", ";", "blk-read-sum", "0", "8"]);
    r.expect_code(0);
    r.expect(!r.stdout.contains("WRONG"), "every bad call refused with the right error");
    r.expect(r.stdout.contains("blk-user-hostile: 16: a valid read: 1 (ok)"), "the valid read after them works");
    r.expect(r.stdout.contains("blk-user-hostile: all refused as they must be"), "summary");
    r.expect(r.stdout.contains(&format!("blk-read-sum: {:016x}", fnv1a(&image.bytes()[..8 * 512]))), "the kernel's path still works");
}
