//! The client side (`hv ctl PATH COMMAND ...`): one request over the socket and its
//! reply.
//!
//! The words after the command become the request's fields through the command's row in
//! the table (`super::table::fields_from_words`), so the client needs no code per
//! command. The reply is read with the same bound as requests, and checked like any
//! input: a server that sends nonsense gets an error, not a panic.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::commands::{find, names};
use super::framing::{Frame, LineReader};
use super::protocol::{encode_request, parse_reply, Answer, ReplyError, MAX_LINE};
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

/// Sends one request to the socket at `path` and returns the reply line as received
/// and as understood.
pub fn call(path: &Path, command: &str, fields: &Map<String, Value>) -> Result<(String, Answer), ClientError> {
    let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ClientError::NoSocket(path.to_path_buf()),
        std::io::ErrorKind::ConnectionRefused => ClientError::NotListening(path.to_path_buf()),
        _ => ClientError::Io { what: "cannot connect to", path: path.to_path_buf(), source },
    })?;
    let mut line = encode_request(command, fields);
    line.push('\n');
    (&stream).write_all(line.as_bytes()).map_err(|source| ClientError::Io { what: "cannot send the request to", path: path.to_path_buf(), source })?;
    let mut replies = LineReader::new(&stream, MAX_LINE);
    match replies.next_line() {
        Ok(Frame::Line(reply)) => {
            let answer = parse_reply(&reply)?;
            Ok((String::from_utf8_lossy(&reply).into_owned(), answer))
        }
        Ok(Frame::TooLong) => Err(ClientError::ReplyTooLong),
        Ok(Frame::Closed { .. }) => Err(ClientError::NoReply(path.to_path_buf())),
        Err(source) => Err(ClientError::Io { what: "cannot read the reply from", path: path.to_path_buf(), source }),
    }
}
