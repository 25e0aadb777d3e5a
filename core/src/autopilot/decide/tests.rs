//! Unit tests of the decision: one per decision path, and the SRM freeze.
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
