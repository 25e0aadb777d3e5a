//! The one field reader of the loader, and the scalar readers every part of the document uses.
//!
//! A part opens its JSON object with [`Loader::open`] (wrong type and unknown fields reported
//! there), then reads each field with [`Loader::field`] or [`Loader::required`], passing a reader
//! such as [`Loader::string`]. The field reader joins the path; the reader reports a wrong type
//! or an out-of-range value under that path with [`Loader::wrong_type`] or
//! [`Loader::report`]. Readers return `None` once they have reported.

use serde_json::{Map, Value};

use super::suggest::did_you_mean;
use super::Loader;
use crate::error::ProblemKind;
use crate::time::{parse_duration, parse_timestamp, Millis};

/// `path.key`, or `key` at the top of the document.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// "a string", "an array" …: the JSON type of a value, for messages.
pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON object of the document, with its path.
pub(super) struct Object<'v> {
    pub(crate) path: String,
    pub(crate) map: &'v Map<String, Value>,
}

impl<'v> Object<'v> {
    /// The path of one of this object's fields.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }
}

/// An optional field as read: absent, valid, or present but invalid (already reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field<T> {
    Absent,
    Valid(T),
    Invalid,
}

impl<T> Field<T> {
    /// The value, or `default` when the field is absent; `None` when it was invalid.
    pub(crate) fn or(self, default: T) -> Option<T> {
        self.or_else(|| default)
    }

    pub(crate) fn or_else(self, default: impl FnOnce() -> T) -> Option<T> {
        match self {
            Field::Absent => Some(default()),
            Field::Valid(value) => Some(value),
            Field::Invalid => None,
        }
    }

    /// The value when the field is present and valid.
    pub(crate) fn ok(self) -> Option<T> {
        match self {
            Field::Valid(value) => Some(value),
            Field::Absent | Field::Invalid => None,
        }
    }

    /// `Some(None)` when absent, `Some(Some(value))` when valid, `None` when invalid.
    pub(crate) fn optional(self) -> Option<Option<T>> {
        match self {
            Field::Absent => Some(None),
            Field::Valid(value) => Some(Some(value)),
            Field::Invalid => None,
        }
    }
}

impl Loader {
    /// Reports a value of the wrong JSON type: "expected {expected}, found {its type}".
    pub(super) fn wrong_type(&mut self, path: &str, expected: &str, found: &Value) {
        self.report(
            path,
            ProblemKind::WrongType,
            format!("expected {expected}, found {}", json_type(found)),
        );
    }

    /// `value` as an object whose fields are all in `allowed` (others are reported as unknown,
    /// with a did-you-mean).
    pub(super) fn open<'v>(
        &mut self,
        path: impl Into<String>,
        value: &'v Value,
        allowed: &[&str],
    ) -> Option<Object<'v>> {
        let object = self.object(path, value)?;
        self.check_fields(&object, allowed, &[]);
        Some(object)
    }

    /// `value` as an object, fields unchecked (for objects whose shape decides their fields).
    pub(super) fn object<'v>(
        &mut self,
        path: impl Into<String>,
        value: &'v Value,
    ) -> Option<Object<'v>> {
        let path = path.into();
        match value {
            Value::Object(map) => Some(Object { path, map }),
            other => {
                self.wrong_type(&path, "an object", other);
                None
            }
        }
    }

    /// Reports every field of `object` that is not in `allowed` (or that is known but
    /// unsupported).
    pub(super) fn check_fields(
        &mut self,
        object: &Object<'_>,
        allowed: &[&str],
        unsupported: &[&str],
    ) {
        for key in object.map.keys() {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            if unsupported.contains(&key.as_str()) {
                self.report(
                    &object.path_of(key),
                    ProblemKind::UnsupportedField,
                    format!("\"{key}\" is not supported by this version of flagrail yet (it would be silently ignored)"),
                );
            } else {
                self.report(
                    &object.path_of(key),
                    ProblemKind::UnknownField,
                    format!(
                        "unknown field \"{key}\"{}; expected one of: {}",
                        did_you_mean(key, allowed),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    /// Reads an optional field with `read`, which reports any problem under the field's path.
    pub(super) fn field<'v, T>(
        &mut self,
        object: &Object<'v>,
        key: &str,
        read: impl FnOnce(&mut Self, &str, &'v Value) -> Option<T>,
    ) -> Field<T> {
        match object.get(key) {
            None => Field::Absent,
            Some(value) => match read(self, &object.path_of(key), value) {
                Some(read) => Field::Valid(read),
                None => Field::Invalid,
            },
        }
    }

    /// Reads a required field with `read`; an absent one is reported as missing.
    pub(super) fn required<'v, T>(
        &mut self,
        object: &Object<'v>,
        key: &str,
        read: impl FnOnce(&mut Self, &str, &'v Value) -> Option<T>,
    ) -> Option<T> {
        match self.field(object, key, read) {
            Field::Absent => {
                self.report(
                    &object.path_of(key),
                    ProblemKind::MissingField,
                    format!("\"{key}\" is required"),
                );
                None
            }
            field => field.ok(),
        }
    }

    /// The value as it is (a reader for fields whose shape the caller inspects).
    pub(super) fn any<'v>(&mut self, _path: &str, value: &'v Value) -> Option<&'v Value> {
        Some(value)
    }

    pub(super) fn array<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        of: &str,
    ) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.wrong_type(path, &format!("an array of {of}"), other);
                None
            }
        }
    }

    pub(super) fn string<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    pub(super) fn owned_string(&mut self, path: &str, value: &Value) -> Option<String> {
        self.string(path, value).map(str::to_string)
    }

    pub(super) fn non_empty_string<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v str> {
        let s = self.string(path, value)?;
        if s.is_empty() {
            self.report(path, ProblemKind::InvalidValue, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub(super) fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(path, "true or false", other);
                None
            }
        }
    }

    pub(super) fn number(&mut self, path: &str, value: &Value) -> Option<f64> {
        match value.as_f64() {
            Some(n) => Some(n),
            None => {
                self.wrong_type(path, "a number", value);
                None
            }
        }
    }

    /// A finite number above 0 (a money limit).
    pub(super) fn positive_number(&mut self, path: &str, value: &Value) -> Option<f64> {
        let n = self.number(path, value)?;
        if n > 0.0 && n.is_finite() {
            return Some(n);
        }
        self.report(
            path,
            ProblemKind::InvalidValue,
            format!("must be above 0, found {n}"),
        );
        None
    }

    /// A positive integer of at most `max`. A number is judged by its value, so `3.0` is 3
    /// (a JavaScript or Python caller cannot tell 3.0 from 3).
    pub(super) fn positive_integer(&mut self, path: &str, value: &Value, max: u64) -> Option<u64> {
        self.whole_number(path, value, 1, max)
    }

    /// A whole number from `min` to `max`, judged by its value (`-0` is 0, `2.0` is 2).
    pub(super) fn whole_number(
        &mut self,
        path: &str,
        value: &Value,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let Value::Number(number) = value else {
            self.wrong_type(path, "a whole number", value);
            return None;
        };
        let whole = match (number.as_u64(), number.as_f64()) {
            (Some(n), _) => Some(n as f64),
            (None, Some(f)) if f.fract() == 0.0 => Some(f),
            _ => None,
        };
        match whole {
            Some(n) if n >= min as f64 && n <= max as f64 => Some(n as u64),
            Some(_) => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!("must be \u{2265} {min} and \u{2264} {max}, found {number}"),
                );
                None
            }
            None => {
                self.report(
                    path,
                    ProblemKind::InvalidValue,
                    format!("must be a whole number, found {number}"),
                );
                None
            }
        }
    }

    pub(super) fn timestamp(&mut self, path: &str, value: &Value) -> Option<Millis> {
        let text = self.string(path, value)?;
        let parsed = parse_timestamp(text);
        if parsed.is_none() {
            self.report(
                path,
                ProblemKind::InvalidDate,
                format!("\"{text}\" is not an RFC 3339 timestamp (2026-11-21T09:00:00Z) or a date (2026-11-21)"),
            );
        }
        parsed
    }

    pub(super) fn duration(&mut self, path: &str, value: &Value) -> Option<Millis> {
        let text = self.string(path, value)?;
        let parsed = parse_duration(text);
        if parsed.is_none() {
            self.report(
                path,
                ProblemKind::InvalidDuration,
                format!("\"{text}\" is not a duration (examples: 500ms, 30s, 90m, 24h, 7d, 1h30m)"),
            );
        }
        parsed
    }

    /// A duration of at least a second.
    pub(super) fn duration_of_a_second_or_more(
        &mut self,
        path: &str,
        value: &Value,
    ) -> Option<Millis> {
        let ms = self.duration(path, value)?;
        if ms < 1000 {
            self.report(path, ProblemKind::InvalidValue, "must be at least 1s");
            return None;
        }
        Some(ms)
    }

    /// A percentage as thousandths of a percent, or `None` (reported) when out of range or
    /// finer than 0.001 %.
    pub(super) fn percent(&mut self, path: &str, value: &Value, allow_zero: bool) -> Option<u32> {
        let Some(p) = value.as_f64() else {
            self.wrong_type(path, "a number of percent", value);
            return None;
        };
        let lower_ok = if allow_zero { p >= 0.0 } else { p > 0.0 };
        if !lower_ok || p > 100.0 {
            let range = if allow_zero {
                "0 to 100"
            } else {
                "above 0 and at most 100"
            };
            self.report(
                path,
                ProblemKind::InvalidValue,
                format!("percent must be {range}, found {p}"),
            );
            return None;
        }
        // The text decides where there is one: 50.0000000000000001 reads as the float 50.0,
        // but its author asked for a precision bucketing does not have.
        if self.inexact_numbers.contains(path) || decimals_of(value).is_none_or(|d| d > 3) {
            self.report(
                path,
                ProblemKind::PercentPrecision,
                format!("{p} % is finer than the 0.001 % resolution of bucketing"),
            );
            return None;
        }
        let rounded = (p * 1000.0).round();
        Some(rounded as u32)
    }
}

/// How many decimals the shortest text of a JSON number has (`12.345` → 3, `1e-5` → 5).
fn decimals_of(value: &Value) -> Option<i64> {
    let text = value.as_number()?.to_string();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text.as_str(), 0),
    };
    let fraction = mantissa
        .split_once('.')
        .map_or("", |(_, f)| f.trim_end_matches('0'));
    Some((fraction.len() as i64 - exponent).max(0))
}
