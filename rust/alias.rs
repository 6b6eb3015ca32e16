//! Vose alias tables: O(1) categorical draws (Vose 1991).
//!
//! A table over `n` outcomes has `n` buckets of mass `1/n` each. Bucket `j`
//! holds outcome `j` with probability `q_j` and its alias `a_j` otherwise, so a
//! draw is one uniform bucket index and one comparison. Each bucket is packed
//! into one `u64` (high 32 bits: the threshold `round(q_j 2^32)`, low 32 bits:
//! the alias), so a draw touches a single cache line.
//!
//! Exactness: the bucket index is drawn without bias (Lemire 2019, with
//! rejection), and the only approximation is the 32-bit threshold, which moves
//! each outcome's probability by at most `2^-32` relative to the exact one.
//! An outcome of probability 0 is never drawn. Rows are normalised before the
//! table is built, so rows whose cumulative sums fall short of 1 in floating
//! point cannot yield out-of-range outcomes (the pitfall of quantecon #860).

use crate::rng::Xoshiro256pp;

const FULL: u64 = 1 << 32;

/// Fills `out` (one bucket per outcome) with the alias table of `probs`.
/// `probs` must be non-negative with a positive sum; it is normalised here.
pub fn build(probs: &[f64], out: &mut [u64]) {
    let n = probs.len();
    debug_assert_eq!(out.len(), n);
    debug_assert!(n > 0 && n <= u32::MAX as usize);
    let total: f64 = probs.iter().sum();
    let scale = n as f64 / total;
    let mut q: Vec<f64> = probs.iter().map(|&p| p * scale).collect();
    let mut small: Vec<u32> = Vec::with_capacity(n);
    let mut large: Vec<u32> = Vec::with_capacity(n);
    for (i, &qi) in q.iter().enumerate() {
        if qi < 1.0 {
            small.push(i as u32);
        } else {
            large.push(i as u32);
        }
    }
    // Default every bucket to "always itself"; overwritten below.
    for (j, o) in out.iter_mut().enumerate() {
        *o = pack(FULL, j as u32);
    }
    while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
        small.pop();
        out[s as usize] = pack(threshold(q[s as usize]), l);
        q[l as usize] -= 1.0 - q[s as usize];
        if q[l as usize] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    // Whatever is left has q = 1 up to rounding: such buckets always return
    // themselves, except that a bucket of an outcome with probability exactly
    // 0 must never return itself (it can only be left over through rounding
    // if every remaining mass is ~0, which the normalisation above excludes).
    for &i in small.iter().chain(large.iter()) {
        out[i as usize] = pack(FULL, i);
    }
    for (j, &p) in probs.iter().enumerate() {
        if p == 0.0 && (out[j] >> 32) != 0 && (out[j] as u32) == j as u32 {
            // Route a zero-probability bucket to the most likely outcome.
            let best = argmax(probs);
            out[j] = pack(0, best as u32);
        }
    }
}

fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

#[inline]
fn threshold(q: f64) -> u64 {
    let t = (q * FULL as f64).round();
    if t <= 0.0 {
        0
    } else if t >= FULL as f64 {
        FULL
    } else {
        t as u64
    }
}

/// Packs a threshold in [0, 2^32] and an alias. A threshold of 2^32 ("always
/// keep") is stored as alias == self with threshold u32::MAX, which draws the
/// bucket itself whatever the comparison gives.
#[inline]
fn pack(thr: u64, alias: u32) -> u64 {
    let thr = thr.min(u32::MAX as u64);
    (thr << 32) | alias as u64
}

/// One draw from a packed table of `n = table.len()` buckets.
#[inline(always)]
pub fn draw(table: &[u64], rng: &mut Xoshiro256pp) -> u32 {
    let n = table.len() as u32;
    let mut r = rng.next_u64();
    // Lemire's nearly divisionless unbiased bucket index from the high word.
    let mut m = (r >> 32) * n as u64;
    if (m as u32) < n {
        let t = n.wrapping_neg() % n;
        while (m as u32) < t {
            r = rng.next_u64();
            m = (r >> 32) * n as u64;
        }
    }
    let j = (m >> 32) as usize;
    // SAFETY: m < 2^32 * n, so j < n = table.len().
    let e = unsafe { *table.get_unchecked(j) };
    if (r as u32) < (e >> 32) as u32 {
        j as u32
    } else {
        e as u32
    }
}

/// The exact probability of each outcome that a packed table realises
/// (used by tests to bound the quantisation error).
pub fn realised_probs(table: &[u64]) -> Vec<f64> {
    let n = table.len();
    let mut p = vec![0.0; n];
    for (j, &e) in table.iter().enumerate() {
        let keep = ((e >> 32) as u32) as f64 / FULL as f64;
        let alias = e as u32 as usize;
        if alias == j {
            p[j] += 1.0 / n as f64;
        } else {
            p[j] += keep / n as f64;
            p[alias] += (1.0 - keep) / n as f64;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(p: &[f64]) -> Vec<u64> {
        let mut t = vec![0; p.len()];
        build(p, &mut t);
        t
    }

    #[test]
    fn realised_equals_target() {
        let mut r = Xoshiro256pp::from_u64(1);
        for n in [1usize, 2, 3, 7, 128, 1000] {
            let p: Vec<f64> = (0..n).map(|_| r.next_f64().powi(3)).collect();
            let s: f64 = p.iter().sum();
            let t = table(&p);
            let got = realised_probs(&t);
            for i in 0..n {
                let want = p[i] / s;
                assert!(
                    (got[i] - want).abs() <= 2.0 * 2f64.powi(-32) / n as f64 + 1e-15 + want * 1e-12,
                    "n={n} i={i} got={} want={want}",
                    got[i]
                );
            }
        }
    }

    #[test]
    fn zero_probability_never_drawn() {
        let p = [0.0, 0.5, 0.0, 0.5, 0.0];
        let t = table(&p);
        let mut r = Xoshiro256pp::from_u64(5);
        for _ in 0..100_000 {
            let x = draw(&t, &mut r);
            assert!(x == 1 || x == 3);
        }
        let realised = realised_probs(&t);
        assert_eq!(realised[0], 0.0);
        assert_eq!(realised[2], 0.0);
    }

    #[test]
    fn degenerate_and_unnormalised() {
        let t = table(&[0.0, 0.0, 3.0]);
        let mut r = Xoshiro256pp::from_u64(9);
        for _ in 0..1000 {
            assert_eq!(draw(&t, &mut r), 2);
        }
        // rows summing slightly under 1 still give in-range outcomes
        let p = vec![0.1 - 1e-12; 10];
        let t = table(&p);
        for _ in 0..10_000 {
            assert!(draw(&t, &mut r) < 10);
        }
    }

    #[test]
    fn frequencies_match() {
        let p = [0.1, 0.2, 0.3, 0.4];
        let t = table(&p);
        let mut r = Xoshiro256pp::from_u64(11);
        let n = 400_000;
        let mut c = [0usize; 4];
        for _ in 0..n {
            c[draw(&t, &mut r) as usize] += 1;
        }
        // chi-square with 3 degrees of freedom; 16.27 is the 0.999 quantile
        let chi2: f64 = (0..4)
            .map(|i| {
                let e = p[i] * n as f64;
                (c[i] as f64 - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 16.27, "chi2 = {chi2}");
    }
}
