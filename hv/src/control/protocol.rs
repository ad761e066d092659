//! # The control protocol, version 1
//!
//! What travels on hv's control socket (`hv run --control PATH`), defined here and
//! nowhere else; `docs/control.md` tells the same story for users.
//!
//! ## Framing
//!
//! A Unix stream socket carrying **JSON lines**: every message, either way, is one JSON
//! object in UTF-8 on one line, ended by `\n` (a `\r` just before it is dropped, so
//! `socat` and `nc` work). A line is at most [`MAX_LINE`] bytes (64 KiB) without its
//! `\n`.
//!
//! The client writes a request line; the server answers it with exactly one reply line,
//! which a long command may precede with progress lines (below). Replies come in the
//! order of the requests, so a client may write several requests on one connection
//! before reading (the server reads the next request only after it has answered the
//! previous one). There are no request ids and no messages the client did not ask for.
//!
//! ## Requests
//!
//! ```text
//! {"v": 1, "cmd": NAME, ARGUMENT: VALUE, ...}
//! ```
//! - `v` (integer): the protocol version the client speaks; must be [`VERSION`].
//! - `cmd` (string): the command.
//! - the command's arguments, each a top-level field of the type the command names;
//!   a field the command does not take is an error (so a misspelt option is never
//!   silently ignored).
//!
//! | `cmd` | arguments | reply fields besides `v`, `ok`, `text` |
//! | --- | --- | --- |
//! | `pause` | none | `state`: `"paused"`; `changed` (bool): false if it already was |
//! | `resume` | none | `state`: `"running"`; `changed` (bool): false if it already ran |
//! | `status` | none | `state`: `"running"` or `"paused"`; `mmu`: `"ept"` or `"shadow"`; `exits`, `hypercalls` (integers: totals so far); `uptime_ms` (number: since hv started); `ram_bytes` (integer); `kernel` (string: a path, or `"built-in pv-guest"`); `guest_args` (array of strings) |
//! | `stats` | none | `stats`: the `--stats` figures as an object (`wall_ms`, `first_console_line_ms`, `exits {total, by_reason}`, `hypercalls {total, by_name, refused}`, `mmu_update_entries`, `memory {mode, kvm_translation_flushes, shadow, guest}`, `devices {NAME: {...}}`, `balloon`, `net {frames_sent, bytes_sent, frames_received, bytes_received, refused, dropped_no_buffer, dropped_bad_frame, ring_errors, budget_exhausted}` (null without a network device), `doorbell_exits`; see `RunStats::to_json`); `rings_in_flight`; `migration`; `switch {ports: [{id, name, frames_from_it, bytes_from_it, frames_to_it, bytes_to_it, flooded, filtered, dropped_bad, dropped_queue_full, queued}], departed, mac_table}` (null without a switch) |
//! | `snapshot` | `file` (string, required: where to write; relative to hv's working directory, and `hv ctl` makes it absolute first); `stop` (bool, default false: end the run once written) | `file`; `pages_stored`, `ram_pages`, `file_bytes` (apparent size), `stored_bytes` (integers); `paused_ms` (number: how long the guest was stopped for it); `stopped` (bool) |
//! | `migrate` | `destination` (string, required: `HOST:PORT` of an `hv run --incoming`); `max_rounds` (integer 1..=1000, default 30); `downtime_ms` (integer, default 5: the target); `json`, `plot` (strings: files to write the figures and the chart to) | `report`: the whole `MigrationReport` (rounds, `stopped_because`, totals, `downtime_ms`, ...); before it, one progress line per round with `round`: that round's `RoundFigures` |
//! | `balloon` | `mib` (integer, required: MiB of RAM the guest should keep, at most its RAM) | `target_mib`, `held_pages` (frames the host holds now), `floor_pages` (the floor the guest announced), `inflated`, `deflated` (frames, in all), `refused` (batches) |
//!
//! `pause` answers only once the vCPU is out of the guest and will not enter it again
//! until `resume`; `resume` answers once it may. `status` and `stats` leave the guest
//! running or paused as it was; so does `snapshot` unless `stop` is true (its reply is
//! then the last thing the run sends), and so does a `migrate` that fails; one that
//! succeeds ends the run here (the guest runs at the destination), after its reply.
//!
//! ## Replies
//!
//! ```text
//! {"v": 1, "ok": true, "text": "...", FIELD: VALUE, ...}     success
//! {"v": 1, "ok": false, "error": "..."}                      failure
//! ```
//! - `v`: the version the server speaks (also in replies to requests it refused).
//! - `ok`: whether the command was done.
//! - `text` (success only): the answer for a person, possibly several lines; `hv ctl`
//!   prints it. Programs read the other fields.
//! - `error` (failure only): one line saying what was wrong, e.g. `unknown command
//!   'paws' (known: pause, resume, status, stats, snapshot, migrate, balloon)`.
//!
//! ## Progress lines
//!
//! ```text
//! {"v": 1, "progress": true, "text": "...", FIELD: VALUE, ...}
//! ```
//! A command that takes a while may report how it is going before its reply: zero or
//! more progress lines, each with `text` for a person and fields of the command's own,
//! then the reply (the line with `ok`). A client reads lines until the one with `ok`;
//! it may show or ignore the others. None of the commands above sends any yet; a
//! command that does says so in its row.
//!
//! ## Versioning rule
//!
//! Within version 1, commands, request arguments and reply fields may be **added**;
//! none is removed or changes meaning or type. A client therefore ignores reply fields
//! it does not know, and a server refuses arguments it does not know (so a client
//! relying on a newer argument learns at once that this hv lacks it). Anything else
//! bumps `v`. A server answers a request for another version with an error naming both
//! versions; it never guesses.
//!
//! ## Limits, and what is not guaranteed
//!
//! - The server refuses a line over [`MAX_LINE`] bytes with an error reply, then closes
//!   the connection (it cannot tell where the next request would start).
//! - A request line must be complete within 5 s of connecting or of the previous
//!   reply (`server::REQUEST_TIMEOUT`); otherwise the server replies with an
//!   error and closes. At most `server::MAX_CONNECTIONS` connections are served at once;
//!   one more is answered with an error and closed.
//! - A command runs to the end even if its client goes away meanwhile; a paused guest
//!   stays paused until someone resumes it.
//! - Reply fields come in no particular order (after `v`, `ok` and `text`).
//! - There is no authentication: whoever can open the socket file (the owner: it is
//!   created with mode 0600) controls the VM.
//!
//! ## A session
//!
//! ```text
//! → {"v":1,"cmd":"pause"}
//! ← {"v":1,"ok":true,"text":"paused","changed":true,"state":"paused"}
//! → {"v":1,"cmd":"status"}
//! ← {"v":1,"ok":true,"text":"state        paused\n...","exits":2,...,"mmu":"ept",...,"state":"paused",...}
//! → {"v":1,"cmd":"paws"}
//! ← {"v":1,"ok":false,"error":"unknown command 'paws' (known: pause, resume, status, stats, snapshot, migrate, balloon)"}
//! ```

use serde_json::{Map, Value};

/// The protocol version this hv speaks.
pub const VERSION: u64 = 1;

/// Longest line either side accepts, without its `\n` (64 KiB): far more than any
/// request needs, small enough that a hostile client cannot make hv hold much.
pub const MAX_LINE: usize = 64 * 1024;

/// Longest piece of a client's input quoted back in an error message.
const MAX_QUOTE: usize = 40;

/// A request that passed the envelope checks: its command and its arguments (every field
/// but `v` and `cmd`), not yet checked against the command.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `cmd`.
    pub cmd: String,
    /// The other fields.
    pub args: Map<String, Value>,
}

/// Why a request line was refused before its command was looked at. The message is the
/// error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The line is not UTF-8.
    #[error("the request is not UTF-8 text")]
    NotUtf8,
    /// The line is empty.
    #[error("empty request line (expected a JSON object such as {{\"v\":1,\"cmd\":\"status\"}})")]
    Empty,
    /// The line is not JSON.
    #[error("the request is not valid JSON: {0}")]
    NotJson(String),
    /// The line is JSON but not an object.
    #[error("the request must be a JSON object, not {0}")]
    NotObject(&'static str),
    /// No `v`.
    #[error("the request has no \"v\" field (the protocol version; this hv speaks {VERSION})")]
    NoVersion,
    /// `v` is not the version this hv speaks.
    #[error("unsupported protocol version {0} (this hv speaks version {VERSION})")]
    WrongVersion(String),
    /// No `cmd`.
    #[error("the request has no \"cmd\" field")]
    NoCommand,
    /// `cmd` is not a string.
    #[error("\"cmd\" must be a string, not {0}")]
    CommandNotText(&'static str),
}

/// The JSON type of `value`, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` cut to a length fit for an error message, marked when cut.
pub fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTE) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Checks one request line (without its `\n`) up to the command's arguments.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| RequestError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(RequestError::Empty);
    }
    // serde_json bounds nesting (128 levels) itself, so a hostile `[[[[...` is an error,
    // not a stack overflow; the line's length is bounded by the reader.
    let value: Value = serde_json::from_str(text).map_err(|e| RequestError::NotJson(e.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(RequestError::NotObject(type_name(&value)));
    };
    match fields.remove("v") {
        None => return Err(RequestError::NoVersion),
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(Value::Number(n)) => return Err(RequestError::WrongVersion(quote(&n.to_string()))),
        Some(other) => return Err(RequestError::WrongVersion(quote(&other.to_string()))),
    }
    let cmd = match fields.remove("cmd") {
        None => return Err(RequestError::NoCommand),
        Some(Value::String(cmd)) => cmd,
        Some(other) => return Err(RequestError::CommandNotText(type_name(&other))),
    };
    Ok(Request { cmd, args: fields })
}

/// A request as a line (without `\n`), for the client.
pub fn encode_request(cmd: &str, args: &Map<String, Value>) -> String {
    let mut line = format!("{{\"v\":{VERSION},\"cmd\":{}", Value::from(cmd));
    append_fields(&mut line, args);
    line.push('}');
    line
}

/// What a successful command answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// For a person (`text`).
    pub text: String,
    /// For a program: the reply's other fields.
    pub fields: Map<String, Value>,
}

impl Reply {
    /// A reply saying `text`, with no fields yet.
    pub fn new(text: impl Into<String>) -> Self {
        Reply { text: text.into(), fields: Map::new() }
    }

    /// Adds the field `name`.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(name.to_string(), value.into());
        self
    }
}

/// Appends `,"name":value` for each field (keys `v`, `ok`, `text` and `error` belong to
/// the envelope and are never a command's field names).
fn append_fields(line: &mut String, fields: &Map<String, Value>) {
    for (name, value) in fields {
        line.push(',');
        line.push_str(&Value::from(name.as_str()).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    }
}

/// A success reply as a line (without `\n`); the envelope fields come first so a person
/// reading the socket sees them first.
pub fn encode_ok(reply: &Reply) -> String {
    let mut line = format!("{{\"v\":{VERSION},\"ok\":true,\"text\":{}", Value::from(reply.text.as_str()));
    append_fields(&mut line, &reply.fields);
    line.push('}');
    line
}

/// A progress line (without `\n`).
pub fn encode_progress(report: &Reply) -> String {
    let mut line = format!("{{\"v\":{VERSION},\"progress\":true,\"text\":{}", Value::from(report.text.as_str()));
    append_fields(&mut line, &report.fields);
    line.push('}');
    line
}

/// A failure reply as a line (without `\n`).
pub fn encode_error(message: &str) -> String {
    format!("{{\"v\":{VERSION},\"ok\":false,\"error\":{}}}", Value::from(message))
}

/// A line from the server as the client reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `progress: true`: more lines follow.
    Progress(Reply),
    /// `ok: true`.
    Done(Reply),
    /// `ok: false`, with its `error`.
    Failed(String),
}

/// Why a reply line from the server makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not a JSON object.
    #[error("the server's reply is not a JSON object: {0}")]
    NotObject(String),
    /// Another protocol version.
    #[error("the server speaks protocol version {0}, this hv speaks {VERSION}")]
    WrongVersion(String),
    /// `ok` missing or not a boolean, and not a progress line either.
    #[error("the server's reply has no boolean \"ok\" field")]
    NoOk,
    /// A failure without its message.
    #[error("the server's reply failed without an \"error\" string")]
    NoError,
}

/// Checks a reply line (without `\n`).
pub fn parse_reply(line: &[u8]) -> Result<Answer, ReplyError> {
    let text = String::from_utf8_lossy(line);
    let value: Value = serde_json::from_str(&text).map_err(|e| ReplyError::NotObject(e.to_string()))?;
    let Value::Object(mut fields) = value else {
        return Err(ReplyError::NotObject(format!("it is {}", type_name(&value))));
    };
    match fields.remove("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        other => return Err(ReplyError::WrongVersion(other.map_or("(none)".into(), |v| quote(&v.to_string())))),
    }
    let take_text = |fields: &mut Map<String, Value>| match fields.remove("text") {
        Some(Value::String(text)) => text,
        _ => String::new(),
    };
    if fields.remove("progress") == Some(Value::Bool(true)) {
        return Ok(Answer::Progress(Reply { text: take_text(&mut fields), fields }));
    }
    match fields.remove("ok") {
        Some(Value::Bool(true)) => Ok(Answer::Done(Reply { text: take_text(&mut fields), fields })),
        Some(Value::Bool(false)) => match fields.remove("error") {
            Some(Value::String(error)) => Ok(Answer::Failed(error)),
            _ => Err(ReplyError::NoError),
        },
        _ => Err(ReplyError::NoOk),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plain_request_parses() {
        let r = parse_request(br#"{"v":1,"cmd":"status"}"#).unwrap();
        assert_eq!(r, Request { cmd: "status".into(), args: Map::new() });
    }

    #[test]
    fn arguments_stay_for_the_command_and_crlf_is_accepted() {
        let r = parse_request(b"{\"cmd\":\"snapshot\",\"v\":1,\"file\":\"a\",\"stop\":true}\r").unwrap();
        assert_eq!(r.cmd, "snapshot");
        assert_eq!(Value::Object(r.args), json!({"file": "a", "stop": true}));
    }

    #[test]
    fn hostile_not_utf8() {
        assert_eq!(parse_request(b"{\"v\":1,\"cmd\":\"\xff\xfe\"}"), Err(RequestError::NotUtf8));
    }

    #[test]
    fn hostile_garbage_and_empty_lines() {
        assert!(matches!(parse_request(b"hello"), Err(RequestError::NotJson(_))));
        assert!(matches!(parse_request(b"{\"v\":1,"), Err(RequestError::NotJson(_))));
        assert_eq!(parse_request(b""), Err(RequestError::Empty));
        assert_eq!(parse_request(b"  \r"), Err(RequestError::Empty));
    }

    #[test]
    fn hostile_not_an_object() {
        assert_eq!(parse_request(b"[1,2]"), Err(RequestError::NotObject("an array")));
        assert_eq!(parse_request(b"\"status\""), Err(RequestError::NotObject("a string")));
        assert_eq!(parse_request(b"null"), Err(RequestError::NotObject("null")));
    }

    #[test]
    fn hostile_deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{{\"v\":1,\"cmd\":\"status\",\"x\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(parse_request(deep.as_bytes()), Err(RequestError::NotJson(_))));
    }

    #[test]
    fn hostile_versions() {
        assert_eq!(parse_request(br#"{"cmd":"status"}"#), Err(RequestError::NoVersion));
        assert_eq!(parse_request(br#"{"v":2,"cmd":"status"}"#), Err(RequestError::WrongVersion("2".into())));
        assert_eq!(parse_request(br#"{"v":1.0,"cmd":"status"}"#), Err(RequestError::WrongVersion("1.0".into())));
        assert_eq!(parse_request(br#"{"v":-1,"cmd":"status"}"#), Err(RequestError::WrongVersion("-1".into())));
        assert_eq!(parse_request(br#"{"v":"1","cmd":"status"}"#), Err(RequestError::WrongVersion("\"1\"".into())));
        let long = format!("{{\"v\":\"{}\",\"cmd\":\"status\"}}", "x".repeat(1000));
        let message = parse_request(long.as_bytes()).unwrap_err().to_string();
        assert!(message.len() < 120, "a hostile value is not echoed whole: {message}");
    }

    #[test]
    fn hostile_command_field() {
        assert_eq!(parse_request(br#"{"v":1}"#), Err(RequestError::NoCommand));
        assert_eq!(parse_request(br#"{"v":1,"cmd":7}"#), Err(RequestError::CommandNotText("a number")));
        assert_eq!(parse_request(br#"{"v":1,"cmd":["status"]}"#), Err(RequestError::CommandNotText("an array")));
    }

    #[test]
    fn quote_cuts_on_a_character_boundary() {
        assert_eq!(quote("short"), "short");
        let cut = quote(&"é".repeat(100));
        assert_eq!(cut, format!("{}...", "é".repeat(MAX_QUOTE)));
    }

    #[test]
    fn replies_round_trip() {
        let reply = Reply::new("paused\nreally").with("state", "paused").with("changed", true);
        let line = encode_ok(&reply);
        assert!(line.starts_with(r#"{"v":1,"ok":true,"text":"paused\nreally""#), "{line}");
        assert_eq!(parse_reply(line.as_bytes()), Ok(Answer::Done(reply)));
        let line = encode_error("no \"such\" thing");
        assert_eq!(line, r#"{"v":1,"ok":false,"error":"no \"such\" thing"}"#);
        assert_eq!(parse_reply(line.as_bytes()), Ok(Answer::Failed("no \"such\" thing".into())));
    }

    #[test]
    fn progress_lines_round_trip() {
        let report = Reply::new("round 1: 812 pages").with("round", 1);
        let line = encode_progress(&report);
        assert!(line.starts_with(r#"{"v":1,"progress":true,"text":"round 1: 812 pages""#), "{line}");
        assert_eq!(parse_reply(line.as_bytes()), Ok(Answer::Progress(report)));
    }

    #[test]
    fn requests_round_trip() {
        let mut args = Map::new();
        args.insert("file".into(), json!("snap \"1\""));
        let line = encode_request("snapshot", &args);
        let parsed = parse_request(line.as_bytes()).unwrap();
        assert_eq!(parsed, Request { cmd: "snapshot".into(), args });
    }

    #[test]
    fn hostile_replies() {
        assert!(matches!(parse_reply(b"nope"), Err(ReplyError::NotObject(_))));
        assert!(matches!(parse_reply(br#"{"v":2,"ok":true}"#), Err(ReplyError::WrongVersion(_))));
        assert_eq!(parse_reply(br#"{"v":1}"#), Err(ReplyError::NoOk));
        assert_eq!(parse_reply(br#"{"v":1,"ok":false}"#), Err(ReplyError::NoError));
    }
}
