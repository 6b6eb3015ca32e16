//! Continuous distributions drawn from a stream: normal, gamma, Dirichlet.

use crate::rng::Xoshiro256pp;

/// Uniform on (0, 1]: never 0, so its logarithm is finite.
#[inline]
pub fn open_unit(rng: &mut Xoshiro256pp) -> f64 {
    1.0 - rng.next_f64()
}

/// Uniform integer in [0, n) without bias (Lemire 2019).
#[inline]
pub fn below(rng: &mut Xoshiro256pp, n: u32) -> u32 {
    let mut m = (rng.next_u64() >> 32) * n as u64;
    if (m as u32) < n {
        let t = n.wrapping_neg() % n;
        while (m as u32) < t {
            m = (rng.next_u64() >> 32) * n as u64;
        }
    }
    (m >> 32) as u32
}

/// Standard normal by the Box–Muller transform.
#[inline]
pub fn normal(rng: &mut Xoshiro256pp) -> f64 {
    let r = (-2.0 * open_unit(rng).ln()).sqrt();
    r * (std::f64::consts::TAU * rng.next_f64()).cos()
}

/// Gamma(shape, 1) by Marsaglia & Tsang (2000); shape < 1 through
/// Gamma(a) = Gamma(a + 1) U^(1/a).
pub fn gamma(rng: &mut Xoshiro256pp, shape: f64) -> f64 {
    debug_assert!(shape > 0.0);
    if shape < 1.0 {
        let u = open_unit(rng);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = open_unit(rng);
        if u < 1.0 - 0.0331 * x.powi(4) || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return d * v;
        }
    }
}

/// One Dirichlet(shape) draw into `out` (normalised gamma variates). If every
/// variate underflows to 0 (tiny shapes), the mass goes to one uniformly
/// chosen coordinate, the limit of the law as the shapes go to 0.
pub fn dirichlet(rng: &mut Xoshiro256pp, shape: impl Fn(usize) -> f64, out: &mut [f64]) {
    let mut total = 0.0;
    for (j, o) in out.iter_mut().enumerate() {
        *o = gamma(rng, shape(j));
        total += *o;
    }
    if total > 0.0 {
        out.iter_mut().for_each(|o| *o /= total);
    } else {
        let j = below(rng, out.len() as u32) as usize;
        out.iter_mut().for_each(|o| *o = 0.0);
        out[j] = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_moments() {
        let mut r = Xoshiro256pp::from_u64(1);
        for a in [0.1, 0.5, 1.0, 2.5, 30.0] {
            let n = 200_000;
            let xs: Vec<f64> = (0..n).map(|_| gamma(&mut r, a)).collect();
            let m = xs.iter().sum::<f64>() / n as f64;
            let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n as f64;
            // mean a, variance a; standard error of the mean sqrt(a / n)
            assert!((m - a).abs() < 5.0 * (a / n as f64).sqrt(), "a={a} mean={m}");
            assert!((v / a - 1.0).abs() < 0.05 + 2.0 / a.sqrt() * 0.05, "a={a} var={v}");
        }
    }

    #[test]
    fn below_is_uniform() {
        let mut r = Xoshiro256pp::from_u64(2);
        let mut c = [0usize; 7];
        let n = 700_000;
        for _ in 0..n {
            c[below(&mut r, 7) as usize] += 1;
        }
        let chi2: f64 = c.iter().map(|&x| (x as f64 - 1e5).powi(2) / 1e5).sum();
        assert!(chi2 < 22.46, "chi2 {chi2}"); // 0.999 quantile, 6 dof
    }
}
