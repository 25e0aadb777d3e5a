//! What a run exchanges with the binding: the next [`Step`], the [`Usage`] the user's function
//! reported, and the [`Attempt`]s made along the chain.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::Result;
use crate::runtime::classify::ErrorKind;
use crate::runtime::evidence::{accepted_measure, check_usage};

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

    pub fn to_json(&self) -> Value {
        json!({
            "variant": &*self.variant,
            "outcome": self.outcome(),
            "error_kind": self.error.map(ErrorKind::as_str),
            "error": self.message,
            "latency_ms": self.latency_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
        })
    }
}
