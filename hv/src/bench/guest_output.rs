//! Reading the guest's benchmark lines, as hostile input.
//!
//! The guest prints its measurements on the console (see
//! `pv-guest/src/commands/bench/mod.rs`, and `pv-guest/src/commands/blk.rs` for the
//! `blk-bench` line):
//!
//! ```text
//! bench-rep: rep=0 ops=256 cycles=1234567 check=0x1f00
//! bench-done: workload=pt-update-direct reps=5 ops=256 tsc_khz=2100000
//! blk-bench: requests=32 sectors=8 tsc_cycles=55000000 tsc_khz=2100000 doorbells=31 waits=32
//! blk-read-sum: 9c2f0a61e3b7d455
//! bench-error: pagefault: a task failed
//! ```
//!
//! A guest can print anything, so every line that starts like one of these must parse
//! completely, or the whole run is refused with an error that quotes the line. Other
//! lines (a greeting, a message about a killed task) are left alone.

use std::collections::BTreeMap;

/// One repetition as the guest reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestRep {
    /// Operations in the repetition.
    pub ops: u64,
    /// Guest TSC cycles they took.
    pub cycles: u64,
    /// The workload's checksum.
    pub check: u64,
}

/// Everything the guest reported in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestReport {
    /// The repetitions, in order.
    pub reps: Vec<GuestRep>,
    /// The guest's TSC frequency in kHz, from the closing line.
    pub tsc_khz: u64,
    /// `blk-read-sum`'s hash, if the run printed one.
    pub read_sum: Option<u64>,
}

/// Why the guest's output cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestOutputError {
    /// A line that looks like a result line does not parse.
    #[error("the guest printed a garbled result line ({why}): {line:?}")]
    Garbled {
        /// The line (shortened).
        line: String,
        /// What is wrong with it.
        why: String,
    },
    /// The guest said its workload failed.
    #[error("the guest reported: {0}")]
    GuestFailed(String),
    /// No closing line: the guest stopped before finishing.
    #[error("the guest never printed its closing `bench-done:` line")]
    Unfinished,
}

/// Longest piece of a guest line quoted in an error.
const QUOTE_MAX: usize = 160;

fn garbled(line: &str, why: impl Into<String>) -> GuestOutputError {
    let mut quoted: String = line.chars().take(QUOTE_MAX).collect();
    if quoted.len() < line.len() {
        quoted.push('…');
    }
    GuestOutputError::Garbled { line: quoted, why: why.into() }
}

/// `key=value` words; every word must have the form.
fn fields<'a>(line: &'a str, rest: &'a str) -> Result<BTreeMap<&'a str, &'a str>, GuestOutputError> {
    let mut map = BTreeMap::new();
    for word in rest.split_whitespace() {
        let (key, value) = word.split_once('=').ok_or_else(|| garbled(line, format!("`{word}` is not key=value")))?;
        if map.insert(key, value).is_some() {
            return Err(garbled(line, format!("`{key}` appears twice")));
        }
    }
    Ok(map)
}

fn number(line: &str, map: &BTreeMap<&str, &str>, key: &str) -> Result<u64, GuestOutputError> {
    let value = map.get(key).ok_or_else(|| garbled(line, format!("no `{key}=`")))?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    parsed.map_err(|_| garbled(line, format!("`{key}={value}` is not a number")))
}

/// Parses the console output of one `bench` run.
pub fn parse(text: &str) -> Result<GuestReport, GuestOutputError> {
    let mut report = GuestReport::default();
    let mut done = false;
    for line in text.lines() {
        if let Some(message) = line.strip_prefix("bench-error:") {
            return Err(GuestOutputError::GuestFailed(message.trim().chars().take(QUOTE_MAX).collect()));
        } else if let Some(rest) = line.strip_prefix("bench-rep:") {
            let map = fields(line, rest)?;
            let rep = number(line, &map, "rep")?;
            if rep != report.reps.len() as u64 {
                return Err(garbled(line, format!("expected repetition {}", report.reps.len())));
            }
            let (ops, cycles, check) = (number(line, &map, "ops")?, number(line, &map, "cycles")?, number(line, &map, "check")?);
            report.reps.push(GuestRep { ops, cycles, check });
        } else if let Some(rest) = line.strip_prefix("blk-bench:") {
            let map = fields(line, rest)?;
            let ops = number(line, &map, "requests")?;
            report.reps.push(GuestRep { ops, cycles: number(line, &map, "tsc_cycles")?, check: ops });
        } else if let Some(rest) = line.strip_prefix("blk-read-sum:") {
            let hash = u64::from_str_radix(rest.trim(), 16).map_err(|_| garbled(line, "not a hexadecimal hash"))?;
            report.read_sum = Some(hash);
        } else if let Some(rest) = line.strip_prefix("bench-done:") {
            let map = fields(line, rest)?;
            let reps = number(line, &map, "reps")?;
            report.tsc_khz = number(line, &map, "tsc_khz")?;
            done = true;
            // blk's repetitions are blk-bench lines, absent from a zero-work run.
            let ops = number(line, &map, "ops")?;
            if ops > 0 && reps != report.reps.len() as u64 {
                return Err(garbled(line, format!("announces {reps} repetitions but {} were reported", report.reps.len())));
            }
        }
    }
    if !done {
        return Err(GuestOutputError::Unfinished);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "pv-guest: hello\n\
        bench-rep: rep=0 ops=64 cycles=1000 check=0x280\n\
        bench-rep: rep=1 ops=64 cycles=1200 check=0x280\n\
        bench-done: workload=pt-update-direct reps=2 ops=64 tsc_khz=2596132\n";

    #[test]
    fn reads_repetitions_and_the_closing_line() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.reps, vec![GuestRep { ops: 64, cycles: 1000, check: 0x280 }, GuestRep { ops: 64, cycles: 1200, check: 0x280 }]);
        assert_eq!((r.tsc_khz, r.read_sum), (2_596_132, None));
    }

    #[test]
    fn reads_blk_lines() {
        let text = "blk-bench: requests=32 sectors=8 tsc_cycles=5000 tsc_khz=2000 doorbells=31 waits=32\n\
            blk-read-sum: 00000000000000ff\n\
            bench-done: workload=blk reps=1 ops=32 tsc_khz=2000\n";
        let r = parse(text).unwrap();
        assert_eq!(r.reps, vec![GuestRep { ops: 32, cycles: 5000, check: 32 }]);
        assert_eq!(r.read_sum, Some(0xff));
    }

    #[test]
    fn hostile_garbled_result_line_is_an_error_quoting_it() {
        for bad in [
            "bench-rep: rep=0 ops=64 cycles=lots check=0x1",
            "bench-rep: rep=0 ops=64 check=0x1",
            "bench-rep: rep=0 ops=64 cycles=1 cycles=2 check=0x1",
            "bench-rep: rep=0 ops=64 cycles=1 check=0x1 junk",
            "bench-rep: rep=5 ops=64 cycles=1 check=0x1",
            "blk-read-sum: xyz",
            "bench-rep: rep=0 ops=99999999999999999999999 cycles=1 check=0x1",
        ] {
            match parse(&format!("{bad}\nbench-done: workload=x reps=1 ops=1 tsc_khz=1\n")) {
                Err(GuestOutputError::Garbled { line, .. }) => assert_eq!(line, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_very_long_garbled_line_is_shortened() {
        let bad = format!("bench-rep: {}", "x".repeat(10_000));
        let Err(GuestOutputError::Garbled { line, .. }) = parse(&bad) else { panic!("accepted") };
        assert!(line.chars().count() <= QUOTE_MAX + 1);
    }

    #[test]
    fn the_guests_own_failure_is_passed_on() {
        let e = parse("bench-error: pagefault: a task failed\n").unwrap_err();
        assert_eq!(e, GuestOutputError::GuestFailed("pagefault: a task failed".into()));
    }

    #[test]
    fn missing_closing_line_or_repetitions_are_errors() {
        assert_eq!(parse("bench-rep: rep=0 ops=1 cycles=1 check=0x0\n"), Err(GuestOutputError::Unfinished));
        assert!(matches!(parse("bench-done: workload=x reps=2 ops=1 tsc_khz=1\n"), Err(GuestOutputError::Garbled { .. })));
    }

    #[test]
    fn other_lines_are_ignored() {
        let text = format!("pv-guest: task 0 killed: something\n{GOOD}");
        assert_eq!(parse(&text).unwrap().reps.len(), 2);
    }
}
