//! Gradescope's `results.json`.
//!
//! Gradescope runs the autograder in a container without `/dev/kvm`, so VM tests come out
//! "not run" there (see labs/README.md). Hidden tests get `visibility: "after_published"`:
//! students see them once the instructor publishes the grades.

use serde_json::{json, Value};

use crate::outcome::{Grade, Status};

/// `{score, tests: [{name, score, max_score, status, output, visibility}]}`.
pub fn to_json(grade: &Grade) -> Value {
    let tests: Vec<Value> = grade
        .tests
        .iter()
        .map(|t| {
            let status = if t.status == Status::Passed { "passed" } else { "failed" };
            let output = if t.status == Status::Passed { "passed".to_string() } else { format!("{}: {}", t.status.word(), t.output) };
            let visibility = if t.hidden { "after_published" } else { "visible" };
            json!({"name": t.id, "score": t.points, "max_score": t.max_points, "status": status, "output": output, "visibility": visibility})
        })
        .collect();
    json!({"score": grade.score(), "tests": tests})
}

#[cfg(test)]
mod tests {
    use crate::report::sample;

    #[test]
    fn the_results_file_has_exactly_gradescopes_keys() {
        let v = super::to_json(&sample::grade());
        let top: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(top, ["score", "tests"]);
        assert_eq!(v["score"], 10);
        for t in v["tests"].as_array().unwrap() {
            let mut keys: Vec<&String> = t.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(keys, ["max_score", "name", "output", "score", "status", "visibility"]);
        }
        assert_eq!((&v["tests"][0]["status"], &v["tests"][0]["visibility"]), (&"passed".into(), &"visible".into()));
        assert_eq!(v["tests"][1]["status"], "failed");
        assert!(v["tests"][1]["output"].as_str().unwrap().contains("lab 3: check the sector range"));
        assert_eq!((&v["tests"][2]["status"], &v["tests"][2]["visibility"]), (&"failed".into(), &"after_published".into()));
    }
}
