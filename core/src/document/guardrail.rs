//! A flag's `guardrails`, as written in the document: what each watches and what it does when
//! it trips. The windows that judge them are runtime state ([`crate::runtime::guardrail`]).

use std::sync::Arc;

use crate::time::Millis;
/// What a guardrail measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Share of attempts that failed (any error kind, `rejected` included).
    ErrorRate,
    /// The 95th percentile of attempt latency, in milliseconds.
    P95LatencyMs,
    /// Mean cost of an attempt.
    CostPerRequest,
    /// Mean quality score attached with `feedback(run_id, quality=…)`.
    Quality,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::ErrorRate,
        Metric::P95LatencyMs,
        Metric::CostPerRequest,
        Metric::Quality,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ErrorRate => "error_rate",
            Metric::P95LatencyMs => "p95_latency_ms",
            Metric::CostPerRequest => "cost_per_request",
            Metric::Quality => "quality",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == text)
    }

    /// Whether the threshold is a floor (`min`) rather than a ceiling (`max`).
    pub(crate) fn is_floor(self) -> bool {
        matches!(self, Metric::Quality)
    }
}

/// What a tripped guardrail does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// Kill the flag: every unit gets the kill variant (reason `KILLED`).
    Kill,
    /// Serve units assigned to the bad variant the next healthy variant of `fallback`
    /// (reason `GUARDRAIL`).
    Fallback,
    /// Freeze ramps of the bad variant at the percentage they had when it tripped.
    Halt,
    /// Take ramps of the bad variant back to 0 %.
    Rollback,
}

impl GuardAction {
    pub const ALL: [GuardAction; 4] = [
        GuardAction::Kill,
        GuardAction::Fallback,
        GuardAction::Halt,
        GuardAction::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Kill => "kill",
            GuardAction::Fallback => "fallback",
            GuardAction::Halt => "halt",
            GuardAction::Rollback => "rollback",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<GuardAction> {
        GuardAction::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// Share of the p95 guardrail: an attempt slower than the threshold counts as "bad", and the
/// p95 is past the threshold when more than 5 % are bad.
pub(crate) const P95_TAIL: f64 = 0.05;

/// One guardrail of a flag, as compiled from the document.
#[derive(Debug, Clone)]
pub struct Guardrail {
    /// `id`, or the metric name when the document gives none.
    pub id: Arc<str>,
    pub metric: Metric,
    /// `max` for error_rate, p95_latency_ms and cost_per_request; `min` for quality.
    pub threshold: f64,
    pub window: Millis,
    pub min_samples: u64,
    pub action: GuardAction,
    pub cooldown: Millis,
    /// Share of units (over 100 000) that probe a half-open guardrail.
    pub probe_share: u32,
    /// Watched variants (indices); by default every AI variant of the flag.
    pub variants: Vec<usize>,
}

/// Defaults of the optional guardrail fields (docs/flag-document.md lists them).
pub(crate) const DEFAULT_WINDOW: Millis = 5 * 60 * 1000;
pub(crate) const DEFAULT_MIN_SAMPLES: u64 = 20;
pub(crate) const DEFAULT_COOLDOWN: Millis = 5 * 60 * 1000;
pub(crate) const DEFAULT_PROBE_PERCENT: u32 = 10;
