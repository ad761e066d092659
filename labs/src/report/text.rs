//! The score table a student or instructor reads in the terminal.

use crate::outcome::{Grade, Status};

/// One line per test, then each failing test's output, then the score.
pub fn render(grade: &Grade) -> String {
    let mut out = format!("lab {}: {}\n\n", grade.lab, grade.title);
    for t in &grade.tests {
        let hidden = if t.hidden { " (hidden)" } else { "" };
        out.push_str(&format!("  {:<12} {:>3}/{:<3} {:<4} {}{hidden}\n", t.status.word(), t.points, t.max_points, t.kind, t.id));
    }
    for t in grade.tests.iter().filter(|t| t.status != Status::Passed) {
        out.push_str(&format!("\n--- {} ({}) ---\n", t.id, t.status.word()));
        for line in t.output.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!("\nscore: {}/{}  (build {:.0} s, tests {:.0} s)\n", grade.score(), grade.max_score(), grade.build_seconds, grade.tests.iter().map(|t| t.seconds).sum::<f64>()));
    out
}

#[cfg(test)]
mod tests {
    use crate::report::sample;

    #[test]
    fn the_table_shows_every_test_and_each_failure() {
        let text = super::render(&sample::grade());
        assert!(text.contains("passed        10/10"), "{text}");
        assert!(text.contains("--- requests::overflow (failed) ---\n  lab 3: check the sector range"), "{text}");
        assert!(text.contains("secret::grants (hidden)"), "{text}");
        assert!(text.contains("score: 10/40"), "{text}");
    }
}
