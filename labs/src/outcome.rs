//! What grading found: one result per test, and the lab's score.
//!
//! Every output format (the text table, JSON, Gradescope, PrairieLearn) is a view of
//! these values, so they can never disagree about a score.

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The test ran and passed: full points.
    Passed,
    /// The test ran and failed (its output says why): no points.
    Failed,
    /// The test ran past its time limit and was killed: no points.
    TimedOut,
    /// A VM test on a machine without `/dev/kvm` (`LAB-NOT-RUN:` in its output): no points.
    NotRun,
    /// The graded tree or the tests did not build: no points.
    BuildFailed,
}

impl Status {
    /// A short lowercase word for tables and JSON.
    pub fn word(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::TimedOut => "timed out",
            Status::NotRun => "not run",
            Status::BuildFailed => "build failed",
        }
    }
}

/// One graded test.
#[derive(Clone, Debug)]
pub struct TestResult {
    /// `<file stem>::<fn name>`.
    pub id: String,
    /// `host` or `vm`.
    pub kind: &'static str,
    /// Kept out of starters; shown to students only after the deadline.
    pub hidden: bool,
    /// How it ended.
    pub status: Status,
    /// Points earned (all or nothing).
    pub points: u32,
    /// Points possible.
    pub max_points: u32,
    /// Seconds the test took (0 when it did not run).
    pub seconds: f64,
    /// What a student should read: the failure message, the timeout, the reason it did not run.
    pub output: String,
}

/// The grade of one lab on one tree.
#[derive(Clone, Debug)]
pub struct Grade {
    /// The lab's number.
    pub lab: u32,
    /// The lab's title.
    pub title: String,
    /// Seconds spent building the tests against the tree.
    pub build_seconds: f64,
    /// One result per graded test, in manifest order.
    pub tests: Vec<TestResult>,
}

impl Grade {
    /// Points earned.
    pub fn score(&self) -> u32 {
        self.tests.iter().map(|t| t.points).sum()
    }

    /// Points possible.
    pub fn max_score(&self) -> u32 {
        self.tests.iter().map(|t| t.max_points).sum()
    }

    /// True only when every test passed and there was something to pass.
    pub fn is_full(&self) -> bool {
        self.max_score() > 0 && self.score() == self.max_score()
    }
}
