//! Checking a console request before acting on it.
//!
//! The request was copied out of the ring, so it cannot change under us; but the guest
//! wrote it and may have written anything. Two things are checked: the length, which
//! must fit in the request's own text field (a hostile frontend may claim more), and
//! the text itself, whose control characters are replaced ([`sanitize`]) so a guest
//! cannot send escape sequences to the user's terminal. Newline, tab and carriage
//! return pass: they are how text is laid out.

use pv_abi::device::console::{ConsoleRequest, CONSOLE_CHUNK, CONSOLE_EINVAL};

/// What replaces a control character the guest sent.
const REPLACEMENT: u8 = b'?';

/// A request claims more text than its slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a console request claims {len} bytes; a request holds at most {CONSOLE_CHUNK}")]
pub struct TextTooLong {
    /// The length the request claimed.
    pub len: u32,
}

impl TextTooLong {
    /// The status the guest is answered with.
    pub const fn status(self) -> i32 {
        CONSOLE_EINVAL
    }
}

/// The request's text, if its length fits its slot.
pub fn check_request(request: &ConsoleRequest) -> Result<&[u8], TextTooLong> {
    request.text().ok_or(TextTooLong { len: request.len })
}

/// Makes guest text safe to show on a terminal: hv's **one** sanitizer, used for every
/// guest string that reaches the user's terminal or a trace (console output, a panic
/// message, the text of `console_write`).
///
/// A terminal obeys escape sequences: with them a guest could clear the screen, set the
/// window title, write the clipboard (OSC 52) or draw a line that looks like hv's own
/// (`hv: …`, after a carriage return). So every control character is replaced by `?`:
/// the C0 set (ESC among them) and DEL, and the C1 set, both as raw bytes 0x80–0x9f
/// (0x9b alone is a CSI on some terminals) and as the characters U+0080–U+009F;
/// likewise the Unicode direction overrides, which reorder what is shown. Newline and
/// tab pass; a carriage return passes only as part of `\r\n` (a bare one would let the
/// guest overwrite the start of a line). Bytes that are not UTF-8 become U+FFFD.
pub fn sanitize(bytes: &[u8]) -> Vec<u8> {
    sanitize_text(&String::from_utf8_lossy(bytes)).into_bytes()
}

/// [`sanitize`] for text already decoded.
pub fn sanitize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let keep = match c {
            '\n' | '\t' => true,
            '\r' => chars.peek() == Some(&'\n'),
            // Bidirectional embeddings, overrides and isolates.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => false,
            c => !c.is_control(),
        };
        out.push(if keep { c } else { REPLACEMENT as char });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_within_its_slot_gives_its_text() {
        assert_eq!(check_request(&ConsoleRequest::new(1, b"hi\n")), Ok(&b"hi\n"[..]));
    }

    #[test]
    fn hostile_lengths_past_the_slot_are_refused() {
        for len in [CONSOLE_CHUNK as u32 + 1, u32::MAX] {
            let request = ConsoleRequest { len, ..ConsoleRequest::new(1, b"x") };
            assert_eq!(check_request(&request), Err(TextTooLong { len }));
        }
    }

    #[test]
    fn hostile_escape_sequences_are_defused_and_layout_characters_kept() {
        assert_eq!(sanitize(b"\x1b[2Ja\tb\r\n\x07"), b"?[2Ja\tb\r\n?");
    }

    #[test]
    fn hostile_terminal_tricks_are_all_defused() {
        let cases: [(&[u8], &str); 8] = [
            (b"\x1b]0;owned\x07", "?]0;owned?"),                 // set the window title
            (b"\x1b]52;c;aGk=\x07", "?]52;c;aGk=?"),             // write the clipboard (OSC 52)
            (b"\x9b2J", "\u{fffd}2J"),                             // raw C1 CSI byte
            ("\u{9b}2J".as_bytes(), "?2J"),                        // C1 CSI as a character
            (b"ok\rhv: error: forged", "ok?hv: error: forged"),   // bare CR to overwrite a line
            (b"line\r\n", "line\r\n"),                            // CRLF kept
            ("abc\u{202e}fed".as_bytes(), "abc?fed"),             // right-to-left override
            (b"\x7fdel", "?del"),                                  // DEL
        ];
        for (input, expected) in cases {
            assert_eq!(String::from_utf8(sanitize(input)).unwrap(), expected, "{input:?}");
        }
    }
}
