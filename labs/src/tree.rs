//! Which files make up a source tree.
//!
//! A starter must be the instructor's tree as the instructor would commit it: no build
//! output, no editor litter, no untracked experiments. In a git checkout that is exactly
//! `git ls-files`; elsewhere (a tree unpacked from an archive) it is every file except
//! `target/` and `.git/` folders.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of the tree at `root`, relative to it, sorted.
pub fn files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = match git_files(root) {
        Some(files) => files,
        None => {
            let mut files = Vec::new();
            walk(root, Path::new(""), &mut files).map_err(|e| format!("{}: {e}", root.display()))?;
            files
        }
    };
    files.sort();
    Ok(files)
}

/// `git ls-files` if `root` is the top of a git checkout; None otherwise.
fn git_files(root: &Path) -> Option<Vec<PathBuf>> {
    if !root.join(".git").exists() {
        return None;
    }
    let out = Command::new("git").arg("-C").arg(root).args(["ls-files", "-z"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    // A tracked file deleted in the working tree is not part of what we copy.
    Some(listed.split('\0').filter(|p| !p.is_empty()).map(PathBuf::from).filter(|p| root.join(p).is_file()).collect())
}

fn walk(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let name = entry.file_name();
        let path = relative.join(&name);
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if name != "target" && name != ".git" {
                walk(root, &path, out)?;
            }
        } else if file_type.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_tree_is_walked_without_target_and_git() {
        let root = std::env::temp_dir().join(format!("labs-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["a/src", "target/debug", "a/target", ".git"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in ["Cargo.toml", "a/src/lib.rs", "target/debug/x", "a/target/y", ".git/HEAD"] {
            std::fs::write(root.join(file), "").unwrap();
        }
        // `.git` here is not a checkout, so git fails and the walk is used.
        assert_eq!(files(&root).unwrap(), [PathBuf::from("Cargo.toml"), PathBuf::from("a/src/lib.rs")]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
