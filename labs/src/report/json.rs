//! The tool's own JSON: everything the grade knows, for scripts and the meta-tests.

use serde_json::{json, Value};

use crate::outcome::Grade;

/// `{lab, title, score, max_score, full, build_seconds, tests: [{id, kind, hidden, status, points, max_points, seconds, output}]}`.
pub fn to_json(grade: &Grade) -> Value {
    let tests: Vec<Value> = grade
        .tests
        .iter()
        .map(|t| json!({"id": t.id, "kind": t.kind, "hidden": t.hidden, "status": t.status.word(), "points": t.points, "max_points": t.max_points, "seconds": t.seconds, "output": t.output}))
        .collect();
    json!({"lab": grade.lab, "title": grade.title, "score": grade.score(), "max_score": grade.max_score(), "full": grade.is_full(), "build_seconds": grade.build_seconds, "tests": tests})
}

#[cfg(test)]
mod tests {
    use crate::report::sample;

    #[test]
    fn the_json_has_the_score_and_every_test() {
        let v = super::to_json(&sample::grade());
        assert_eq!((v["score"].as_u64(), v["max_score"].as_u64(), v["full"].as_bool()), (Some(10), Some(40), Some(false)));
        assert_eq!(v["tests"][2]["status"], "timed out");
        assert_eq!(v["tests"][2]["hidden"], true);
    }
}
