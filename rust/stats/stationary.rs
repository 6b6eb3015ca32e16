//! Stationary distribution of an order-k Markov chain over its V^k states.
//!
//! The state of an order-k chain is the last k tokens read as a base-V number
//! (most recent token last), so state `s` moves to `(s V + x) mod V^k` with
//! probability `P[s, x]`. We iterate the lazy chain π ← (π + πP)/2, which has
//! the same stationary distributions as P but no periodicity, in gather form:
//! the V predecessors of state t are `a V^(k-1) + t / V` for a in 0..V. Each
//! entry is computed by one thread in a fixed order, so the result is
//! bit-identical for any thread count.

use crate::error::{Error, Result};
use rayon::prelude::*;

/// Stationary distribution of the chain with row-stochastic `probs` [S, V]
/// (S = V^order), starting from `start` (uniform if `None`).
/// Stops when the L1 change of one lazy step is below `tol`.
pub fn stationary(
    probs: &[f64],
    vocab: usize,
    order: usize,
    start: Option<&[f64]>,
    tol: f64,
    max_iter: usize,
) -> Result<Vec<f64>> {
    let n_states = probs.len() / vocab;
    if order == 0 {
        return Ok(vec![1.0]);
    }
    let block = n_states / vocab; // V^(k-1)
    // Transposed gather table: pt[t * V + a] = P[a * block + t / V, t % V].
    let mut pt = vec![0.0f64; n_states * vocab];
    pt.par_chunks_mut(vocab).enumerate().for_each(|(t, row)| {
        let hi = t / vocab;
        let x = t % vocab;
        for (a, r) in row.iter_mut().enumerate() {
            *r = probs[(a * block + hi) * vocab + x];
        }
    });
    let mut pi: Vec<f64> = match start {
        Some(s) => s.to_vec(),
        None => vec![1.0 / n_states as f64; n_states],
    };
    let mut next = vec![0.0f64; n_states];
    for _ in 0..max_iter {
        next.par_iter_mut().enumerate().for_each(|(t, out)| {
            let hi = t / vocab;
            let row = &pt[t * vocab..(t + 1) * vocab];
            let mut acc = 0.0;
            for (a, &p) in row.iter().enumerate() {
                acc += pi[a * block + hi] * p;
            }
            *out = 0.5 * (pi[t] + acc);
        });
        let total: f64 = next.iter().sum();
        let mut diff = 0.0;
        for (n, p) in next.iter_mut().zip(pi.iter()) {
            *n /= total;
            diff += (*n - p).abs();
        }
        std::mem::swap(&mut pi, &mut next);
        if diff < tol {
            return Ok(pi);
        }
    }
    Err(Error::value(format!(
        "the stationary distribution did not converge in {max_iter} iterations \
         (the chain mixes too slowly); pass `initial=` explicitly"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_state_closed_form() {
        // P = [[1-a, a], [b, 1-b]] has pi = (b, a) / (a + b)
        let (a, b) = (0.3, 0.1);
        let p = [1.0 - a, a, b, 1.0 - b];
        let pi = stationary(&p, 2, 1, None, 1e-15, 100_000).unwrap();
        assert!((pi[0] - b / (a + b)).abs() < 1e-12);
        assert!((pi[1] - a / (a + b)).abs() < 1e-12);
    }

    #[test]
    fn periodic_chain_converges() {
        let p = [0.0, 1.0, 1.0, 0.0];
        let pi = stationary(&p, 2, 1, None, 1e-15, 100_000).unwrap();
        assert!((pi[0] - 0.5).abs() < 1e-12);
    }

    #[test]
    fn order_two_is_invariant() {
        // random order-2 chain on V = 3: check pi P = pi on the state graph
        let v = 3;
        let s = 9;
        let mut r = crate::rng::Xoshiro256pp::from_u64(4);
        let mut p = vec![0.0; s * v];
        for row in p.chunks_mut(v) {
            let mut tot = 0.0;
            for x in row.iter_mut() {
                *x = r.next_f64() + 0.05;
                tot += *x;
            }
            for x in row.iter_mut() {
                *x /= tot;
            }
        }
        let pi = stationary(&p, v, 2, None, 1e-15, 100_000).unwrap();
        let mut next = vec![0.0; s];
        for st in 0..s {
            for x in 0..v {
                next[(st * v + x) % s] += pi[st] * p[st * v + x];
            }
        }
        for st in 0..s {
            assert!((next[st] - pi[st]).abs() < 1e-12);
        }
    }
}
