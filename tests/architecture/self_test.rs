//! Tests of the architecture check itself, on small crates made for the purpose: it must
//! find what it claims to find, and nothing else.

use std::fs;
use std::path::PathBuf;

use super::import_graph::ImportGraph;
use super::{declared_modules, layer_table, layer_violations};

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
        ImportGraph::of_crate(&self.0.join("src/lib.rs"), &self.0).cycles()
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
    assert!(cycles[0].contains("src/low.rs:1: use crate::high::Vm;"), "names the import: {}", cycles[0]);
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
    let graph = ImportGraph::of_crate(&c.0.join("src/lib.rs"), &c.0);
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

