//! A lab's manifest (`lab.toml`) and where the labs live.
//!
//! Each lab is a folder `labs/<nn>-<name>/` holding `lab.toml`, the handout (`README.md`),
//! the written questions (`questions.md`), visible tests in `tests/*.rs` and, optionally,
//! hidden tests in `hidden/*.rs`. The manifest gives the lab's title, the concepts it
//! teaches, the expected hours, and for every test its points, its time limit and whether
//! it boots a guest (`vm`) or runs on any host (`host`).
//!
//! A grade is only fair if every test is counted exactly once, so [`Lab::load`] reads the
//! test files and refuses a manifest that forgets a `#[test]` fn, names one twice, or names
//! one that does not exist.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Whether a test needs KVM.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// Needs no KVM: unit, model and property tests. Runs in any autograder container.
    Host,
    /// Boots a guest; reports "not run" where `/dev/kvm` is missing.
    Vm,
}

/// One `[[test]]` entry of `lab.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestEntry {
    /// `<file stem>::<test fn name>`.
    pub id: String,
    /// What passing this test is worth.
    pub points: u32,
    /// Wall-clock limit for running this one test (building is not counted).
    pub timeout_secs: u64,
    /// Host or VM test.
    pub kind: TestKind,
}

/// The file `lab.toml`, as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The lab's number; must match the folder's `<nn>`.
    pub number: u32,
    /// One line naming the lab.
    pub title: String,
    /// The course concepts the lab teaches.
    pub concepts: Vec<String>,
    /// Expected hours of work for a student.
    pub hours: u32,
    /// Every test of the lab, visible and hidden.
    #[serde(rename = "test", default)]
    pub tests: Vec<TestEntry>,
    /// Files of the lab folder that a starter gets differently: the student's own work
    /// (a report, a measurement) must not arrive filled in with the reference's.
    #[serde(rename = "starter_file", default)]
    pub starter_files: Vec<StarterFile>,
}

/// A file of the lab folder as a starter gets it: `path` (relative to the lab folder)
/// is written from `from` (a blank template in the same folder), or left out without one.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StarterFile {
    /// The file, relative to the lab folder.
    pub path: String,
    /// The template it is written from in a starter; `None` leaves it out.
    pub from: Option<String>,
}

/// A test as the grader sees it: the manifest's entry plus where its source is.
#[derive(Clone, Debug)]
pub struct LabTest {
    /// The manifest's entry.
    pub entry: TestEntry,
    /// The test file's stem (the part of the id before `::`).
    pub file_stem: String,
    /// The `#[test]` fn name (the part after `::`).
    pub fn_name: String,
    /// True when the file lives in `hidden/` (kept out of starters).
    pub hidden: bool,
    /// False for a hidden test in a starter: listed in the manifest, its file left out.
    pub present: bool,
}

/// A lab folder, loaded and checked.
#[derive(Clone, Debug)]
pub struct Lab {
    /// `labs/<nn>-<name>/`.
    pub dir: PathBuf,
    /// The parsed `lab.toml`.
    pub manifest: Manifest,
    /// Tests in manifest order.
    pub tests: Vec<LabTest>,
    /// Test files by stem: visible ones from `tests/`, hidden ones from `hidden/`.
    pub test_files: BTreeMap<String, PathBuf>,
}

/// Why a lab folder or its manifest cannot be used.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are the file and what is wrong with it
pub enum ManifestError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// `lab.toml` is not valid TOML or misses/misspells a field.
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    /// The manifest and the folder or the test files disagree.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Manifest {
    /// Parses the text of a `lab.toml`; `path` is only used in the error.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        toml::from_str(text).map_err(|e| ManifestError::Syntax { path: path.to_path_buf(), message: e.to_string().trim_end().to_string() })
    }
}

/// The lab folders under `<root>/labs/`, by number: every directory named `<nn>-<name>`.
/// The folders are not loaded (see [`Lab::load`]).
pub fn lab_dirs(root: &Path) -> BTreeMap<u32, PathBuf> {
    let mut labs = BTreeMap::new();
    let Ok(entries) = fs::read_dir(root.join("labs")) else { return labs };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() {
            continue;
        }
        if let Some(number) = lab_number_of_folder(&name) {
            labs.insert(number, path);
        }
    }
    labs
}

/// `"03-block-driver"` is lab 3; `"src"` is not a lab.
pub fn lab_number_of_folder(name: &str) -> Option<u32> {
    let (digits, rest) = name.split_once('-')?;
    if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) || rest.is_empty() {
        return None;
    }
    digits.parse().ok()
}

/// The `#[test]` fn names of one test file, in order.
pub fn test_fns(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut after_test_attribute = false;
    for line in source.lines() {
        let line = line.trim();
        if line.starts_with("#[test]") {
            after_test_attribute = true;
            continue;
        }
        if after_test_attribute {
            if let Some(name) = fn_name_of(line) {
                names.push(name);
                after_test_attribute = false;
            }
        }
    }
    names
}

/// The name declared by a line such as `fn foo(` or `pub async fn foo<T>(`.
fn fn_name_of(line: &str) -> Option<String> {
    let at = line.find("fn ")?;
    if at > 0 && !line[..at].ends_with(' ') {
        return None;
    }
    let name: String = line[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}

/// The `.rs` files directly inside `dir`, by stem (none if `dir` does not exist).
fn rust_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, ManifestError> {
    let mut files = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(source) => return Err(ManifestError::Io { path: dir.to_path_buf(), source }),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "rs") && path.is_file() {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            files.insert(stem, path);
        }
    }
    Ok(files)
}

impl Lab {
    /// Reads `dir/lab.toml` and the test files, and checks that they agree.
    pub fn load(dir: &Path) -> Result<Lab, ManifestError> {
        let manifest_path = dir.join("lab.toml");
        let invalid = |message: String| ManifestError::Invalid { path: manifest_path.clone(), message };
        let text = fs::read_to_string(&manifest_path).map_err(|source| ManifestError::Io { path: manifest_path.clone(), source })?;
        let manifest = Manifest::parse(&text, &manifest_path)?;
        let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if lab_number_of_folder(&folder) != Some(manifest.number) {
            return Err(invalid(format!("number = {} but the folder is `{folder}` (expected `{:02}-<name>`)", manifest.number, manifest.number)));
        }

        let visible = rust_files(&dir.join("tests"))?;
        let hidden = rust_files(&dir.join("hidden"))?;
        // A starter has no hidden/ folder: its manifest still lists the hidden tests.
        let hidden_left_out = !dir.join("hidden").exists();
        if visible.is_empty() {
            return Err(invalid("the lab has no visible tests (tests/*.rs)".into()));
        }
        // Every test fn of every file, and whether the file is hidden.
        let mut found: BTreeMap<String, bool> = BTreeMap::new();
        let mut test_files = BTreeMap::new();
        for (is_hidden, files) in [(false, &visible), (true, &hidden)] {
            for (stem, path) in files {
                if test_files.insert(stem.clone(), path.clone()).is_some() {
                    return Err(invalid(format!("tests/{stem}.rs and hidden/{stem}.rs share a name; test ids would be ambiguous")));
                }
                let source = fs::read_to_string(path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
                for name in test_fns(&source) {
                    found.insert(format!("{stem}::{name}"), is_hidden);
                }
            }
        }

        let mut tests = Vec::new();
        let mut seen = BTreeMap::new();
        for entry in &manifest.tests {
            if seen.insert(entry.id.clone(), ()).is_some() {
                return Err(invalid(format!("test `{}` is listed twice", entry.id)));
            }
            let split = entry.id.split_once("::").filter(|(stem, name)| !stem.is_empty() && !name.is_empty());
            let (is_hidden, present) = match found.get(&entry.id) {
                Some(&is_hidden) => (is_hidden, true),
                None if hidden_left_out && split.is_some_and(|(stem, _)| !visible.contains_key(stem)) => (true, false),
                None => return Err(invalid(format!("test `{}` names no #[test] fn in tests/ or hidden/ (ids are `<file stem>::<fn name>`)", entry.id))),
            };
            if entry.timeout_secs == 0 {
                return Err(invalid(format!("test `{}` has timeout_secs = 0", entry.id)));
            }
            let (stem, name) = split.expect("a test found or left out has a `<stem>::<fn>` id");
            tests.push(LabTest { entry: entry.clone(), file_stem: stem.into(), fn_name: name.into(), hidden: is_hidden, present });
        }
        let missing: Vec<&String> = found.keys().filter(|id| !seen.contains_key(*id)).collect();
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|id| format!("`{id}`")).collect();
            return Err(invalid(format!("#[test] fns with no [[test]] entry (every test must be listed once): {}", list.join(", "))));
        }
        Ok(Lab { dir: dir.to_path_buf(), manifest, tests, test_files })
    }

    /// Points of the visible tests and of the hidden ones.
    pub fn points(&self) -> (u32, u32) {
        let visible = self.tests.iter().filter(|t| !t.hidden).map(|t| t.entry.points).sum();
        let hidden = self.tests.iter().filter(|t| t.hidden).map(|t| t.entry.points).sum();
        (visible, hidden)
    }
}

/// Loads every lab under `<root>/labs/`, by number.
pub fn load_all(root: &Path) -> Result<BTreeMap<u32, Lab>, ManifestError> {
    lab_dirs(root).into_iter().map(|(n, dir)| Lab::load(&dir).map(|lab| (n, lab))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "number = 3\ntitle = \"A block split driver\"\nconcepts = [\"grants\"]\nhours = 6\n\n[[test]]\nid = \"requests::refuses_overflow\"\npoints = 10\ntimeout_secs = 60\nkind = \"host\"\n";

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("labs-manifest-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("03-block/tests")).unwrap();
        dir.join("03-block")
    }

    #[test]
    fn a_good_manifest_parses() {
        let m = Manifest::parse(GOOD, Path::new("lab.toml")).unwrap();
        assert_eq!((m.number, m.hours, m.tests.len()), (3, 6, 1));
        assert_eq!(m.tests[0].kind, TestKind::Host);
    }

    #[test]
    fn hostile_a_missing_field_is_named() {
        let err = Manifest::parse("number = 3\ntitle = \"x\"\nconcepts = []\n", Path::new("labs/03-x/lab.toml")).unwrap_err().to_string();
        assert!(err.starts_with("labs/03-x/lab.toml: "), "{err}");
        assert!(err.contains("hours"), "{err}");
    }

    #[test]
    fn hostile_an_unknown_kind_or_field_is_refused() {
        let bad_kind = GOOD.replace("\"host\"", "\"cloud\"");
        assert!(Manifest::parse(&bad_kind, Path::new("lab.toml")).unwrap_err().to_string().contains("cloud"));
        let typo = GOOD.replace("points", "pionts");
        assert!(Manifest::parse(&typo, Path::new("lab.toml")).unwrap_err().to_string().contains("pionts"));
    }

    #[test]
    fn folder_names_give_lab_numbers() {
        assert_eq!(lab_number_of_folder("03-block-driver"), Some(3));
        assert_eq!(lab_number_of_folder("12-x"), Some(12));
        assert_eq!(lab_number_of_folder("3-block"), None);
        assert_eq!(lab_number_of_folder("src"), None);
        assert_eq!(lab_number_of_folder("03-"), None);
    }

    #[test]
    fn test_fns_are_found_after_the_attribute() {
        let src = "fn helper() {}\n#[test]\nfn one() {}\n#[test]\n#[should_panic]\npub fn two() {}\n";
        assert_eq!(test_fns(src), ["one", "two"]);
    }

    #[test]
    fn a_lab_whose_manifest_matches_its_tests_loads() {
        let dir = scratch("good");
        fs::write(dir.join("lab.toml"), GOOD).unwrap();
        fs::write(dir.join("tests/requests.rs"), "#[test]\nfn refuses_overflow() {}\n").unwrap();
        let lab = Lab::load(&dir).unwrap();
        assert_eq!(lab.tests[0].fn_name, "refuses_overflow");
        assert_eq!(lab.points(), (10, 0));
    }

    #[test]
    fn hostile_an_unlisted_test_is_an_error() {
        let dir = scratch("unlisted");
        fs::write(dir.join("lab.toml"), GOOD).unwrap();
        fs::write(dir.join("tests/requests.rs"), "#[test]\nfn refuses_overflow() {}\n#[test]\nfn forgotten() {}\n").unwrap();
        let err = Lab::load(&dir).unwrap_err().to_string();
        assert!(err.contains("requests::forgotten"), "{err}");
    }

    #[test]
    fn hostile_a_listed_test_that_does_not_exist_or_twice_is_an_error() {
        let dir = scratch("ghost");
        fs::write(dir.join("lab.toml"), GOOD.replace("refuses_overflow", "ghost")).unwrap();
        fs::write(dir.join("tests/requests.rs"), "#[test]\nfn refuses_overflow() {}\n").unwrap();
        assert!(Lab::load(&dir).unwrap_err().to_string().contains("`requests::ghost` names no #[test] fn"));
        let twice = format!("{GOOD}\n[[test]]\nid = \"requests::refuses_overflow\"\npoints = 1\ntimeout_secs = 5\nkind = \"vm\"\n");
        fs::write(dir.join("lab.toml"), twice).unwrap();
        assert!(Lab::load(&dir).unwrap_err().to_string().contains("listed twice"));
    }

    #[test]
    fn a_starters_manifest_lists_hidden_tests_whose_files_are_left_out() {
        let dir = scratch("starter");
        let with_hidden = format!("{GOOD}\n[[test]]\nid = \"secret::grants\"\npoints = 5\ntimeout_secs = 5\nkind = \"host\"\n");
        fs::write(dir.join("lab.toml"), with_hidden).unwrap();
        fs::write(dir.join("tests/requests.rs"), "#[test]\nfn refuses_overflow() {}\n").unwrap();
        let lab = Lab::load(&dir).unwrap();
        assert!(lab.tests[1].hidden && !lab.tests[1].present);
        assert_eq!(lab.points(), (10, 5));
        // With a hidden/ folder, the same entry must name a real test.
        fs::create_dir_all(dir.join("hidden")).unwrap();
        assert!(Lab::load(&dir).unwrap_err().to_string().contains("`secret::grants` names no #[test] fn"));
    }

    #[test]
    fn hostile_a_number_that_disagrees_with_the_folder_is_an_error() {
        let dir = scratch("number");
        fs::write(dir.join("lab.toml"), GOOD.replace("number = 3", "number = 4")).unwrap();
        fs::write(dir.join("tests/requests.rs"), "#[test]\nfn refuses_overflow() {}\n").unwrap();
        assert!(Lab::load(&dir).unwrap_err().to_string().contains("number = 4 but the folder is `03-block`"));
    }
}
