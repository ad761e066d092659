//! The client side (`hv ctl PATH COMMAND ...`): one request over the socket and its
//! reply.
//!
//! Progress lines a long command sends before its reply are handed to the caller as they
//! arrive (`hv ctl` prints them). The words after the command become the request's
//! fields through the command's row in
//! the table (`super::table::fields_from_words`), so the client needs no code per
//! command. The reply is read with the same bound as requests, and checked like any
//! input: a server that sends nonsense gets an error, not a panic.

use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::commands::{find, names};
use super::framing::{Frame, LineReader};
use super::protocol::{encode_request, parse_reply, Answer, Reply, ReplyError, MAX_LINE};
use super::table::fields_from_words;

/// Why `hv ctl` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not a command of the control socket.
    #[error("unknown command '{0}' (known: {known})", known = names())]
    UnknownCommand(String),
    /// The words do not fit the command.
    #[error("{0}")]
    Usage(String),
    /// There is no socket at the path.
    #[error("no control socket at {0} (start hv with `hv run --control {0} ...`)")]
    NoSocket(PathBuf),
    /// A socket nobody listens on.
    #[error("nothing is listening on {0} (the hv that made it has ended)")]
    NotListening(PathBuf),
    /// Connecting, writing or reading failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What failed.
        what: &'static str,
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No line came within the time `hv ctl --timeout` allows.
    #[error("no reply from {path} within {secs} s")]
    TimedOut {
        /// The socket.
        path: PathBuf,
        /// The timeout.
        secs: f64,
    },
    /// The server closed the connection without replying.
    #[error("the server at {0} closed the connection without a reply")]
    NoReply(PathBuf),
    /// The reply line is over the protocol's bound.
    #[error("the server's reply is longer than the protocol's {MAX_LINE} bytes")]
    ReplyTooLong,
    /// The reply is not a reply.
    #[error(transparent)]
    BadReply(#[from] ReplyError),
}

/// Turns `hv ctl`'s words after PATH into a request: the command and its fields.
pub fn prepare(command: &str, words: &[String]) -> Result<(&'static str, Map<String, Value>), ClientError> {
    let spec = find(command).ok_or_else(|| ClientError::UnknownCommand(command.to_string()))?;
    let fields = fields_from_words(spec.name, spec.fields, words).map_err(ClientError::Usage)?;
    Ok((spec.name, fields))
}

/// The server's reply: the command's answer, or the error it failed with.
pub type Outcome = Result<Reply, String>;

/// Sends one request to the socket at `path` and returns the reply line as received
/// and as understood; progress lines before it go to `on_progress` (as received, and
/// the report) as they arrive. With `patience`, waiting longer than that for the next
/// line is an error (a command that sends progress lines may take longer in all).
pub fn call(
    path: &Path,
    command: &str,
    fields: &Map<String, Value>,
    patience: Option<Duration>,
    on_progress: &mut dyn FnMut(&str, &Reply),
) -> Result<(String, Outcome), ClientError> {
    let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ClientError::NoSocket(path.to_path_buf()),
        std::io::ErrorKind::ConnectionRefused => ClientError::NotListening(path.to_path_buf()),
        _ => ClientError::Io { what: "cannot connect to", path: path.to_path_buf(), source },
    })?;
    let set = stream.set_read_timeout(patience).and_then(|()| stream.set_write_timeout(patience));
    set.map_err(|source| ClientError::Io { what: "cannot set a timeout on", path: path.to_path_buf(), source })?;
    let mut line = encode_request(command, fields);
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(|source| ClientError::Io { what: "cannot send the request to", path: path.to_path_buf(), source })?;
    let mut replies = LineReader::new(&stream, MAX_LINE);
    loop {
        let line = match replies.next_line() {
            Ok(Frame::Line(line)) => line,
            Ok(Frame::TooLong) => return Err(ClientError::ReplyTooLong),
            Ok(Frame::Closed { .. }) => return Err(ClientError::NoReply(path.to_path_buf())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ClientError::TimedOut { path: path.to_path_buf(), secs: patience.unwrap_or_default().as_secs_f64() })
            }
            Err(source) => return Err(ClientError::Io { what: "cannot read the reply from", path: path.to_path_buf(), source }),
        };
        let raw = String::from_utf8_lossy(&line).into_owned();
        match parse_reply(&line)? {
            Answer::Progress(report) => on_progress(&raw, &report),
            Answer::Done(reply) => return Ok((raw, Ok(reply))),
            Answer::Failed(error) => return Ok((raw, Err(error))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    /// A one-shot server that reads a request and sends `lines` back.
    fn fake_server(name: &str, lines: &'static [&'static str]) -> (PathBuf, std::thread::JoinHandle<String>) {
        let path = std::env::temp_dir().join(format!("hv-client-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut request = String::new();
            BufReader::new(&stream).read_line(&mut request).unwrap();
            for line in lines {
                (&stream).write_all(format!("{line}\n").as_bytes()).unwrap();
            }
            request
        });
        (path, server)
    }

    #[test]
    fn progress_lines_are_handed_over_before_the_reply() {
        let (path, server) = fake_server(
            "progress",
            &[r#"{"v":1,"progress":true,"text":"round 1","round":1}"#, r#"{"v":1,"progress":true,"text":"round 2"}"#, r#"{"v":1,"ok":true,"text":"done"}"#],
        );
        let mut seen = Vec::new();
        let (raw, outcome) = call(&path, "status", &Map::new(), None, &mut |_, report| seen.push(report.text.clone())).unwrap();
        assert_eq!(server.join().unwrap(), "{\"v\":1,\"cmd\":\"status\"}\n");
        assert_eq!(seen, ["round 1", "round 2"]);
        assert_eq!(raw, r#"{"v":1,"ok":true,"text":"done"}"#);
        assert_eq!(outcome.unwrap().text, "done");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn hostile_server_replies_are_errors() {
        for (name, lines) in [
            ("garbage", &["<html>"][..]),
            ("version", &[r#"{"v":9,"ok":true}"#][..]),
            ("silent", &[][..]),
        ] {
            let (path, server) = fake_server(name, lines);
            let result = call(&path, "status", &Map::new(), None, &mut |_, _| {});
            server.join().unwrap();
            assert!(result.is_err(), "{name}: {result:?}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn missing_and_dead_sockets_are_named() {
        let path = std::env::temp_dir().join(format!("hv-client-{}-none.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        assert!(matches!(call(&path, "status", &Map::new(), None, &mut |_, _| {}), Err(ClientError::NoSocket(_))));
        drop(UnixListener::bind(&path).unwrap());
        assert!(matches!(call(&path, "status", &Map::new(), None, &mut |_, _| {}), Err(ClientError::NotListening(_))));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let path = std::env::temp_dir().join(format!("hv-client-{}-mute.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let patience = Some(Duration::from_millis(100));
        let result = call(&path, "status", &Map::new(), patience, &mut |_, _| {});
        assert!(matches!(result, Err(ClientError::TimedOut { .. })), "{result:?}");
        drop(listener);
        std::fs::remove_file(&path).unwrap();
    }
}
