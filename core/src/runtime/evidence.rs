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
//! | `input_tokens`, `output_tokens` | whole, from 0 to [`MAX_TOKENS`] (2^53 − 1) |
//! | feedback `score` | finite, in [`SCORE_RANGE`] (−1 to 1: thumbs down to thumbs up) |
//! | feedback `quality` | finite, in [`QUALITY_RANGE`] (0 to 1) |

use std::ops::RangeInclusive;

use crate::error::{Error, Result};

/// The range of a feedback score (thumbs down −1 to thumbs up +1, or anything in between).
pub(crate) const SCORE_RANGE: RangeInclusive<f64> = -1.0..=1.0;

/// The range of a quality score (the scale of `quality` guardrails' `min`).
pub(crate) const QUALITY_RANGE: RangeInclusive<f64> = 0.0..=1.0;

fn invalid(message: String) -> Error {
    Error::InvalidArgument { message }
}

/// The largest token count accepted: 2^53 − 1, the largest whole number both languages hold
/// exactly (a JavaScript safe integer), so a count means the same in Python and Node.
pub(crate) const MAX_TOKENS: u64 = (1 << 53) - 1;

/// Checks one token count. The binding passes the number it was given as an `f64` (NaN for a
/// value that is not a number), so both languages refuse the same inputs with one message.
fn check_token_count(name: &str, value: Option<f64>) -> Result<Option<u64>> {
    match value {
        None => Ok(None),
        // The range check keeps the cast exact: a whole f64 in 0..=2^53−1 is a u64 as is.
        Some(x) if x.fract() == 0.0 && (0.0..=MAX_TOKENS as f64).contains(&x) => Ok(Some(x as u64)),
        Some(x) => Err(invalid(format!(
            "{name} must be a whole number from 0 to {MAX_TOKENS}, got {x}"
        ))),
    }
}

/// Checks the token counts a caller reports (an `Output`, a tracker's `success` / `error`)
/// and returns them as counts: every binding calls this on the numbers it was given and
/// raises the error as is.
pub fn check_tokens(
    input_tokens: Option<f64>,
    output_tokens: Option<f64>,
) -> Result<(Option<u64>, Option<u64>)> {
    Ok((
        check_token_count("input_tokens", input_tokens)?,
        check_token_count("output_tokens", output_tokens)?,
    ))
}

/// Checks one non-negative measurement (`latency_ms`, `cost`).
pub(crate) fn check_measure(name: &str, value: Option<f64>) -> Result<()> {
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

/// Checks what a caller reports about a call (`latency_ms`, `cost`): every binding calls this
/// (through `Usage::check`) on the usage it converted (an `Output`, a tracker's `success` /
/// `error`) and raises the error as is.
pub fn check_usage(latency_ms: Option<f64>, cost: Option<f64>) -> Result<()> {
    check_measure("latency_ms", latency_ms)?;
    check_measure("cost", cost)
}

/// A measurement the runtime records: `None` for one [`check_measure`] refuses (a binding
/// that reported without checking must not poison the guardrails).
pub(crate) fn accepted_measure(value: Option<f64>) -> Option<f64> {
    value.filter(|x| x.is_finite() && *x >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_negative_and_out_of_range_numbers_are_invalid_arguments() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1e-9, -1e300] {
            for (latency, cost) in [(Some(bad), None), (None, Some(bad))] {
                let err = check_usage(latency, cost).unwrap_err();
                assert_eq!(err.code(), "INVALID_ARGUMENT", "{latency:?} {cost:?}");
            }
            assert_eq!(accepted_measure(Some(bad)), None);
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
        assert!(check_usage(Some(0.0), Some(1e9)).is_ok());
        assert_eq!(accepted_measure(Some(0.0)), Some(0.0));
        assert!(check_feedback(Some(-1.0), Some(0.0)).is_ok());
        assert!(check_feedback(Some(1.0), Some(1.0)).is_ok());
        assert!(check_feedback(None, None).is_ok());
    }

    #[test]
    fn token_counts_are_whole_numbers_a_javascript_number_holds() {
        assert_eq!(check_tokens(None, None).unwrap(), (None, None));
        assert_eq!(
            check_tokens(Some(0.0), Some(MAX_TOKENS as f64)).unwrap(),
            (Some(0), Some(MAX_TOKENS))
        );
        assert_eq!(check_tokens(Some(812.0), None).unwrap(), (Some(812), None));
        for bad in [
            -1.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            (MAX_TOKENS + 1) as f64,
            2f64.powi(70),
        ] {
            let err = check_tokens(Some(bad), None).unwrap_err();
            assert_eq!(err.code(), "INVALID_ARGUMENT");
            assert!(
                err.to_string().starts_with(
                    "input_tokens must be a whole number from 0 to 9007199254740991, got "
                ),
                "{err}"
            );
            let err = check_tokens(None, Some(bad)).unwrap_err();
            assert!(
                err.to_string().starts_with("output_tokens must be"),
                "{err}"
            );
        }
        assert_eq!(
            check_tokens(Some(-1.0), None).unwrap_err().to_string(),
            "input_tokens must be a whole number from 0 to 9007199254740991, got -1"
        );
    }
}
