//! Deterministic random counts for the simulations that check the tests (the unit tests here and
//! `benches/sequential.rs`): a seeded generator and an exact binomial sampler. Not for production
//! use; public only so that the benchmark can share it.

/// SplitMix64 (Steele, Lea and Flood, 2014): 64-bit state, passes BigCrush, and a seed gives the
/// same stream on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exact Binomial(n, p) draw by inversion, in chunks whose mean is at most 40 so that the
    /// first term, (1 − p)^m, never underflows and each chunk costs a few dozen steps.
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p.is_nan() || p <= 0.0 || n == 0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let chunk = ((40.0 / p) as u64).max(1);
        let mut left = n;
        let mut total = 0;
        while left > 0 {
            let m = left.min(chunk);
            total += self.binomial_inversion(m, p);
            left -= m;
        }
        total
    }

    fn binomial_inversion(&mut self, m: u64, p: f64) -> u64 {
        let odds = p / (1.0 - p);
        let mut term = ((-p).ln_1p() * m as f64).exp();
        let mut cumulative = term;
        let u = self.uniform();
        let mut k = 0;
        while u > cumulative && k < m {
            term *= (m - k) as f64 / (k + 1) as f64 * odds;
            cumulative += term;
            k += 1;
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_draws_have_the_right_mean_and_variance() {
        let mut rng = Rng::new(7);
        for (n, p) in [(10u64, 0.3), (1_000, 0.01), (200_000, 0.001), (50, 0.9)] {
            let draws: Vec<f64> = (0..4000).map(|_| rng.binomial(n, p) as f64).collect();
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
            let (m, v) = (n as f64 * p, n as f64 * p * (1.0 - p));
            assert!(
                (mean - m).abs() < 4.0 * (v / 4000.0).sqrt(),
                "{n} {p}: mean {mean}"
            );
            assert!(
                (var / v - 1.0).abs() < 0.1,
                "{n} {p}: variance {var} vs {v}"
            );
        }
    }
}
