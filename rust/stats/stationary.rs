//! Stationary distribution of an order-k Markov chain over its V^k states.
//!
//! The state of an order-k chain is the last k tokens read as a base-V number
//! (most recent token last), so state `s` moves to `(s V + x) mod V^k` with
//! probability `P[s, x]`. We iterate the lazy chain π ← (π + πP)/2, which has
//! the same stationary distributions as P but no periodicity, in gather form:
//! the V predecessors of state t are `a V^(k-1) + t / V` for a in 0..V. Each
//! entry is computed by one thread in a fixed order, so the result is
//! bit-identical for any thread count.
//!
//! Chains that leak slowly between classes (a transient cycle that reaches an
//! absorbing state with probability 1e-5 a step, say) can need millions of
//! steps. When the iteration budget runs out on a small state space
//! (S <= [`SQUARING_MAX_STATES`]) we fall back to repeated squaring of the
//! dense lazy matrix, M ← M², which reaches M^(2^60) in 60 products.

use crate::alloc::zeros;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Largest closed class solved exactly by GTH elimination (m^3/3 work).
pub const GTH_MAX_STATES: usize = 2048;

/// Stationary distribution of the chain with row-stochastic `probs` [S, V]
/// (S = V^order): the limit of the lazy chain started from `start` (uniform
/// if `None`).
///
/// When the chain has a single closed communicating class the stationary law
/// is unique and independent of `start`; if that class has at most
/// [`GTH_MAX_STATES`] states it is computed exactly by the
/// Grassmann–Taksar–Heyman elimination (Grassmann, Taksar & Heyman 1985),
/// which involves no subtractions and keeps full relative accuracy even for
/// nearly decomposable, slowly mixing chains. Otherwise power iteration.
pub fn stationary(
    probs: &[f64],
    vocab: usize,
    order: usize,
    start: Option<&[f64]>,
    tol: f64,
    max_iter: usize,
) -> Result<Vec<f64>> {
    if order == 0 {
        return Ok(vec![1.0]);
    }
    let n_states = probs.len() / vocab;
    let closed = closed_classes(probs, vocab, n_states);
    if closed.len() == 1 && closed[0].len() <= GTH_MAX_STATES {
        return Ok(gth_on_class(probs, vocab, n_states, &closed[0]));
    }
    power_iteration(probs, vocab, order, start, tol, max_iter)
}

/// The closed communicating classes of the state graph (edges s -> (sV+x) mod S
/// with P[s, x] > 0): strongly connected components with no edge leaving.
/// Tarjan's algorithm, iterative.
pub fn closed_classes(probs: &[f64], vocab: usize, n: usize) -> Vec<Vec<usize>> {
    const NONE: usize = usize::MAX;
    let succ = |s: usize, x: usize| (s * vocab + x) % n;
    let mut index = vec![NONE; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![NONE; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut n_comp = 0;
    let mut counter = 0;
    // call stack of (state, next token to explore)
    let mut call: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        call.push((root, 0));
        index[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (s, ref mut x)) = call.last_mut() {
            if *x < vocab {
                let xi = *x;
                *x += 1;
                if probs[s * vocab + xi] > 0.0 {
                    let t = succ(s, xi);
                    if index[t] == NONE {
                        index[t] = counter;
                        low[t] = counter;
                        counter += 1;
                        stack.push(t);
                        on_stack[t] = true;
                        call.push((t, 0));
                    } else if on_stack[t] {
                        low[s] = low[s].min(index[t]);
                    }
                }
            } else {
                call.pop();
                if let Some(&(parent, _)) = call.last() {
                    low[parent] = low[parent].min(low[s]);
                }
                if low[s] == index[s] {
                    loop {
                        let w = stack.pop().expect("tarjan stack");
                        on_stack[w] = false;
                        comp[w] = n_comp;
                        if w == s {
                            break;
                        }
                    }
                    n_comp += 1;
                }
            }
        }
    }
    let mut closed = vec![true; n_comp];
    for s in 0..n {
        for x in 0..vocab {
            if probs[s * vocab + x] > 0.0 && comp[succ(s, x)] != comp[s] {
                closed[comp[s]] = false;
            }
        }
    }
    let mut classes: Vec<Vec<usize>> = vec![Vec::new(); n_comp];
    for s in 0..n {
        if closed[comp[s]] {
            classes[comp[s]].push(s);
        }
    }
    classes.retain(|c| !c.is_empty());
    classes
}

/// Exact stationary law of the irreducible chain restricted to the closed
/// class `class` (states outside it get 0), by GTH elimination.
fn gth_on_class(probs: &[f64], vocab: usize, n: usize, class: &[usize]) -> Vec<f64> {
    let m = class.len();
    let mut pos = vec![usize::MAX; n];
    for (i, &s) in class.iter().enumerate() {
        pos[s] = i;
    }
    let mut a = vec![0.0f64; m * m];
    for (i, &s) in class.iter().enumerate() {
        for x in 0..vocab {
            let p = probs[s * vocab + x];
            if p > 0.0 {
                a[i * m + pos[(s * vocab + x) % n]] += p;
            }
        }
    }
    // Eliminate states m-1 .. 1.
    for k in (1..m).rev() {
        let sum: f64 = a[k * m..k * m + k].iter().sum();
        // sum > 0 because the class is irreducible (k reaches some lower state).
        for i in 0..k {
            a[i * m + k] /= sum;
        }
        let row_k: Vec<f64> = a[k * m..k * m + k].to_vec();
        a[..k * m].par_chunks_mut(m).for_each(|row| {
            let f = row[k];
            if f != 0.0 {
                for (r, &b) in row[..k].iter_mut().zip(&row_k) {
                    *r += f * b;
                }
            }
        });
    }
    let mut x = vec![0.0f64; m];
    x[0] = 1.0;
    for j in 1..m {
        let mut acc = 0.0;
        for i in 0..j {
            acc += x[i] * a[i * m + j];
        }
        x[j] = acc;
    }
    let total: f64 = x.iter().sum();
    let mut pi = vec![0.0f64; n];
    for (i, &s) in class.iter().enumerate() {
        pi[s] = x[i] / total;
    }
    pi
}

/// Power iteration of the lazy chain from `start` (uniform if `None`),
/// stopping when the L1 change of one step is below `tol`, with the dense
/// squaring fallback for small slowly mixing chains.
pub fn power_iteration(
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
                                  // As large as the transition table itself: fallible (a MemoryError, not an abort).
    let mut pt: Vec<f64> = zeros(n_states * vocab, "the stationary solver's transposed transition table")?;
    pt.par_chunks_mut(vocab).enumerate().for_each(|(t, row)| {
        let hi = t / vocab;
        let x = t % vocab;
        for (a, r) in row.iter_mut().enumerate() {
            *r = probs[(a * block + hi) * vocab + x];
        }
    });
    let mut pi: Vec<f64> = zeros(n_states, "the stationary distribution")?;
    match start {
        Some(s) if s.len() == n_states => pi.copy_from_slice(s),
        Some(s) => return Err(Error::value(format!("the initial law has {} entries for {n_states} states", s.len()))),
        None => pi.fill(1.0 / n_states as f64),
    }
    let mut next: Vec<f64> = zeros(n_states, "the stationary solver's next iterate")?;
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
    if n_states <= SQUARING_MAX_STATES {
        let start = match start {
            Some(s) => s.to_vec(),
            None => vec![1.0 / n_states as f64; n_states],
        };
        return Ok(by_squaring(probs, vocab, n_states, &start));
    }
    Err(Error::value(format!(
        "the stationary distribution did not converge in {max_iter} iterations \
         (the chain mixes too slowly); pass `initial=` explicitly"
    )))
}

/// Largest state space for the dense squaring fallback (S^3 work a product).
pub const SQUARING_MAX_STATES: usize = 512;

/// μ M^(2^m) for the lazy matrix M = (I + P)/2, squaring until M stops
/// changing (at most 64 products).
fn by_squaring(probs: &[f64], vocab: usize, n: usize, start: &[f64]) -> Vec<f64> {
    let mut m = vec![0.0f64; n * n];
    for s in 0..n {
        m[s * n + s] += 0.5;
        for x in 0..vocab {
            m[s * n + (s * vocab + x) % n] += 0.5 * probs[s * vocab + x];
        }
    }
    let mut next = vec![0.0f64; n * n];
    for _ in 0..64 {
        next.par_chunks_mut(n).enumerate().for_each(|(i, out)| {
            out.iter_mut().for_each(|o| *o = 0.0);
            for k in 0..n {
                let a = m[i * n + k];
                if a != 0.0 {
                    for (o, &b) in out.iter_mut().zip(&m[k * n..(k + 1) * n]) {
                        *o += a * b;
                    }
                }
            }
        });
        let diff: f64 = m.iter().zip(&next).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        std::mem::swap(&mut m, &mut next);
        if diff < 1e-15 {
            break;
        }
    }
    let mut pi = vec![0.0f64; n];
    for (s, &w) in start.iter().enumerate() {
        for (p, &v) in pi.iter_mut().zip(&m[s * n..(s + 1) * n]) {
            *p += w * v;
        }
    }
    let total: f64 = pi.iter().sum();
    pi.iter_mut().for_each(|p| *p /= total);
    pi
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
    fn slow_leak_falls_back_to_squaring() {
        // order 2 on V = 2: a transient cycle 3 -> 2 -> 1 -> 3 leaking into the
        // absorbing state 0 with probability 5e-5 from state 2.
        let p = [1.0, 0.0, 0.0, 1.0, 5e-5, 1.0 - 5e-5, 0.87, 0.13];
        let pi = power_iteration(&p, 2, 2, None, 1e-14, 1000).unwrap();
        assert!((pi[0] - 1.0).abs() < 1e-9, "{pi:?}");
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

#[cfg(test)]
mod gth_tests {
    use super::*;

    #[test]
    fn gth_matches_power_iteration_on_random_chains() {
        let mut r = crate::rng::Xoshiro256pp::from_u64(21);
        for (v, order) in [(5usize, 1usize), (3, 2), (2, 3)] {
            let s = v.pow(order as u32);
            let p: Vec<f64> = (0..s)
                .flat_map(|_| {
                    let row: Vec<f64> = (0..v).map(|_| r.next_f64() + 0.01).collect();
                    let t: f64 = row.iter().sum();
                    row.into_iter().map(move |x| x / t)
                })
                .collect();
            let a = stationary(&p, v, order, None, 1e-15, 100_000).unwrap();
            let b = power_iteration(&p, v, order, None, 1e-15, 100_000).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn nearly_decomposable_chain_is_exact() {
        // two blocks coupled by eps: pi = (1/2, 1/2) by symmetry for any eps
        let e = 1e-13;
        let p = [1.0 - e, e, e, 1.0 - e];
        let pi = stationary(&p, 2, 1, None, 1e-15, 10).unwrap();
        assert!((pi[0] - 0.5).abs() < 1e-14 && (pi[1] - 0.5).abs() < 1e-14);
    }

    #[test]
    fn classes_found() {
        // identity on 3 states: three closed classes
        let p = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert_eq!(closed_classes(&p, 3, 3).len(), 3);
        // 0 -> 1 -> 2 -> 2: one closed class {2}
        let p = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        assert_eq!(closed_classes(&p, 3, 3), vec![vec![2]]);
        let pi = stationary(&p, 3, 1, None, 1e-15, 10).unwrap();
        assert_eq!(pi, vec![0.0, 0.0, 1.0]);
    }
}
