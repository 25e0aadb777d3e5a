//! The statistics behind guardrails and metrics: Wilson intervals, mean bounds, a compact
//! latency histogram and rolling windows.
//!
//! Everything here is plain arithmetic over counters so that the same numbers come out of
//! Rust, Python and Node, and so that docs/runtime.md ("Guardrails") can state the rule exactly.

use std::collections::VecDeque;

use crate::time::Millis;

/// The normal quantile of a two-sided 95 % interval.
pub(crate) const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `successes` out of `n` at normal quantile `z`.
///
/// Returns `(0, 1)` for `n == 0`. Unlike the normal approximation it stays inside `[0, 1]`
/// and is sound for small samples and for rates near 0 or 1 — which is exactly where a
/// guardrail has to decide.
pub(crate) fn wilson_interval(successes: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n_f = n as f64;
    let p = successes.min(n) as f64 / n_f;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n_f;
    let center = (p + z2 / (2.0 * n_f)) / denominator;
    let margin = z * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt() / denominator;
    ((center - margin).max(0.0), (center + margin).min(1.0))
}

/// A mean with its 95 % confidence bounds (normal approximation with the sample variance).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MeanBounds {
    pub(crate) mean: f64,
    pub(crate) lower: f64,
    pub(crate) upper: f64,
}

/// The mean of `n` observations given their sum and sum of squares, with 95 % bounds.
pub(crate) fn mean_bounds(n: u64, sum: f64, sum_of_squares: f64) -> Option<MeanBounds> {
    if n == 0 {
        return None;
    }
    let n_f = n as f64;
    let mean = sum / n_f;
    let variance = if n > 1 {
        ((sum_of_squares - sum * sum / n_f) / (n_f - 1.0)).max(0.0)
    } else {
        0.0
    };
    let margin = Z95 * (variance / n_f).sqrt();
    Some(MeanBounds {
        mean,
        lower: mean - margin,
        upper: mean + margin,
    })
}

/// Sub-buckets per power of two: values are kept to within 1/16 (6.25 %) of their size.
const SUB_BUCKET_BITS: u32 = 4;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Latencies are counted in microseconds up to 2^36 µs (about 19 hours); longer ones are
/// counted in the last bucket.
const MAX_EXPONENT: u32 = 36;
/// Values below 16 µs get a bucket each; each power of two from 2^4 to 2^35 gets 16; one
/// overflow bucket follows.
const BUCKETS: usize = (MAX_EXPONENT as usize - SUB_BUCKET_BITS as usize + 1) * SUB_BUCKETS + 1;

/// A log-linear histogram of latencies (HDR-style): constant memory, 6 % relative precision.
#[derive(Debug, Clone)]
pub(crate) struct LatencyHistogram {
    counts: Box<[u64]>,
    count: u64,
    sum_ms: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum_ms: 0.0,
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS as u64 {
        return micros as usize;
    }
    let exponent = (63 - micros.leading_zeros()).min(MAX_EXPONENT);
    if exponent == MAX_EXPONENT {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exponent - SUB_BUCKET_BITS)) as usize & (SUB_BUCKETS - 1);
    (exponent - SUB_BUCKET_BITS + 1) as usize * SUB_BUCKETS + sub
}

/// The range `[low, high)` of microseconds counted in `bucket`.
fn bucket_range(bucket: usize) -> (u64, u64) {
    if bucket < SUB_BUCKETS {
        return (bucket as u64, bucket as u64 + 1);
    }
    let exponent = (bucket / SUB_BUCKETS) as u32 + SUB_BUCKET_BITS - 1;
    let sub = (bucket % SUB_BUCKETS) as u64;
    let width = 1u64 << (exponent - SUB_BUCKET_BITS);
    let low = (1u64 << exponent) + sub * width;
    (low, low + width)
}

impl LatencyHistogram {
    pub fn record(&mut self, latency_ms: f64) {
        let latency_ms = if latency_ms.is_finite() {
            latency_ms.max(0.0)
        } else {
            0.0
        };
        let micros = (latency_ms * 1000.0).round() as u64;
        if let Some(slot) = self.counts.get_mut(bucket_of(micros)) {
            *slot += 1;
        }
        self.count += 1;
        self.sum_ms += latency_ms;
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn sum_ms(&self) -> f64 {
        self.sum_ms
    }

    /// The `q`-quantile (0 < q ≤ 1) in milliseconds: the midpoint of the bucket holding the
    /// observation of rank ⌈q·n⌉. `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bucket_range(bucket);
                return Some((low + high - 1) as f64 / 2.0 / 1000.0);
            }
        }
        None
    }
}

/// Counters of one slot of a rolling window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub n: u64,
    /// Observations that count against the guardrail (errors, slow calls).
    pub bad: u64,
    pub sum: f64,
    pub sum_of_squares: f64,
}

impl Tally {
    /// Adds another tally's counts (a fleet sums the tallies of its processes).
    pub fn add(&mut self, other: &Tally) {
        self.n += other.n;
        self.bad += other.bad;
        self.sum += other.sum;
        self.sum_of_squares += other.sum_of_squares;
    }

    fn subtract(&mut self, other: &Tally) {
        self.n = self.n.saturating_sub(other.n);
        self.bad = self.bad.saturating_sub(other.bad);
        self.sum -= other.sum;
        self.sum_of_squares -= other.sum_of_squares;
    }
}

/// The last `capacity` observations, each with its time, and their running total: the
/// "recent outcomes" a guardrail judges beside its window, so that a long healthy history in
/// the window cannot hide an outage that started a few calls ago.
///
/// Observations older than the window length leave as well (a quiet variant is not judged on
/// outcomes the window has already forgotten). Recording and forgetting are O(1); the total is
/// re-summed from the ring each time `capacity` observations have left, so floating-point
/// residue of the subtractions cannot build up.
#[derive(Debug, Clone)]
pub(crate) struct RecentOutcomes {
    capacity: usize,
    length: Millis,
    ring: VecDeque<(Millis, Tally)>,
    total: Tally,
    left_since_resum: usize,
}

impl RecentOutcomes {
    pub fn new(capacity: usize, length: Millis) -> RecentOutcomes {
        RecentOutcomes {
            capacity: capacity.max(1),
            length,
            ring: VecDeque::new(),
            total: Tally::default(),
            left_since_resum: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn record(&mut self, now: Millis, observation: Tally) {
        self.forget_before(now);
        if self.ring.len() >= self.capacity {
            self.drop_oldest();
        }
        self.ring.push_back((now, observation));
        self.total.add(&observation);
    }

    /// The total of the observations still recent at `now`.
    pub(crate) fn total(&mut self, now: Millis) -> Tally {
        self.forget_before(now);
        self.total
    }

    pub(crate) fn clear(&mut self) {
        self.ring.clear();
        self.total = Tally::default();
        self.left_since_resum = 0;
    }

    fn forget_before(&mut self, now: Millis) {
        while self
            .ring
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) >= self.length)
        {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        let Some((_, oldest)) = self.ring.pop_front() else {
            return;
        };
        self.total.subtract(&oldest);
        self.left_since_resum += 1;
        if self.ring.is_empty() {
            self.total = Tally::default();
            self.left_since_resum = 0;
        } else if self.left_since_resum >= self.capacity {
            let mut total = Tally::default();
            for (_, tally) in &self.ring {
                total.add(tally);
            }
            self.total = total;
            self.left_since_resum = 0;
        }
    }
}

/// Slots per window: a window of 5 minutes forgets in steps of 30 s.
pub(crate) const WINDOW_SLOTS: usize = 10;

/// A rolling window of `WINDOW_SLOTS` time slots. Observations older than the window fall
/// out a slot at a time, so the window covers between `length · (1 − 1/WINDOW_SLOTS)` and
/// `length` of history.
#[derive(Debug, Clone)]
pub(crate) struct RollingWindow {
    slot_length: Millis,
    /// `(slot number, tally)`; a slot number is `time / slot_length`.
    slots: [(i64, Tally); WINDOW_SLOTS],
}

impl RollingWindow {
    pub fn new(length: Millis) -> RollingWindow {
        RollingWindow {
            slot_length: (length / WINDOW_SLOTS as i64).max(1),
            slots: [(i64::MIN, Tally::default()); WINDOW_SLOTS],
        }
    }

    pub fn record(&mut self, now: Millis, observation: Tally) {
        let number = now.div_euclid(self.slot_length);
        let index = number.rem_euclid(WINDOW_SLOTS as i64) as usize;
        if let Some(slot) = self.slots.get_mut(index) {
            if slot.0 != number {
                *slot = (number, Tally::default());
            }
            slot.1.add(&observation);
        }
    }

    /// The sum of the slots still inside the window at `now`.
    pub(crate) fn total(&self, now: Millis) -> Tally {
        let current = now.div_euclid(self.slot_length);
        let mut total = Tally::default();
        for (number, tally) in &self.slots {
            // Unused slots hold i64::MIN: the subtraction overflows and they are skipped.
            if current
                .checked_sub(*number)
                .is_some_and(|age| (0..WINDOW_SLOTS as i64).contains(&age))
            {
                total.add(tally);
            }
        }
        total
    }

    pub(crate) fn clear(&mut self) {
        self.slots = [(i64::MIN, Tally::default()); WINDOW_SLOTS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_hand_computed_values() {
        // 8 of 100: p = 0.08, z = 1.96 → [0.0411, 0.1502] (textbook formula, by hand).
        let (low, high) = wilson_interval(8, 100, Z95);
        assert!((low - 0.0411).abs() < 5e-4, "{low}");
        assert!((high - 0.1502).abs() < 5e-4, "{high}");
        // 1 of 1: a single failure is far from proof of a high rate.
        let (low, _) = wilson_interval(1, 1, Z95);
        assert!((low - 0.2065).abs() < 5e-4, "{low}");
        assert_eq!(wilson_interval(0, 0, Z95), (0.0, 1.0));
    }

    #[test]
    fn histogram_quantiles_are_within_bucket_precision() {
        let mut h = LatencyHistogram::default();
        for i in 1..=1000 {
            h.record(i as f64);
        }
        for (q, expected) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q).unwrap();
            assert!((got - expected).abs() / expected < 0.07, "q{q}: {got}");
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
        // Every bucket's range starts where the previous one ends.
        for b in 1..BUCKETS {
            assert_eq!(bucket_range(b - 1).1, bucket_range(b).0, "bucket {b}");
            let (low, high) = bucket_range(b);
            if b < BUCKETS - 1 {
                assert_eq!(bucket_of(low), b);
                assert_eq!(bucket_of(high - 1), b);
            }
        }
    }

    #[test]
    fn rolling_window_forgets_old_slots() {
        let mut w = RollingWindow::new(10_000);
        let one_bad = Tally {
            n: 1,
            bad: 1,
            ..Tally::default()
        };
        w.record(0, one_bad);
        w.record(5_000, one_bad);
        assert_eq!(w.total(9_999).n, 2);
        assert_eq!(w.total(10_000).n, 1, "the slot of t=0 left the window");
        assert_eq!(w.total(15_000).n, 0);
        w.record(15_000, one_bad);
        w.clear();
        assert_eq!(w.total(15_000).n, 0);
    }

    #[test]
    fn recent_outcomes_keep_the_last_capacity_inside_the_length() {
        let mut r = RecentOutcomes::new(3, 10_000);
        for (t, bad) in [(0, 1), (1, 1), (2, 0), (3, 0)] {
            r.record(
                t,
                Tally {
                    n: 1,
                    bad,
                    sum: 2.0,
                    sum_of_squares: 4.0,
                },
            );
        }
        let total = r.total(3);
        assert_eq!((total.n, total.bad), (3, 1), "the first one left the ring");
        assert!((total.sum - 6.0).abs() < 1e-12);
        assert_eq!(
            r.total(10_001).n,
            2,
            "t=0 and t=1 are older than the length"
        );
        assert_eq!(r.total(20_000).n, 0);
        // Many more than the capacity: the total stays exact (it is re-summed as it goes).
        for t in 0..10_000 {
            r.record(
                30_000 + t,
                Tally {
                    n: 1,
                    bad: 0,
                    sum: 0.1,
                    sum_of_squares: 0.01,
                },
            );
        }
        let total = r.total(40_000);
        assert_eq!(total.n, 3);
        assert!((total.sum - 0.3).abs() < 1e-12, "{}", total.sum);
    }

    #[test]
    fn mean_bounds_shrink_with_samples() {
        let few = mean_bounds(4, 4.0, 4.0 + 2.0).unwrap();
        let many = mean_bounds(400, 400.0, 400.0 + 200.0).unwrap();
        assert!((few.mean - 1.0).abs() < 1e-12 && (many.mean - 1.0).abs() < 1e-12);
        assert!(many.upper - many.lower < few.upper - few.lower);
        assert_eq!(mean_bounds(0, 0.0, 0.0), None);
    }
}
