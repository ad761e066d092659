//! The whole pipeline on a fake course, without building the real workspace.
//!
//! A scratch tree holds a one-crate workspace (`pv-abi`, so the harness finds it as a tree
//! crate) whose `add` is lab 1's solution region, and `labs/01-adding/` with a manifest, a
//! handout, visible tests and a hidden test. `labs start` must write a starter with the
//! stub and without the hidden test; `labs grade` must give the reference full marks (exit
//! 0) and the starter less, naming the stub's message; a hanging test must be reported as
//! timed out. One tiny crate is built per tree.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MARK: &str = "// LAB";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("labs-fake-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(root: &Path, file: &str, text: &str) {
    let path = root.join(file);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The fake reference tree.
fn fake_reference(root: &Path) {
    write(root, "Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [\"pv-abi\"]\n\n[workspace.dependencies]\n");
    write(root, "pv-abi/Cargo.toml", "[package]\nname = \"pv-abi\"\nversion = \"0.1.0\"\nedition = \"2021\"\n");
    write(
        root,
        "pv-abi/src/lib.rs",
        &format!(
            "//! A fake crate.\n\n/// Adds two numbers.\npub fn add(a: u32, b: u32) -> u32 {{\n    {MARK} 1 BEGIN: add the numbers\n    a + b\n    {MARK} 1 STUB: let _ = (a, b);\n    {MARK} 1 STUB: todo!(\"lab 1: add the numbers\")\n    {MARK} 1 END\n}}\n\n/// Waits for a while when told to.\npub fn nap(long: bool) {{\n    if long {{\n        std::thread::sleep(std::time::Duration::from_secs(120));\n    }}\n}}\n"
        ),
    );
    write(
        root,
        "labs/01-adding/lab.toml",
        "number = 1\ntitle = \"Adding\"\nconcepts = [\"arithmetic\"]\nhours = 1\n\n[[test]]\nid = \"adding::adds\"\npoints = 5\ntimeout_secs = 60\nkind = \"host\"\n\n[[test]]\nid = \"adding::nothing_to_add\"\npoints = 1\ntimeout_secs = 60\nkind = \"host\"\n\n[[test]]\nid = \"secret::adds_big\"\npoints = 3\ntimeout_secs = 60\nkind = \"host\"\n\n[[test]]\nid = \"adding::vm_boots\"\npoints = 2\ntimeout_secs = 60\nkind = \"vm\"\n\n[[test]]\nid = \"adding::naps\"\npoints = 1\ntimeout_secs = 2\nkind = \"host\"\n",
    );
    write(root, "labs/01-adding/README.md", "# Lab 1: Adding\n\nWrite `add` in `pv-abi/src/lib.rs`.\n");
    write(root, "labs/01-adding/questions.md", "# Questions\n\n1. Why add?\n");
    write(
        root,
        "labs/01-adding/tests/adding.rs",
        "#[test]\nfn adds() {\n    assert_eq!(pv_abi::add(2, 3), 5);\n}\n\n#[test]\nfn nothing_to_add() {}\n\n#[test]\nfn vm_boots() {\n    println!(\"LAB-NOT-RUN: this fake has no guest\");\n}\n\n#[test]\nfn naps() {\n    pv_abi::nap(true);\n}\n",
    );
    write(root, "labs/01-adding/hidden/secret.rs", "#[test]\nfn adds_big() {\n    assert_eq!(pv_abi::add(1 << 20, 1), (1 << 20) + 1);\n}\n");
}

fn labs(reference: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_labs"));
    command.arg("--reference").arg(reference);
    command
}

fn gradescope(reference: &Path, tree: &Path, out: &Path) -> (i32, serde_json::Value, String) {
    let run = labs(reference).args(["grade", "1", "--format", "gradescope"]).arg("--tree").arg(tree).arg("--out").arg(out).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    let text = fs::read_to_string(out).unwrap_or_else(|e| panic!("no results file: {e}\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr)));
    (run.status.code().unwrap_or(-1), serde_json::from_str(&text).unwrap(), stdout)
}

fn test_named<'a>(results: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    results["tests"].as_array().unwrap().iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no {name} in {results}"))
}

#[test]
fn start_and_grade_a_fake_lab() {
    let reference = scratch("reference");
    fake_reference(&reference);

    let list = labs(&reference).arg("list").output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(" 1  Adding  (1 h, 12 points: 9 visible + 3 hidden)"), "{listed}");

    // The starter: the stub in place, indented, the hidden test gone, the handout on top.
    let starter = scratch("starter").join("s");
    let start = labs(&reference).arg("start").arg("1").arg(&starter).output().unwrap();
    assert!(start.status.success(), "{}", String::from_utf8_lossy(&start.stderr));
    let code = fs::read_to_string(starter.join("pv-abi/src/lib.rs")).unwrap();
    assert!(code.contains("    let _ = (a, b);\n    todo!(\"lab 1: add the numbers\")\n}"), "{code}");
    assert!(!code.contains("a + b") && !code.contains(MARK), "{code}");
    assert!(!starter.join("labs/01-adding/hidden").exists());
    assert!(starter.join("labs/01-adding/tests/adding.rs").exists());
    assert_eq!(fs::read_to_string(starter.join("LAB.md")).unwrap(), fs::read_to_string(reference.join("labs/01-adding/README.md")).unwrap());
    assert!(starter.join("questions.md").exists());
    // A second start into the same (now full) folder is refused.
    assert!(!labs(&reference).arg("start").arg("1").arg(&starter).output().unwrap().status.success());

    // The reference: every test passes except the two that cannot (no KVM here, a hang).
    let out = reference.join("results.json");
    let (code, results, text) = gradescope(&reference, &reference, &out);
    assert_eq!(code, 1, "not full: the VM test is not run and the nap times out\n{text}");
    assert_eq!(test_named(&results, "adding::adds")["status"], "passed", "{text}");
    assert_eq!(test_named(&results, "secret::adds_big")["visibility"], "after_published");
    assert_eq!(test_named(&results, "secret::adds_big")["score"], 3);
    let vm = test_named(&results, "adding::vm_boots");
    assert_eq!((&vm["status"], &vm["score"]), (&"failed".into(), &0.into()));
    assert!(vm["output"].as_str().unwrap().contains("not run: this fake has no guest"), "{vm}");
    let nap = test_named(&results, "adding::naps");
    assert!(nap["output"].as_str().unwrap().starts_with("timed out"), "{nap}");
    assert_eq!(results["score"], 9);

    // The starter: the tests of `add` fail with the stub's message; visible-only leaves out the hidden test.
    let out = starter.join("results.json");
    let (code, results, text) = gradescope(&reference, &starter, &out);
    assert_eq!(code, 1);
    assert_eq!(results["score"], 1, "{text}");
    let adds = test_named(&results, "adding::adds");
    assert_eq!(adds["status"], "failed");
    assert!(adds["output"].as_str().unwrap().contains("lab 1: add the numbers"), "{adds}");
    let visible = labs(&reference).args(["grade", "1", "--visible-only", "--format", "json"]).arg("--tree").arg(&starter).output().unwrap();
    let visible: serde_json::Value = serde_json::from_slice(&visible.stdout).unwrap();
    assert_eq!(visible["max_score"], 9);
    // In the starter itself (as a student runs it), the hidden test is listed but not graded.
    let own = labs(&starter).args(["grade", "1", "--format", "json"]).arg("--tree").arg(&starter).output().unwrap();
    let own: serde_json::Value = serde_json::from_slice(&own.stdout).unwrap();
    assert_eq!((&own["max_score"], &own["score"]), (&9.into(), &1.into()));
    let listed = labs(&starter).arg("list").output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("9 visible + 3 hidden"));

    let _ = fs::remove_dir_all(&reference);
    let _ = fs::remove_dir_all(starter.parent().unwrap());
}

#[test]
fn hostile_a_tree_that_does_not_build_still_gets_a_results_file() {
    let reference = scratch("broken-reference");
    fake_reference(&reference);
    let tree = scratch("broken-tree");
    fake_reference(&tree);
    write(&tree, "pv-abi/src/lib.rs", "pub fn add(a: u32) -> u32 { a }\n");
    let out = tree.join("results.json");
    let run = labs(&reference).args(["grade", "1", "--format", "prairielearn", "--visible-only"]).arg("--tree").arg(&tree).arg("--out").arg(&out).output().unwrap();
    assert_eq!(run.status.code(), Some(1));
    let results: serde_json::Value = serde_json::from_str(&fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(results["score"], 0.0);
    let first = &results["tests"][0];
    assert_eq!(first["points"], 0);
    assert!(first["output"].as_str().unwrap().starts_with("build failed: the tree or the lab's tests do not build"), "{first}");
    assert!(first["output"].as_str().unwrap().contains("error"), "{first}");
    let _ = fs::remove_dir_all(&reference);
    let _ = fs::remove_dir_all(&tree);
}

#[test]
fn hostile_a_marker_error_stops_start_with_file_and_line() {
    let reference = scratch("bad-marker");
    fake_reference(&reference);
    write(&reference, "pv-abi/src/extra.rs", &format!("fn f() {{\n    {MARK} 2 BEGIN: nothing\n    {MARK} 2 STUB: todo!()\n    {MARK} 2 END\n}}\n"));
    let starter = scratch("bad-marker-starter").join("s");
    let run = labs(&reference).arg("start").arg("1").arg(&starter).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("pv-abi/src/extra.rs:2: lab 2 has no labs/02-*/ folder"), "{stderr}");
    let _ = fs::remove_dir_all(&reference);
}
