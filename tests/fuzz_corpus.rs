//! The fuzz corpus as a regression suite on stable Rust.
//!
//! Every fuzz target in `fuzz/fuzz_targets/` (cargo-fuzz, nightly only) is one line that
//! calls a `fuzz_entry` function in the crate it tests. This file calls the same
//! functions on every file of each target's corpus, `fuzz/corpus/<target>/`: the seeds
//! (a few valid inputs and a few hostile ones, written by `write_seed_corpus` below) and
//! every input that once crashed a target (saved there as `crash-*` when it was fixed).
//! So stable `cargo test` replays each past finding, and `cargo test hostile` includes
//! them. docs/fuzzing.md explains the whole loop.
//!
//! To rewrite the seeds after changing an input format:
//! `cargo test -p hv --test fuzz_corpus -- --ignored write_seed_corpus`.

#[path = "fuzz_corpus/seeds.rs"]
mod seeds;

use std::path::{Path, PathBuf};

/// A target: its name (= its file in `fuzz/fuzz_targets/` and its corpus folder) and
/// its body.
type Target = (&'static str, fn(&[u8]));

/// Every target.
const TARGETS: &[Target] = &[
    ("elf", hv::fuzz_entry::elf),
    ("hypercall_ept", hv::fuzz_entry::hypercall_ept),
    ("hypercall_shadow", hv::fuzz_entry::hypercall_shadow),
    ("snapshot_file", hv::fuzz_entry::snapshot_file),
    ("control_request", hv::fuzz_entry::control_request),
    ("block_request", backend_drivers::fuzz_entry::block_request),
    ("console_request", backend_drivers::fuzz_entry::console_request),
    ("net_request", backend_drivers::fuzz_entry::net_request),
    ("balloon_request", backend_drivers::fuzz_entry::balloon_request),
    ("ring_back", backend_drivers::fuzz_entry::ring_back),
    ("shadow_mmu", shadow_mmu::fuzz_entry::shadow_sequence),
    ("migration_stream", hv::fuzz_entry::migration_stream),
    ("record_log", hv::fuzz_entry::record_log),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("hv/ has a parent").join("fuzz")
}

fn body(target: &str) -> fn(&[u8]) {
    TARGETS.iter().find(|(name, _)| *name == target).map(|(_, f)| *f).expect("a target listed in TARGETS")
}

/// Runs every file of `target`'s corpus through its body; a panic names the file.
fn replay(target: &str) {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no input", dir.display());
    let run = body(target);
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("fuzz target {target} panics on {}", file.display());
        }
    }
}

#[test]
fn every_fuzz_target_is_replayed_here_and_has_a_corpus() {
    let mut on_disk: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| e.expect("a directory entry").path())
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let mut here: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    here.sort();
    assert_eq!(on_disk, here, "fuzz/fuzz_targets/ and this file's TARGETS differ");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        let source = std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"))).expect("the target's file");
        assert!(source.contains("fuzz_entry::"), "fuzz target {name} does not call a fuzz_entry function");
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] for {name}");
        assert!(fuzz_dir().join("corpus").join(name).is_dir(), "no corpus for {name}");
    }
}

/// The seeds on disk are the ones the generator writes (so a change to a format
/// cannot leave stale seeds behind unnoticed).
#[test]
fn the_committed_seeds_are_the_generated_ones() {
    for (target, name, bytes) in seeds::all() {
        let path = fuzz_dir().join("corpus").join(target).join(format!("seed-{name}"));
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run write_seed_corpus)", path.display()));
        assert!(on_disk == bytes, "{} differs from its generator (run write_seed_corpus)", path.display());
    }
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*: run by hand after changing an input format"]
fn write_seed_corpus() {
    for (target, name, bytes) in seeds::all() {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("creating the corpus folder");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("writing a seed");
    }
}

#[test]
fn hostile_fuzz_corpus_elf() {
    replay("elf");
}

#[test]
fn hostile_fuzz_corpus_hypercall_ept() {
    replay("hypercall_ept");
}

#[test]
fn hostile_fuzz_corpus_hypercall_shadow() {
    replay("hypercall_shadow");
}

#[test]
fn hostile_fuzz_corpus_snapshot_file() {
    replay("snapshot_file");
}

#[test]
fn hostile_fuzz_corpus_control_request() {
    replay("control_request");
}

#[test]
fn hostile_fuzz_corpus_block_request() {
    replay("block_request");
}

#[test]
fn hostile_fuzz_corpus_console_request() {
    replay("console_request");
}

#[test]
fn hostile_fuzz_corpus_net_request() {
    replay("net_request");
}

#[test]
fn hostile_fuzz_corpus_balloon_request() {
    replay("balloon_request");
}

#[test]
fn hostile_fuzz_corpus_ring_back() {
    replay("ring_back");
}

#[test]
fn hostile_fuzz_corpus_shadow_mmu() {
    replay("shadow_mmu");
}

#[test]
fn hostile_fuzz_corpus_migration_stream() {
    replay("migration_stream");
}

#[test]
fn hostile_fuzz_corpus_record_log() {
    replay("record_log");
}

/// The valid seeds really are valid, so the fuzzer starts past the first checks.
#[test]
fn the_valid_seeds_pass_every_check() {
    let corpus = fuzz_dir().join("corpus");
    let limit = hv::boot::kernel_memory_limit(8 << 20);
    for seed in ["seed-text-and-bss", "seed-one-segment"] {
        let bytes = std::fs::read(corpus.join("elf").join(seed)).expect("the seed");
        assert!(hv::boot::elf::parse_kernel(&bytes, limit).is_ok(), "elf/{seed} is refused");
    }
    for seed in ["seed-zero-ram", "seed-one-stored-page"] {
        let bytes = std::fs::read(corpus.join("snapshot_file").join(seed)).expect("the seed");
        // Mode byte 3: checksums already right, the memory image extended with a hole.
        let file = &bytes[1..];
        let end = u64::from_le_bytes(file[32..40].try_into().unwrap()) + u64::from_le_bytes(file[40..48].try_into().unwrap());
        let path = std::env::temp_dir().join(format!("hv-seed-check-{}-{seed}", std::process::id()));
        std::fs::write(&path, file).unwrap();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(end).unwrap();
        let result = hv::state::snapshot_file::read(&path).map(|_| ());
        let _ = std::fs::remove_file(&path);
        result.unwrap_or_else(|e| panic!("snapshot_file/{seed} is refused: {e}"));
    }
}
