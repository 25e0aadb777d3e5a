//! The JSON reader of the text entry: one pass that builds the `serde_json::Value` the loader
//! walks and notices what that value cannot keep.
//!
//! `serde_json` keeps the last of two equal keys, so `{"active": true, "active": false}` would
//! silently mean `false`; here every repeated key is a `DUPLICATE_KEY` problem with its path. It
//! also records the paths of numbers whose text is more precise than the 64-bit float they
//! become (`50.0000000000000001`), so that a percentage is judged on what its author wrote.
//! Nesting deeper than [`MAX_JSON_DEPTH`] is `NESTING_TOO_DEEP`, the same verdict
//! [`check_depth`] gives an already-built value; a leading UTF-8 byte-order mark is skipped.

use rustc_hash::FxHashSet;
use serde_json::{Map, Number, Value};

use crate::error::{Problem, ProblemKind};

/// Deepest nesting of arrays and objects a document may have (the top-level object is 1).
pub const MAX_JSON_DEPTH: usize = 128;

/// What the reader found besides the value.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// Paths of numbers whose text carries more precision than the float they are read as.
    pub(crate) inexact_numbers: FxHashSet<String>,
}

/// Parses `bytes` as one JSON value; `Err` holds every duplicate key, or the one syntax or
/// depth problem that stopped the reader.
pub(super) fn parse(bytes: &[u8]) -> Result<(Value, Notes), Vec<Problem>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            return Err(vec![syntax_problem(
                bytes,
                err.valid_up_to(),
                "invalid UTF-8 (a document is UTF-8 text)",
            )])
        }
    };
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: 0,
        path: String::new(),
        duplicates: Vec::new(),
        notes: Notes::default(),
    };
    let value = match reader.document() {
        Ok(value) => value,
        Err(stop) => {
            return Err(vec![match stop {
                Stop::Syntax(at, reason) => syntax_problem(reader.bytes, at, &reason),
                Stop::TooDeep => too_deep(),
            }])
        }
    };
    if !reader.duplicates.is_empty() {
        return Err(reader.duplicates);
    }
    Ok((value, reader.notes))
}

/// `NESTING_TOO_DEEP` when `value` nests deeper than [`MAX_JSON_DEPTH`] (the value entry's
/// counterpart of the reader's bound). Walks without recursion.
pub(super) fn check_depth(value: &Value) -> Result<(), Problem> {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(items) if depth <= MAX_JSON_DEPTH => {
                stack.extend(items.iter().map(|child| (child, depth + 1)))
            }
            Value::Object(map) if depth <= MAX_JSON_DEPTH => {
                stack.extend(map.values().map(|child| (child, depth + 1)))
            }
            Value::Array(_) | Value::Object(_) => return Err(too_deep()),
            _ => {}
        }
    }
    Ok(())
}

/// Reported at the top of the document: a text and a value give the same verdict.
fn too_deep() -> Problem {
    Problem {
        path: String::new(),
        kind: ProblemKind::NestingTooDeep,
        message: format!("arrays and objects nest more than {MAX_JSON_DEPTH} levels deep"),
    }
}

fn syntax_problem(bytes: &[u8], at: usize, reason: &str) -> Problem {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    Problem {
        path: String::new(),
        kind: ProblemKind::InvalidJson,
        message: format!("invalid JSON at line {line}, column {column}: {reason}"),
    }
}

enum Stop {
    /// A syntax error at a byte offset.
    Syntax(usize, String),
    /// Nesting beyond the bound.
    TooDeep,
}

struct Reader<'t> {
    text: &'t str,
    bytes: &'t [u8],
    at: usize,
    /// The path of the value being read, in the loader's notation (`flags.f.rules[0]`).
    path: String,
    duplicates: Vec<Problem>,
    notes: Notes,
}

impl Reader<'_> {
    fn document(&mut self) -> Result<Value, Stop> {
        let value = self.value(1)?;
        self.space();
        if self.at < self.bytes.len() {
            return Err(self.fail("trailing characters"));
        }
        Ok(value)
    }

    fn fail(&self, reason: &str) -> Stop {
        Stop::Syntax(self.at, reason.to_string())
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value, Stop> {
        self.space();
        match self.peek() {
            None => Err(self.fail("EOF while parsing a value")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, value) in [
                    ("true", Value::Bool(true)),
                    ("false", Value::Bool(false)),
                    ("null", Value::Null),
                ] {
                    if self.bytes[self.at..].starts_with(word.as_bytes()) {
                        self.at += word.len();
                        return Ok(value);
                    }
                }
                Err(self.fail("expected value"))
            }
        }
    }

    fn enter(&self, depth: usize) -> Result<(), Stop> {
        if depth > MAX_JSON_DEPTH {
            return Err(Stop::TooDeep);
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Value, Stop> {
        self.enter(depth)?;
        self.at += 1;
        let mut map = Map::new();
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.space();
            match self.peek() {
                Some(b'"') => {}
                Some(b'}') if !map.is_empty() => return Err(self.fail("trailing comma")),
                None => return Err(self.fail("EOF while parsing an object")),
                Some(_) => return Err(self.fail("key must be a string")),
            }
            let key = self.string()?;
            self.space();
            match self.peek() {
                Some(b':') => self.at += 1,
                None => return Err(self.fail("EOF while parsing an object")),
                Some(_) => return Err(self.fail("expected `:`")),
            }
            let restore = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(&key);
            let value = self.value(depth + 1)?;
            if map.contains_key(&key) {
                self.duplicates.push(Problem {
                    path: self.path.clone(),
                    kind: ProblemKind::DuplicateKey,
                    message: format!(
                        "\"{key}\" appears more than once in this object (JSON readers disagree on which one counts)"
                    ),
                });
            } else {
                map.insert(key, value);
            }
            self.path.truncate(restore);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(map));
                }
                None => return Err(self.fail("EOF while parsing an object")),
                Some(_) => return Err(self.fail("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, Stop> {
        self.enter(depth)?;
        self.at += 1;
        let mut items = Vec::new();
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.space();
            if self.peek() == Some(b']') && !items.is_empty() {
                return Err(self.fail("trailing comma"));
            }
            let restore = self.path.len();
            self.path.push_str(&format!("[{}]", items.len()));
            items.push(self.value(depth + 1)?);
            self.path.truncate(restore);
            self.space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.fail("EOF while parsing a list")),
                Some(_) => return Err(self.fail("expected `,` or `]`")),
            }
        }
    }

    fn string(&mut self) -> Result<String, Stop> {
        self.at += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.at;
            while let Some(&b) = self.bytes.get(self.at) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            out.push_str(&self.text[start..self.at]);
            match self.peek() {
                None => return Err(self.fail("EOF while parsing a string")),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(self
                        .fail("control character (\\u0000-\\u001F) found while parsing a string"))
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), Stop> {
        let Some(b) = self.peek() else {
            return Err(self.fail("EOF while parsing a string"));
        };
        self.at += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&high) {
                    if !self.bytes[self.at..].starts_with(b"\\u") {
                        return Err(self.fail("lone leading surrogate in hex escape"));
                    }
                    self.at += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(self.fail("lone leading surrogate in hex escape"));
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..0xE000).contains(&high) {
                    return Err(self.fail("lone trailing surrogate in hex escape"));
                } else {
                    high
                };
                match char::from_u32(code) {
                    Some(c) => c,
                    None => return Err(self.fail("invalid unicode code point")),
                }
            }
            _ => {
                self.at -= 1;
                return Err(self.fail("invalid escape"));
            }
        };
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Stop> {
        let digits = self.bytes.get(self.at..self.at + 4);
        let parsed = digits
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        match parsed {
            Some(code) => {
                self.at += 4;
                Ok(code)
            }
            None => Err(self.fail("invalid escape")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Value, Stop> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.fail("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail("invalid number")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.fail("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.fail("invalid number"));
            }
        }
        let token = &self.text[start..self.at];
        let number: Number = token
            .parse()
            .map_err(|_| Stop::Syntax(start, "number out of range".to_string()))?;
        if !integer && !same_decimal(token, &number.to_string()) {
            self.notes.inexact_numbers.insert(self.path.clone());
        }
        Ok(Value::Number(number))
    }
}

/// Whether two decimal texts (`50.0`, `5e1`, `50.0000000000000001`) write the same number.
fn same_decimal(a: &str, b: &str) -> bool {
    decimal_parts(a) == decimal_parts(b)
}

/// `(negative, significant digits, exponent of the last digit)`, zeros trimmed on both sides.
fn decimal_parts(text: &str) -> Option<(bool, String, i64)> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let mut exponent = exponent - fraction.len() as i64;
    let trimmed_end = digits.trim_end_matches('0');
    exponent += (digits.len() - trimmed_end.len()) as i64;
    let significant = trimmed_end.trim_start_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((negative, significant.to_string(), exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(String, &'static str)> {
        match parse(text.as_bytes()) {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .iter()
                .map(|p| (p.path.clone(), p.code()))
                .collect(),
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a": [1, -0, 1.5e3, 18446744073709551615, -9223372036854775808, 1e400000000000]}"#,
            r#"{"s": "\u00e9\ud83d\ude00\n\"\\/", "t": true, "f": false, "n": null}"#,
            "  [ ]  ",
            r#"{"big": 123456789012345678901234567890}"#,
        ] {
            let ours = parse(text.as_bytes()).map(|(v, _)| v);
            let theirs: Result<Value, _> = serde_json::from_str(text);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{text}: {a:?} vs {b:?}"),
            }
        }
    }

    #[test]
    fn rejects_what_serde_json_rejects() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "-",
            "\"\\ud800\"",
            "\"\\x\"",
            "{} x",
            "\"a\u{1}\"",
            "nul",
            "{1: 2}",
            "1e",
            "[1 2]",
        ] {
            assert!(parse(text.as_bytes()).is_err(), "{text:?}");
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn every_duplicate_key_is_named_by_its_path() {
        assert_eq!(
            problems(r#"{"flags": {"f": {"kill": {"active": true, "active": false}}, "f": {}}}"#),
            vec![
                ("flags.f.kill.active".to_string(), "DUPLICATE_KEY"),
                ("flags.f".to_string(), "DUPLICATE_KEY")
            ]
        );
        assert_eq!(
            problems(r#"{"a": [{"x": 1, "x": 1}]}"#),
            vec![("a[0].x".to_string(), "DUPLICATE_KEY")]
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_bad_utf8_is_named() {
        assert!(parse(b"\xEF\xBB\xBF{}").is_ok());
        let err = parse(b"{\"a\": \"\xff\"}").unwrap_err();
        assert!(err[0].message.contains("UTF-8"), "{}", err[0].message);
        assert_eq!(err[0].code(), "INVALID_JSON");
    }

    #[test]
    fn nesting_is_bounded_the_same_way_for_text_and_values() {
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        let (value, _) = parse(ok.as_bytes()).expect("at the bound");
        assert!(check_depth(&value).is_ok());
        let deep = format!("[{ok}]");
        assert_eq!(problems(&deep), vec![(String::new(), "NESTING_TOO_DEEP")]);
        let value = Value::Array(vec![value]);
        assert_eq!(check_depth(&value).unwrap_err().code(), "NESTING_TOO_DEEP");
    }

    #[test]
    fn inexact_numbers_are_noted() {
        let (_, notes) = parse(br#"{"p": [50.0000000000000001, 50.5, 5e1, 0.1, 1.0]}"#).unwrap();
        assert_eq!(
            notes.inexact_numbers.into_iter().collect::<Vec<_>>(),
            vec!["p[0]".to_string()]
        );
    }

    #[test]
    fn positions_are_lines_and_columns() {
        let err = parse(b"{\n  \"flags\": {,\n}").unwrap_err();
        assert!(
            err[0]
                .message
                .starts_with("invalid JSON at line 2, column 13"),
            "{}",
            err[0].message
        );
    }
}
