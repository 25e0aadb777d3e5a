//! The few distribution functions the autopilot needs, written out so the core stays free of
//! numeric dependencies: `ln Γ`, the regularised incomplete gamma function, the normal and
//! chi-squared upper tails, and the half-width of the normal-mixture confidence sequence.
//!
//! Accuracy: `ln Γ` (Lanczos, g = 7, nine terms) is good to about 1e-15 relative for x > 0; the
//! incomplete gamma function uses its power series below `x < a + 1` and a continued fraction
//! (modified Lentz) above, both run to machine precision, so tails keep their relative accuracy
//! far out (the tests compare against published values down to 1e-12).

/// Moments of one metric in one arm: the sufficient statistics of the per-unit values.
///
/// One entry per *unit of randomisation* (a user, a conversation), not per request: the unit's
/// own aggregate (its mean quality, its error rate, its cost per request, its latency) is the
/// value. Sums are what a counter store can add atomically (e.g. Redis `INCRBYFLOAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Moments {
    /// Number of units with a value.
    pub(crate) n: u64,
    /// Sum of the per-unit values.
    pub sum: f64,
    /// Sum of the squared per-unit values.
    pub(crate) sum_sq: f64,
}

impl Moments {
    /// Adds one unit's value.
    pub fn push(&mut self, value: f64) {
        self.n += 1;
        self.sum += value;
        self.sum_sq += value * value;
    }

    /// Adds another set of moments (e.g. another process's counters).
    pub fn merge(&mut self, other: &Moments) {
        self.n += other.n;
        self.sum += other.sum;
        self.sum_sq += other.sum_sq;
    }

    /// The mean of the per-unit values, `None` without units.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The unbiased sample variance, `None` below two units. Rounding in `sum_sq - sum²/n` can
    /// make a zero variance come out slightly negative; it is clamped at zero.
    pub(crate) fn variance(&self) -> Option<f64> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let centred = self.sum_sq - self.sum * self.sum / n;
        Some((centred / (n - 1.0)).max(0.0))
    }
}

const LANCZOS_G: f64 = 7.0;
const LANCZOS: [f64; 9] = [
    0.999_999_999_999_809_9,
    676.520_368_121_885_1,
    -1_259.139_216_722_402_8,
    771.323_428_777_653_1,
    -176.615_029_162_140_6,
    12.507_343_278_686_905,
    -0.138_571_095_265_720_12,
    9.984_369_578_019_572e-6,
    1.505_632_735_149_311_6e-7,
];

/// `ln Γ(x)` for `x > 0` (NaN otherwise).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NAN;
    }
    if x < 0.5 {
        // Reflection keeps the series in its accurate range: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut series = LANCZOS[0];
    for (i, coefficient) in LANCZOS.iter().enumerate().skip(1) {
        series += coefficient / (x + i as f64);
    }
    let t = x + LANCZOS_G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// `ln B(x, y) = ln Γ(x) + ln Γ(y) − ln Γ(x + y)`.
pub(crate) fn ln_beta(x: f64, y: f64) -> f64 {
    ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y)
}

const ITERATIONS: usize = 10_000;
const EPSILON: f64 = 1e-16;
const TINY: f64 = 1e-300;

/// The regularised upper incomplete gamma function `Q(a, x) = Γ(a, x) / Γ(a)`, for `a > 0`,
/// `x ≥ 0`. Returns NaN outside that domain.
pub(crate) fn gamma_q(a: f64, x: f64) -> f64 {
    if a.is_nan() || x.is_nan() || a <= 0.0 || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    // ln of x^a e^{-x} / Γ(a), the common prefactor of both expansions.
    let log_prefactor = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // Power series for P(a, x): Σ x^n / (a (a+1) … (a+n)).
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut denominator = a;
        for _ in 0..ITERATIONS {
            denominator += 1.0;
            term *= x / denominator;
            sum += term;
            if term.abs() < sum.abs() * EPSILON {
                break;
            }
        }
        (1.0 - sum * log_prefactor.exp()).clamp(0.0, 1.0)
    } else {
        // Continued fraction for Q(a, x), evaluated by the modified Lentz method.
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut fraction = d;
        for i in 1..ITERATIONS {
            let i = i as f64;
            let an = -i * (i - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            fraction *= delta;
            if (delta - 1.0).abs() < EPSILON {
                break;
            }
        }
        (log_prefactor.exp() * fraction).clamp(0.0, 1.0)
    }
}

/// `P(Z > z)` for a standard normal `Z`.
pub(crate) fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    // P(Z > z) = ½ Q(½, z²/2) for z ≥ 0; the lower half by symmetry.
    let upper = 0.5 * gamma_q(0.5, 0.5 * z * z);
    if z >= 0.0 {
        upper
    } else {
        1.0 - upper
    }
}

/// The `z` with `P(Z > z) = p`, for `0 < p < 1` (NaN otherwise): the Abramowitz–Stegun
/// 26.2.23 starting value (error below 4.5e-4) polished by Newton steps on [`normal_sf`], which
/// converge quadratically from there.
pub(crate) fn normal_upper_quantile(p: f64) -> f64 {
    if p.is_nan() || p <= 0.0 || p >= 1.0 {
        return f64::NAN;
    }
    if p > 0.5 {
        return -normal_upper_quantile(1.0 - p);
    }
    let t = (-2.0 * p.ln()).sqrt();
    let mut z = t
        - (2.515_517 + 0.802_853 * t + 0.010_328 * t * t)
            / (1.0 + 1.432_788 * t + 0.189_269 * t * t + 0.001_308 * t * t * t);
    let density = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    for _ in 0..6 {
        let step = (normal_sf(z) - p) / density(z);
        if !step.is_finite() {
            break;
        }
        z += step;
        if step.abs() <= 1e-15 * z.abs().max(1.0) {
            break;
        }
    }
    z
}

/// `P(X > x)` for `X` chi-squared with `degrees_of_freedom` degrees of freedom.
pub(crate) fn chi_squared_sf(x: f64, degrees_of_freedom: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    gamma_q(0.5 * degrees_of_freedom, 0.5 * x)
}

/// Half-width of the two-sided normal-mixture confidence sequence for an estimate whose
/// variance is `variance` (the variance of the estimator, e.g. `s₁²/n₁ + s₀²/n₀`), with mixing
/// variance `tau_squared` and level `alpha`:
///
/// `√( V (V + τ²) / τ² · (2 ln(1/α) + ln((V + τ²) / V)) )`
///
/// This is the boundary of the mixture sequential probability ratio test with a `N(0, τ²)`
/// mixing distribution; with `V = σ²/n` and `τ² = σ²ρ²` it is the asymptotic confidence
/// sequence of Waudby-Smith et al. The chance that the true value ever leaves
/// `estimate ± half_width` over all looks is at most `alpha` (asymptotically, with the
/// variance estimated). Returns `None` when `V` is not positive and finite.
pub(crate) fn mixture_half_width(variance: f64, tau_squared: f64, alpha: f64) -> Option<f64> {
    if !(variance.is_finite() && variance > 0.0 && tau_squared > 0.0 && alpha > 0.0) {
        return None;
    }
    let widening = (variance + tau_squared) / variance;
    let squared = variance * (variance + tau_squared) / tau_squared
        * (2.0 * (1.0 / alpha).ln() + widening.ln());
    squared.is_finite().then(|| squared.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, relative: f64) -> bool {
        (actual - expected).abs() <= relative * expected.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn ln_gamma_matches_known_values() {
        // ln Γ(½) = ln √π; ln Γ(n) = ln (n−1)!
        assert!(close(ln_gamma(0.5), 0.572_364_942_924_700_1, 1e-14));
        assert!(ln_gamma(1.0).abs() < 1e-14 && ln_gamma(2.0).abs() < 1e-14);
        assert!(close(ln_gamma(10.0), 362_880f64.ln(), 1e-14));
        assert!(close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-13));
        assert!(close(ln_gamma(0.1), 2.252_712_651_734_206, 1e-13));
        assert!(ln_gamma(0.0).is_nan() && ln_gamma(-1.0).is_nan());
    }

    #[test]
    fn ln_beta_matches_closed_forms() {
        assert!(ln_beta(1.0, 1.0).abs() < 1e-14);
        assert!(close(ln_beta(2.0, 3.0), (1.0f64 / 12.0).ln(), 1e-13));
        // B(½, ½) = π.
        assert!(close(ln_beta(0.5, 0.5), std::f64::consts::PI.ln(), 1e-13));
    }

    #[test]
    fn normal_tail_matches_published_values() {
        assert!(close(normal_sf(0.0), 0.5, 1e-15));
        assert!(close(normal_sf(1.959_963_984_540_054), 0.025, 1e-12));
        assert!(close(normal_sf(1.0), 0.158_655_253_931_457_05, 1e-12));
        assert!(close(normal_sf(3.0), 0.001_349_898_031_630_094_6, 1e-12));
        assert!(close(normal_sf(5.0), 2.866_515_718_791_939e-7, 1e-12));
        assert!(close(normal_sf(10.0), 7.619_853_024_160_527e-24, 1e-11));
        assert!(close(normal_sf(-1.0), 0.841_344_746_068_542_9, 1e-12));
    }

    #[test]
    fn normal_quantile_inverts_the_tail() {
        assert!(close(
            normal_upper_quantile(0.025),
            1.959_963_984_540_054,
            1e-12
        ));
        assert!(close(
            normal_upper_quantile(0.001),
            3.090_232_306_167_813_5,
            1e-12
        ));
        assert!(close(normal_upper_quantile(0.5).abs() + 1.0, 1.0, 1e-12));
        assert!(close(
            normal_upper_quantile(0.975),
            -1.959_963_984_540_054,
            1e-12
        ));
        assert!(close(
            normal_upper_quantile(1e-12),
            7.034_483_825_301_132,
            1e-10
        ));
        assert!(normal_upper_quantile(0.0).is_nan() && normal_upper_quantile(1.0).is_nan());
    }

    #[test]
    fn chi_squared_tail_matches_published_quantiles() {
        // Upper quantiles of chi-squared tables (the 0.95 and 0.999 points).
        assert!(close(
            chi_squared_sf(3.841_458_820_694_124, 1.0),
            0.05,
            1e-12
        ));
        assert!(close(
            chi_squared_sf(10.827_566_170_662_733, 1.0),
            0.001,
            1e-12
        ));
        assert!(close(
            chi_squared_sf(5.991_464_547_107_979, 2.0),
            0.05,
            1e-12
        ));
        assert!(close(
            chi_squared_sf(18.307_038_053_275_146, 10.0),
            0.05,
            1e-12
        ));
        assert!(close(
            chi_squared_sf(29.588_298_445_074_42, 10.0),
            0.001,
            1e-11
        ));
        // Two degrees of freedom is an exponential: Q = e^{-x/2}.
        assert!(close(chi_squared_sf(40.0, 2.0), (-20.0f64).exp(), 1e-12));
        assert_eq!(chi_squared_sf(0.0, 1.0), 1.0);
        assert!(gamma_q(0.0, 1.0).is_nan() && gamma_q(1.0, -1.0).is_nan());
    }

    #[test]
    fn moments_give_mean_and_unbiased_variance() {
        let mut m = Moments::default();
        assert_eq!(m.mean(), None);
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            m.push(v);
        }
        assert_eq!(m.mean(), Some(5.0));
        assert!(close(m.variance().unwrap_or(0.0), 32.0 / 7.0, 1e-14));
        let mut constant = Moments::default();
        for _ in 0..3 {
            constant.push(0.1);
        }
        assert!(constant.variance().unwrap_or(-1.0) >= 0.0);
    }

    #[test]
    fn mixture_boundary_is_the_msprt_boundary() {
        // At V = τ² the boundary is √(2V (2 ln(1/α) + ln 2)).
        let w = mixture_half_width(1.0, 1.0, 0.05).unwrap_or(0.0);
        assert!(close(
            w,
            (2.0 * (2.0 * 20f64.ln() + 2f64.ln())).sqrt(),
            1e-14
        ));
        // Wider than the fixed-sample 95 % interval at every V (that is the price of peeking).
        for v in [1e-4, 1e-2, 1.0, 100.0] {
            let cs = mixture_half_width(v, 1.0, 0.05).unwrap_or(0.0);
            assert!(cs > 1.96 * v.sqrt(), "V = {v}");
        }
        assert_eq!(mixture_half_width(0.0, 1.0, 0.05), None);
        assert_eq!(mixture_half_width(f64::NAN, 1.0, 0.05), None);
    }
}
