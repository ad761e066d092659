//! From a request line to its reply line: the whole of what the server does with a
//! request, sockets aside.
//!
//! ```text
//! request line
//!   └► protocol::parse_request   UTF-8? a JSON object? "v" = 1? "cmd" a string?
//!   └► the command's row         a command of the table?
//!   └► table::check_args         only its fields, each of its type, the required ones?
//!   └► its handler               progress lines (maybe), then the reply line
//! ```
//!
//! Every failure on the way is an error reply naming it; nothing a client sends makes
//! this panic or reach the VM before its arguments are checked. The reply line is held
//! to the protocol's bound like the request.

use super::commands::{Command, Session, COMMANDS};
use super::protocol::{encode_error, encode_ok, encode_progress, parse_request, quote, Reply, MAX_LINE};
use super::table::check_args;

/// Answers one request line with one reply line (both without `\n`), after any progress
/// lines the command sends to `progress_line`: the whole of what the server does with a
/// request, sockets aside.
pub fn answer(session: &Session, line: &[u8], progress_line: &mut dyn FnMut(String)) -> String {
    answer_from(COMMANDS, session, line, progress_line)
}

/// [`answer`] with the commands of `table`.
fn answer_from(table: &[Command], session: &Session, line: &[u8], progress_line: &mut dyn FnMut(String)) -> String {
    let request = match parse_request(line) {
        Ok(request) => request,
        Err(e) => return encode_error(&e.to_string()),
    };
    let Some(command) = table.iter().find(|c| c.name == request.cmd) else {
        let known = table.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
        return encode_error(&format!("unknown command '{}' (known: {known})", quote(&request.cmd)));
    };
    let mut progress = |report: Reply| {
        let line = encode_progress(&report);
        if line.len() <= MAX_LINE {
            progress_line(line);
        }
    };
    let result = check_args(command.name, command.fields, request.args).and_then(|args| (command.run)(session, &args, &mut progress));
    match result {
        Ok(reply) => {
            let line = encode_ok(&reply);
            if line.len() > MAX_LINE {
                return encode_error(&format!("'{}': the reply would be longer than the protocol's {MAX_LINE} bytes", command.name));
            }
            line
        }
        Err(message) => encode_error(&message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::commands::Progress;
    use crate::control::table::{Args, Field, FieldKind};
    use crate::vcpu::control::channel;
    use crate::vmm::VmConfig;
    use std::time::Instant;

    /// A session whose VM has gone (its mailbox dropped): no KVM needed.
    fn ended_session() -> Session {
        let (control, mailbox) = channel();
        drop(mailbox);
        Session::new(control, VmConfig::builtin_guest(&["count", "3"]), Instant::now(), None)
    }

    /// A command that reports three times, then answers: how `migrate` will use progress.
    fn rounds(_: &Session, args: &Args, progress: &mut Progress) -> Result<Reply, String> {
        let n = args.count("rounds").unwrap_or(3);
        for round in 1..=n {
            progress(Reply::new(format!("round {round}")).with("round", round));
        }
        Ok(Reply::new("done").with("rounds", n))
    }

    const TEST_TABLE: &[Command] = &[Command {
        name: "rounds",
        about: "reports, then answers",
        fields: &[Field { name: "rounds", kind: FieldKind::Count, required: false, positional: true }],
        run: rounds,
    }];

    fn ask(table: &[Command], line: &str) -> (Vec<String>, String) {
        let mut progress = Vec::new();
        let reply = answer_from(table, &ended_session(), line.as_bytes(), &mut |l| progress.push(l));
        (progress, reply)
    }

    #[test]
    fn progress_lines_come_before_the_reply() {
        let (progress, reply) = ask(TEST_TABLE, r#"{"v":1,"cmd":"rounds","rounds":2}"#);
        assert_eq!(
            progress,
            [r#"{"v":1,"progress":true,"text":"round 1","round":1}"#, r#"{"v":1,"progress":true,"text":"round 2","round":2}"#]
        );
        assert_eq!(reply, r#"{"v":1,"ok":true,"text":"done","rounds":2}"#);
    }

    #[test]
    fn refusals_send_no_progress() {
        let (progress, reply) = ask(TEST_TABLE, r#"{"v":1,"cmd":"rounds","rounds":-1}"#);
        assert!(progress.is_empty());
        assert!(reply.contains("must be a non-negative integer"), "{reply}");
        let (_, reply) = ask(TEST_TABLE, r#"{"v":1,"cmd":"pause"}"#);
        assert_eq!(reply, r#"{"v":1,"ok":false,"error":"unknown command 'pause' (known: rounds)"}"#);
    }

    #[test]
    fn a_vm_that_has_ended_is_an_error_reply() {
        for cmd in ["pause", "resume", "status", "stats"] {
            let (_, reply) = ask(COMMANDS, &format!(r#"{{"v":1,"cmd":"{cmd}"}}"#));
            assert_eq!(reply, r#"{"v":1,"ok":false,"error":"the guest is no longer running"}"#, "{cmd}");
        }
        let (_, reply) = ask(COMMANDS, r#"{"v":1,"cmd":"snapshot","file":"/tmp/x"}"#);
        assert!(reply.contains(r#""ok":false"#) && reply.contains("no longer running"), "{reply}");
    }

    #[test]
    fn every_command_is_documented_in_the_protocol() {
        let doc = include_str!("protocol.rs");
        for c in COMMANDS {
            assert!(doc.contains(&format!("//! | `{}` |", c.name)), "protocol.rs documents '{}'", c.name);
        }
    }
}
