//! PrairieLearn's `results.json` for external grading.
//!
//! PrairieLearn wants the score as a fraction in 0..1 and each test's points; `gradable`
//! is true even when the build failed (the student gets 0 and the reason, not an error).

use serde_json::{json, Value};

use crate::outcome::{Grade, Status};

/// `{gradable, score (0..1), tests: [{name, points, max_points, output}]}`.
pub fn to_json(grade: &Grade) -> Value {
    let max = grade.max_score();
    let score = if max == 0 { 0.0 } else { f64::from(grade.score()) / f64::from(max) };
    let tests: Vec<Value> = grade
        .tests
        .iter()
        .map(|t| {
            let output = if t.status == Status::Passed { "passed".to_string() } else { format!("{}: {}", t.status.word(), t.output) };
            json!({"name": t.id, "points": t.points, "max_points": t.max_points, "output": output})
        })
        .collect();
    json!({"gradable": true, "score": score, "tests": tests})
}

#[cfg(test)]
mod tests {
    use crate::report::sample;

    #[test]
    fn the_score_is_a_fraction_and_tests_have_points() {
        let v = super::to_json(&sample::grade());
        let score = v["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
        assert_eq!(score, 0.25);
        assert_eq!((&v["tests"][1]["points"], &v["tests"][1]["max_points"]), (&0.into(), &20.into()));
        assert!(v["tests"][1]["output"].as_str().unwrap().starts_with("failed: lab 3"));
    }
}
