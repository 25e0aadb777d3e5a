//! What a run exchanges with the binding: the next [`Step`], the [`Usage`] the user's function
//! reported, and the [`Attempt`]s made along the chain.

use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::runtime::classify::ErrorKind;
use crate::runtime::evidence::{accepted_measure, check_usage};

/// How deep calls may nest: a `call` (or `acall`) made from inside the function of another.
/// The same in every language. In Python each synchronous level holds about 12 KB of C stack
/// and CPython's recursion limit counts Python frames only, so without a bound of its own a
/// deep nesting overflows the stack (near 650 levels on 8 MB) instead of raising; no real
/// chain nests more than a few levels.
pub const MAX_CALL_DEPTH: u32 = 100;

/// The depth of a call made at `depth` (0: not inside another call's function), or
/// `CALL_DEPTH_EXCEEDED` past [`MAX_CALL_DEPTH`]. A programming error, never a model outcome:
/// the bindings raise it before anything is evaluated or recorded, and the enclosing calls
/// end with it instead of treating it as a failed attempt.
pub fn enter_call(flag: &str, depth: u32) -> Result<u32> {
    if depth >= MAX_CALL_DEPTH {
        return Err(Error::CallTooDeep {
            flag: flag.to_string(),
            limit: MAX_CALL_DEPTH,
        });
    }
    Ok(depth + 1)
}

/// What the binding does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Call the user's function with this variant, cancelling it after `timeout_ms`.
    Call {
        variant: usize,
        timeout_ms: Option<u64>,
    },
    /// Serve this non-AI variant as the result, without calling anything.
    Serve { variant: usize },
    /// The chain is spent: every step failed and none was non-AI.
    Exhausted,
}

/// What the user's function reported about a call (all optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Overrides the measured latency (trackers, where the app timed the call itself).
    pub latency_ms: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Overrides the cost computed from tokens and the variant's prices.
    pub cost: Option<f64>,
}

impl Usage {
    /// Refuses NaN, infinite and negative `latency_ms` / `cost` with `INVALID_ARGUMENT`
    /// ([`crate::runtime::evidence::check_usage`]): bindings call this on what they converted
    /// and raise the error before reporting.
    pub fn check(&self) -> Result<()> {
        check_usage(self.latency_ms, self.cost)
    }

    /// The usage with every number [`Usage::check`] refuses left out: what a run records
    /// when a caller reported without checking.
    pub(crate) fn sanitized(self) -> Usage {
        Usage {
            latency_ms: accepted_measure(self.latency_ms),
            cost: accepted_measure(self.cost),
            ..self
        }
    }
}

/// One attempt of a run.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub variant: Arc<str>,
    pub variant_index: usize,
    /// `None` for success.
    pub error: Option<ErrorKind>,
    pub message: Option<String>,
    pub latency_ms: f64,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost: Option<f64>,
}

impl Attempt {
    pub fn outcome(&self) -> &'static str {
        if self.error.is_some() {
            "error"
        } else {
            "success"
        }
    }

    /// The attempt as JSON (see [`AttemptReport`]).
    pub fn to_json(&self) -> Value {
        // Strings, numbers and nulls under string keys, which serde_json always accepts: the
        // `Null` fallback is never taken.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// An attempt as logs, a run's `attempts` and the bindings show it. Fields serialize in this
/// order, nulls included: the JSON shape is part of the bindings' contract.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AttemptReport<'a> {
    pub(crate) variant: &'a str,
    /// `success` or `error`.
    pub(crate) outcome: &'static str,
    pub(crate) error_kind: Option<&'static str>,
    /// The message the function's error carried.
    pub(crate) error: Option<&'a str>,
    pub(crate) latency_ms: f64,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cost: Option<f64>,
}

// Through the report: an attempt's fields are not its JSON (`outcome` is derived, the variant
// index is not shown).
impl Serialize for Attempt {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        AttemptReport {
            variant: &self.variant,
            outcome: self.outcome(),
            error_kind: self.error.map(ErrorKind::as_str),
            error: self.message.as_deref(),
            latency_ms: self.latency_ms,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost: self.cost,
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_nest_up_to_the_limit_and_no_further() {
        assert_eq!(enter_call("f", 0).unwrap(), 1);
        assert_eq!(enter_call("f", MAX_CALL_DEPTH - 1).unwrap(), MAX_CALL_DEPTH);
        let err = enter_call("f", MAX_CALL_DEPTH).unwrap_err();
        assert_eq!(err.code(), "CALL_DEPTH_EXCEEDED");
        assert!(
            err.to_string().contains("\"f\" nested more than 100 deep"),
            "{err}"
        );
    }
}
