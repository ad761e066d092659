//! One large HTTP download with the system's `curl`, timed by `curl` itself.
//!
//! The same program, with the same options, fetches the guest's `/big` and the host
//! baseline's (`super::http_baseline`), so what differs is only who serves the bytes.
//! `curl -w` prints its own figures when the transfer ends; `time_total` runs from the
//! start of the connection to the last byte, so the process's start-up is not in it.
//! `curl` runs in the namespace of the thread that starts it (a child process inherits
//! its parent thread's namespaces).

use std::process::{Command, Stdio};
use std::time::Duration;

/// What `-w` makes `curl` print after the transfer: status, bytes, seconds.
const WRITE_OUT: &str = "%{http_code} %{size_download} %{time_total}";

/// One transfer's figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transfer {
    /// Body bytes received.
    pub bytes: u64,
    /// From the start of the connection to the last byte.
    pub seconds: f64,
}

impl Transfer {
    /// Bytes a second.
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.seconds
    }
}

/// Why a download gave no figure.
#[derive(Debug, thiserror::Error)]
pub enum CurlError {
    /// `curl` is not installed.
    #[error("`curl` is not installed (Debian: apt-get install curl)")]
    Missing,
    /// It ran and failed, or said something else than asked.
    #[error("curl {url}: {message}")]
    Failed {
        /// What it fetched.
        url: String,
        /// Why it failed.
        message: String,
    },
}

/// Whether `curl` can be run here.
pub fn installed() -> bool {
    Command::new("curl").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Fetches `url` (into nothing), giving up after `limit`; the body must be `expected`
/// bytes with status 200.
pub fn fetch(url: &str, expected: u64, limit: Duration) -> Result<Transfer, CurlError> {
    let failed = |message: String| CurlError::Failed { url: url.to_string(), message };
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--noproxy", "*", "--output", "/dev/null", "--write-out", WRITE_OUT])
        .args(["--max-time", &limit.as_secs().max(1).to_string(), url])
        .output()
        .map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { CurlError::Missing } else { failed(e.to_string()) })?;
    if !out.status.success() {
        return Err(failed(format!("{} ({})", String::from_utf8_lossy(&out.stderr).trim(), out.status)));
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    let (status, transfer) = parse_write_out(&printed).ok_or_else(|| failed(format!("cannot read curl's figures in {printed:?}")))?;
    if status != 200 || transfer.bytes != expected {
        return Err(failed(format!("status {status}, {} bytes where {expected} were asked for", transfer.bytes)));
    }
    Ok(transfer)
}

/// Reads what [`WRITE_OUT`] printed: `STATUS BYTES SECONDS`. A time of zero or a figure
/// that is not a number is refused (no transfer takes no time).
pub fn parse_write_out(printed: &str) -> Option<(u16, Transfer)> {
    let mut words = printed.split_whitespace();
    let status = words.next()?.parse().ok()?;
    let bytes = words.next()?.parse().ok()?;
    // Older curls print seconds with a decimal comma in some locales.
    let seconds: f64 = words.next()?.replace(',', ".").parse().ok()?;
    if words.next().is_some() || !seconds.is_finite() || seconds <= 0.0 {
        return None;
    }
    Some((status, Transfer { bytes, seconds }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curls_figures_are_read_back() {
        let (status, t) = parse_write_out("200 1048576 0.052310").expect("figures");
        assert_eq!((status, t.bytes), (200, 1 << 20));
        assert!((t.seconds - 0.05231).abs() < 1e-9);
        assert!((t.bytes_per_second() - (1 << 20) as f64 / 0.05231).abs() < 1e-3);
        assert_eq!(parse_write_out("404 0 0,001").map(|(s, t)| (s, t.bytes)), Some((404, 0)));
    }

    #[test]
    fn garbled_figures_are_refused() {
        assert_eq!(parse_write_out(""), None);
        assert_eq!(parse_write_out("200 100"), None);
        assert_eq!(parse_write_out("200 100 0.000000"), None, "no transfer takes no time");
        assert_eq!(parse_write_out("200 100 1.0 extra"), None);
        assert_eq!(parse_write_out("200 -5 1.0"), None);
        assert_eq!(parse_write_out("ok 100 1.0"), None);
        assert_eq!(parse_write_out("200 100 NaN"), None);
    }
}
