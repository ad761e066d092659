//! Reading a crate's imports into a graph, and finding the cycles in it.
//!
//! Nodes are modules (one per source file); an edge "A names B" is any `crate::B…` or
//! `super::…` path in A's code that resolves to module B. Cycles are the strongly
//! connected components with more than one module (Tarjan's algorithm), looked for among
//! the top-level modules and among the sibling modules of every folder.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module's path inside its crate: `["vcpu", "hypercall"]` for `crate::vcpu::hypercall`.
pub type ModulePath = Vec<String>;

/// One import, kept to explain an edge: where it is, and what it says.
#[derive(Clone, Debug)]
pub struct Import {
    pub file: PathBuf,
    pub line: usize,
    pub text: String,
}

/// Modules and the imports between them, for one crate.
#[derive(Default)]
pub struct ImportGraph {
    /// Every module that has a file.
    pub modules: BTreeSet<ModulePath>,
    /// For each importing module, the modules it names, each with one example import.
    pub imports: BTreeMap<ModulePath, BTreeMap<ModulePath, Import>>,
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
    /// Reads the crate whose root file is `root_file`; imports are shown with paths
    /// relative to `shown_from`.
    pub fn of_crate(root_file: &Path, shown_from: &Path) -> ImportGraph {
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
                    // Shown relative to the workspace, as a reader would type it.
                let shown = file.strip_prefix(shown_from).unwrap_or(file).to_path_buf();
                let import = Import { file: shown, line: line_no, text: code.trim().to_string() };
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
    pub fn cycles(&self) -> Vec<String> {
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

