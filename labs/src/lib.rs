//! # labs: course labs on hv, their starters and their grader
//!
//! hv exists first of all for course labs. A lab is a folder `labs/<nn>-<name>/` with a
//! handout, written questions, a manifest (`lab.toml`) and tests; the code students write
//! is marked in the reference tree with `// LAB <n> BEGIN` ... `// LAB <n> END` regions,
//! each carrying the stub that replaces it. From that one source of truth this tool
//! lists the labs, generates a student's starting tree (`labs start`), and grades any
//! tree (`labs grade`) with the lab's tests from the instructor's checkout, per-test time
//! limits, and results for a person or an autograder. The instructor's guide is
//! `labs/README.md`.
//!
//! ## Modules, lowest first
//! A module uses only the rows above its own (`tests/architecture.rs` checks it).
//!
//! | module | owns | must never |
//! | --- | --- | --- |
//! | [`manifest`] | `lab.toml`, the lab folders, the check that every test is listed once | read the graded tree |
//! | [`tree`] | which files make up a source tree (`git ls-files` or a walk) | change a file |
//! | [`markers`] | finding solution regions and every marker error, with file and line | decide what a starter contains |
//! | [`starter`] | writing a starter: regions of one lab replaced by stubs, hidden tests left out | touch the reference tree |
//! | [`outcome`] | one result per test and the lab's score | know an output format |
//! | [`runner`] | running a command in its own process group with a time limit | interpret a command's output |
//! | [`harness`] | the crate that builds the instructor's tests against the graded tree | take tests from the graded tree |
//! | [`grade`] | building, running each test, judging passed/failed/timed out/not run | stop before every test has a result |
//! | [`report`] | the text table, the tool's JSON, Gradescope's and PrairieLearn's results | change a score |
//!
//! ## DESIGN
//! - Owns: the lab system (the design is fixed in labs/README.md: folders, manifest,
//!   markers, the generated test crate). The labs' content is in the lab folders and the
//!   reference code, not here.
//! - Must never: read tests from the graded tree (a student could grade themselves), count
//!   a test that did not run as passed, or leave without a result for every test.
//! - Data enters as the instructor's checkout (labs, reference code) and a graded tree, and
//!   leaves as a starter tree or a grade in one of the [`report::Format`]s.
#![deny(missing_docs)]

pub mod manifest;
pub mod tree;
pub mod markers;
pub mod starter;
pub mod outcome;
pub mod runner;
pub mod harness;
pub mod grade;
pub mod report;
