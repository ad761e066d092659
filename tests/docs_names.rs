//! The walkthroughs name real code: every Rust path and every file a document names in
//! backticks must exist.
//!
//! `docs/block-request.md` says "`BlockFront::kick` re-arms the upcall"; a student reads
//! that next to the code and searches for `fn kick`. When code moves or is renamed, a
//! document that still names the old place sends them nowhere. This test reads
//! README.md, tests/README.md and docs/*.md, takes every backticked `a::b` path and every
//! backticked source path (`hv/src/vcpu/mod.rs`, `frontend-drivers/`), and checks that
//! the path's last name is defined somewhere in the project's sources (as a `fn`,
//! `struct`, `enum`, `trait`, `type`, `const`, `static`, `mod`, public field, enum
//! variant or `macro_rules!`), that its first name is too (a module, type or crate of ours), and that
//! the files and folders exist.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Names from outside the project that the documents may mention as paths (Rust's own
/// library and the crates hv builds on).
const FOREIGN_ROOTS: &[&str] =
    &["std", "core", "alloc", "kvm_ioctls", "kvm_bindings", "vm_memory", "vmm_sys_util", "crossbeam_channel", "goblin", "serde", "insta", "libc", "bitflags", "clap", "proptest", "clippy", "u8", "u16", "u32", "u64", "usize", "i32", "i64"];

/// Our crates, as paths name them.
const OUR_CRATES: &[&str] = &["hv", "pv_abi", "pv_guest", "pv_netstack", "pv_netd", "shadow_mmu", "frontend_drivers", "backend_drivers"];

const SOURCE_DIRS: &[&str] = &["hv/src", "pv-abi/src", "pv-guest/src", "pv-guest/netstack/src", "pv-guest/netd/src", "shadow-mmu/src", "frontend-drivers/src", "backend-drivers/src", "tests"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("hv/ has a parent").to_path_buf()
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, ext, out);
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
}

/// Every name the project's sources define (and the source files' module names).
fn defined_names(root: &Path) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = OUR_CRATES.iter().map(|s| s.to_string()).collect();
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        files_under(&root.join(dir), "rs", &mut files);
    }
    const KEYWORDS: &[&str] = &["fn", "struct", "enum", "trait", "type", "const", "static", "mod", "macro_rules!", "union"];
    for file in files {
        if let Some(stem) = file.file_stem() {
            names.insert(stem.to_string_lossy().into_owned());
        }
        if let Some(dir) = file.parent().and_then(Path::file_name) {
            names.insert(dir.to_string_lossy().into_owned());
        }
        let text = fs::read_to_string(&file).unwrap_or_default();
        let mut in_enum = false;
        for line in text.lines() {
            let words: Vec<&str> = line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '!')).filter(|w| !w.is_empty()).collect();
            for pair in words.windows(2) {
                if KEYWORDS.contains(&pair[0]) {
                    names.insert(pair[1].to_string());
                }
            }
            // Enum variants: the first word of a line inside an enum body (`Read,`, `Write(u8)`).
            let t = line.trim();
            if t.starts_with("pub enum ") || t.starts_with("enum ") {
                in_enum = true;
            } else if in_enum && t.starts_with('}') {
                in_enum = false;
            } else if in_enum {
                if let Some(w) = words.first() {
                    names.insert(w.to_string());
                }
            }
            // Struct fields (`pub device_frames: ...`), which documents name as `Type::field`.
            if let [first, second, ..] = words[..] {
                if first == "pub" && t.starts_with(&format!("pub {second}:")) {
                    names.insert(second.to_string());
                }
            }
            // Constants from bitflags! (`const PRESENT = 1 << 0;`) are caught by `const` above.
        }
    }
    names
}

/// The backticked spans of a Markdown file, with line numbers (fenced code blocks skipped:
/// they hold diagrams and shell sessions, not references).
fn backticked(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut parts = line.split('`');
        parts.next();
        while let (Some(inside), Some(_)) = (parts.next(), parts.next()) {
            out.push((i + 1, inside.to_string()));
        }
    }
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// `a::b::c` or `a::b()` or `a::b(x, y)` as a list of names, or `None` if the span is not
/// a Rust path.
fn rust_path(span: &str) -> Option<Vec<String>> {
    let span = match span.find('(') {
        Some(at) if span.ends_with(')') => &span[..at],
        Some(_) => return None,
        None => span,
    };
    let segments: Vec<&str> = span.split("::").collect();
    if segments.len() < 2 || !segments.iter().all(|s| is_ident(s)) {
        return None;
    }
    Some(segments.iter().map(|s| s.to_string()).collect())
}

/// A source path a document names: `hv/src/x.rs`, `frontend-drivers/`, `tests/boot.rs`.
/// A template such as `backend-drivers/src/<dev>/check.rs` stands for several files, not
/// one, so a span with a `<` in it is not a path to check.
fn source_path(span: &str) -> Option<&str> {
    let looks_like = span.ends_with(".rs") || span.ends_with('/') || span.ends_with(".md");
    let template = span.contains('<');
    let ours = ["hv/", "pv-abi/", "pv-guest/", "shadow-mmu/", "frontend-drivers/", "backend-drivers/", "tests/", "docs/", "labs/"];
    (looks_like && !template && !span.contains(' ') && ours.iter().any(|p| span.starts_with(p))).then_some(span)
}

#[test]
fn every_name_the_docs_give_exists() {
    let root = workspace_root();
    let names = defined_names(&root);
    let mut docs = vec![root.join("README.md"), root.join("tests/README.md")];
    files_under(&root.join("docs"), "md", &mut docs);
    docs.sort();
    let mut missing = Vec::new();
    for doc in &docs {
        let text = fs::read_to_string(doc).unwrap_or_default();
        let shown = doc.strip_prefix(&root).unwrap_or(doc).display().to_string();
        for (line, span) in backticked(&text) {
            if let Some(path) = source_path(&span) {
                if !root.join(path).exists() {
                    missing.push(format!("{shown}:{line}: `{span}`: no such file or folder"));
                }
            } else if let Some(segments) = rust_path(&span) {
                if FOREIGN_ROOTS.contains(&segments[0].as_str()) {
                    continue;
                }
                for name in [segments.first(), segments.last()].into_iter().flatten() {
                    if !names.contains(name) {
                        missing.push(format!("{shown}:{line}: `{span}`: nothing in the sources defines `{name}`"));
                        break;
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "the documents name code that does not exist:\n{}", missing.join("\n"));
}

#[test]
fn the_check_reads_paths_and_skips_what_is_not_one() {
    assert_eq!(rust_path("BlockFront::kick"), Some(vec!["BlockFront".into(), "kick".into()]));
    assert_eq!(rust_path("runner::service_ring()"), Some(vec!["runner".into(), "service_ring".into()]));
    assert_eq!(rust_path("hv run -- selftest"), None);
    assert_eq!(rust_path("mmu_update"), None);
    assert_eq!(source_path("hv/src/vcpu/mod.rs"), Some("hv/src/vcpu/mod.rs"));
    assert_eq!(source_path("shared/docs/kvm-platform.md"), None);
    assert_eq!(source_path("backend-drivers/src/<dev>/check.rs"), None);
    let spans = backticked("a `x::y` b\n```\n`not::this`\n```\nc `z`");
    assert_eq!(spans, vec![(1, "x::y".to_string()), (5, "z".to_string())]);
}
