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

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The crates checked, with their root file (relative to the workspace root).
const CRATES: &[(&str, &str)] = &[
    ("pv-abi", "pv-abi/src/lib.rs"),
    ("shadow-mmu", "shadow-mmu/src/lib.rs"),
    ("frontend-drivers", "frontend-drivers/src/lib.rs"),
    ("backend-drivers", "backend-drivers/src/lib.rs"),
    ("hv", "hv/src/lib.rs"),
    ("pv-guest", "pv-guest/src/main.rs"),
];

/// A module's path inside its crate: `["vcpu", "hypercall"]` for `crate::vcpu::hypercall`.
type ModulePath = Vec<String>;

/// One import, kept to explain an edge: where it is, and what it says.
#[derive(Clone, Debug)]
struct Import {
    file: PathBuf,
    line: usize,
    text: String,
}

/// Modules and the imports between them, for one crate.
#[derive(Default)]
struct ImportGraph {
    /// Every module that has a file.
    modules: BTreeSet<ModulePath>,
    /// For each importing module, the modules it names, each with one example import.
    imports: BTreeMap<ModulePath, BTreeMap<ModulePath, Import>>,
}

/// The module a source file defines: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`;
/// `lib.rs`/`main.rs` are the root (an empty path).
fn module_of(src: &Path, file: &Path) -> ModulePath {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    let is_root = parts.is_empty() && (stem == "lib" || stem == "main");
    if stem != "mod" && !is_root {
        parts.push(stem.to_string());
    }
    parts
}

fn is_test_only(src: &Path, file: &Path) -> bool {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut dirs: Vec<_> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let name = dirs.pop().unwrap_or_default();
    name == "tests.rs" || dirs.iter().any(|d| d == "tests")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file that counts: comments and the test module removed, line numbers kept.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            let rest: String = text.lines().skip(i + 1).take(1).collect();
            if rest.trim_start().starts_with("mod tests") {
                break;
            }
        }
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        lines.push((i + 1, code.to_string()));
    }
    lines
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads a path starting at `s`: `a::b::{c, d::e}` gives `[a, b, c]` and `[a, b, d, e]`
/// (only as deep as needed: the caller keeps the prefixes that are modules).
fn paths_at(s: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = s;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            // A group: each comma-separated item is a path of its own (one level of
            // nesting is enough for the imports this project writes).
            let end = group.find('}').unwrap_or(group.len());
            let mut out = Vec::new();
            for item in group[..end].split(',') {
                for tail in paths_at(item.trim()) {
                    let mut p = segments.clone();
                    p.extend(tail);
                    out.push(p);
                }
            }
            if out.is_empty() {
                out.push(segments);
            }
            return out;
        }
        let ident: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
        if ident.is_empty() {
            break;
        }
        rest = &rest[ident.len()..];
        segments.push(ident);
        match rest.strip_prefix("::") {
            Some(after) => rest = after,
            None => break,
        }
    }
    vec![segments]
}

/// Every module path a line of `module`'s code names, with `super::` resolved.
fn named_paths(module: &ModulePath, line: &str) -> Vec<ModulePath> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let mut at = 0;
    while at < line.len() {
        let rest = &line[at..];
        let boundary = at == 0 || !is_ident_char(bytes[at - 1] as char);
        if boundary && rest.starts_with("crate::") {
            found.extend(paths_at(&rest["crate::".len()..]));
            at += "crate::".len();
        } else if boundary && rest.starts_with("super::") {
            // `super` is the parent of the module this file defines. In `a/mod.rs` the file
            // *is* module `a`, so its `super` is `a`'s parent too.
            let mut base = module.clone();
            let mut tail = rest;
            while let Some(after) = tail.strip_prefix("super::") {
                base.pop();
                tail = after;
            }
            for p in paths_at(tail) {
                let mut full = base.clone();
                full.extend(p);
                found.push(full);
            }
            at += rest.len() - tail.len();
        } else {
            at += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

impl ImportGraph {
    fn of_crate(root_file: &Path) -> ImportGraph {
        let src = root_file.parent().expect("root file in src/");
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let mut graph = ImportGraph::default();
        for file in &files {
            graph.modules.insert(module_of(src, file));
        }
        for file in &files {
            if is_test_only(src, file) {
                continue;
            }
            let module = module_of(src, file);
            let text = fs::read_to_string(file).expect("readable source file");
            for (line_no, code) in code_lines(&text) {
                for path in named_paths(&module, &code) {
                    // The longest prefix of the path that is a module is what is imported.
                    let target = (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| graph.modules.contains(p));
                    let Some(target) = target else { continue };
                    let import = Import { file: file.clone(), line: line_no, text: code.trim().to_string() };
                    graph.imports.entry(module.clone()).or_default().entry(target).or_insert(import);
                }
            }
        }
        graph
    }

    /// The edges between the children of `folder` (a module path): module `folder::a`
    /// (or anything inside it) naming `folder::b` (or anything inside it) is an edge a → b.
    fn sibling_edges(&self, folder: &ModulePath) -> BTreeMap<String, BTreeMap<String, Import>> {
        let depth = folder.len();
        let mut edges: BTreeMap<String, BTreeMap<String, Import>> = BTreeMap::new();
        for (from, targets) in &self.imports {
            if from.len() <= depth || from[..depth] != folder[..] {
                continue;
            }
            for (to, import) in targets {
                if to.len() <= depth || to[..depth] != folder[..] || to[depth] == from[depth] {
                    continue;
                }
                edges.entry(from[depth].clone()).or_default().entry(to[depth].clone()).or_insert_with(|| import.clone());
            }
        }
        edges
    }

    /// Every import cycle, as a readable report (empty if there is none).
    fn cycles(&self) -> Vec<String> {
        let mut folders: BTreeSet<ModulePath> = BTreeSet::new();
        folders.insert(Vec::new());
        for m in &self.modules {
            for n in 1..m.len() {
                folders.insert(m[..n].to_vec());
            }
        }
        let mut reports = Vec::new();
        for folder in folders {
            let edges = self.sibling_edges(&folder);
            for component in strongly_connected(&edges) {
                let place = if folder.is_empty() { "crate".to_string() } else { format!("crate::{}", folder.join("::")) };
                let mut report = format!("in {place}: {} import each other in a circle:", component.join(", "));
                for from in &component {
                    for (to, import) in edges.get(from).into_iter().flatten() {
                        if component.contains(to) {
                            report.push_str(&format!(
                                "\n    {from} -> {to}: {}:{}: {}",
                                import.file.display(),
                                import.line,
                                import.text
                            ));
                        }
                    }
                }
                reports.push(report);
            }
        }
        reports
    }
}

/// Tarjan's algorithm: the strongly connected components with more than one node.
fn strongly_connected(edges: &BTreeMap<String, BTreeMap<String, Import>>) -> Vec<Vec<String>> {
    struct Search<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, Import>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).into_iter().flat_map(|t| t.keys()) {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let lw = self.low[w.as_str()];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w.as_str()) {
                    let iw = self.index[w.as_str()];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    let nodes: BTreeSet<&str> = edges.iter().flat_map(|(k, t)| std::iter::once(k.as_str()).chain(t.keys().map(String::as_str))).collect();
    for v in nodes {
        if !search.index.contains_key(v) {
            search.visit(v);
        }
    }
    search.found
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("hv/ has a parent").to_path_buf()
}

#[test]
fn no_crate_has_an_import_cycle() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for (name, root_file) in CRATES {
        let graph = ImportGraph::of_crate(&root.join(root_file));
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
        let graph = ImportGraph::of_crate(&root.join(root_file));
        problems.extend(layer_violations(&graph, &layers).into_iter().map(|v| format!("{name}: {v}")));
    }
    assert!(tables >= 5, "expected layer tables in hv, pv-guest, shadow-mmu and both driver crates; found {tables}");
    assert!(problems.is_empty(), "lower layers must not use higher ones (the tables are in each crate's root doc):\n{}", problems.join("\n"));
}

/// A throwaway crate in a temporary folder, for testing the check itself.
struct ScratchCrate(PathBuf);

impl ScratchCrate {
    fn new(name: &str, files: &[(&str, &str)]) -> ScratchCrate {
        let dir = std::env::temp_dir().join(format!("hv-architecture-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join("src").join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        ScratchCrate(dir)
    }

    fn cycles(&self) -> Vec<String> {
        ImportGraph::of_crate(&self.0.join("src/lib.rs")).cycles()
    }
}

impl Drop for ScratchCrate {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_check_finds_a_cycle_through_a_third_module() {
    let c = ScratchCrate::new(
        "three",
        &[
            ("lib.rs", "pub mod low;\npub mod mid;\npub mod high;\n"),
            ("low.rs", "use crate::high::Vm; // the mistake\n"),
            ("mid.rs", "use crate::low::Ram;\n"),
            ("high/mod.rs", "use crate::{mid::Thing, low};\n"),
        ],
    );
    let cycles = c.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].contains("high, low, mid"), "{}", cycles[0]);
    assert!(cycles[0].contains("low.rs:1: use crate::high::Vm;"), "names the import: {}", cycles[0]);
}

#[test]
fn the_check_resolves_super_and_looks_inside_folders() {
    let c = ScratchCrate::new(
        "nested",
        &[
            ("lib.rs", "pub mod vcpu;\n"),
            ("vcpu/mod.rs", "mod exits;\nmod hypercall;\n"),
            ("vcpu/exits.rs", "use super::hypercall::dispatch;\n"),
            ("vcpu/hypercall/mod.rs", "use super::super::vcpu::exits::Exit;\n"),
        ],
    );
    let cycles = c.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(cycles[0].starts_with("in crate::vcpu: exits, hypercall"), "{}", cycles[0]);
}

#[test]
fn the_check_finds_a_use_of_a_higher_layer() {
    let c = ScratchCrate::new(
        "upward",
        &[
            ("lib.rs", "//! ## Layers\n//! | [`memory`] | RAM |\n//! | [`vmm`] | a VM |\n//!\n//! ## DESIGN\n//! | [`nope`] | not a row |\npub mod memory;\npub mod vmm;\n"),
            ("memory.rs", "pub fn peek() { crate::vmm::stop(); }\n"),
            ("vmm.rs", "pub fn stop() {}\n"),
        ],
    );
    let text = fs::read_to_string(c.0.join("src/lib.rs")).unwrap();
    let layers = layer_table(&text).unwrap();
    assert_eq!(layers, ["memory", "vmm"]);
    assert_eq!(declared_modules(&text), layers);
    let graph = ImportGraph::of_crate(&c.0.join("src/lib.rs"));
    let found = layer_violations(&graph, &layers);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("memory uses vmm, a layer above it"), "{}", found[0]);
    // No cycle here (vmm does not use memory): the layer order is the stronger rule.
    assert!(c.cycles().is_empty());
}

#[test]
fn layers_that_only_look_down_pass_and_tests_and_comments_do_not_count() {
    let c = ScratchCrate::new(
        "layered",
        &[
            ("lib.rs", "pub mod memory;\npub mod vmm;\n"),
            ("memory.rs", "// see crate::vmm for who uses this\n#[cfg(test)]\nmod tests {\n    use crate::vmm::Vm;\n}\n"),
            ("memory/tests.rs", "use crate::vmm::Vm;\n"),
            ("vmm.rs", "use crate::memory::GuestRam;\n"),
        ],
    );
    assert_eq!(c.cycles(), Vec::<String>::new());
}
