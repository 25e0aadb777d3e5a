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
    pub better: Better,
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
    pub rollback_at: f64,
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
    pub expected_candidate_share: f64,
    pub observed_candidate_share: f64,
    /// Pearson's statistic (reported whichever test decides).
    pub chi_squared: f64,
    /// The deciding test's p-value (for [`SrmTest::Sequential`], an anytime-valid one).
    pub p_value: f64,
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
    pub min_hold_ms: Option<Millis>,
    pub max_hold_ms: Option<Millis>,
    pub samples: Samples,
    /// `None` when the split cannot be tested yet (fewer than 5 expected units in an arm).
    pub srm: Option<SrmCheck>,
    /// The level of each metric's confidence sequence at this step.
    pub alpha_per_test: f64,
    pub method: Method,
    pub metrics: Vec<MetricEvidence>,
}

/// Chi-squared needs expected counts of about five per cell to be trusted (Cochran's rule).
const SRM_MIN_EXPECTED: f64 = 5.0;

/// Decides with the anytime-valid confidence sequence.
pub fn decide(spec: &AutopilotSpec, observation: &Observation<'_>) -> Verdict {
    decide_with(spec, observation, Method::ConfidenceSequence)
}

/// Decides with the given interval method ([`Method::NaiveFixedSample`] only for comparisons).
pub fn decide_with(spec: &AutopilotSpec, observation: &Observation<'_>, method: Method) -> Verdict {
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
pub fn sample_ratio_check(
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
mod tests {
    use super::*;
    use crate::autopilot::spec::MetricLimit;

    const MINUTE: Millis = 60_000;
    const STEPS: [u32; 5] = [1_000, 5_000, 25_000, 50_000, 100_000];

    fn spec() -> AutopilotSpec {
        AutopilotSpec {
            metrics: vec![
                MetricLimit::higher_is_better("quality", Limit::Difference(2.0)),
                MetricLimit::lower_is_better("cost", Limit::Ratio(1.5)),
            ],
            ..AutopilotSpec::with_default_limits(
                "control",
                vec![HoldWindow {
                    min: 60 * MINUTE,
                    max: 360 * MINUTE,
                }],
            )
        }
    }

    /// Moments of `n` values with exactly the given mean and (population) standard deviation:
    /// half at mean − sd, half at mean + sd.
    fn moments(n: u64, mean: f64, sd: f64) -> Moments {
        let mut m = Moments::default();
        for i in 0..n {
            m.push(if i % 2 == 0 { mean - sd } else { mean + sd });
        }
        m
    }

    fn arm(units: u64, quality: f64, cost: f64) -> ArmEvidence {
        let mut metrics = BTreeMap::new();
        metrics.insert("quality".to_string(), moments(units, quality, 15.0));
        metrics.insert("cost".to_string(), moments(units, cost, 0.001));
        ArmEvidence { units, metrics }
    }

    fn look(
        spec: &AutopilotSpec,
        step: usize,
        held: Millis,
        control: &ArmEvidence,
        candidate: &ArmEvidence,
    ) -> Verdict {
        decide(
            spec,
            &Observation {
                step_milli_percents: &STEPS,
                step,
                held,
                control,
                candidate,
                srm_rejected_earlier: false,
            },
        )
    }

    #[test]
    fn equal_arms_with_plenty_of_data_promote_after_the_min_hold() {
        let spec = spec();
        // Step 50 %: equal arms.
        let (control, candidate) = (arm(20_000, 70.0, 0.002), arm(20_000, 70.0, 0.002));
        let early = look(&spec, 3, 30 * MINUTE, &control, &candidate);
        assert_eq!(
            (early.decision, early.reason),
            (Decision::Hold, Reason::MinHoldNotReached)
        );
        let verdict = look(&spec, 3, 60 * MINUTE, &control, &candidate);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::Promote, Reason::ProvenWithinLimits)
        );
        assert!(verdict
            .metrics
            .iter()
            .all(|m| m.status == MetricStatus::WithinLimit));
        let quality = &verdict.metrics[0];
        assert_eq!((quality.limit, quality.must_stay), (-2.0, Side::Above));
        let [low, high] = quality.interval.unwrap_or([f64::NAN; 2]);
        assert!(low < 0.0 && high > 0.0 && low > -2.0, "{low} {high}");
        let cost = &verdict.metrics[1];
        assert!((cost.limit - 1.5).abs() < 1e-12 && cost.must_stay == Side::Below);
        assert!((cost.estimate.unwrap_or(0.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn proven_quality_drop_rolls_back_even_before_the_min_hold() {
        let spec = spec();
        let (control, candidate) = (arm(20_000, 70.0, 0.002), arm(20_000, 65.0, 0.002));
        let verdict = look(&spec, 3, MINUTE, &control, &candidate);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::RollBack, Reason::ProvenRegression)
        );
        assert_eq!(verdict.metrics[0].status, MetricStatus::Regression);
        assert_eq!(verdict.metrics[1].status, MetricStatus::WithinLimit);
        let halting = AutopilotSpec {
            on_regression: RegressionAction::Halt,
            ..spec
        };
        let verdict = look(&halting, 3, MINUTE, &control, &candidate);
        assert_eq!(verdict.decision, Decision::Halt);
    }

    #[test]
    fn proven_cost_rise_on_the_ratio_scale_rolls_back() {
        let spec = spec();
        let (control, candidate) = (arm(20_000, 70.0, 0.002), arm(20_000, 70.0, 0.0024));
        let verdict = look(&spec, 3, 90 * MINUTE, &control, &candidate);
        assert_eq!(verdict.decision, Decision::RollBack);
        let cost = &verdict.metrics[1];
        assert_eq!(cost.status, MetricStatus::Regression);
        let [low, _] = cost.interval.unwrap_or([f64::NAN; 2]);
        assert!(low > 1.0 && (cost.rollback_at - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_rollback_threshold_tolerates_a_proven_small_rise() {
        let mut spec = spec();
        spec.metrics[1].rollback_beyond = Some(1.3);
        let (control, candidate) = (arm(20_000, 70.0, 0.002), arm(20_000, 70.0, 0.0024));
        let verdict = look(&spec, 3, 90 * MINUTE, &control, &candidate);
        // 1.2× is proven above 1 but below 1.3, and proven within 1.5: promote.
        assert_eq!(verdict.decision, Decision::Promote);
    }

    #[test]
    fn too_little_data_holds_then_reverts_at_the_max_hold() {
        let spec = spec();
        let (control, candidate) = (arm(9_000, 70.0, 0.002), arm(90, 70.0, 0.002));
        let verdict = look(&spec, 0, 100 * MINUTE, &control, &candidate);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::Hold, Reason::CollectingSamples)
        );
        let verdict = look(&spec, 0, 360 * MINUTE, &control, &candidate);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::Revert, Reason::MaxHoldWithoutProof)
        );
    }

    #[test]
    fn undecided_evidence_holds_then_reverts() {
        let spec = spec();
        // 1 % step, a 1-point drop with a few hundred units: neither proof.
        let (control, candidate) = (arm(30_000, 70.0, 0.002), arm(300, 69.0, 0.002));
        let verdict = look(&spec, 0, 120 * MINUTE, &control, &candidate);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::Hold, Reason::AwaitingEvidence)
        );
        assert_eq!(verdict.metrics[0].status, MetricStatus::Undecided);
        let verdict = look(&spec, 0, 361 * MINUTE, &control, &candidate);
        assert_eq!(verdict.decision, Decision::Revert);
    }

    #[test]
    fn the_last_step_has_nothing_to_decide() {
        let spec = spec();
        let (control, candidate) = (ArmEvidence::default(), arm(1_000, 70.0, 0.002));
        let verdict = look(&spec, 4, 600 * MINUTE, &control, &candidate);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::Hold, Reason::Complete)
        );
        let verdict = look(&spec, 9, 600 * MINUTE, &control, &candidate);
        assert_eq!(verdict.reason, Reason::Complete);
    }

    #[test]
    fn an_invalid_spec_decides_nothing() {
        let mut spec = spec();
        spec.alpha = 2.0;
        let (control, candidate) = (arm(20_000, 70.0, 0.002), arm(20_000, 60.0, 0.002));
        let verdict = look(&spec, 3, 600 * MINUTE, &control, &candidate);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::Hold, Reason::InvalidSpec)
        );
    }

    #[test]
    fn missing_metric_values_are_insufficient_not_proof() {
        let spec = spec();
        let control = arm(20_000, 70.0, 0.002);
        let mut candidate = arm(20_000, 70.0, 0.002);
        candidate.metrics.remove("quality");
        let verdict = look(&spec, 3, 600 * MINUTE, &control, &candidate);
        assert_eq!(verdict.metrics[0].status, MetricStatus::InsufficientData);
        assert_eq!(verdict.decision, Decision::Revert);
    }

    #[test]
    fn a_broken_split_freezes_every_decision() {
        let spec = spec();
        // 5 % step but the candidate has 6.5 % of the units, with an obvious regression and
        // the max hold passed: still nothing but a frozen hold.
        let (control, candidate) = (arm(18_700, 70.0, 0.002), arm(1_300, 60.0, 0.002));
        let verdict = look(&spec, 1, 600 * MINUTE, &control, &candidate);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::Hold, Reason::SampleRatioMismatch)
        );
        let srm = verdict.srm.unwrap_or_else(|| panic!("no SRM check"));
        assert!(srm.mismatch && srm.p_value < 1e-10);
        assert!((srm.expected_candidate_share - 0.05).abs() < 1e-12);
        assert!((srm.observed_candidate_share - 0.065).abs() < 1e-12);
        // The same arms at the matching split are judged normally.
        let verdict = look(
            &spec,
            1,
            600 * MINUTE,
            &arm(24_700, 70.0, 0.002),
            &candidate,
        );
        assert_eq!(verdict.decision, Decision::RollBack);
    }

    #[test]
    fn srm_chi_squared_matches_a_hand_computation() {
        // 1 000 units at an expected 50/50: 540 vs 460 gives χ² = 2·40²/500 = 6.4, p ≈ 0.0114.
        let check = sample_ratio_check(
            Samples {
                control: 460,
                candidate: 540,
            },
            0.5,
            0.001,
            SrmTest::ChiSquared,
        )
        .unwrap_or_else(|| panic!("no check"));
        assert!((check.chi_squared - 6.4).abs() < 1e-12);
        assert!((check.p_value - 0.011_412_036_386_001_656).abs() < 1e-12);
        assert!(!check.mismatch);
        // 600 vs 400: χ² = 40, p ≈ 2.5e-10: mismatch.
        let check = sample_ratio_check(
            Samples {
                control: 400,
                candidate: 600,
            },
            0.5,
            0.001,
            SrmTest::ChiSquared,
        )
        .unwrap_or_else(|| panic!("no check"));
        assert!(check.mismatch && (check.chi_squared - 40.0).abs() < 1e-12);
        // Fewer than five expected units in an arm: no test.
        assert_eq!(
            sample_ratio_check(
                Samples {
                    control: 300,
                    candidate: 9
                },
                0.01,
                0.001,
                SrmTest::ChiSquared,
            ),
            None
        );
    }

    #[test]
    fn the_sequential_srm_test_is_calm_on_a_healthy_split_and_firm_on_a_broken_one() {
        let check = |control, candidate| {
            sample_ratio_check(
                Samples { control, candidate },
                0.05,
                0.001,
                SrmTest::Sequential,
            )
            .unwrap_or_else(|| panic!("no check"))
        };
        // Exactly the expected 5 %: the mixture ratio is below 1, so p = 1.
        let healthy = check(95_000, 5_000);
        assert_eq!(healthy.p_value, 1.0);
        assert!(!healthy.mismatch && healthy.test == SrmTest::Sequential);
        // 4 500 of 100 000 (10 % short): overwhelming evidence.
        let broken = check(95_500, 4_500);
        assert!(broken.mismatch && broken.p_value < 1e-6, "{broken:?}");
        // A deviation of 2.5 standard errors is significant for chi-squared at 0.05 but is
        // not evidence enough for the anytime-valid test at 0.001.
        let mild = check(1_944 - 24, 106 + 24);
        assert!(!mild.mismatch && mild.p_value > 0.001, "{mild:?}");
        // The chi-squared statistic is reported either way.
        assert!((broken.chi_squared - 500.0 * 500.0 / 5_000.0 / 0.95).abs() < 1e-9);
    }

    #[test]
    fn a_sequential_rejection_keeps_the_step_frozen_a_chi_squared_one_does_not() {
        let mut spec = spec();
        let (control, candidate) = (arm(20_000, 70.0, 0.002), arm(20_000, 70.0, 0.002));
        let observation = Observation {
            step_milli_percents: &STEPS,
            step: 3,
            held: 120 * MINUTE,
            control: &control,
            candidate: &candidate,
            srm_rejected_earlier: true,
        };
        assert_eq!(decide(&spec, &observation).decision, Decision::Promote);
        spec.srm_test = SrmTest::Sequential;
        let verdict = decide(&spec, &observation);
        assert_eq!(
            (verdict.decision, verdict.reason),
            (Decision::Hold, Reason::SampleRatioMismatch)
        );
        assert!(verdict.srm.is_some_and(|srm| !srm.mismatch));
    }

    #[test]
    fn alpha_is_split_over_tested_steps_and_metrics() {
        let spec = spec();
        let (control, candidate) = (arm(20_000, 70.0, 0.002), arm(20_000, 70.0, 0.002));
        let verdict = look(&spec, 3, 60 * MINUTE, &control, &candidate);
        // Four steps have a control (1, 5, 25, 50 %), two metrics.
        assert!((verdict.alpha_per_test - 0.05 / 8.0).abs() < 1e-15);
    }

    #[test]
    fn the_naive_interval_is_narrower_than_the_sequence() {
        let spec = spec();
        let (control, candidate) = (arm(5_000, 70.0, 0.002), arm(5_000, 69.0, 0.002));
        let observation = Observation {
            step_milli_percents: &STEPS,
            step: 3,
            held: 60 * MINUTE,
            control: &control,
            candidate: &candidate,
            srm_rejected_earlier: false,
        };
        let width = |v: &Verdict| {
            let [low, high] = v.metrics[0].interval.unwrap_or([0.0; 2]);
            high - low
        };
        let sequential = decide(&spec, &observation);
        let naive = decide_with(&spec, &observation, Method::NaiveFixedSample);
        assert!(width(&naive) < width(&sequential) / 1.5);
        assert_eq!(naive.method, Method::NaiveFixedSample);
    }

    #[test]
    fn verdicts_serialise_with_snake_case_names() {
        let spec = spec();
        let (control, candidate) = (arm(20_000, 70.0, 0.002), arm(20_000, 65.0, 0.002));
        let verdict = look(&spec, 3, MINUTE, &control, &candidate);
        let json = serde_json::to_value(&verdict).unwrap_or_default();
        assert_eq!(json["decision"], "roll_back");
        assert_eq!(json["reason"], "proven_regression");
        assert_eq!(json["samples"]["candidate"], 20_000);
        assert_eq!(json["metrics"][0]["metric"], "quality");
        assert_eq!(json["metrics"][0]["must_stay"], "above");
        // A zero threshold on a higher-is-better metric is 0.0, not −0.0.
        assert_eq!(json["metrics"][0]["rollback_at"].to_string(), "0.0");
        assert_eq!(json["metrics"][0]["status"], "regression");
        assert!(json["metrics"][0]["interval"][1].as_f64().unwrap_or(0.0) < 0.0);
        let back: Verdict = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, verdict);
    }
}
