//! Guardrails: automatic kill switches driven by the outcomes of calls.
//!
//! A guardrail watches one metric of each of its variants over a rolling window. When the
//! window holds at least `min_samples` observations and the 95 % bound of the metric is past
//! the threshold (the *lower* bound for "too high" metrics, the *upper* bound for quality), the
//! guardrail trips: its action applies to every evaluation in the process at once. After the
//! cooldown it goes half-open: a `probe_percent` share of units (chosen by bucket, so a user
//! does not flip back and forth) gets the undisturbed decision, and their outcomes decide —
//! healthy (point estimate within the threshold over `min_samples`) closes it, a new trip
//! restarts the cooldown. docs/runtime.md ("Guardrails") states the rule with numbers.

use crate::document::guardrail::{Guardrail, Metric, P95_TAIL};
use crate::runtime::stats::{
    mean_bounds, wilson_interval, RecentOutcomes, RollingWindow, Tally, Z95,
};
use crate::time::Millis;

/// What the window says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Not enough samples, or the bound straddles the threshold.
    Undecided,
    /// The 95 % bound is past the threshold.
    Trip,
    /// At least `min_samples` and the point estimate is within the threshold.
    Healthy,
}

/// The numbers behind a verdict, reported in events and status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub(crate) samples: u64,
    /// The point estimate (error rate, share of slow calls, mean cost, mean quality).
    pub(crate) observed: f64,
    /// The bound compared with the threshold (lower for ceilings, upper for floors).
    pub(crate) bound: f64,
    pub verdict: Verdict,
}

impl Guardrail {
    /// Turns one attempt into an observation of this guardrail's metric (`None`: not
    /// applicable, e.g. a cost guardrail and an attempt without a known cost).
    pub fn observe(&self, failed: bool, latency_ms: f64, cost: Option<f64>) -> Option<Tally> {
        let one = |bad: bool| Tally {
            n: 1,
            bad: u64::from(bad),
            ..Tally::default()
        };
        match self.metric {
            Metric::ErrorRate => Some(one(failed)),
            Metric::P95LatencyMs => Some(one(latency_ms > self.threshold)),
            Metric::CostPerRequest => cost.map(value),
            Metric::Quality => None,
        }
    }

    /// Turns a quality score into an observation (quality guardrails only).
    pub(crate) fn observe_quality(&self, quality: f64) -> Option<Tally> {
        (self.metric == Metric::Quality).then(|| value(quality))
    }

    /// Reads a window total against the threshold.
    pub fn read(&self, total: &Tally) -> Reading {
        let (observed, bound, past, within) = match self.metric {
            Metric::ErrorRate | Metric::P95LatencyMs => {
                let limit = match self.metric {
                    Metric::ErrorRate => self.threshold,
                    _ => P95_TAIL,
                };
                let observed = if total.n == 0 {
                    0.0
                } else {
                    total.bad as f64 / total.n as f64
                };
                let (lower, _) = wilson_interval(total.bad, total.n, Z95);
                (observed, lower, lower > limit, observed <= limit)
            }
            Metric::CostPerRequest => match mean_bounds(total.n, total.sum, total.sum_of_squares) {
                Some(m) => (
                    m.mean,
                    m.lower,
                    m.lower > self.threshold,
                    m.mean <= self.threshold,
                ),
                None => (0.0, 0.0, false, false),
            },
            Metric::Quality => match mean_bounds(total.n, total.sum, total.sum_of_squares) {
                Some(m) => (
                    m.mean,
                    m.upper,
                    m.upper < self.threshold,
                    m.mean >= self.threshold,
                ),
                None => (0.0, 0.0, false, false),
            },
        };
        let verdict = if total.n < self.min_samples {
            Verdict::Undecided
        } else if past {
            Verdict::Trip
        } else if within {
            Verdict::Healthy
        } else {
            Verdict::Undecided
        };
        Reading {
            samples: total.n,
            observed,
            bound,
            verdict,
        }
    }
}

fn value(x: f64) -> Tally {
    Tally {
        n: 1,
        bad: 0,
        sum: x,
        sum_of_squares: x * x,
    }
}

/// What one observation did to a guardrail's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Transition {
    None,
    /// Closed → tripped, or half-open → tripped again.
    Tripped(Reading),
    /// Tripped → half-open (the first probe outcome after the cooldown).
    Probing,
    /// Half-open → closed.
    Recovered(Reading),
}

/// The recent outcomes a guardrail judges beside its window: the last `2 × min_samples`
/// (at most this many; docs/runtime.md states the rule).
pub(crate) const MAX_RECENT_OUTCOMES: usize = 4_096;

/// How many recent outcomes a guardrail judges: `2 × min_samples`, capped.
pub(crate) fn recent_capacity(guardrail: &Guardrail) -> usize {
    usize::try_from(guardrail.min_samples.saturating_mul(2))
        .unwrap_or(MAX_RECENT_OUTCOMES)
        .clamp(1, MAX_RECENT_OUTCOMES)
}

/// The state of one guardrail for one variant.
#[derive(Debug, Clone)]
pub(crate) struct GuardState {
    window: RollingWindow,
    /// The last outcomes, judged on their own: a window full of healthy history cannot dilute
    /// an outage that began a few calls ago.
    recent: RecentOutcomes,
    /// `Some((since, probe_from))` while tripped or half-open.
    trip: Option<(Millis, Millis)>,
    /// Whether the window was reset for the half-open probe.
    probing: bool,
}

impl GuardState {
    pub fn new(guardrail: &Guardrail) -> GuardState {
        GuardState {
            window: RollingWindow::new(guardrail.window),
            recent: RecentOutcomes::new(recent_capacity(guardrail), guardrail.window),
            trip: None,
            probing: false,
        }
    }

    pub(crate) fn trip(&self) -> Option<(Millis, Millis)> {
        self.trip
    }

    /// Lays a trip the fleet decided over this state (`None`: the fleet closed it). Returns
    /// whether anything changed. The windows are cleared on a change, as for a local trip or
    /// recovery: evidence from before it says nothing about the variant after it.
    pub(crate) fn set_fleet_trip(&mut self, trip: Option<(Millis, Millis)>) -> bool {
        if self.trip == trip {
            return false;
        }
        self.trip = trip;
        self.probing = false;
        self.clear();
        true
    }

    fn clear(&mut self) {
        self.window.clear();
        self.recent.clear();
    }

    /// The current reading of the window (for status and metrics).
    pub fn reading(&self, guardrail: &Guardrail, now: Millis) -> Reading {
        guardrail.read(&self.window.total(now))
    }

    /// Adds one observation at `now` and moves the state machine.
    pub fn observe(
        &mut self,
        guardrail: &Guardrail,
        now: Millis,
        observation: Tally,
    ) -> Transition {
        let mut transition = Transition::None;
        if let Some((_, probe_from)) = self.trip {
            if now < probe_from {
                // Cooling down: outcomes of calls that were in flight at the trip say nothing
                // about the variant after it.
                return Transition::None;
            }
            if !self.probing {
                self.probing = true;
                self.clear();
                transition = Transition::Probing;
            }
        }
        if self.recent.capacity() != recent_capacity(guardrail) {
            // A reloaded document changed min_samples: judge the new number of outcomes.
            self.recent = RecentOutcomes::new(recent_capacity(guardrail), guardrail.window);
        }
        self.window.record(now, observation);
        self.recent.record(now, observation);
        let window = guardrail.read(&self.window.total(now));
        let recent = guardrail.read(&self.recent.total(now));
        // Either reading trips; only the window (the longer evidence) declares health.
        let reading = if window.verdict != Verdict::Trip && recent.verdict == Verdict::Trip {
            recent
        } else {
            window
        };
        match (reading.verdict, self.trip.is_some()) {
            (Verdict::Trip, _) => {
                self.trip = Some((now, now.saturating_add(guardrail.cooldown)));
                self.probing = false;
                self.clear();
                Transition::Tripped(reading)
            }
            (Verdict::Healthy, true) => {
                self.trip = None;
                self.probing = false;
                self.clear();
                Transition::Recovered(reading)
            }
            _ => transition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::guardrail::{GuardAction, DEFAULT_WINDOW};

    fn error_rate(max: f64, min_samples: u64) -> Guardrail {
        Guardrail {
            id: "error_rate".into(),
            metric: Metric::ErrorRate,
            threshold: max,
            window: 60_000,
            min_samples,
            action: GuardAction::Kill,
            cooldown: 10_000,
            probe_share: 10_000,
            variants: vec![0],
        }
    }

    /// The smallest error count out of `n` whose Wilson lower bound exceeds `max`, computed
    /// independently of `read` by scanning the formula.
    fn first_tripping_count(n: u64, max: f64) -> Option<u64> {
        (0..=n).find(|&k| {
            let p = k as f64 / n as f64;
            let z: f64 = 1.959_963_984_540_054;
            let nf = n as f64;
            let lower = (p + z * z / (2.0 * nf)
                - z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt())
                / (1.0 + z * z / nf);
            lower > max
        })
    }

    #[test]
    fn error_rate_trips_exactly_at_the_wilson_boundary() {
        let g = error_rate(0.05, 20);
        for n in [20u64, 50, 100, 400] {
            let k = first_tripping_count(n, 0.05).unwrap();
            let below = g.read(&Tally {
                n,
                bad: k - 1,
                ..Tally::default()
            });
            let at = g.read(&Tally {
                n,
                bad: k,
                ..Tally::default()
            });
            assert_ne!(below.verdict, Verdict::Trip, "n={n} k-1={}", k - 1);
            assert_eq!(at.verdict, Verdict::Trip, "n={n} k={k}");
        }
        // 20 samples, threshold 5 %: 3 errors (15 %, lower bound 5.2 %) trip, 2 (10 %, lower
        // bound 2.8 %) do not — worked by hand in docs/runtime.md ("Guardrails").
        assert_eq!(first_tripping_count(20, 0.05), Some(3));
    }

    #[test]
    fn one_unlucky_request_never_trips() {
        let g = error_rate(0.05, 20);
        let mut state = GuardState::new(&g);
        let bad = Tally {
            n: 1,
            bad: 1,
            ..Tally::default()
        };
        let good = Tally {
            n: 1,
            ..Tally::default()
        };
        assert_eq!(state.observe(&g, 0, bad), Transition::None);
        for t in 1..200 {
            assert_eq!(state.observe(&g, t, good), Transition::None);
        }
    }

    #[test]
    fn an_outage_trips_within_min_samples_then_cools_down_and_probes() {
        let g = error_rate(0.05, 20);
        let mut state = GuardState::new(&g);
        let bad = Tally {
            n: 1,
            bad: 1,
            ..Tally::default()
        };
        let good = Tally {
            n: 1,
            ..Tally::default()
        };
        let mut tripped_at = None;
        for t in 0..100 {
            if let Transition::Tripped(r) = state.observe(&g, t, bad) {
                tripped_at = Some(t);
                assert_eq!(r.samples, 20);
                break;
            }
        }
        assert_eq!(tripped_at, Some(19), "trips at the 20th failed request");
        // During the cooldown outcomes are ignored.
        assert_eq!(state.observe(&g, 5_000, good), Transition::None);
        // After it, the first probe outcome opens the probe; 20 healthy ones close it.
        assert_eq!(state.observe(&g, 10_019, good), Transition::Probing);
        let mut recovered = false;
        for t in 0..19 {
            if let Transition::Recovered(_) = state.observe(&g, 10_020 + t, good) {
                recovered = true;
            }
        }
        assert!(recovered);
        assert_eq!(state.trip(), None);
    }

    #[test]
    fn a_failing_probe_trips_again_with_a_new_cooldown() {
        let g = error_rate(0.05, 20);
        let mut state = GuardState::new(&g);
        let bad = Tally {
            n: 1,
            bad: 1,
            ..Tally::default()
        };
        for t in 0..20 {
            state.observe(&g, t, bad);
        }
        let (since, probe_from) = state.trip().unwrap();
        assert_eq!((since, probe_from), (19, 10_019));
        let mut again = None;
        for t in 0..20 {
            if let Transition::Tripped(_) = state.observe(&g, 20_000 + t, bad) {
                again = Some(20_000 + t);
            }
        }
        assert_eq!(again, Some(20_019));
        assert_eq!(state.trip(), Some((20_019, 30_019)));
    }

    fn good() -> Tally {
        Tally {
            n: 1,
            ..Tally::default()
        }
    }

    fn bad() -> Tally {
        Tally {
            n: 1,
            bad: 1,
            ..Tally::default()
        }
    }

    /// Failures until the trip after `healthy` successful attempts, all inside one window.
    fn failures_to_trip(g: &Guardrail, healthy: u64) -> Option<u64> {
        let mut state = GuardState::new(g);
        for i in 0..healthy {
            state.observe(g, (i % 1_000) as Millis, good());
        }
        (1..=100_000).find(|_| matches!(state.observe(g, 1_000, bad()), Transition::Tripped(_)))
    }

    #[test]
    fn an_outage_trips_within_twice_min_samples_whatever_the_window_already_holds() {
        let mut g = error_rate(0.25, 20);
        g.window = DEFAULT_WINDOW;
        for healthy in [0, 1_000, 20_000] {
            let failures = failures_to_trip(&g, healthy).unwrap();
            assert!(failures <= 40, "{healthy} healthy: {failures} failures");
        }
        assert_eq!(
            failures_to_trip(&g, 0),
            Some(20),
            "an empty window: min_samples"
        );
    }

    #[test]
    fn a_rise_from_one_to_thirty_percent_trips_within_a_few_hundred_calls_on_a_busy_variant() {
        let mut g = error_rate(0.25, 20);
        g.window = DEFAULT_WINDOW;
        // A seeded generator (splitmix64): the same draws on every run.
        let mut seed = 7u64;
        let mut draw = move || {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = seed;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((x ^ (x >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut state = GuardState::new(&g);
        for i in 0..20_000 {
            let outcome = if draw() < 0.01 { bad() } else { good() };
            assert_eq!(state.observe(&g, i / 100, outcome), Transition::None);
        }
        let calls = (1..=1_000).find(|_| {
            let outcome = if draw() < 0.30 { bad() } else { good() };
            matches!(state.observe(&g, 200, outcome), Transition::Tripped(_))
        });
        assert!(
            calls.is_some(),
            "30 % errors did not trip within 1,000 calls"
        );
    }

    #[test]
    fn outcomes_older_than_the_window_do_not_count_as_recent() {
        let mut g = error_rate(0.25, 20);
        g.window = 60_000;
        let mut state = GuardState::new(&g);
        // 19 failures an hour ago, then one now: nothing recent enough to judge.
        for t in 0..19 {
            assert_eq!(state.observe(&g, t, bad()), Transition::None);
        }
        assert_eq!(state.observe(&g, 3_600_000, bad()), Transition::None);
    }

    #[test]
    fn quality_trips_on_the_upper_bound_and_cost_on_the_lower() {
        let mut quality = error_rate(0.7, 10);
        quality.metric = Metric::Quality;
        let low = (0..30).fold(Tally::default(), |mut t, i| {
            let x = if i % 2 == 0 { 0.4 } else { 0.6 };
            t.n += 1;
            t.sum += x;
            t.sum_of_squares += x * x;
            t
        });
        assert_eq!(quality.read(&low).verdict, Verdict::Trip);
        let mut cost = error_rate(0.01, 10);
        cost.metric = Metric::CostPerRequest;
        let cheap = Tally {
            n: 30,
            bad: 0,
            sum: 0.15,
            sum_of_squares: 30.0 * 0.005 * 0.005,
        };
        assert_eq!(cost.read(&cheap).verdict, Verdict::Healthy);
        let dear = Tally {
            n: 30,
            bad: 0,
            sum: 0.9,
            sum_of_squares: 30.0 * 0.03 * 0.03,
        };
        assert_eq!(cost.read(&dear).verdict, Verdict::Trip);
    }
}
