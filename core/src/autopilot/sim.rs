//! Simulated rollouts through the real decision code: seeded, reproducible, pure.
//!
//! A rollout walks a ramp (by default 1, 5, 25, 50, 100 %) one simulated minute at a time. Each
//! minute a fixed number of units reaches the flag; each is assigned to the candidate with the
//! step's probability (binomial draw), and each unit contributes one per-unit value per metric
//! (quality only for the share of units that leave feedback). Per-unit values are normal with
//! the scenario's mean and standard deviation, and a minute's values are added to the arm's
//! [`Moments`] *exactly in distribution* without drawing them one by one: the mean of `k`
//! normal values is `N(μ, σ²/k)` and, independently, their sum of squared deviations is
//! `σ² χ²(k−1)`. So a minute costs the same at any traffic. Then [`decide_with`] looks, and the
//! rollout follows its decision: promote starts the next step with fresh evidence, roll back /
//! halt / revert ends it, reaching the last step completes it.
//!
//! The random numbers come from xoshiro256** seeded through splitmix64; each rollout gets its
//! own stream derived from (seed, index), so a result does not depend on how many rollouts ran
//! before it.

use std::collections::BTreeMap;

use super::decide::{decide_with, ArmEvidence, Decision, Method, Observation, Reason, Samples};
use super::spec::{AutopilotSpec, HoldWindow};
use super::stats::{ln_gamma, Moments};
use crate::hash::PERCENT_TOTAL;
use crate::time::Millis;

const MINUTE: Millis = 60_000;

/// xoshiro256** (Blackman and Vigna), seeded with splitmix64.
#[derive(Debug, Clone)]
pub struct Rng {
    state: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for stream `stream` of seed `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut stream_state = stream.wrapping_mul(0xD134_2543_DE82_EF95);
        let mut x = seed ^ splitmix64(&mut stream_state);
        let state = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Rng { state }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform on the open interval (0, 1): safe to take the logarithm of.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Marsaglia's polar method).
    pub fn normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.uniform() - 1.0;
            let v = 2.0 * self.uniform() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * s.ln() / s).sqrt();
            }
        }
    }

    /// Gamma with the given shape and scale 1 (Marsaglia and Tsang; shape < 1 by boosting).
    pub(crate) fn gamma(&mut self, shape: f64) -> f64 {
        if shape <= 0.0 {
            return 0.0;
        }
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.uniform().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.uniform();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v;
            }
        }
    }

    /// Chi-squared with `k` degrees of freedom.
    pub(crate) fn chi_squared(&mut self, k: u64) -> f64 {
        2.0 * self.gamma(k as f64 / 2.0)
    }

    /// Binomial(n, p): inversion for small means, Hörmann's BTRS (transformed rejection with
    /// squeeze) otherwise.
    pub(crate) fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        if (n as f64) * p < 10.0 {
            self.binomial_inversion(n, p)
        } else {
            self.binomial_btrs(n, p)
        }
    }

    fn binomial_inversion(&mut self, n: u64, p: f64) -> u64 {
        let q = 1.0 - p;
        let odds = p / q;
        let mut probability = q.powf(n as f64);
        let mut u = self.uniform();
        let mut k = 0u64;
        while u > probability && k < n {
            u -= probability;
            k += 1;
            // P(k) = P(k−1) · (n − k + 1)/k · p/q
            probability *= (n - k + 1) as f64 / k as f64 * odds;
        }
        k
    }

    fn binomial_btrs(&mut self, n: u64, p: f64) -> u64 {
        let nf = n as f64;
        let q = 1.0 - p;
        let spq = (nf * p * q).sqrt();
        let b = 1.15 + 2.53 * spq;
        let a = -0.0873 + 0.0248 * b + 0.01 * p;
        let c = nf * p + 0.5;
        let v_r = 0.92 - 4.2 / b;
        let alpha = (2.83 + 5.1 / b) * spq;
        let log_odds = (p / q).ln();
        let mode = ((nf + 1.0) * p).floor();
        let log_f_mode = ln_gamma(mode + 1.0) + ln_gamma(nf - mode + 1.0);
        loop {
            let u = self.uniform() - 0.5;
            let v = self.uniform();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + c).floor();
            if k < 0.0 || k > nf {
                continue;
            }
            if us >= 0.07 && v <= v_r {
                return k as u64;
            }
            let v = (v * alpha / (a / (us * us) + b)).ln();
            let bound =
                log_f_mode - ln_gamma(k + 1.0) - ln_gamma(nf - k + 1.0) + (k - mode) * log_odds;
            if v <= bound {
                return k as u64;
            }
        }
    }

    /// Adds `k` units with independent `N(mean, sd²)` values to `moments`, exactly in
    /// distribution (see the module documentation).
    pub(crate) fn add_normal_units(&mut self, moments: &mut Moments, k: u64, mean: f64, sd: f64) {
        if k == 0 {
            return;
        }
        let kf = k as f64;
        let sample_mean = mean + sd / kf.sqrt() * self.normal();
        let squared_deviations = if k > 1 {
            sd * sd * self.chi_squared(k - 1)
        } else {
            0.0
        };
        moments.n += k;
        moments.sum += kf * sample_mean;
        moments.sum_sq += squared_deviations + kf * sample_mean * sample_mean;
    }
}

/// How one metric's per-unit values are distributed in one arm.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricModel {
    pub(crate) metric: String,
    pub(crate) mean: f64,
    pub(crate) sd: f64,
    /// Share of units that report this metric (feedback for quality; 1 for measured metrics).
    pub(crate) reported_share: f64,
}

/// One kind of rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// Units reaching the flag per minute (candidate and control together).
    pub(crate) units_per_minute: u64,
    pub(crate) control: Vec<MetricModel>,
    /// Same metrics as `control`, in the same order.
    pub(crate) candidate: Vec<MetricModel>,
    /// Share of the candidate's units whose events arrive: 1 for a healthy split; below 1
    /// models a broken pipeline (a sample-ratio mismatch).
    pub(crate) candidate_logged_share: f64,
}

/// The ramp under simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub spec: AutopilotSpec,
    pub(crate) step_milli_percents: Vec<u32>,
    pub(crate) method: Method,
}

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    RolledBack,
    Halted,
    Reverted,
    /// Promoted into the last step (100 %).
    Completed,
    /// Still holding when every step could have held to its maximum (a frozen ramp).
    Stalled,
}

/// One rollout's story.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RolloutOutcome {
    pub(crate) ending: Ending,
    /// The step the rollout ended at (for `Completed`, the last step).
    pub(crate) step: usize,
    pub(crate) minutes: u64,
    /// Units ever served the candidate (whether or not their events arrived).
    pub(crate) exposed_candidate_units: u64,
    /// Units per arm in the deciding step at the final decision.
    pub(crate) decision_samples: Samples,
    /// The first minute a look was frozen by a sample-ratio mismatch, if any.
    pub(crate) first_freeze_minute: Option<u64>,
    /// Whether the rollout was ever promoted past a step after a mismatch had been seen there.
    pub(crate) promoted_while_mismatched: bool,
}

/// Simulates one rollout.
pub(crate) fn run_rollout(
    config: &SimConfig,
    scenario: &Scenario,
    rng: &mut Rng,
) -> RolloutOutcome {
    let steps = &config.step_milli_percents;
    // Every step holding to its maximum, plus one minute per step.
    let cap_minutes = steps
        .iter()
        .enumerate()
        .filter(|(_, &p)| p < PERCENT_TOTAL)
        .map(|(i, _)| {
            config
                .spec
                .hold(i)
                .map_or(0, |h: HoldWindow| h.max / MINUTE + 1)
        })
        .sum::<i64>()
        .max(1) as u64;
    let mut step = 0usize;
    let mut step_began = 0u64;
    let (mut control, mut candidate) = (fresh_arm(scenario), fresh_arm(scenario));
    let mut exposed = 0u64;
    let mut first_freeze = None;
    let mut mismatch_in_step = false;
    let mut promoted_while_mismatched = false;
    let outcome =
        |ending, step, minutes, exposed, samples, first_freeze, promoted| RolloutOutcome {
            ending,
            step,
            minutes,
            exposed_candidate_units: exposed,
            decision_samples: samples,
            first_freeze_minute: first_freeze,
            promoted_while_mismatched: promoted,
        };
    for minute in 0..cap_minutes {
        let Some(&milli_percent) = steps.get(step) else {
            break;
        };
        if milli_percent >= PERCENT_TOTAL {
            let samples = Samples {
                control: control.units,
                candidate: candidate.units,
            };
            return outcome(
                Ending::Completed,
                step,
                minute,
                exposed,
                samples,
                first_freeze,
                promoted_while_mismatched,
            );
        }
        let share = f64::from(milli_percent) / f64::from(PERCENT_TOTAL);
        let served_candidate = rng.binomial(scenario.units_per_minute, share);
        exposed += served_candidate;
        let logged_candidate = rng.binomial(served_candidate, scenario.candidate_logged_share);
        add_minute(
            rng,
            &mut control,
            &scenario.control,
            scenario.units_per_minute - served_candidate,
        );
        add_minute(rng, &mut candidate, &scenario.candidate, logged_candidate);
        let held = (minute + 1 - step_began) as Millis * MINUTE;
        let verdict = decide_with(
            &config.spec,
            &Observation {
                step_milli_percents: steps,
                step,
                held,
                control: &control,
                candidate: &candidate,
                srm_rejected_earlier: mismatch_in_step,
            },
            config.method,
        );
        if verdict.reason == Reason::SampleRatioMismatch {
            first_freeze.get_or_insert(minute + 1);
        }
        mismatch_in_step |= verdict.srm.is_some_and(|s| s.mismatch);
        let ending = match verdict.decision {
            Decision::Hold => None,
            Decision::Promote => {
                promoted_while_mismatched |= mismatch_in_step;
                mismatch_in_step = false;
                step += 1;
                step_began = minute + 1;
                control = fresh_arm(scenario);
                candidate = fresh_arm(scenario);
                None
            }
            Decision::RollBack => Some(Ending::RolledBack),
            Decision::Halt => Some(Ending::Halted),
            Decision::Revert => Some(Ending::Reverted),
        };
        if let Some(ending) = ending {
            return outcome(
                ending,
                step,
                minute + 1,
                exposed,
                verdict.samples,
                first_freeze,
                promoted_while_mismatched,
            );
        }
    }
    let samples = Samples {
        control: control.units,
        candidate: candidate.units,
    };
    let ending = if steps.get(step).is_some_and(|&p| p >= PERCENT_TOTAL) {
        Ending::Completed
    } else {
        Ending::Stalled
    };
    outcome(
        ending,
        step,
        cap_minutes,
        exposed,
        samples,
        first_freeze,
        promoted_while_mismatched,
    )
}

fn fresh_arm(scenario: &Scenario) -> ArmEvidence {
    ArmEvidence {
        units: 0,
        metrics: scenario
            .control
            .iter()
            .map(|m| (m.metric.clone(), Moments::default()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn add_minute(rng: &mut Rng, arm: &mut ArmEvidence, models: &[MetricModel], units: u64) {
    arm.units += units;
    for model in models {
        let reporting = rng.binomial(units, model.reported_share);
        if let Some(moments) = arm.metrics.get_mut(&model.metric) {
            rng.add_normal_units(moments, reporting, model.mean, model.sd);
        }
    }
}

/// What many rollouts of one scenario did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub scenario: String,
    pub(crate) method: Method,
    pub(crate) rollouts: u64,
    pub rolled_back: u64,
    /// Rolled back (or halted) at a step of at most 25 % (before passing 25 %).
    pub rolled_back_by_25: u64,
    pub halted: u64,
    pub reverted: u64,
    pub completed: u64,
    pub stalled: u64,
    /// Rollouts in which a sample-ratio mismatch froze at least one look.
    pub frozen: u64,
    /// Rollouts promoted past a step after a mismatch had been seen at that step (the freeze
    /// makes this impossible; the simulation counts it to show so).
    pub promoted_while_mismatched: u64,
    /// Medians over the rollouts that were rolled back (or halted): candidate units in the
    /// deciding step, control units there, candidate units ever exposed, minutes.
    pub median_rollback_candidate_units: Option<u64>,
    pub median_rollback_control_units: Option<u64>,
    pub(crate) median_rollback_exposed_units: Option<u64>,
    pub median_rollback_minutes: Option<u64>,
    /// Median minutes to reach 100 % over completed rollouts.
    pub median_completion_minutes: Option<u64>,
    /// Median minute of the first freeze over frozen rollouts.
    pub median_first_freeze_minute: Option<u64>,
}

impl Summary {
    /// `count / rollouts`.
    pub fn rate(&self, count: u64) -> f64 {
        if self.rollouts == 0 {
            0.0
        } else {
            count as f64 / self.rollouts as f64
        }
    }
}

fn median(mut values: Vec<u64>) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// Runs `rollouts` rollouts of `scenario`, rollout `i` on stream `i` of `seed`.
pub fn run(config: &SimConfig, scenario: &Scenario, rollouts: u64, seed: u64) -> Summary {
    let outcomes: Vec<RolloutOutcome> = (0..rollouts)
        .map(|i| run_rollout(config, scenario, &mut Rng::new(seed, i)))
        .collect();
    let count =
        |pred: &dyn Fn(&RolloutOutcome) -> bool| outcomes.iter().filter(|o| pred(o)).count() as u64;
    let is_rollback = |o: &RolloutOutcome| matches!(o.ending, Ending::RolledBack | Ending::Halted);
    let by_25 = |o: &RolloutOutcome| {
        is_rollback(o)
            && config
                .step_milli_percents
                .get(o.step)
                .is_some_and(|&p| p <= 25_000)
    };
    let rollbacks: Vec<&RolloutOutcome> = outcomes.iter().filter(|o| is_rollback(o)).collect();
    Summary {
        scenario: scenario.name.clone(),
        method: config.method,
        rollouts,
        rolled_back: count(&|o| o.ending == Ending::RolledBack),
        rolled_back_by_25: count(&by_25),
        halted: count(&|o| o.ending == Ending::Halted),
        reverted: count(&|o| o.ending == Ending::Reverted),
        completed: count(&|o| o.ending == Ending::Completed),
        stalled: count(&|o| o.ending == Ending::Stalled),
        frozen: count(&|o| o.first_freeze_minute.is_some()),
        promoted_while_mismatched: count(&|o| o.promoted_while_mismatched),
        median_rollback_candidate_units: median(
            rollbacks
                .iter()
                .map(|o| o.decision_samples.candidate)
                .collect(),
        ),
        median_rollback_control_units: median(
            rollbacks
                .iter()
                .map(|o| o.decision_samples.control)
                .collect(),
        ),
        median_rollback_exposed_units: median(
            rollbacks
                .iter()
                .map(|o| o.exposed_candidate_units)
                .collect(),
        ),
        median_rollback_minutes: median(rollbacks.iter().map(|o| o.minutes).collect()),
        median_completion_minutes: median(
            outcomes
                .iter()
                .filter(|o| o.ending == Ending::Completed)
                .map(|o| o.minutes)
                .collect(),
        ),
        median_first_freeze_minute: median(
            outcomes
                .iter()
                .filter_map(|o| o.first_freeze_minute)
                .collect(),
        ),
    }
}

/// The ramp of issue 17: steps 1, 5, 25, 50, 100 %; holds (min/max) of 1 h/6 h at 1 %,
/// 1 h/4 h at 5 %, 30 min/2 h at 25 % and 50 %; the default limits (quality −2 points, error
/// rate +1 point, cost ≤ 1.5×, latency ≤ 1.2×); α = 0.05 over the ramp.
pub fn standard_config(method: Method) -> SimConfig {
    let window = |min: i64, max: i64| HoldWindow {
        min: min * MINUTE,
        max: max * MINUTE,
    };
    SimConfig {
        spec: AutopilotSpec::with_default_limits(
            "control",
            vec![
                window(60, 360),
                window(60, 240),
                window(30, 120),
                window(30, 120),
            ],
        ),
        step_milli_percents: vec![1_000, 5_000, 25_000, 50_000, 100_000],
        method,
    }
}

/// `config` with only the named metrics kept (the scenarios still produce all of them).
pub fn only_metrics(mut config: SimConfig, metrics: &[&str]) -> SimConfig {
    config
        .spec
        .metrics
        .retain(|m| metrics.contains(&m.metric.as_str()));
    config
}

/// The control arm of the standard scenarios: quality 70 ± 15 points reported by 40 % of units,
/// per-unit error rate 0.02 ± 0.08, cost per request 0.002 ± 0.0015, latency 900 ± 450 ms.
pub(crate) fn standard_control() -> Vec<MetricModel> {
    let model = |metric: &str, mean: f64, sd: f64, reported_share: f64| MetricModel {
        metric: metric.to_owned(),
        mean,
        sd,
        reported_share,
    };
    vec![
        model("quality", 70.0, 15.0, 0.4),
        model("error_rate", 0.02, 0.08, 1.0),
        model("cost", 0.002, 0.0015, 1.0),
        model("latency_ms", 900.0, 450.0, 1.0),
    ]
}

/// The scenarios of issue 17 at the given traffic: A/A (a candidate no worse than control), a
/// good candidate (1 point better on quality, 1.2× the cost: within the 1.5× budget), a
/// 5-point and a 2-point quality harm, and a broken split (A/A with 10 % of the candidate's
/// events lost).
pub fn standard_scenarios(units_per_minute: u64) -> Vec<Scenario> {
    let control = standard_control();
    let with = |quality_delta: f64, cost_factor: f64| {
        let mut arm = standard_control();
        arm[0].mean += quality_delta;
        arm[2].mean *= cost_factor;
        arm[2].sd *= cost_factor;
        arm
    };
    let scenario = |name: &str, candidate: Vec<MetricModel>, logged: f64| Scenario {
        name: name.to_owned(),
        units_per_minute,
        control: control.clone(),
        candidate,
        candidate_logged_share: logged,
    };
    vec![
        scenario("A/A (candidate = control)", with(0.0, 1.0), 1.0),
        scenario(
            "good: quality +1 point, cost 1.2× control",
            with(1.0, 1.2),
            1.0,
        ),
        scenario("harm: quality −5 points", with(-5.0, 1.0), 1.0),
        scenario("harm: quality −2 points", with(-2.0, 1.0), 1.0),
        scenario(
            "broken split: 10 % of candidate events lost",
            with(0.0, 1.0),
            0.9,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autopilot::stats::chi_squared_sf;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |seed, stream| {
            let mut rng = Rng::new(seed, stream);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 3), draw(7, 3));
        assert_ne!(draw(7, 3), draw(7, 4));
        assert_ne!(draw(7, 3), draw(8, 3));
    }

    /// Pearson goodness of fit of `draws` binomial(n, p) variates against the exact pmf, on
    /// cells with an expected count of at least 20 (tails pooled).
    fn binomial_fit_p_value(n: u64, p: f64, draws: u64, seed: u64) -> f64 {
        let mut rng = Rng::new(seed, 0);
        let mut counts = vec![0u64; n as usize + 1];
        for _ in 0..draws {
            counts[rng.binomial(n, p) as usize] += 1;
        }
        let nf = n as f64;
        let pmf = |k: f64| {
            (ln_gamma(nf + 1.0) - ln_gamma(k + 1.0) - ln_gamma(nf - k + 1.0)
                + k * p.ln()
                + (nf - k) * (1.0 - p).ln())
            .exp()
        };
        // Cells of (expected, observed), each with an expected count of at least 20; what is
        // left of the upper tail joins the last cell.
        let mut cells: Vec<(f64, f64)> = Vec::new();
        let (mut expected, mut observed) = (0.0, 0.0);
        for (k, &count) in counts.iter().enumerate() {
            expected += draws as f64 * pmf(k as f64);
            observed += count as f64;
            if expected >= 20.0 {
                cells.push((expected, observed));
                (expected, observed) = (0.0, 0.0);
            }
        }
        if let Some(last) = cells.last_mut() {
            last.0 += expected;
            last.1 += observed;
        }
        let chi: f64 = cells.iter().map(|(e, o)| (o - e).powi(2) / e).sum();
        let cells = cells.len() as f64;
        chi_squared_sf(chi, cells - 1.0)
    }

    #[test]
    fn binomial_draws_fit_the_exact_distribution() {
        // Inversion (n·p < 10), BTRS at several shapes, and the p > ½ reflection.
        for (n, p) in [
            (30, 0.1),
            (2_500, 0.01),
            (2_500, 0.05),
            (2_500, 0.25),
            (2_500, 0.5),
            (400, 0.9),
        ] {
            let p_value = binomial_fit_p_value(n, p, 40_000, 11);
            assert!(
                p_value > 1e-4,
                "binomial({n}, {p}): goodness-of-fit p = {p_value}"
            );
        }
        let mut rng = Rng::new(1, 1);
        assert_eq!(rng.binomial(0, 0.5), 0);
        assert_eq!(rng.binomial(10, 0.0), 0);
        assert_eq!(rng.binomial(10, 1.0), 10);
    }

    #[test]
    fn gamma_and_normal_have_their_moments() {
        let mut rng = Rng::new(5, 0);
        let draws = 200_000;
        for shape in [0.5, 1.0, 3.5, 200.0] {
            let mut m = Moments::default();
            for _ in 0..draws {
                m.push(rng.gamma(shape));
            }
            let mean = m.mean().unwrap_or(0.0);
            let variance = m.variance().unwrap_or(0.0);
            // Mean and variance of Gamma(shape, 1) are both `shape`; 5 standard errors.
            let se_mean = (shape / draws as f64).sqrt();
            assert!(
                (mean - shape).abs() < 5.0 * se_mean,
                "shape {shape}: mean {mean}"
            );
            assert!(
                (variance / shape - 1.0).abs() < 0.05,
                "shape {shape}: var {variance}"
            );
        }
        let mut m = Moments::default();
        for _ in 0..draws {
            m.push(rng.normal());
        }
        assert!(m.mean().unwrap_or(1.0).abs() < 5.0 / (draws as f64).sqrt());
        assert!((m.variance().unwrap_or(0.0) - 1.0).abs() < 0.02);
    }

    #[test]
    fn aggregated_units_match_one_by_one_units_in_distribution() {
        // The sample variance of k normal units, built by the aggregate shortcut, has mean σ².
        let mut rng = Rng::new(9, 0);
        let mut variances = Moments::default();
        let mut means = Moments::default();
        for _ in 0..20_000 {
            let mut m = Moments::default();
            rng.add_normal_units(&mut m, 12, 5.0, 2.0);
            assert_eq!(m.n, 12);
            variances.push(m.variance().unwrap_or(0.0));
            means.push(m.mean().unwrap_or(0.0));
        }
        assert!((variances.mean().unwrap_or(0.0) - 4.0).abs() < 0.05);
        assert!((means.mean().unwrap_or(0.0) - 5.0).abs() < 0.01);
        // Var of the mean of 12 is σ²/12 = 1/3.
        assert!((means.variance().unwrap_or(0.0) - 4.0 / 12.0).abs() < 0.02);
    }

    #[test]
    fn the_sequential_srm_test_rarely_freezes_a_healthy_split_however_often_it_looks() {
        use crate::autopilot::{decide::sample_ratio_check, SrmTest};
        // 400 splits at 5 %, each looked at after every one of 300 batches of 100 units; a
        // threshold of 0.05 so the rate is measurable: Ville's inequality bounds it by 5 %.
        let (splits, threshold) = (400u64, 0.05);
        let mut ever = 0u64;
        for split in 0..splits {
            let mut rng = Rng::new(77, split);
            let mut samples = Samples {
                control: 0,
                candidate: 0,
            };
            for _ in 0..300 {
                let candidate = rng.binomial(100, 0.05);
                samples.candidate += candidate;
                samples.control += 100 - candidate;
                let check = sample_ratio_check(samples, 0.05, threshold, SrmTest::Sequential);
                if check.is_some_and(|c| c.mismatch) {
                    ever += 1;
                    break;
                }
            }
        }
        // 5 % of 400 is 20; allow three binomial standard errors (≈ 13) above it.
        assert!(ever <= 33, "{ever} of {splits} healthy splits froze");
    }

    #[test]
    fn a_run_is_a_pure_function_of_its_seed() {
        let config = standard_config(Method::ConfidenceSequence);
        let scenario = &standard_scenarios(2_500)[1];
        assert_eq!(run(&config, scenario, 4, 42), run(&config, scenario, 4, 42));
    }
}
