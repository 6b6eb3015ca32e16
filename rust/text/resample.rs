//! Counter-based Gumbel noise for importance resampling without replacement
//! (Gumbel-top-k; Kool et al. 2019; docs/math.md, "DSIR").
//!
//! The noise of item `i` under `seed` is `−ln(−ln U)` with
//! `U = (x + ½)·2⁻⁵² ∈ (0, 1)`, `x` the top 52 bits of the first output of
//! the stream `Xoshiro256pp::for_sequence(seed ⊕ DOMAIN, i)`: it depends on
//! `(seed, i)` alone, so a sharded or streamed selection equals a single one.

use crate::rng::Xoshiro256pp;
use rayon::prelude::*;

/// Separates these streams from the samplers' streams of the same seed.
pub const DOMAIN: u64 = 0x4755_4D42_454C_0001;

/// The Gumbel(0, 1) noise of item `index` under `seed`.
#[inline]
pub fn gumbel(seed: u64, index: u64) -> f64 {
    let x = Xoshiro256pp::for_sequence(seed ^ DOMAIN, index).next_u64() >> 12;
    let u = (x as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
    -(-u.ln()).ln()
}

/// `out[j] = gumbel(seed, indices[j])`.
pub fn gumbel_fill(indices: &[u64], seed: u64, out: &mut [f64]) {
    out.par_iter_mut().zip(indices.par_iter()).with_min_len(4096).for_each(|(o, &i)| *o = gumbel(seed, i));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_and_gumbel_distributed() {
        let n = 200_000u64;
        let xs: Vec<f64> = (0..n).map(|i| gumbel(5, i)).collect();
        assert!(xs.iter().all(|x| x.is_finite()));
        let mean = xs.iter().sum::<f64>() / n as f64;
        // Gumbel(0,1): mean = Euler–Mascheroni 0.5772, variance π²/6.
        let se = (std::f64::consts::PI.powi(2) / 6.0 / n as f64).sqrt();
        assert!((mean - 0.577_215_664_9).abs() < 5.0 * se, "{mean}");
        // P(G <= 0) = exp(-1)
        let p = xs.iter().filter(|&&x| x <= 0.0).count() as f64 / n as f64;
        assert!((p - (-1.0f64).exp()).abs() < 0.005, "{p}");
    }

    #[test]
    fn extremes_are_finite() {
        for x in [0u64, (1 << 52) - 1] {
            let u = (x as f64 + 0.5) * (1.0 / (1u64 << 52) as f64);
            assert!(u > 0.0 && u < 1.0 && (-(-u.ln()).ln()).is_finite());
        }
    }
}
