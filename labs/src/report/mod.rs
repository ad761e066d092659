//! The grade, written for a person or for an autograder.
//!
//! One [`Grade`] has four views: a score table for the terminal ([`text`]), the tool's
//! own JSON with every detail ([`json`]), and the results files of the two autograders
//! courses use most ([`gradescope`], [`prairielearn`]).

pub mod text;
pub mod json;
pub mod gradescope;
pub mod prairielearn;

use crate::outcome::Grade;

/// An output format of `labs grade`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A score table and each failure's message.
    Text,
    /// Everything, as the tool's own JSON.
    Json,
    /// Gradescope's `results.json`.
    Gradescope,
    /// PrairieLearn's `results.json`.
    Prairielearn,
}

/// `grade` in `format`.
pub fn render(grade: &Grade, format: Format) -> String {
    match format {
        Format::Text => text::render(grade),
        Format::Json => pretty(&json::to_json(grade)),
        Format::Gradescope => pretty(&gradescope::to_json(grade)),
        Format::Prairielearn => pretty(&prairielearn::to_json(grade)),
    }
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a serde_json::Value always serialises");
    text.push('\n');
    text
}

#[cfg(test)]
pub(crate) mod sample {
    use crate::outcome::{Grade, Status, TestResult};

    /// A grade with one test of each interesting kind.
    pub fn grade() -> Grade {
        let test = |id: &str, hidden, status, points, max_points, output: &str| TestResult {
            id: id.into(),
            kind: "host",
            hidden,
            status,
            points,
            max_points,
            seconds: 0.5,
            output: output.into(),
        };
        Grade {
            lab: 3,
            title: "A block split driver".into(),
            build_seconds: 12.0,
            tests: vec![
                test("requests::good", false, Status::Passed, 10, 10, ""),
                test("requests::overflow", false, Status::Failed, 0, 20, "lab 3: check the sector range"),
                test("secret::grants", true, Status::TimedOut, 0, 10, "timed out"),
            ],
        }
    }
}
