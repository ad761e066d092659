//! Meta-tests over the real labs: every `labs/<nn>-*/` folder of this repository.
//!
//! For every lab: its manifest loads (every test listed once), every solution marker in
//! the tree is balanced and names a lab that exists, the generated starter builds and
//! scores less than full with a failure that names the lab, the reference scores full
//! marks, and every file path and `fn` name its handout puts in backticks exists.
//!
//! This builds the real workspace twice (the reference and a starter), so both gradings
//! share one CARGO_TARGET_DIR, `target/labs-meta`, and the test prints how long it took.
//! With no lab folder yet it says so and passes; in a starter (a tree with `LAB.md`,
//! whose stubs fail on purpose) it says so and passes too.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use labs::manifest::{lab_dirs, load_all, Lab, TestKind};
use labs::starter::tree_regions;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("labs/ has a parent").to_path_buf()
}

/// True where a VM test can boot a guest.
fn have_kvm() -> bool {
    fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

/// `labs grade n --tree tree --format json` with the shared target dir.
fn grade_json(n: u32, tree: &Path) -> serde_json::Value {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_labs"))
        .arg("--reference")
        .arg(repo())
        .args(["grade", &n.to_string(), "--format", "json"])
        .arg("--tree")
        .arg(tree)
        .arg("--target-dir")
        .arg(repo().join("target/labs-meta"))
        .output()
        .expect("run labs grade");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("labs grade {n} printed no JSON ({e}):\n{}", String::from_utf8_lossy(&out.stderr)));
    println!("lab {n}: graded {} in {:.0} s (build {:.0} s): {}/{}", tree.display(), started.elapsed().as_secs_f64(), results["build_seconds"].as_f64().unwrap_or(0.0), results["score"], results["max_score"]);
    results
}

/// Every `fn` name defined in the tree's Rust sources.
fn defined_fns(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in labs::tree::files(root).expect("list the tree").iter().filter(|f| f.extension().is_some_and(|x| x == "rs")) {
        let text = fs::read_to_string(root.join(file)).unwrap_or_default();
        for (at, _) in text.match_indices("fn ") {
            let before_ok = at == 0 || !text.as_bytes()[at - 1].is_ascii_alphanumeric() && text.as_bytes()[at - 1] != b'_';
            let name: String = text[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if before_ok && !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// What the handout names in backticks that does not exist: file paths (relative to the
/// repository or the lab folder) and fn names (`fn x`, `x()`, `Type::x`).
fn missing_handout_names(lab: &Lab, root: &Path, fns: &BTreeSet<String>) -> Vec<String> {
    let handout = fs::read_to_string(lab.dir.join("README.md")).expect("every lab has a README.md handout");
    let mut missing = Vec::new();
    for (index, span) in handout.split('`').enumerate() {
        if index % 2 == 0 || span.is_empty() || span.contains('\n') {
            continue;
        }
        let looks_like_path = !span.contains(' ') && !span.starts_with('/') && !span.contains("::") && !span.contains('<') && !span.contains('*')
            && (span.contains('/') || [".rs", ".toml", ".md"].iter().any(|ext| span.ends_with(ext)));
        if looks_like_path {
            if !root.join(span).exists() && !lab.dir.join(span).exists() {
                missing.push(format!("file `{span}`"));
            }
            continue;
        }
        let name = if let Some(rest) = span.strip_prefix("fn ") {
            Some(rest.trim_end_matches("()"))
        } else if !span.contains(' ') && (span.ends_with("()") || span.contains("::")) {
            Some(span.trim_end_matches("()").rsplit("::").next().unwrap_or(""))
        } else {
            None
        };
        if let Some(name) = name {
            let is_fn_name = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_') && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if is_fn_name && !fns.contains(name) {
                missing.push(format!("fn `{name}` (from `{span}`)"));
            }
        }
    }
    missing
}

#[test]
fn every_lab_starts_builds_and_grades() {
    let root = repo();
    let started = Instant::now();
    if root.join("LAB.md").exists() {
        // A starter's stubs fail on purpose; the meta-test is about the reference.
        println!("{} is a lab starter (it has LAB.md): the meta-test checks the reference only", root.display());
        return;
    }
    if lab_dirs(&root).is_empty() {
        println!("no labs/<nn>-*/ folders in {}: no lab to check", root.display());
        return;
    }
    let labs = load_all(&root).unwrap_or_else(|e| panic!("a lab's manifest is wrong: {e}"));
    let known: BTreeSet<u32> = labs.keys().copied().collect();
    let regions = tree_regions(&root, &known).unwrap_or_else(|e| panic!("solution markers:\n{e}"));
    let fns = defined_fns(&root);
    let kvm = have_kvm();
    let mut problems = Vec::new();

    for (&n, lab) in &labs {
        let lab_started = Instant::now();
        if !regions.iter().any(|(_, rs)| rs.iter().any(|r| r.lab == n)) {
            problems.push(format!("lab {n}: no solution region in the tree (the starter would be the reference)"));
        }
        for name in missing_handout_names(lab, &root, &fns) {
            problems.push(format!("lab {n}: the handout names {name}, which does not exist"));
        }

        // The reference: full marks (VM tests may only be "not run" where KVM is missing).
        let reference = grade_json(n, &root);
        for t in reference["tests"].as_array().expect("tests") {
            let vm_without_kvm = !kvm && t["kind"] == "vm" && t["status"] == "not run";
            if t["status"] != "passed" && !vm_without_kvm {
                problems.push(format!("lab {n}: the reference fails {} ({}): {}", t["id"], t["status"], t["output"]));
            }
        }

        // The starter: builds, and scores less than full with a failure naming the lab.
        let scratch = std::env::temp_dir().join(format!("labs-meta-{}-{n:02}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        let start = Command::new(env!("CARGO_BIN_EXE_labs")).arg("--reference").arg(&root).args(["start", &n.to_string()]).arg(&scratch).output().expect("run labs start");
        if !start.status.success() {
            problems.push(format!("lab {n}: labs start failed: {}", String::from_utf8_lossy(&start.stderr)));
            continue;
        }
        let starter = grade_json(n, &scratch);
        let tests = starter["tests"].as_array().expect("tests");
        if tests.iter().any(|t| t["status"] == "build failed") {
            problems.push(format!("lab {n}: the starter does not build: {}", tests[0]["output"]));
        }
        if starter["full"] == true {
            problems.push(format!("lab {n}: the starter scores full marks"));
        }
        let names_the_lab = tests.iter().any(|t| t["status"] == "failed" && t["output"].as_str().unwrap_or("").to_lowercase().contains(&format!("lab {n}")));
        if !names_the_lab {
            problems.push(format!("lab {n}: no failing test of the starter names \"lab {n}\" in its output"));
        }
        if lab.tests.iter().any(|t| t.entry.kind == TestKind::Vm) && !kvm {
            println!("lab {n}: /dev/kvm missing: VM tests were reported \"not run\"");
        }
        let _ = fs::remove_dir_all(&scratch);
        println!("lab {n}: checked in {:.0} s", lab_started.elapsed().as_secs_f64());
    }
    println!("labs meta-test: {} lab(s) in {:.0} s", labs.len(), started.elapsed().as_secs_f64());
    assert!(problems.is_empty(), "labs meta-test:\n{}", problems.join("\n"));
}
