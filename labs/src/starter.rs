//! Generating a student's starting tree from the reference.
//!
//! `labs start N DIR` copies the instructor's tree and, in every file with lab N's
//! regions, replaces each region (BEGIN to END, inclusive) by its stub lines, indented like
//! the BEGIN line. Regions of other labs stay as they are: their reference code is part of
//! the working system lab N builds on, so labs are independent. Every lab's `hidden/`
//! folder is left out, and lab N's handout and questions are put at the top as `LAB.md`
//! and `questions.md`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::manifest::{lab_number_of_folder, Lab};
use crate::markers::{scan_files, Region};
use crate::tree;

/// `text` with lab `lab`'s regions replaced by their stubs. `regions` are the file's
/// regions as the scanner found them (any lab).
pub fn replace_regions(text: &str, regions: &[Region], lab: u32) -> String {
    let mut out = String::with_capacity(text.len());
    let mut regions = regions.iter().filter(|r| r.lab == lab).peekable();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        while regions.peek().is_some_and(|r| r.end_line < number) {
            regions.next();
        }
        match regions.peek() {
            Some(region) if number == region.begin_line => {
                for stub in &region.stub {
                    out.push_str(&region.indent);
                    out.push_str(stub);
                    out.push('\n');
                }
            }
            Some(region) if number > region.begin_line && number <= region.end_line => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !text.ends_with('\n') && out.ends_with('\n') {
        out.pop();
    }
    out
}

/// True for files under `labs/<nn>-*/hidden/`: kept out of every starter.
fn is_hidden_test(path: &Path) -> bool {
    let parts: Vec<String> = path.components().filter_map(|c| match c {
        Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
        _ => None,
    }).collect();
    parts.len() >= 4 && parts[0] == "labs" && lab_number_of_folder(&parts[1]).is_some() && parts[2] == "hidden"
}

/// Every solution region of the tree at `root`, by file, or every marker error
/// (`file:line: what`) if there is any.
pub fn tree_regions(root: &Path, known_labs: &BTreeSet<u32>) -> Result<Vec<(PathBuf, Vec<Region>)>, String> {
    let files = tree::files(root)?;
    let (regions, errors) = scan_files(root, &files, known_labs);
    if errors.is_empty() {
        Ok(regions)
    } else {
        Err(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    }
}

/// Writes lab `lab`'s starter for the reference tree `reference` to `dest`.
/// `known_labs` are the numbers with a lab folder (for the marker check).
pub fn write_starter(reference: &Path, lab: &Lab, known_labs: &BTreeSet<u32>, dest: &Path) -> Result<usize, String> {
    if dest.exists() && fs::read_dir(dest).map_err(|e| format!("{}: {e}", dest.display()))?.next().is_some() {
        return Err(format!("{} exists and is not empty; give a new or empty folder", dest.display()));
    }
    let files = tree::files(reference)?;
    let regions = tree_regions(reference, known_labs)?;
    let number = lab.manifest.number;
    let mut replaced = 0;
    for file in files.iter().filter(|f| !is_hidden_test(f)) {
        let target = dest.join(file);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut source = reference.join(file);
        // The student's own work (a report, a measurement) starts blank or absent.
        if let Some(special) = lab.manifest.starter_files.iter().find(|s| lab.dir.join(&s.path) == source) {
            match &special.from {
                Some(template) => source = lab.dir.join(template),
                None => continue,
            }
        }
        match regions.iter().find(|(path, _)| path == file) {
            Some((_, file_regions)) if file_regions.iter().any(|r| r.lab == number) => {
                let text = fs::read_to_string(&source).map_err(|e| format!("{}: {e}", source.display()))?;
                replaced += file_regions.iter().filter(|r| r.lab == number).count();
                fs::write(&target, replace_regions(&text, file_regions, number)).map_err(|e| format!("{}: {e}", target.display()))?;
            }
            _ => {
                fs::copy(&source, &target).map_err(|e| format!("{} -> {}: {e}", source.display(), target.display()))?;
            }
        }
    }
    for (from, to) in [("README.md", "LAB.md"), ("questions.md", "questions.md")] {
        let from = lab.dir.join(from);
        if from.exists() {
            fs::copy(&from, dest.join(to)).map_err(|e| format!("{}: {e}", from.display()))?;
        }
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markers::scan_text;

    #[test]
    fn lab_regions_become_indented_stubs_and_other_labs_stay() {
        let m = "// LAB";
        let text = format!(
            "fn f() {{\n    {m} 3 BEGIN: check\n    check();\n    {m} 3 STUB: todo!(\"lab 3: check\")\n    {m} 3 STUB:     // more\n    {m} 3 END\n        {m} 4 BEGIN: other\n        other();\n        {m} 4 STUB: todo!()\n        {m} 4 END\n}}\n"
        );
        let regions = scan_text(&text, Path::new("f.rs"), &[3, 4].into_iter().collect()).unwrap();
        let starter = replace_regions(&text, &regions, 3);
        let expected = format!(
            "fn f() {{\n    todo!(\"lab 3: check\")\n        // more\n        {m} 4 BEGIN: other\n        other();\n        {m} 4 STUB: todo!()\n        {m} 4 END\n}}\n"
        );
        assert_eq!(starter, expected);
        // The reference is the starter of a lab with no regions here.
        assert_eq!(replace_regions(&text, &regions, 5), text);
    }

    #[test]
    fn hidden_test_folders_are_recognised() {
        assert!(is_hidden_test(Path::new("labs/03-block/hidden/grants.rs")));
        assert!(!is_hidden_test(Path::new("labs/03-block/tests/grants.rs")));
        assert!(!is_hidden_test(Path::new("labs/src/hidden/x.rs")));
    }
}
