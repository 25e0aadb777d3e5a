//! The decision rule: one call per ramp per look, from the step's evidence to promote, hold,
//! roll back (or halt), or revert — with the evidence that justified it.
//!
//! The rule (docs/autopilot.md has the derivation and the guarantees):
//!
//! 1. nothing to compare at a step without control (100 %): hold, `complete`;
//! 2. sample-ratio mismatch (chi-squared, one degree of freedom, against the step's expected
//!    split) below the spec's p-value: hold, `sample_ratio_mismatch` — nothing is decided on a
//!    broken split, not even a revert;
//! 3. fewer than `min_units_per_arm` units in either arm: hold (or revert once the maximum hold
//!    has passed);
//! 4. any metric proven worse than control beyond its rollback threshold: roll back (or halt);
//! 5. every metric proven within its limit and the minimum hold passed: promote;
//! 6. the maximum hold passed: revert; otherwise hold.
//!
//! "Proven" means the metric's anytime-valid confidence sequence, at level
//! `alpha / (tested steps × metrics)`, lies entirely on one side of the threshold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{
    AutopilotSpec, Better, HoldWindow, Limit, MetricLimit, RegressionAction, SrmTest,
};
use super::stats::{chi_squared_sf, ln_beta, mixture_half_width, normal_upper_quantile, Moments};
use crate::hash::PERCENT_TOTAL;
use crate::time::Millis;

/// What one arm (control or candidate) collected in the current step, per unit of
/// randomisation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmEvidence {
    /// Units assigned to this arm that were seen in the step (the count the SRM check tests).
    pub units: u64,
    /// Per metric, the moments of the per-unit values. A unit without a value for a metric
    /// (no feedback yet) is simply absent from that metric's moments.
    pub metrics: BTreeMap<String, Moments>,
}

/// One look at a ramp.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// The ramp's steps in thousandths of a percent (`1 %` is 1000), in order.
    pub step_milli_percents: &'a [u32],
    /// Index of the live step.
    pub step: usize,
    /// How long the live step has held at the time of the look (the caller passes time in).
    pub held: Millis,
    /// Evidence since the live step began: control …
    pub control: &'a ArmEvidence,
    /// … and the candidate.
    pub candidate: &'a ArmEvidence,
    /// An earlier look at this step had a sequential SRM rejection ([`SrmCheck::mismatch`]
    /// with [`SrmTest::Sequential`]). The caller remembers it: an anytime-valid rejection
    /// stands however the later looks come out, so the step stays frozen. Ignored for the
    /// chi-squared test, whose per-look p-values do not license that.
    pub srm_rejected_earlier: bool,
}

/// How intervals are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The anytime-valid normal-mixture confidence sequence. The only method to run a ramp with.
    ConfidenceSequence,
    /// The fixed-sample z interval at `alpha`, with no correction for looks, steps or metrics.
    /// Exists so the simulation can show what peeking does; never use it to run a ramp.
    NaiveFixedSample,
}

/// What to do with the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Advance to the next step.
    Promote,
    /// Stay at this step and look again later.
    Hold,
    /// Proven regression, spec says roll back: everyone back to control.
    RollBack,
    /// Proven regression, spec says halt: freeze the ramp here and alert.
    Halt,
    /// The maximum hold passed without proof either way: back to control.
    Revert,
}

/// Why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The spec is not usable (see [`AutopilotSpec::problems`]); nothing is decided.
    InvalidSpec,
    /// The step has no control arm (100 %, or 0 %) or does not exist: nothing to compare.
    Complete,
    /// The observed split differs from the expected one: decisions are frozen.
    SampleRatioMismatch,
    /// An arm has fewer units than `min_units_per_arm`.
    CollectingSamples,
    /// A metric is proven worse than control beyond its rollback threshold.
    ProvenRegression,
    /// Every metric is proven within its limit (and the minimum hold has passed).
    ProvenWithinLimits,
    /// Every metric is proven within its limit, but the minimum hold has not passed.
    MinHoldNotReached,
    /// Neither proof yet.
    AwaitingEvidence,
    /// The maximum hold passed without proof.
    MaxHoldWithoutProof,
}

/// Which side of the limit the candidate's interval has to stay on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Above,
    Below,
}

/// A metric's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricStatus {
    /// Proven within the limit.
    WithinLimit,
    /// Proven worse than control beyond the rollback threshold.
    Regression,
    /// The interval straddles a threshold.
    Undecided,
    /// Too few values (fewer than two per arm, no variance, or a non-positive mean on a ratio).
    InsufficientData,
}

/// Per-arm summary of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    pub n: u64,
    pub mean: Option<f64>,
}

/// The evidence on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricEvidence {
    pub metric: String,
    /// `difference` (candidate − control) or `ratio` (candidate / control).
    pub scale: Scale,
    pub(crate) better: Better,
    pub control: ArmSummary,
    pub candidate: ArmSummary,
    /// Candidate − control, or candidate / control.
    pub estimate: Option<f64>,
    /// The confidence sequence's interval for `estimate`'s true value, `[low, high]`.
    pub interval: Option<[f64; 2]>,
    /// The pre-committed limit on the same scale …
    pub limit: f64,
    /// … and the side the whole interval must be on to be proven within it.
    pub must_stay: Side,
    /// The interval wholly beyond this value (on the other side) is a proven regression.
    pub(crate) rollback_at: f64,
    pub status: MetricStatus,
}

/// The scale a metric is compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Difference,
    Ratio,
}

/// Units per arm in the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Samples {
    pub control: u64,
    pub candidate: u64,
}

/// The sample-ratio check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SrmCheck {
    pub test: SrmTest,
    /// The candidate's expected share of the units in the two arms.
    pub(crate) expected_candidate_share: f64,
    pub(crate) observed_candidate_share: f64,
    /// Pearson's statistic (reported whichever test decides).
    pub(crate) chi_squared: f64,
    /// The deciding test's p-value (for [`SrmTest::Sequential`], an anytime-valid one).
    pub(crate) p_value: f64,
    /// `p_value` is below the spec's threshold: decisions are frozen.
    pub mismatch: bool,
}

/// A decision with everything that justified it; serialisable as the `--json` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub decision: Decision,
    pub reason: Reason,
    pub step: usize,
    /// The step's percentage (`1.0` is 1 %).
    pub percent: f64,
    pub held_ms: Millis,
    pub(crate) min_hold_ms: Option<Millis>,
    pub(crate) max_hold_ms: Option<Millis>,
    pub samples: Samples,
    /// `None` when the split cannot be tested yet (fewer than 5 expected units in an arm).
    pub srm: Option<SrmCheck>,
    /// The level of each metric's confidence sequence at this step.
    pub(crate) alpha_per_test: f64,
    pub(crate) method: Method,
    pub metrics: Vec<MetricEvidence>,
}

/// Chi-squared needs expected counts of about five per cell to be trusted (Cochran's rule).
const SRM_MIN_EXPECTED: f64 = 5.0;

/// Decides with the anytime-valid confidence sequence.
pub fn decide(spec: &AutopilotSpec, observation: &Observation<'_>) -> Verdict {
    decide_with(spec, observation, Method::ConfidenceSequence)
}

/// Decides with the given interval method ([`Method::NaiveFixedSample`] only for comparisons).
pub(crate) fn decide_with(
    spec: &AutopilotSpec,
    observation: &Observation<'_>,
    method: Method,
) -> Verdict {
    let milli_percent = observation
        .step_milli_percents
        .get(observation.step)
        .copied()
        .unwrap_or(0);
    let hold = spec.hold(observation.step);
    let samples = Samples {
        control: observation.control.units,
        candidate: observation.candidate.units,
    };
    let tested_steps = observation
        .step_milli_percents
        .iter()
        .filter(|&&p| p > 0 && p < PERCENT_TOTAL)
        .count()
        .max(1);
    let alpha_per_test = match method {
        Method::ConfidenceSequence => {
            spec.alpha / (tested_steps * spec.metrics.len().max(1)) as f64
        }
        Method::NaiveFixedSample => spec.alpha,
    };
    let mut verdict = Verdict {
        decision: Decision::Hold,
        reason: Reason::AwaitingEvidence,
        step: observation.step,
        percent: f64::from(milli_percent) / 1000.0,
        held_ms: observation.held,
        min_hold_ms: hold.map(|h| h.min),
        max_hold_ms: hold.map(|h| h.max),
        samples,
        srm: None,
        alpha_per_test,
        method,
        metrics: Vec::new(),
    };
    let hold = match hold {
        Some(hold) if spec.problems().is_empty() => hold,
        _ => {
            verdict.reason = Reason::InvalidSpec;
            return verdict;
        }
    };
    if milli_percent == 0 || milli_percent >= PERCENT_TOTAL {
        verdict.reason = Reason::Complete;
        return verdict;
    }

    let expected_share = f64::from(milli_percent) / f64::from(PERCENT_TOTAL);
    verdict.srm = sample_ratio_check(samples, expected_share, spec.srm_p_value, spec.srm_test);
    let width = match method {
        Method::ConfidenceSequence => Width::Sequence {
            alpha: alpha_per_test,
        },
        // Computed once per look rather than once per metric.
        Method::NaiveFixedSample => Width::Fixed {
            z: normal_upper_quantile(alpha_per_test / 2.0),
        },
    };
    verdict.metrics = spec
        .metrics
        .iter()
        .map(|limit| {
            evaluate_metric(
                limit,
                observation.control.metrics.get(&limit.metric),
                observation.candidate.metrics.get(&limit.metric),
                width,
            )
        })
        .collect();

    let frozen = verdict.srm.is_some_and(|srm| srm.mismatch)
        || (spec.srm_test == SrmTest::Sequential && observation.srm_rejected_earlier);
    let (decision, reason) = rule(spec, hold, observation.held, samples, frozen, &verdict);
    verdict.decision = decision;
    verdict.reason = reason;
    verdict
}

/// Steps 2–6 of the rule, on the computed evidence.
fn rule(
    spec: &AutopilotSpec,
    hold: HoldWindow,
    held: Millis,
    samples: Samples,
    frozen: bool,
    verdict: &Verdict,
) -> (Decision, Reason) {
    let max_hold_passed = held >= hold.max;
    if frozen {
        return (Decision::Hold, Reason::SampleRatioMismatch);
    }
    if samples.control.min(samples.candidate) < spec.min_units_per_arm {
        return if max_hold_passed {
            (Decision::Revert, Reason::MaxHoldWithoutProof)
        } else {
            (Decision::Hold, Reason::CollectingSamples)
        };
    }
    if verdict
        .metrics
        .iter()
        .any(|m| m.status == MetricStatus::Regression)
    {
        let decision = match spec.on_regression {
            RegressionAction::RollBack => Decision::RollBack,
            RegressionAction::Halt => Decision::Halt,
        };
        return (decision, Reason::ProvenRegression);
    }
    if verdict
        .metrics
        .iter()
        .all(|m| m.status == MetricStatus::WithinLimit)
    {
        return if held >= hold.min {
            (Decision::Promote, Reason::ProvenWithinLimits)
        } else {
            (Decision::Hold, Reason::MinHoldNotReached)
        };
    }
    if max_hold_passed {
        (Decision::Revert, Reason::MaxHoldWithoutProof)
    } else {
        (Decision::Hold, Reason::AwaitingEvidence)
    }
}

/// Relative spread of the mixing distribution of the sequential SRM test: the candidate's share
/// is given a beta prior centred on the expected share with a standard deviation of 10 % of
/// it, the size of mismatch a broken pipeline typically produces.
const SRM_MIXTURE_RELATIVE_SD: f64 = 0.1;

/// The sample-ratio check of the two arms' unit counts against the expected split.
pub(crate) fn sample_ratio_check(
    samples: Samples,
    expected_candidate_share: f64,
    threshold: f64,
    test: SrmTest,
) -> Option<SrmCheck> {
    let total = (samples.control + samples.candidate) as f64;
    let expected_candidate = total * expected_candidate_share;
    let expected_control = total - expected_candidate;
    if !(expected_candidate >= SRM_MIN_EXPECTED && expected_control >= SRM_MIN_EXPECTED) {
        return None;
    }
    let deviation = samples.candidate as f64 - expected_candidate;
    // Both cells deviate by the same amount with opposite signs.
    let chi_squared =
        deviation * deviation / expected_candidate + deviation * deviation / expected_control;
    let p_value = match test {
        SrmTest::ChiSquared => chi_squared_sf(chi_squared, 1.0),
        SrmTest::Sequential => sequential_srm_p_value(samples, expected_candidate_share),
    };
    Some(SrmCheck {
        test,
        expected_candidate_share,
        observed_candidate_share: samples.candidate as f64 / total,
        chi_squared,
        p_value,
        mismatch: p_value < threshold,
    })
}

/// `min(1, 1/M)` where `M` is the beta-binomial mixture likelihood ratio of the candidate's
/// share: `M = B(a + n₁, b + n₀) / B(a, b) / (q^n₁ (1 − q)^n₀)` with `a = κq`, `b = κ(1 − q)`.
/// Under the expected split `M` is a nonnegative martingale with mean 1 (a Bayes factor with a
/// proper prior), so by Ville's inequality it ever exceeds `1/p` with probability at most `p`:
/// the p-value is valid at every look, with no asymptotics.
fn sequential_srm_p_value(samples: Samples, q: f64) -> f64 {
    // Beta(κq, κ(1−q)) has standard deviation √(q(1−q)/(κ+1)); solve for the relative spread.
    let spread = SRM_MIXTURE_RELATIVE_SD * q;
    let kappa = (q * (1.0 - q) / (spread * spread) - 1.0).max(1.0);
    let (a, b) = (kappa * q, kappa * (1.0 - q));
    let (n1, n0) = (samples.candidate as f64, samples.control as f64);
    let ln_ratio = ln_beta(a + n1, b + n0) - ln_beta(a, b) - n1 * q.ln() - n0 * (1.0 - q).ln();
    if ln_ratio.is_nan() {
        return 1.0;
    }
    (-ln_ratio).exp().min(1.0)
}

/// Estimate, estimator variance and natural-scale mapping of one metric.
struct Contrast {
    /// Candidate − control (difference) or ln(candidate / control) (ratio).
    estimate: f64,
    variance: f64,
}

fn contrast(limit: &MetricLimit, control: &Moments, candidate: &Moments) -> Option<Contrast> {
    let (mean_c, var_c) = (control.mean()?, control.variance()?);
    let (mean_t, var_t) = (candidate.mean()?, candidate.variance()?);
    let (n_c, n_t) = (control.n as f64, candidate.n as f64);
    let result = match limit.limit {
        Limit::Difference(_) => Contrast {
            estimate: mean_t - mean_c,
            variance: var_t / n_t + var_c / n_c,
        },
        Limit::Ratio(_) => {
            if !(mean_c > 0.0 && mean_t > 0.0) {
                return None;
            }
            // Delta method: Var(ln x̄) ≈ s² / (n x̄²).
            Contrast {
                estimate: mean_t.ln() - mean_c.ln(),
                variance: var_t / (n_t * mean_t * mean_t) + var_c / (n_c * mean_c * mean_c),
            }
        }
    };
    (result.estimate.is_finite() && result.variance.is_finite() && result.variance > 0.0)
        .then_some(result)
}

/// How an interval's half-width is computed.
#[derive(Clone, Copy)]
enum Width {
    Sequence { alpha: f64 },
    Fixed { z: f64 },
}

fn evaluate_metric(
    limit: &MetricLimit,
    control: Option<&Moments>,
    candidate: Option<&Moments>,
    width: Width,
) -> MetricEvidence {
    let empty = Moments::default();
    let control = control.unwrap_or(&empty);
    let candidate = candidate.unwrap_or(&empty);
    // Harm is the estimate oriented so that positive is worse for the candidate.
    let harm_sign = match limit.better {
        Better::Higher => -1.0,
        Better::Lower => 1.0,
    };
    let (scale, to_natural): (Scale, fn(f64) -> f64) = match limit.limit {
        Limit::Difference(_) => (Scale::Difference, |x| x),
        Limit::Ratio(_) => (Scale::Ratio, f64::exp),
    };
    let margin = limit.margin();
    let rollback_margin = limit.rollback_margin();
    let mut evidence = MetricEvidence {
        metric: limit.metric.clone(),
        scale,
        better: limit.better,
        control: ArmSummary {
            n: control.n,
            mean: control.mean(),
        },
        candidate: ArmSummary {
            n: candidate.n,
            mean: candidate.mean(),
        },
        estimate: None,
        interval: None,
        // `+ 0.0` turns the −0.0 of a negated zero into 0.0 for the JSON.
        limit: to_natural(harm_sign * margin) + 0.0,
        must_stay: match limit.better {
            Better::Higher => Side::Above,
            Better::Lower => Side::Below,
        },
        rollback_at: to_natural(harm_sign * rollback_margin) + 0.0,
        status: MetricStatus::InsufficientData,
    };
    let Some(contrast) = contrast(limit, control, candidate) else {
        return evidence;
    };
    let half_width = match width {
        // The mixing variance τ² = margin²: the sequence is tightest where the question is
        // decided, at effects about the size of the limit.
        Width::Sequence { alpha } => mixture_half_width(contrast.variance, margin * margin, alpha),
        Width::Fixed { z } => Some(z * contrast.variance.sqrt()),
    };
    evidence.estimate = Some(to_natural(contrast.estimate));
    let Some(half_width) = half_width.filter(|w| w.is_finite()) else {
        return evidence;
    };
    let (low, high) = (
        contrast.estimate - half_width,
        contrast.estimate + half_width,
    );
    evidence.interval = Some([to_natural(low), to_natural(high)]);
    let (harm_low, harm_high) = if harm_sign > 0.0 {
        (low, high)
    } else {
        (-high, -low)
    };
    evidence.status = if harm_low > rollback_margin {
        MetricStatus::Regression
    } else if harm_high < margin {
        MetricStatus::WithinLimit
    } else {
        MetricStatus::Undecided
    };
    evidence
}

#[cfg(test)]
mod tests;
