//! What an autopilot is told: the pre-committed limits, holds and actions of one ramp.
//!
//! These are plain values so the loader can fill them from the flag document's `autopilot`
//! block; [`AutopilotSpec::problems`] reports what is wrong with one, each problem with a path
//! relative to that block and a stable code, for the loader to wrap in its own error type.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// The autopilot of one ramp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutopilotSpec {
    /// The variant the candidate is compared with (the ramp's baseline).
    pub control: String,
    /// Minimum and maximum hold of each ramp step, in step order. When there are fewer entries
    /// than steps, the last entry applies to the remaining steps.
    pub holds: Vec<HoldWindow>,
    /// No decision (promote, roll back or revert for lack of proof) is made before each arm has
    /// this many units in the step: the intervals are asymptotic and need some data first.
    pub min_units_per_arm: u64,
    /// The metrics and their pre-committed limits; a promotion needs all of them proven.
    pub metrics: Vec<MetricLimit>,
    /// What a proven regression does.
    pub on_regression: RegressionAction,
    /// The chance, over the whole ramp (every step, every metric, every look), that a candidate
    /// that is no worse than control on all metrics is ever rolled back. Default 0.05.
    pub alpha: f64,
    /// A sample-ratio mismatch with a p-value below this freezes decisions. Default 0.001.
    pub srm_p_value: f64,
    /// How that p-value is computed. Default: Pearson's chi-squared at each look.
    pub srm_test: SrmTest,
    /// Not part of the pre-committed spec: the last decision written into the ramp (its
    /// `last_decision` field), carried here so that `status()` and `explain` can show it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<super::LastDecision>,
}

/// The sample-ratio test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SrmTest {
    /// Pearson's chi-squared (one degree of freedom) on the step's counts, at each look. Its
    /// p-value is a fixed-sample one, so looking every minute raises the chance of a false
    /// freeze above `srm_p_value` (a freeze lasts only while the mismatch stays significant).
    ChiSquared,
    /// An anytime-valid test: the p-value is 1 / the beta-binomial mixture likelihood ratio
    /// of the candidate's share against the expected one, so the chance of *ever* freezing a
    /// healthy split over all looks of a step is at most `srm_p_value`, exactly.
    Sequential,
}

/// How long a step must and may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldWindow {
    /// No promotion before the step has held this long (proven harm is acted on at once).
    pub min: Millis,
    /// Without proof by then, the candidate is reverted.
    pub max: Millis,
}

/// Which direction of a metric is good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Better {
    /// Quality, satisfaction: a drop is harm.
    Higher,
    /// Error rate, cost, latency: a rise is harm.
    Lower,
}

/// A pre-committed limit: how much worse than control the candidate may be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// At most this much worse, in the metric's own units (quality may drop at most `2.0`
    /// points; error rate may rise at most `0.01`). Must be positive.
    Difference(f64),
    /// At most this many times worse (cost at most `1.5`× control; for a higher-is-better
    /// metric, at least control / `1.5`). Must be greater than 1; the metric's means must be
    /// positive. Tested on the log scale (delta method).
    Ratio(f64),
}

/// One metric with its limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricLimit {
    /// The metric's name in the evidence (`quality`, `error_rate`, `cost`, `latency_ms`, …).
    pub metric: String,
    pub(crate) better: Better,
    /// Promotion needs proof that the candidate is within this limit.
    pub limit: Limit,
    /// Roll back once the candidate is proven worse than control by more than this, on the
    /// limit's scale (points for a difference, a multiplier for a ratio). `None`: any proven
    /// deterioration (a difference of 0, a ratio of 1). Must lie between that and the limit.
    pub(crate) rollback_beyond: Option<f64>,
}

/// What a proven regression does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionAction {
    /// Send everyone back to control (`rolled_back`).
    RollBack,
    /// Freeze the ramp where it is (`paused_at`) and alert; a person decides.
    Halt,
}

/// One thing wrong with a spec: `path` is relative to the `autopilot` block (`metrics[1].limit`),
/// `code` is stable (`AUTOPILOT_…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecProblem {
    pub(crate) path: String,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// The default level over a whole ramp.
pub(crate) const DEFAULT_ALPHA: f64 = 0.05;
/// The default sample-ratio-mismatch threshold.
pub(crate) const DEFAULT_SRM_P_VALUE: f64 = 0.001;

impl MetricLimit {
    /// A metric where higher is better (quality) with the given limit.
    pub(crate) fn higher_is_better(metric: &str, limit: Limit) -> Self {
        MetricLimit {
            metric: metric.to_owned(),
            better: Better::Higher,
            limit,
            rollback_beyond: None,
        }
    }

    /// A metric where lower is better (error rate, cost, latency) with the given limit.
    pub fn lower_is_better(metric: &str, limit: Limit) -> Self {
        MetricLimit {
            metric: metric.to_owned(),
            better: Better::Lower,
            limit,
            rollback_beyond: None,
        }
    }

    /// The limit as a bound on the harm scale the test works on (points, or log of the ratio).
    pub(crate) fn margin(&self) -> f64 {
        match self.limit {
            Limit::Difference(points) => points,
            Limit::Ratio(times) => times.ln(),
        }
    }

    /// The rollback threshold on the harm scale.
    pub(crate) fn rollback_margin(&self) -> f64 {
        match (self.limit, self.rollback_beyond) {
            (_, None) => 0.0,
            (Limit::Difference(_), Some(points)) => points,
            (Limit::Ratio(_), Some(times)) => times.ln(),
        }
    }
}

impl AutopilotSpec {
    /// The limits issue 17 names: quality (from feedback) may drop at most 2 points, error rate
    /// rise at most 1 point, cost per request at most 1.5× control, latency at most 1.2×. Quality
    /// and errors roll back on any proven deterioration; cost and latency are budgets, so they
    /// roll back only once proven beyond their limit. α = 0.05 over the ramp; SRM at p < 0.001.
    pub fn with_default_limits(control: &str, holds: Vec<HoldWindow>) -> Self {
        AutopilotSpec {
            control: control.to_owned(),
            holds,
            min_units_per_arm: 100,
            metrics: vec![
                MetricLimit::higher_is_better("quality", Limit::Difference(2.0)),
                MetricLimit::lower_is_better("error_rate", Limit::Difference(0.01)),
                MetricLimit {
                    rollback_beyond: Some(1.5),
                    ..MetricLimit::lower_is_better("cost", Limit::Ratio(1.5))
                },
                MetricLimit {
                    rollback_beyond: Some(1.2),
                    ..MetricLimit::lower_is_better("latency_ms", Limit::Ratio(1.2))
                },
            ],
            on_regression: RegressionAction::RollBack,
            alpha: DEFAULT_ALPHA,
            srm_p_value: DEFAULT_SRM_P_VALUE,
            srm_test: SrmTest::ChiSquared,
            last_decision: None,
        }
    }

    /// The hold window of step `step` (the last entry repeats); `None` without any entry.
    pub(crate) fn hold(&self, step: usize) -> Option<HoldWindow> {
        self.holds.get(step).or_else(|| self.holds.last()).copied()
    }

    /// Everything wrong with the spec; empty when it can be used.
    pub fn problems(&self) -> Vec<SpecProblem> {
        let mut problems = Vec::new();
        let mut add = |path: String, code: &'static str, message: String| {
            problems.push(SpecProblem {
                path,
                code,
                message,
            })
        };
        if self.control.is_empty() {
            add(
                "control".into(),
                "AUTOPILOT_CONTROL",
                "the control variant must be named".into(),
            );
        }
        if self.holds.is_empty() {
            add(
                "holds".into(),
                "AUTOPILOT_HOLD",
                "at least one hold window is needed".into(),
            );
        }
        for (i, hold) in self.holds.iter().enumerate() {
            if hold.min < 0 || hold.max <= 0 || hold.min > hold.max {
                add(
                    format!("holds[{i}]"),
                    "AUTOPILOT_HOLD",
                    format!(
                        "min hold {} ms and max hold {} ms must satisfy 0 ≤ min ≤ max, max > 0",
                        hold.min, hold.max
                    ),
                );
            }
        }
        if self.min_units_per_arm < 2 {
            add(
                "min_units_per_arm".into(),
                "AUTOPILOT_MIN_UNITS",
                "at least 2 units per arm are needed to estimate a variance".into(),
            );
        }
        if self.metrics.is_empty() {
            add(
                "metrics".into(),
                "AUTOPILOT_METRICS",
                "at least one metric with a limit is needed".into(),
            );
        }
        for (i, metric) in self.metrics.iter().enumerate() {
            if metric.metric.is_empty() {
                add(
                    format!("metrics[{i}].metric"),
                    "AUTOPILOT_METRIC_NAME",
                    "the metric must be named".into(),
                );
            }
            if self.metrics[..i].iter().any(|m| m.metric == metric.metric) {
                add(
                    format!("metrics[{i}].metric"),
                    "AUTOPILOT_METRIC_NAME",
                    format!("metric {:?} is listed twice", metric.metric),
                );
            }
            let (neutral, limit) = match metric.limit {
                Limit::Difference(points) => (0.0, points),
                Limit::Ratio(times) => (1.0, times),
            };
            if !(limit.is_finite() && limit > neutral) {
                add(
                    format!("metrics[{i}].limit"),
                    "AUTOPILOT_LIMIT",
                    format!("the limit must be finite and greater than {neutral}, got {limit}"),
                );
            }
            if let Some(rollback) = metric.rollback_beyond {
                if !(rollback.is_finite() && rollback >= neutral && rollback <= limit) {
                    add(
                        format!("metrics[{i}].rollback_beyond"),
                        "AUTOPILOT_LIMIT",
                        format!(
                            "the rollback threshold must lie between {neutral} and the limit {limit}, got {rollback}"
                        ),
                    );
                }
            }
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            add(
                "alpha".into(),
                "AUTOPILOT_ALPHA",
                format!(
                    "alpha must lie strictly between 0 and 1, got {}",
                    self.alpha
                ),
            );
        }
        if !(self.srm_p_value > 0.0 && self.srm_p_value < 1.0) {
            add(
                "srm_p_value".into(),
                "AUTOPILOT_ALPHA",
                format!(
                    "the SRM threshold must lie strictly between 0 and 1, got {}",
                    self.srm_p_value
                ),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(h: i64) -> Millis {
        h * 3_600_000
    }

    #[test]
    fn default_limits_are_valid_and_holds_repeat() {
        let spec = AutopilotSpec::with_default_limits(
            "control",
            vec![
                HoldWindow {
                    min: hours(1),
                    max: hours(6),
                },
                HoldWindow {
                    min: hours(1),
                    max: hours(2),
                },
            ],
        );
        assert_eq!(spec.problems(), vec![]);
        assert_eq!(spec.hold(0).map(|h| h.max), Some(hours(6)));
        assert_eq!(spec.hold(4).map(|h| h.max), Some(hours(2)));
    }

    #[test]
    fn problems_name_the_path_and_code() {
        let mut spec = AutopilotSpec::with_default_limits(
            "",
            vec![HoldWindow {
                min: hours(2),
                max: hours(1),
            }],
        );
        spec.metrics[2].limit = Limit::Ratio(0.9);
        spec.metrics[2].rollback_beyond = None;
        spec.metrics[0].rollback_beyond = Some(3.0);
        spec.metrics[3].metric = "quality".into();
        spec.alpha = 0.0;
        let found: Vec<(String, &str)> = spec
            .problems()
            .into_iter()
            .map(|p| (p.path, p.code))
            .collect();
        assert_eq!(
            found,
            vec![
                ("control".to_string(), "AUTOPILOT_CONTROL"),
                ("holds[0]".to_string(), "AUTOPILOT_HOLD"),
                ("metrics[0].rollback_beyond".to_string(), "AUTOPILOT_LIMIT"),
                ("metrics[2].limit".to_string(), "AUTOPILOT_LIMIT"),
                ("metrics[3].metric".to_string(), "AUTOPILOT_METRIC_NAME"),
                ("alpha".to_string(), "AUTOPILOT_ALPHA"),
            ]
        );
    }

    #[test]
    fn margins_are_on_the_harm_scale() {
        let cost = MetricLimit::lower_is_better("cost", Limit::Ratio(1.5));
        assert!((cost.margin() - 1.5f64.ln()).abs() < 1e-15);
        assert_eq!(cost.rollback_margin(), 0.0);
        let quality = MetricLimit {
            rollback_beyond: Some(1.0),
            ..MetricLimit::higher_is_better("quality", Limit::Difference(2.0))
        };
        assert_eq!((quality.margin(), quality.rollback_margin()), (2.0, 1.0));
    }
}
