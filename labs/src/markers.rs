//! Solution regions: the code a student writes, marked in the reference.
//!
//! The reference tree is the solution. The parts a lab asks students to write are marked
//! with comments, so the reference stays readable and rustfmt leaves the markers alone:
//!
//! ```text
//!     // LAB 3 BEGIN: check the request before touching the disk
//!     ...the reference code...
//!     // LAB 3 STUB: todo!("lab 3: check the request before touching the disk")
//!     // LAB 3 END
//! ```
//!
//! The STUB lines (one or more, after the code) are what the starter gets instead of the
//! region, one stub line each with the `// LAB <n> STUB: ` prefix removed. Because the
//! starter is *generated* from the reference, the two cannot drift apart.
//!
//! A broken marker would silently hand students the solution or a tree that does not
//! build, so every irregularity is an error naming the file and line: END or STUB with no
//! BEGIN, a BEGIN inside an open region, an END (or STUB) naming another lab, a region with
//! no STUB line, code after a region's STUB lines, a lab number with no `labs/<nn>-*/`
//! folder, and a file that ends inside a region.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// What a marker line says.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Marker {
    Begin { lab: u32, what: String },
    Stub { lab: u32, line: String },
    End { lab: u32 },
}

/// One solution region of one file. Line numbers count from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// The lab the region belongs to.
    pub lab: u32,
    /// The BEGIN line's description of the missing piece.
    pub what: String,
    /// Line of `// LAB n BEGIN`.
    pub begin_line: usize,
    /// Line of `// LAB n END`.
    pub end_line: usize,
    /// The whitespace before the BEGIN marker; the stub lines get the same.
    pub indent: String,
    /// The stub's lines, prefixes removed, in order.
    pub stub: Vec<String>,
}

/// What is wrong with a marker.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant's doc says what its fields are
pub enum MarkerErrorKind {
    /// `// LAB ...` that is not `<n> BEGIN: <what>`, `<n> STUB: <line>` or `<n> END`.
    Malformed,
    /// An END with no open region.
    EndWithoutBegin,
    /// A STUB with no open region.
    StubWithoutBegin,
    /// A BEGIN while the region begun on `open_line` is still open.
    BeginInsideRegion { open_line: usize },
    /// An END or STUB naming lab `found` inside a region of lab `open`.
    WrongLab { open: u32, found: u32 },
    /// A region (begun on `begin_line`) that ends without any STUB line.
    NoStub { begin_line: usize },
    /// A code line between a region's STUB lines and its END.
    CodeAfterStub,
    /// A lab number with no `labs/<nn>-*/` folder.
    UnknownLab { lab: u32 },
    /// The file ends inside the region begun on `begin_line`.
    Unterminated { begin_line: usize },
}

/// A marker error at a file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerError {
    /// The file, as given to the scanner.
    pub file: PathBuf,
    /// The line, counting from 1.
    pub line: usize,
    /// What is wrong.
    pub kind: MarkerErrorKind,
}

impl fmt::Display for MarkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        match &self.kind {
            MarkerErrorKind::Malformed => write!(f, "a `// LAB` comment must be `// LAB <n> BEGIN: <what>`, `// LAB <n> STUB: <line>` or `// LAB <n> END`"),
            MarkerErrorKind::EndWithoutBegin => write!(f, "`LAB END` without a BEGIN"),
            MarkerErrorKind::StubWithoutBegin => write!(f, "`LAB STUB` outside a region (no BEGIN before it)"),
            MarkerErrorKind::BeginInsideRegion { open_line } => write!(f, "`LAB BEGIN` inside the region begun on line {open_line} (regions do not nest)"),
            MarkerErrorKind::WrongLab { open, found } => write!(f, "marker of lab {found} inside a region of lab {open}"),
            MarkerErrorKind::NoStub { begin_line } => write!(f, "the region begun on line {begin_line} has no `LAB STUB` line (the starter needs something that compiles)"),
            MarkerErrorKind::CodeAfterStub => write!(f, "code after a region's STUB lines (STUB lines come last, just before END)"),
            MarkerErrorKind::UnknownLab { lab } => write!(f, "lab {lab} has no labs/{lab:02}-*/ folder"),
            MarkerErrorKind::Unterminated { begin_line } => write!(f, "the file ends inside the region begun on line {begin_line} (no `LAB END`)"),
        }
    }
}

impl std::error::Error for MarkerError {}

/// Reads a marker line, if the line is one. `Err(())` for a `// LAB` comment of the wrong form.
fn parse_marker(line: &str) -> Option<Result<Marker, ()>> {
    let rest = line.trim_start().strip_prefix("// LAB ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(lab) = digits.parse::<u32>() else { return Some(Err(())) };
    let rest = &rest[digits.len()..];
    let marker = if let Some(what) = rest.strip_prefix(" BEGIN:") {
        Marker::Begin { lab, what: what.trim().to_string() }
    } else if let Some(stub) = rest.strip_prefix(" STUB:") {
        // One space after the colon belongs to the marker; more is the stub's own indentation.
        Marker::Stub { lab, line: stub.strip_prefix(' ').unwrap_or(stub).trim_end().to_string() }
    } else if rest.trim_end() == " END" {
        Marker::End { lab }
    } else {
        return Some(Err(()));
    };
    Some(Ok(marker))
}

/// The regions of one file's text. `known_labs` are the lab numbers that have a folder.
pub fn scan_text(text: &str, file: &Path, known_labs: &BTreeSet<u32>) -> Result<Vec<Region>, MarkerError> {
    let error = |line: usize, kind| MarkerError { file: file.to_path_buf(), line, kind };
    let mut regions = Vec::new();
    // The open region, and whether its STUB lines have started.
    let mut open: Option<(Region, bool)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        match parse_marker(line) {
            None => {
                if let Some((_, true)) = &open {
                    if !line.trim().is_empty() {
                        return Err(error(number, MarkerErrorKind::CodeAfterStub));
                    }
                }
            }
            Some(Err(())) => return Err(error(number, MarkerErrorKind::Malformed)),
            Some(Ok(Marker::Begin { lab, what })) => {
                if let Some((region, _)) = &open {
                    return Err(error(number, MarkerErrorKind::BeginInsideRegion { open_line: region.begin_line }));
                }
                if !known_labs.contains(&lab) {
                    return Err(error(number, MarkerErrorKind::UnknownLab { lab }));
                }
                let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
                open = Some((Region { lab, what, begin_line: number, end_line: 0, indent, stub: Vec::new() }, false));
            }
            Some(Ok(Marker::Stub { lab, line: stub })) => {
                let Some((region, in_stub)) = &mut open else { return Err(error(number, MarkerErrorKind::StubWithoutBegin)) };
                if region.lab != lab {
                    return Err(error(number, MarkerErrorKind::WrongLab { open: region.lab, found: lab }));
                }
                region.stub.push(stub);
                *in_stub = true;
            }
            Some(Ok(Marker::End { lab })) => {
                let Some((mut region, _)) = open.take() else { return Err(error(number, MarkerErrorKind::EndWithoutBegin)) };
                if region.lab != lab {
                    return Err(error(number, MarkerErrorKind::WrongLab { open: region.lab, found: lab }));
                }
                if region.stub.is_empty() {
                    return Err(error(number, MarkerErrorKind::NoStub { begin_line: region.begin_line }));
                }
                region.end_line = number;
                regions.push(region);
            }
        }
    }
    if let Some((region, _)) = open {
        return Err(error(text.lines().count(), MarkerErrorKind::Unterminated { begin_line: region.begin_line }));
    }
    Ok(regions)
}

/// The regions of every given file (paths relative to `root`), with every file's first
/// error. Files without regions are left out of the result.
pub fn scan_files(root: &Path, files: &[PathBuf], known_labs: &BTreeSet<u32>) -> (Vec<(PathBuf, Vec<Region>)>, Vec<MarkerError>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|x| x == "rs")) {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else { continue };
        if !text.contains("// LAB ") {
            continue;
        }
        match scan_text(&text, file, known_labs) {
            Ok(regions) if regions.is_empty() => {}
            Ok(regions) => found.push((file.clone(), regions)),
            Err(e) => errors.push(e),
        }
    }
    (found, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labs(numbers: &[u32]) -> BTreeSet<u32> {
        numbers.iter().copied().collect()
    }

    /// Joins lines; the markers are built from pieces so that this file itself holds no
    /// marker line for the tree scan to trip over.
    fn src(lines: &[&str]) -> String {
        lines.iter().map(|l| l.replace("@@", "// LAB")).collect::<Vec<_>>().join("\n")
    }

    fn err(lines: &[&str]) -> MarkerError {
        scan_text(&src(lines), Path::new("x.rs"), &labs(&[3, 4])).unwrap_err()
    }

    #[test]
    fn a_good_region_is_read() {
        let text = src(&["fn f() {", "    @@ 3 BEGIN: check the request", "    check();", "    @@ 3 STUB: todo!(\"lab 3: check\")", "    @@ 3 STUB:     more", "    @@ 3 END", "}"]);
        let regions = scan_text(&text, Path::new("x.rs"), &labs(&[3])).unwrap();
        assert_eq!(regions.len(), 1);
        let r = &regions[0];
        assert_eq!((r.lab, r.begin_line, r.end_line, r.indent.as_str(), r.what.as_str()), (3, 2, 6, "    ", "check the request"));
        assert_eq!(r.stub, ["todo!(\"lab 3: check\")", "    more"]);
    }

    #[test]
    fn two_labs_regions_in_one_file_are_both_read() {
        let text = src(&["@@ 3 BEGIN: a", "x", "@@ 3 STUB: y", "@@ 3 END", "@@ 4 BEGIN: b", "@@ 4 STUB: z", "@@ 4 END"]);
        let regions = scan_text(&text, Path::new("x.rs"), &labs(&[3, 4])).unwrap();
        assert_eq!(regions.iter().map(|r| r.lab).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn hostile_end_without_begin() {
        assert_eq!(err(&["a", "@@ 3 END"]), MarkerError { file: "x.rs".into(), line: 2, kind: MarkerErrorKind::EndWithoutBegin });
    }

    #[test]
    fn hostile_stub_without_begin() {
        let e = err(&["@@ 3 STUB: x"]);
        assert_eq!((e.line, e.kind), (1, MarkerErrorKind::StubWithoutBegin));
    }

    #[test]
    fn hostile_begin_inside_a_region() {
        let e = err(&["@@ 3 BEGIN: a", "x", "@@ 4 BEGIN: b"]);
        assert_eq!((e.line, e.kind), (3, MarkerErrorKind::BeginInsideRegion { open_line: 1 }));
    }

    #[test]
    fn hostile_end_of_another_lab() {
        let e = err(&["@@ 3 BEGIN: a", "@@ 3 STUB: x", "@@ 4 END"]);
        assert_eq!((e.line, e.kind), (3, MarkerErrorKind::WrongLab { open: 3, found: 4 }));
    }

    #[test]
    fn hostile_region_without_stub() {
        let e = err(&["@@ 3 BEGIN: a", "code", "@@ 3 END"]);
        assert_eq!((e.line, e.kind), (3, MarkerErrorKind::NoStub { begin_line: 1 }));
    }

    #[test]
    fn hostile_code_after_the_stub() {
        let e = err(&["@@ 3 BEGIN: a", "@@ 3 STUB: x", "code", "@@ 3 END"]);
        assert_eq!((e.line, e.kind), (3, MarkerErrorKind::CodeAfterStub));
    }

    #[test]
    fn hostile_unknown_lab() {
        let e = err(&["", "@@ 9 BEGIN: a", "@@ 9 STUB: x", "@@ 9 END"]);
        assert_eq!((e.line, e.kind.clone()), (2, MarkerErrorKind::UnknownLab { lab: 9 }));
        assert!(e.to_string().starts_with("x.rs:2: lab 9 has no labs/09-*/ folder"), "{e}");
    }

    #[test]
    fn hostile_file_ending_inside_a_region() {
        let e = err(&["@@ 3 BEGIN: a", "x", "@@ 3 STUB: y", ""]);
        assert_eq!(e.kind, MarkerErrorKind::Unterminated { begin_line: 1 });
        assert_eq!(e.line, 3, "the last line");
    }

    #[test]
    fn hostile_malformed_markers() {
        assert_eq!(err(&["@@ three BEGIN: a"]).kind, MarkerErrorKind::Malformed);
        assert_eq!(err(&["@@ 3 START: a"]).kind, MarkerErrorKind::Malformed);
    }

    #[test]
    fn ordinary_comments_are_not_markers() {
        let text = "// LABEL this\n// lab 3 notes\nlet s = \"// LAB 3 END\";\n";
        assert!(scan_text(text, Path::new("x.rs"), &labs(&[])).unwrap().is_empty());
    }
}
