//! The project's architecture check: each crate's modules form layers, a lower layer
//! never uses a higher one, and no two modules import each other, even through others
//! (an import cycle).
//!
//! Every crate is built in layers: a lower layer (say `memory/` in hv, `arch/` in the
//! guest) never names a higher one (`vmm/`, `commands/`), so each layer can be read, and
//! tested, knowing only the layers below it. An import cycle is the sign that this broke:
//! two modules that need each other are really one idea, or one of them holds something
//! that belongs lower down.
//!
//! The check is deliberately simple, so that anyone can read it and trust it: it reads the
//! source files, takes every path that starts with `crate::` (or `super::`, resolved to
//! where it points), and builds a graph whose nodes are modules and whose edges are
//! "names something in". It does that for the top-level modules of each crate and for the
//! sibling modules inside every folder, then looks for strongly connected components
//! (Tarjan's algorithm): any component with more than one module is a cycle, reported
//! with one import per edge so you can see where to cut.
//!
//! A crate whose documentation has a layer table (a section headed `## Layers` or
//! `## Modules, lowest first`, rows like ``//! | [`memory`] | owns | must never |``, lowest
//! first) is held to it exactly: the table names every module the crate root declares,
//! in the order declared, and a module may use only the rows above its own. So the
//! documentation is the rule, and this test keeps the code to it.
//!
//! Test-only code does not count (a test may use anything): files named `tests.rs`, files
//! under a `tests/` folder, and everything after `#[cfg(test)] mod tests {` in a file.

// A test file is a crate root, so its modules are named by path.
#[path = "architecture/import_graph.rs"]
mod import_graph;
#[path = "architecture/self_test.rs"]
mod self_test;

use std::fs;
use std::path::{Path, PathBuf};

use import_graph::ImportGraph;

/// The crates checked, with their root file (relative to the workspace root).
const CRATES: &[(&str, &str)] = &[
    ("pv-abi", "pv-abi/src/lib.rs"),
    ("shadow-mmu", "shadow-mmu/src/lib.rs"),
    ("frontend-drivers", "frontend-drivers/src/lib.rs"),
    ("backend-drivers", "backend-drivers/src/lib.rs"),
    ("hv", "hv/src/lib.rs"),
    ("pv-guest", "pv-guest/src/main.rs"),
    ("pv-netstack", "pv-guest/netstack/src/lib.rs"),
    ("pv-netd", "pv-guest/netd/src/main.rs"),
    ("labs", "labs/src/lib.rs"),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("hv/ has a parent").to_path_buf()
}

#[test]
fn no_crate_has_an_import_cycle() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for (name, root_file) in CRATES {
        let graph = ImportGraph::of_crate(&root.join(root_file), &root);
        assert!(graph.modules.len() > 1, "{name}: found no modules under {root_file}: is the path right?");
        for cycle in graph.cycles() {
            problems.push(format!("{name} {cycle}"));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles (a lower layer importing a higher one; see docs/architecture.md):\n{}",
        problems.join("\n")
    );
}

/// The layer table of a crate root, lowest first, if its documentation has one.
fn layer_table(root_text: &str) -> Option<Vec<String>> {
    let mut rows = None;
    for line in root_text.lines() {
        let Some(doc) = line.strip_prefix("//!") else { continue };
        let doc = doc.trim();
        if doc.starts_with("## ") {
            if rows.is_some() {
                break;
            }
            if doc.starts_with("## Layers") || doc.starts_with("## Modules, lowest first") {
                rows = Some(Vec::new());
            }
        } else if let (Some(rows), Some(cell)) = (rows.as_mut(), doc.strip_prefix("| [`")) {
            if let Some((name, _)) = cell.split_once('`') {
                rows.push(name.to_string());
            }
        }
    }
    rows
}

/// The modules a crate root declares (`pub mod x;` or `mod x;`), in order.
fn declared_modules(root_text: &str) -> Vec<String> {
    root_text
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("pub mod ").or_else(|| l.strip_prefix("mod ")))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// Every use of a higher layer, as a readable line (empty if the layers hold).
fn layer_violations(graph: &ImportGraph, layers: &[String]) -> Vec<String> {
    let rank = |name: &str| layers.iter().position(|l| l == name);
    let mut out = Vec::new();
    for (from, targets) in &graph.imports {
        let (Some(own), Some(own_rank)) = (from.first(), from.first().and_then(|m| rank(m))) else { continue };
        for (to, import) in targets {
            let Some(used) = to.first() else { continue };
            if let Some(r) = rank(used) {
                if r > own_rank {
                    out.push(format!(
                        "{own} uses {used}, a layer above it: {}:{}: {}",
                        import.file.display(),
                        import.line,
                        import.text
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let root = workspace_root();
    let mut problems = Vec::new();
    let mut tables = 0;
    for (name, root_file) in CRATES {
        let text = fs::read_to_string(root.join(root_file)).expect("crate root");
        let Some(layers) = layer_table(&text) else { continue };
        tables += 1;
        let declared = declared_modules(&text);
        if declared != layers {
            problems.push(format!("{name}: {root_file} declares {declared:?} but its layer table lists {layers:?}"));
        }
        let graph = ImportGraph::of_crate(&root.join(root_file), &root);
        problems.extend(layer_violations(&graph, &layers).into_iter().map(|v| format!("{name}: {v}")));
    }
    assert_eq!(tables, CRATES.len(), "every crate root should have a layer table (see docs/architecture.md)");
    assert!(problems.is_empty(), "lower layers must not use higher ones (the tables are in each crate's root doc):\n{}", problems.join("\n"));
}

