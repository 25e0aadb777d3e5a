//! The numbers the bindings use for the core's enums when they cross a language boundary.
//!
//! A binding that returns a decision or a run step to Python or JS sends numbers, not strings
//! (a string per call costs more than the decision). Those numbers are defined here, once, so
//! the Python and Node bindings agree with each other and with this table: a reason, a kill
//! source, an error kind, a pin effect and a run step each have one code, and
//! `from_code(code())` gives the value back (tested below for every value).
//!
//! Codes are part of the boundary, not of the document or the public API: they may change
//! between versions, because both bindings are built from the same core. Names (the `as_str`
//! forms) are what users see.
//!
//! Layer: the binding boundary, above every other (it names enums of `evaluate`, `runtime`
//! and `live`); nothing in the core depends on it.
//!
//! | value          | codes                                                            |
//! |----------------|------------------------------------------------------------------|
//! | [`Reason`]     | 0..=7 in the order of `Reason::ALL` (fits 3 bits)                |
//! | [`KillSource`] | 1..=6 in the order of `KillSource::ALL`; 0 is "none" everywhere  |
//! | [`ErrorKind`]  | 0..=7 in the order of `ErrorKind::ALL`                           |
//! | [`PinEffect`]  | 0 none, 1 keep, 2 write, 3 delete                                |
//! | [`Step`]       | `kind + 4 * variant + 2^24 * (timeout_ms + 1 or 0)`, see [`Step::code`] |

use crate::evaluate::{KillSource, PinEffect, Reason};
use crate::live::run::Step;
use crate::runtime::classify::ErrorKind;

/// One table per enum: `code()` and `from_code()` are generated from the same lines, so the
/// two directions cannot disagree.
macro_rules! codes {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident = $code:literal),* $(,)? }) => {
        impl $ty {
            $(#[$doc])*
            #[inline]
            pub const fn code(self) -> u8 {
                match self {
                    $($ty::$variant => $code,)*
                }
            }

            /// The value of a code made by `code()`; `None` for any other number.
            #[inline]
            pub const fn from_code(code: u8) -> Option<$ty> {
                match code {
                    $($code => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

codes!(
    /// This reason's number at the language boundary (0..=7: it fits 3 bits).
    Reason {
        FlagNotFound = 0,
        Killed = 1,
        Guardrail = 2,
        Sticky = 3,
        Budget = 4,
        TargetingMatch = 5,
        Split = 6,
        Default = 7,
    }
);

codes!(
    /// This kill source's number at the language boundary (1..=6; 0 means "no kill", see
    /// [`KillSource::optional_code`]).
    KillSource {
        Document = 1,
        Flag = 2,
        LocalAll = 3,
        LocalFlag = 4,
        Guardrail = 5,
        Budget = 6,
    }
);

codes!(
    /// This error kind's number at the language boundary (0..=7).
    ErrorKind {
        Timeout = 0,
        RateLimit = 1,
        Server = 2,
        ContentPolicy = 3,
        Rejected = 4,
        Other = 5,
        InvalidRequest = 6,
        ThreadsBusy = 7,
    }
);

codes!(
    /// What to do with a conversation's pin, as a number (0 none, 1 keep, 2 write, 3 delete).
    PinEffect {
        None = 0,
        Keep = 1,
        Write = 2,
        Delete = 3,
    }
);

impl KillSource {
    /// The code of an optional kill source: 0 for none.
    #[inline]
    pub const fn optional_code(source: Option<KillSource>) -> u8 {
        match source {
            Some(source) => source.code(),
            None => 0,
        }
    }
}

/// The names of a coded enum in code order, for a binding's lookup table (`names[code]`, or
/// `names[code - 1]` for kill sources).
pub fn reason_names() -> Vec<&'static str> {
    (0..=u8::MAX)
        .map_while(Reason::from_code)
        .map(Reason::as_str)
        .collect()
}

/// Kill source names in code order, starting at code 1 (`names[code - 1]`).
pub fn kill_source_names() -> Vec<&'static str> {
    (1..=u8::MAX)
        .map_while(KillSource::from_code)
        .map(KillSource::as_str)
        .collect()
}

/// Error kind names in code order (`names[code]`).
pub fn error_kind_names() -> Vec<&'static str> {
    (0..=u8::MAX)
        .map_while(ErrorKind::from_code)
        .map(ErrorKind::as_str)
        .collect()
}

/// The OpenFeature resolution reason of a decision, the one table both OpenFeature providers
/// (and the OpenTelemetry `feature_flag.result.reason` attribute) read, so that a decision
/// reads the same from every language.
///
/// OpenFeature's standard reasons where one means the same thing: an unknown flag is `ERROR`
/// (the provider adds the `FLAG_NOT_FOUND` error code), a kill is `DISABLED`, a rule that
/// matched is `TARGETING_MATCH`, a split or ramp is `SPLIT`, and the default is `DEFAULT`, or
/// `STATIC` when the flag has no rules at all (no context could have changed the answer).
/// Decisions OpenFeature has no word for keep flagrail's own name, as the specification allows
/// ("or some other string"): `STICKY` (a conversation's pin), `BUDGET` (a budget's downgrade)
/// and `GUARDRAIL` (a tripped guardrail re-routed to the fallback). `CACHED` is not used for
/// pins: it means "not evaluated now", and a pin is checked on every evaluation.
#[inline]
pub const fn open_feature_reason(reason: Reason, flag_has_rules: bool) -> &'static str {
    match reason {
        Reason::FlagNotFound => "ERROR",
        Reason::Killed => "DISABLED",
        Reason::Guardrail => "GUARDRAIL",
        Reason::Sticky => "STICKY",
        Reason::Budget => "BUDGET",
        Reason::TargetingMatch => "TARGETING_MATCH",
        Reason::Split => "SPLIT",
        Reason::Default if flag_has_rules => "DEFAULT",
        Reason::Default => "STATIC",
    }
}

/// [`open_feature_reason`] for every reason in code order (`names[code]`), for a flag with
/// rules or without: a binding's lookup table.
pub fn open_feature_reason_names(flag_has_rules: bool) -> Vec<&'static str> {
    (0..=u8::MAX)
        .map_while(Reason::from_code)
        .map(|reason| open_feature_reason(reason, flag_has_rules))
        .collect()
}

/// Step kinds in the low two bits of a step code.
pub(crate) const STEP_EXHAUSTED: u64 = 0;
pub(crate) const STEP_CALL: u64 = 1;
pub(crate) const STEP_SERVE: u64 = 2;
/// The factor of the timeout in a step code (2^24): kind and variant sit below it.
pub(crate) const STEP_TIMEOUT_UNIT: u64 = 1 << 24;
/// Variant indices of a step code stay below this (a 16 MiB document holds far fewer).
pub(crate) const STEP_MAX_VARIANT: usize = (1 << 22) - 1;
/// Timeouts of a step code are capped here (2^28 ms, 74 hours: a document allows an hour), so
/// that every code stays below 2^53 and is exact as a JS number.
pub(crate) const STEP_MAX_TIMEOUT_MS: u64 = 1 << 28;

impl Step {
    /// This step as one integer below 2^53 (exact as an `f64`):
    /// `kind + 4 * variant + 2^24 * t`, where kind is 0 exhausted, 1 call, 2 serve, and `t` is
    /// `timeout_ms + 1` for a call with a timeout, 0 otherwise. A variant index above
    /// [`STEP_MAX_VARIANT`] or a timeout above [`STEP_MAX_TIMEOUT_MS`] is clamped (neither
    /// occurs in a valid document).
    #[inline]
    pub fn code(self) -> u64 {
        let (kind, variant, timeout) = match self {
            Step::Exhausted => (STEP_EXHAUSTED, 0, None),
            Step::Call {
                variant,
                timeout_ms,
            } => (STEP_CALL, variant, timeout_ms),
            Step::Serve { variant } => (STEP_SERVE, variant, None),
        };
        let variant = variant.min(STEP_MAX_VARIANT) as u64;
        let timeout = timeout.map_or(0, |t| t.min(STEP_MAX_TIMEOUT_MS) + 1);
        kind + 4 * variant + STEP_TIMEOUT_UNIT * timeout
    }

    /// The step of a code made by [`Step::code`]; `None` for any other number.
    pub fn from_code(code: u64) -> Option<Step> {
        let low = code % STEP_TIMEOUT_UNIT;
        let timeout = code / STEP_TIMEOUT_UNIT;
        let variant = usize::try_from(low / 4).ok()?;
        match (low % 4, timeout) {
            (STEP_EXHAUSTED, 0) if variant == 0 => Some(Step::Exhausted),
            (STEP_SERVE, 0) => Some(Step::Serve { variant }),
            (STEP_CALL, 0) => Some(Step::Call {
                variant,
                timeout_ms: None,
            }),
            (STEP_CALL, t) if t <= STEP_MAX_TIMEOUT_MS + 1 => Some(Step::Call {
                variant,
                timeout_ms: Some(t - 1),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_and_codes_follow_all() {
        for (position, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(reason.code()), position);
            assert_eq!(Reason::from_code(reason.code()), Some(reason));
            assert!(reason.code() < 8, "a reason must fit 3 bits");
        }
        assert_eq!(Reason::from_code(8), None);
        assert_eq!(Reason::from_code(u8::MAX), None);
        let names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(reason_names(), names);
    }

    #[test]
    fn open_feature_reasons_use_the_standard_names_where_they_exist() {
        let with_rules = open_feature_reason_names(true);
        let without_rules = open_feature_reason_names(false);
        assert_eq!(with_rules.len(), Reason::ALL.len());
        for reason in Reason::ALL {
            let code = usize::from(reason.code());
            assert_eq!(with_rules[code], open_feature_reason(reason, true));
            // Only the default depends on whether the flag has rules.
            let same = reason != Reason::Default;
            assert_eq!(with_rules[code] == without_rules[code], same, "{reason}");
        }
        assert_eq!(open_feature_reason(Reason::Killed, true), "DISABLED");
        assert_eq!(open_feature_reason(Reason::FlagNotFound, false), "ERROR");
        assert_eq!(open_feature_reason(Reason::Split, true), "SPLIT");
        assert_eq!(
            open_feature_reason(Reason::TargetingMatch, true),
            "TARGETING_MATCH"
        );
        assert_eq!(open_feature_reason(Reason::Default, true), "DEFAULT");
        assert_eq!(open_feature_reason(Reason::Default, false), "STATIC");
        assert_eq!(open_feature_reason(Reason::Sticky, true), "STICKY");
    }

    #[test]
    fn every_kill_source_round_trips_and_zero_is_none() {
        for (position, source) in KillSource::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(source.code()), position + 1);
            assert_eq!(KillSource::from_code(source.code()), Some(source));
            assert_eq!(KillSource::optional_code(Some(source)), source.code());
        }
        assert_eq!(KillSource::optional_code(None), 0);
        assert_eq!(KillSource::from_code(0), None);
        assert_eq!(KillSource::from_code(7), None);
        let names: Vec<_> = KillSource::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kill_source_names(), names);
    }

    #[test]
    fn every_error_kind_round_trips() {
        for (position, kind) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(kind.code()), position);
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(8), None);
        let names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(error_kind_names(), names);
    }

    #[test]
    fn every_pin_effect_round_trips() {
        let all = [
            PinEffect::None,
            PinEffect::Keep,
            PinEffect::Write,
            PinEffect::Delete,
        ];
        for (position, effect) in all.into_iter().enumerate() {
            assert_eq!(usize::from(effect.code()), position);
            assert_eq!(PinEffect::from_code(effect.code()), Some(effect));
        }
        assert_eq!(PinEffect::from_code(4), None);
    }

    #[test]
    fn steps_round_trip_and_stay_exact_as_js_numbers() {
        let steps = [
            Step::Exhausted,
            Step::Serve { variant: 0 },
            Step::Serve {
                variant: STEP_MAX_VARIANT,
            },
            Step::Call {
                variant: 0,
                timeout_ms: None,
            },
            Step::Call {
                variant: 7,
                timeout_ms: Some(0),
            },
            Step::Call {
                variant: 3,
                timeout_ms: Some(3_600_000),
            },
            Step::Call {
                variant: STEP_MAX_VARIANT,
                timeout_ms: Some(STEP_MAX_TIMEOUT_MS),
            },
        ];
        for step in steps {
            let code = step.code();
            assert!(code < 1 << 53, "{step:?} -> {code} is not exact in an f64");
            assert_eq!(Step::from_code(code), Some(step), "{step:?} -> {code}");
            // What a JS number holds: the same integer.
            assert_eq!(code as f64 as u64, code);
        }
        // The layout index.js reads: kind in the low two bits, variant above, timeout + 1
        // from 2^24.
        let call = Step::Call {
            variant: 2,
            timeout_ms: Some(250),
        };
        assert_eq!(call.code(), 1 + 4 * 2 + (1 << 24) * 251);
        assert_eq!(Step::Serve { variant: 5 }.code(), 2 + 4 * 5);
        assert_eq!(Step::Exhausted.code(), 0);
    }

    #[test]
    fn steps_out_of_range_are_clamped_and_foreign_codes_refused() {
        let huge = Step::Call {
            variant: usize::MAX,
            timeout_ms: Some(u64::MAX),
        };
        assert_eq!(
            Step::from_code(huge.code()),
            Some(Step::Call {
                variant: STEP_MAX_VARIANT,
                timeout_ms: Some(STEP_MAX_TIMEOUT_MS),
            })
        );
        // Kind 3 does not exist; an exhausted step has no variant or timeout; a serve step
        // has no timeout.
        assert_eq!(Step::from_code(3), None);
        assert_eq!(Step::from_code(4), None);
        assert_eq!(Step::from_code(STEP_TIMEOUT_UNIT), None);
        assert_eq!(Step::from_code(2 + STEP_TIMEOUT_UNIT), None);
        assert_eq!(
            Step::from_code(1 + STEP_TIMEOUT_UNIT * (STEP_MAX_TIMEOUT_MS + 2)),
            None
        );
    }
}
