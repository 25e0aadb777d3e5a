//! What the runtime accepts as evidence: the numbers a caller reports about a call (latency,
//! tokens, cost) and about its result (a feedback score, a quality score).
//!
//! Guardrails and budgets are sums and means of these numbers, so one NaN, infinity or absurd
//! value would blind them or trip them on its own. Every entry point refuses such a number with
//! `INVALID_ARGUMENT` before anything is recorded, and the decision is made here, once, for
//! both bindings:
//!
//! | number | accepted |
//! |---|---|
//! | `latency_ms`, `cost` | finite and ≥ 0 |
//! | `input_tokens`, `output_tokens` | whole and ≥ 0 (a `u64` by type; bindings check the conversion) |
//! | feedback `score` | finite, in [`SCORE_RANGE`] (−1 to 1: thumbs down to thumbs up) |
//! | feedback `quality` | finite, in [`QUALITY_RANGE`] (0 to 1) |

use std::ops::RangeInclusive;

use crate::error::{Error, Result};
use crate::runtime::call::Usage;

/// The range of a feedback score (thumbs down −1 to thumbs up +1, or anything in between).
pub const SCORE_RANGE: RangeInclusive<f64> = -1.0..=1.0;

/// The range of a quality score (the scale of `quality` guardrails' `min`).
pub const QUALITY_RANGE: RangeInclusive<f64> = 0.0..=1.0;

fn invalid(message: String) -> Error {
    Error::InvalidArgument { message }
}

/// Checks one non-negative measurement (`latency_ms`, `cost`).
pub fn check_measure(name: &str, value: Option<f64>) -> Result<()> {
    match value {
        Some(x) if !x.is_finite() || x < 0.0 => Err(invalid(format!(
            "{name} must be a finite number of 0 or more, got {x}"
        ))),
        _ => Ok(()),
    }
}

/// Checks one score against its range.
fn check_score(name: &str, value: Option<f64>, range: &RangeInclusive<f64>) -> Result<()> {
    match value {
        Some(x) if !range.contains(&x) => Err(invalid(format!(
            "{name} must be a number from {} to {}, got {x}",
            range.start(),
            range.end()
        ))),
        _ => Ok(()),
    }
}

/// Checks the scores of a `feedback` call (what `Flags::feedback` checks first).
pub fn check_feedback(score: Option<f64>, quality: Option<f64>) -> Result<()> {
    check_score("score", score, &SCORE_RANGE)?;
    check_score("quality", quality, &QUALITY_RANGE)
}

/// Checks what a caller reports about a call: every binding calls this on the usage it
/// converted (an `Output`, a tracker's `success` / `error`) and raises the error as is.
pub fn check_usage(usage: &Usage) -> Result<()> {
    check_measure("latency_ms", usage.latency_ms)?;
    check_measure("cost", usage.cost)
}

impl Usage {
    /// [`check_usage`].
    pub fn check(&self) -> Result<()> {
        check_usage(self)
    }

    /// The usage with every number [`check_usage`] refuses left out: what the runtime records
    /// when a caller reported without checking (a binding's bug must not poison the guardrails).
    pub(crate) fn sanitized(self) -> Usage {
        let keep = |x: Option<f64>| x.filter(|x| x.is_finite() && *x >= 0.0);
        Usage {
            latency_ms: keep(self.latency_ms),
            cost: keep(self.cost),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_negative_and_out_of_range_numbers_are_invalid_arguments() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1e-9, -1e300] {
            for usage in [
                Usage {
                    cost: Some(bad),
                    ..Usage::default()
                },
                Usage {
                    latency_ms: Some(bad),
                    ..Usage::default()
                },
            ] {
                let err = usage.check().unwrap_err();
                assert_eq!(err.code(), "INVALID_ARGUMENT", "{usage:?}");
                assert_eq!(usage.sanitized().cost, None);
                assert_eq!(usage.sanitized().latency_ms, None);
            }
        }
        for bad in [f64::NAN, f64::INFINITY, -1e300, 1.5, -0.01] {
            let err = check_feedback(None, Some(bad)).unwrap_err();
            assert_eq!(err.code(), "INVALID_ARGUMENT");
            assert!(err.to_string().starts_with("quality must be"), "{err}");
        }
        for bad in [f64::NAN, f64::NEG_INFINITY, 2.0, -1.5] {
            let err = check_feedback(Some(bad), None).unwrap_err();
            assert!(err.to_string().starts_with("score must be"), "{err}");
        }
        let fine = Usage {
            latency_ms: Some(0.0),
            input_tokens: Some(u64::MAX),
            output_tokens: Some(0),
            cost: Some(1e9),
        };
        assert!(fine.check().is_ok());
        assert!(check_feedback(Some(-1.0), Some(0.0)).is_ok());
        assert!(check_feedback(Some(1.0), Some(1.0)).is_ok());
        assert!(check_feedback(None, None).is_ok());
    }
}
