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

/// Replaces control characters other than newline, tab and carriage return, so a guest
/// cannot send escape sequences to the user's terminal.
pub fn sanitize(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b.is_ascii_control() && !matches!(b, b'\n' | b'\t' | b'\r') { REPLACEMENT } else { b })
        .collect()
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
}
