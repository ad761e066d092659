//! End-to-end: hv's command line and its answers to bad input (kernel files, options),
//! and the properties of the trace file.

mod common;
use common::{hv, temp_path, tiny_kernel};

#[test]
fn help_explains_each_run_option() {
    let r = hv(&["run", "--help"]);
    r.expect_code(0);
    for option in ["--kernel", "--mem", "--trace", "--trace-format", "--stats", "GUEST ARGS", "selftest", "triple-fault"] {
        r.expect(r.stdout.contains(option), &format!("--help mentions {option}"));
    }
}

#[test]
fn hostile_kernel_a_readme_is_refused_as_not_elf() {
    // Needs no KVM: hv checks the kernel file before it opens /dev/kvm.
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let r = hv(&["run", "--kernel", readme]);
    r.expect_code(1);
    r.expect(r.stderr.contains("not an ELF file"), "names the problem");
    r.expect(r.stderr.lines().count() == 1, "one line");
}

#[test]
fn hostile_kernel_truncated_is_refused_with_a_clear_message() {
    let path = temp_path("truncated.elf");
    let elf = hv::boot::guest_image::PV_GUEST_ELF;
    std::fs::write(&path, &elf[..elf.len() / 8]).unwrap();
    let r = hv(&["run", "--kernel", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    r.expect_code(1);
    r.expect(r.stderr.contains("the file is truncated"), "names the truncation");
}

#[test]
fn a_missing_kernel_file_is_named() {
    let r = hv(&["run", "--kernel", "/nonexistent/kernel.elf"]);
    r.expect_code(1);
    r.expect(r.stderr.contains("cannot read the kernel /nonexistent/kernel.elf"), "names the file");
}

/// Makes a FIFO (named pipe) at `path`.
fn mkfifo(path: &std::path::Path) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path, which lives until after the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

#[test]
fn hostile_kernel_paths_that_are_not_regular_files_are_refused_before_opening() {
    // A FIFO used to hang hv forever (the open waits for a writer); /dev/zero and
    // /dev/urandom were read until memory ran out (their size is 0); a directory failed
    // late. Each is now refused by what it is, in one line, without KVM.
    let fifo = temp_path("kernel.fifo");
    mkfifo(&fifo);
    let dir = std::env::temp_dir();
    let cases = [
        (fifo.to_str().unwrap(), "is a FIFO (named pipe)"),
        ("/dev/zero", "is a character device"),
        ("/dev/urandom", "is a character device"),
        (dir.to_str().unwrap(), "is a directory"),
    ];
    for (path, kind) in cases {
        let r = hv(&["run", "--kernel", path]);
        r.expect_code(1);
        r.expect(r.stderr.contains(kind) && r.stderr.contains("--kernel must name a regular file"), &format!("{path} refused as what it is"));
        r.expect(r.stderr.lines().count() == 1, "one line");
    }
    std::fs::remove_file(&fifo).ok();
}

#[test]
fn hostile_kernel_larger_than_any_guest_is_refused_without_reading_it() {
    // A sparse file one byte over the limit: refused by its size, before any read.
    let path = temp_path("huge.elf");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(hv::boot::elf::MAX_KERNEL_FILE_BYTES + 1).unwrap();
    let r = hv(&["run", "--kernel", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    r.expect_code(1);
    r.expect(r.stderr.contains("hv reads kernels of at most"), "names the limit");
}

#[test]
fn hostile_disk_paths_that_are_neither_files_nor_block_devices_are_refused() {
    // `--disk FIFO,ro` used to hang; `--disk DIRECTORY,ro` was taken as an 8-sector disk
    // whose every read failed.
    let fifo = temp_path("disk.fifo");
    mkfifo(&fifo);
    let dir = std::env::temp_dir();
    for (path, kind) in [(fifo.to_str().unwrap(), "is a FIFO (named pipe)"), (dir.to_str().unwrap(), "is a directory")] {
        for suffix in [",ro", ""] {
            let r = hv(&["run", "--disk", &format!("{path}{suffix}")]);
            r.expect_code(1);
            r.expect(r.stderr.contains(kind) && r.stderr.contains("must be a regular file or a block device"), &format!("{path}{suffix} refused"));
        }
    }
    std::fs::remove_file(&fifo).ok();
}

#[test]
fn a_bad_memory_size_is_refused() {
    for mem in ["3", "7", "3074", "65536", "0"] {
        let r = hv(&["run", "--mem", mem]);
        r.expect_code(1);
        r.expect(r.stderr.contains("guest RAM must be between 8 and 3072 MiB"), mem);
    }
}

#[test]
fn an_explicit_kernel_path_boots_like_the_built_in_one() {
    require_kvm!();
    let path = temp_path("pv-guest.elf");
    std::fs::write(&path, hv::boot::guest_image::PV_GUEST_ELF).unwrap();
    let r = hv(&["run", "--kernel", path.to_str().unwrap(), "--mem", "16"]);
    std::fs::remove_file(&path).ok();
    r.expect_code(0);
    r.expect(r.stdout.contains("16 MiB of RAM"), "the guest sees the memory size");
}

#[test]
fn the_text_trace_is_identical_for_identical_runs() {
    require_kvm!();
    let (a, b) = (temp_path("a.trace"), temp_path("b.trace"));
    for p in [&a, &b] {
        hv(&["run", "--trace", p.to_str().unwrap(), "--", "selftest"]).expect_code(0);
    }
    let (ta, tb) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::remove_file(&a).ok();
    std::fs::remove_file(&b).ok();
    assert!(!ta.is_empty());
    assert!(ta == tb, "two identical runs gave different traces");
}

#[test]
fn hostile_exit_storms_cannot_grow_the_trace_past_trace_max() {
    require_kvm!();
    for (format, cut) in [("text", "trace-cut"), ("jsonl", "\"trace_cut\"")] {
        let path = temp_path("cut.trace");
        let run = hv(&["run", "--trace", path.to_str().unwrap(), "--trace-format", format, "--trace-max", "25", "--", "selftest"]);
        run.expect_code(0);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 26, "25 events and the cut line ({format})");
        assert!(lines[25].contains(cut) && lines[25].contains("25"), "the last line says the trace was cut: {}", lines[25]);
    }
}

#[test]
fn the_jsonl_trace_is_one_json_object_per_event() {
    require_kvm!();
    let path = temp_path("t.jsonl");
    hv(&["run", "--trace", path.to_str().unwrap(), "--trace-format", "jsonl"]).expect_code(0);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("valid JSON")).collect();
    assert_eq!(events[0]["event"], "boot");
    assert_eq!(events[0]["seq"], 1);
    assert!(events.iter().any(|e| e["event"] == "ring_pop" && e["device"] == "console"));
    assert!(events.iter().any(|e| e["event"] == "hypercall" && e["name"] == "shutdown"));
    let last = events.last().unwrap();
    assert_eq!((last["event"].as_str(), last["kind"].as_str(), last["code"].as_u64()), (Some("stop"), Some("shutdown"), Some(0)));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "sequence numbers count up from 1");
    }
}

#[test]
fn an_unwritable_trace_path_is_an_error_before_the_guest_runs() {
    let r = hv(&["run", "--trace", "/nonexistent/dir/t.trace"]);
    r.expect_code(1);
    r.expect(r.stderr.contains("cannot write the trace file /nonexistent/dir/t.trace"), "names the path");
    r.expect(r.stdout.is_empty(), "the guest did not run");
}

#[test]
fn hostile_kernel_halting_with_interrupts_off_is_stopped_by_the_timeout() {
    require_kvm!();
    let path = temp_path("hang.elf");
    std::fs::write(&path, tiny_kernel(&[0xfa, 0xf4, 0xeb, 0xfd])).unwrap(); // cli; hlt; jmp back
    let r = hv(&["run", "--kernel", path.to_str().unwrap(), "--timeout", "0.5"]);
    std::fs::remove_file(&path).ok();
    r.expect_code(124);
    r.expect(r.stderr.contains("still running after 0.5 s (--timeout)"), "names the timeout");
    r.expect(r.stderr.contains("rip=0xffffffff80200002"), "the dump shows where it halted");
}

#[test]
fn hostile_kernel_spinning_forever_is_stopped_by_the_timeout() {
    require_kvm!();
    let path = temp_path("spin.elf");
    std::fs::write(&path, tiny_kernel(&[0xeb, 0xfe])).unwrap(); // jmp $
    let r = hv(&["run", "--kernel", path.to_str().unwrap(), "--timeout", "0.5"]);
    std::fs::remove_file(&path).ok();
    r.expect_code(124);
    r.expect(r.stderr.contains("rip=0xffffffff80200000"), "the dump shows the loop");
}

#[test]
fn a_bad_timeout_is_a_usage_error() {
    for bad in ["0", "-1", "soon", "NaN"] {
        let r = hv(&["run", &format!("--timeout={bad}")]);
        r.expect_code(2);
        r.expect(r.stderr.contains("is not a number of seconds greater than 0"), bad);
    }
}

#[test]
fn hv_trace_explain_annotates_a_shadow_mode_trace() {
    if !common::kvm_available() {
        return;
    }
    let trace = temp_path("explain-shadow.txt");
    let r = hv(&["run", "--mmu", "shadow", "--trace", trace.to_str().unwrap(), "--", "count-user", "2", "1"]);
    r.expect_code(0);
    let r = hv(&["trace", "explain", trace.to_str().unwrap()]);
    r.expect_code(0);
    let lines = std::fs::read_to_string(&trace).unwrap().lines().count();
    r.expect(r.stdout.contains(&format!("{lines} lines")), "every line is read and counted");
    let out: Vec<&str> = r.stdout.lines().collect();
    for explained in ["exit mmio-write", "pt-write trapped", "shadow sync", "hypercall set_cr3"] {
        // The first trace line (not explanation) whose kind column and detail start so.
        let words: Vec<&str> = explained.split(' ').collect();
        let at = out
            .iter()
            .position(|l| {
                let mut w = l.split_whitespace().skip(1);
                w.next() == Some(words[0]) && w.next().is_some_and(|d| d.starts_with(words[1]))
            })
            .unwrap_or_else(|| panic!("the trace has a {explained} line"));
        r.expect(out[at + 1].starts_with("    ↳ "), &format!("the first {explained} line is explained"));
    }
    r.expect(r.stdout.contains("page-table writes trap"), "the trapped write is explained as shadow paging's trap");
    let glossary = hv(&["trace", "explain", "--first-only", trace.to_str().unwrap()]);
    glossary.expect_code(0);
    glossary.expect(glossary.stdout.lines().count() < r.stdout.lines().count(), "--first-only prints fewer lines");
    std::fs::remove_file(&trace).ok();
}

#[test]
fn hostile_hv_trace_explain_refuses_what_is_not_a_trace_file() {
    let r = hv(&["trace", "explain", "/dev/zero"]);
    r.expect_code(1);
    r.expect(r.stderr.contains("/dev/zero is a character device"), "a device is refused by what it is");
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let r = hv(&["trace", "explain", readme]);
    r.expect_code(1);
    r.expect(r.stderr.contains("does not look like an hv text trace"), "a file that is not a trace is named as such");
}
