//! The texts a failed attempt carries, made here so that Python and Node show the same words
//! for the same error: `attempts[].error` and the message of an unknown error kind.
//!
//! Bindings pass what the host error says about itself (its class or `name`, its message) and
//! never format it themselves.

use crate::error::Error;
use crate::runtime::classify::ErrorKind;

/// Longest `attempts[].error` text, in characters (Unicode scalar values, so that both
/// languages cut at the same place whatever their string encoding); longer texts are cut
/// there and end with `…`.
pub(crate) const MAX_ATTEMPT_MESSAGE_CHARS: usize = 1000;

/// What an attempt's `error` says when the error gives neither a name nor a message.
pub(crate) const UNDESCRIBED_ERROR: &str = "an error that cannot be shown";

/// The `attempts[].error` text of a failed attempt: `"{name}: {message}"` (a Python
/// `ValueError("bad json")` and a JS `new TypeError("bad json")` read `ValueError: bad json`
/// and `TypeError: bad json`), only the name or only the message when the other is empty, cut
/// at [`MAX_ATTEMPT_MESSAGE_CHARS`].
pub fn attempt_message(name: &str, message: &str) -> String {
    let name = name.trim();
    let message = message.trim();
    let text = match (name.is_empty(), message.is_empty()) {
        (false, false) => format!("{name}: {message}"),
        (false, true) => name.to_string(),
        (true, false) => message.to_string(),
        (true, true) => UNDESCRIBED_ERROR.to_string(),
    };
    cut(text)
}

/// The `attempts[].error` text of an attempt the binding stopped waiting for at its timeout.
pub fn timeout_message(timeout_ms: u64) -> String {
    format!("timed out after {timeout_ms} ms")
}

/// `text` cut at [`MAX_ATTEMPT_MESSAGE_CHARS`] characters.
fn cut(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_ATTEMPT_MESSAGE_CHARS) {
        text.truncate(at);
        text.push('…');
    }
    text
}

/// The error kind a tracker's `error("…")` names, or `INVALID_ARGUMENT` with the one message
/// both languages show (every kind listed, in the core's order).
pub fn parse_error_kind(text: &str) -> Result<ErrorKind, Error> {
    ErrorKind::parse(text).ok_or_else(|| {
        let known: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        let shown = serde_json::Value::String(text.to_string());
        Error::InvalidArgument {
            message: format!(
                "unknown error kind {shown}; expected one of: {}",
                known.join(", ")
            ),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages_are_joined_or_stand_alone() {
        assert_eq!(
            attempt_message("ValueError", "bad json"),
            "ValueError: bad json"
        );
        assert_eq!(attempt_message("TimeoutError", ""), "TimeoutError");
        assert_eq!(attempt_message("", "a thrown string"), "a thrown string");
        assert_eq!(attempt_message(" ", "  "), UNDESCRIBED_ERROR);
        assert_eq!(timeout_message(100), "timed out after 100 ms");
    }

    #[test]
    fn long_texts_are_cut_at_the_same_character_in_every_language() {
        let long = "é".repeat(MAX_ATTEMPT_MESSAGE_CHARS * 2);
        let text = attempt_message("E", &long);
        assert_eq!(text.chars().count(), MAX_ATTEMPT_MESSAGE_CHARS + 1);
        assert!(text.starts_with("E: é") && text.ends_with('…'));
        let exact = "x".repeat(MAX_ATTEMPT_MESSAGE_CHARS);
        assert_eq!(attempt_message("", &exact), exact);
    }

    #[test]
    fn an_unknown_kind_names_every_known_one() {
        assert_eq!(parse_error_kind("timeout"), Ok(ErrorKind::Timeout));
        let err = parse_error_kind("slow\"").unwrap_err();
        assert_eq!(err.code(), "INVALID_ARGUMENT");
        let text = err.to_string();
        assert!(text.starts_with("unknown error kind \"slow\\\"\"; expected one of: timeout, "));
        for kind in ErrorKind::ALL {
            assert!(text.contains(kind.as_str()), "{text}");
        }
    }
}
