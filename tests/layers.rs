//! hv's architecture check: the modules of `hv/src` form layers, and a lower layer never
//! uses a higher one.
//!
//! The layer order is the table in `hv/src/lib.rs`'s crate documentation (its rows,
//! lowest first), so the documentation is the rule and this test keeps the code to it.
//! It reads every `crate::NAME` path in every source file (comments and `mod tests`
//! blocks left out: test code may reach anywhere) and fails on each one that names a
//! layer above the file's own. Since imports can then only go downwards, no two modules
//! can import each other in a circle.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers, lowest first: the modules named in the first column of lib.rs's table.
fn layer_order() -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("hv/src/lib.rs");
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! | [`"))
        .filter_map(|rest| rest.split_once("`]"))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without line comments and without its `mod tests { ... }` block
/// (which by the project's convention comes last).
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests {").next().unwrap_or(text);
    text.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The first path segment after each `crate::` in `code` (for a `crate::{a, b::c}`
/// group, each member's).
fn crate_paths(code: &str) -> Vec<String> {
    let ident = |s: &str| s.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut names = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => names.extend(group.split('}').next().unwrap_or("").split(',').map(ident)),
            None => names.push(ident(rest)),
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

#[test]
fn the_layer_table_names_every_module() {
    let order = layer_order();
    assert!(order.len() >= 5, "lib.rs's layer table was not found (rows like \"//! | [`memory`] | ...\"): {order:?}");
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|l| l.trim_end_matches(';')).collect();
    assert_eq!(declared, order, "lib.rs declares its modules in the table's order, and only those");
}

#[test]
fn no_layer_uses_a_layer_above_it() {
    let order = layer_order();
    let rank = |name: &str| order.iter().position(|layer| layer == name);
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src()).unwrap().to_path_buf();
        let layer = relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        let Some(own) = rank(&layer) else { continue }; // lib.rs and main.rs sit above every layer
        if relative.file_name().is_some_and(|f| f == "tests.rs") {
            continue; // a test file may reach anywhere
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for used in crate_paths(&code) {
            match rank(&used) {
                Some(r) if r > own => violations.push(format!("{} (layer {layer}) uses {used}, a layer above it", relative.display())),
                _ => {}
            }
        }
    }
    assert!(violations.is_empty(), "lower layers must not use higher ones (see hv/src/lib.rs):\n{}", violations.join("\n"));
}
