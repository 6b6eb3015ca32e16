//! In-context Markov chains (Edelman et al. 2024, arXiv 2402.11004).
//!
//! Every sequence has its own order-k chain whose V^k rows are drawn i.i.d.
//! from a symmetric Dirichlet(α); its first k tokens are uniform. Integrating
//! the chain out, the marginal law of a sequence is the Dirichlet-multinomial
//! (Pólya urn) law
//!
//!   p(x_t = j | x_<t) = (c_{s j} + α) / (c_s + V α),
//!
//! with c_{s j} the number of earlier transitions from state s (the last k
//! tokens, base V, most recent last) to token j and c_s = Σ_j c_{s j}. This is
//! also the Bayes-optimal in-context predictor (add-α; α = ½ is
//! Krichevsky–Trofimov). We sample from it directly: with probability
//! c_s / (c_s + Vα) copy the follower of a uniformly chosen earlier visit of
//! s, otherwise draw a uniform token — O(1) per token. A hidden chain
//! consistent with a sampled path is then drawn from its exact posterior,
//! Dirichlet(α + c_{s ·}) row by row, so (path, chain) is an exact joint draw
//! and the tokens do not depend on whether the chain was asked for.

use crate::dist;
use crate::error::{Error, Result};
use crate::process::law::bounded_state_space;
use crate::rng::{mix64, Xoshiro256pp};
use crate::tokens::{checked_index, InToken, OutToken};
use rayon::prelude::*;

/// Largest V^(k+1) for in-context chains: the per-thread count table.
pub const ICL_MAX_ENTRIES: usize = 1 << 24;
const CHAIN_SALT: u64 = 0x43_48_41_49_4E_00_00_01;

#[derive(Debug, Clone)]
pub struct InContextMarkov {
    vocab: usize,
    order: usize,
    alpha: f64,
    n_states: usize,
}

/// Per-thread scratch for one sequence at a time; only touched states are
/// reset between sequences.
struct Scratch {
    /// counts[s * V + j] = c_{s j} (scoring only; empty when sampling)
    counts: Vec<u32>,
    /// every follower of each state, in order (sampling) or distinct (scoring)
    followers: Vec<Vec<u32>>,
    totals: Vec<u32>,
    touched: Vec<usize>,
}

impl Scratch {
    fn new(n_states: usize, vocab: usize, with_counts: bool) -> Self {
        Scratch {
            counts: if with_counts { vec![0; n_states * vocab] } else { Vec::new() },
            followers: vec![Vec::new(); n_states],
            totals: vec![0; n_states],
            touched: Vec::new(),
        }
    }

    fn reset(&mut self, vocab: usize) {
        for &s in &self.touched {
            if !self.counts.is_empty() {
                for &j in &self.followers[s] {
                    self.counts[s * vocab + j as usize] = 0;
                }
            }
            self.followers[s].clear();
            self.totals[s] = 0;
        }
        self.touched.clear();
    }
}

impl InContextMarkov {
    pub fn new(vocab: usize, order: usize, alpha: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha.is_finite()) {
            return Err(Error::value(format!("concentration must be finite and > 0, got {alpha}")));
        }
        let n_states = bounded_state_space(vocab, order, ICL_MAX_ENTRIES, " for in-context chains")?;
        Ok(InContextMarkov { vocab, order, alpha, n_states })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }
    pub fn order(&self) -> usize {
        self.order
    }
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    pub fn num_states(&self) -> usize {
        self.n_states
    }

    #[inline]
    fn next_state(&self, s: usize, x: usize) -> usize {
        if self.order == 0 {
            0
        } else {
            (s * self.vocab + x) % self.n_states
        }
    }

    /// Fills rows of `length` tokens; row r uses stream `(seed, index(r))`.
    pub fn sample_rows<T: OutToken>(
        &self,
        out: &mut [T],
        length: usize,
        seed: u64,
        index: impl Fn(usize) -> u64 + Sync,
    ) {
        if length == 0 {
            return;
        }
        let (v, k) = (self.vocab, self.order);
        let va = v as f64 * self.alpha;
        out.par_chunks_mut(length).enumerate().for_each_init(
            || Scratch::new(self.n_states, v, false),
            |sc, (r, row)| {
                let mut rng = Xoshiro256pp::for_sequence(seed, index(r));
                let mut s = 0usize;
                for (t, x) in row.iter_mut().enumerate() {
                    let y = if t < k {
                        dist::below(&mut rng, v as u32)
                    } else {
                        let f = &sc.followers[s];
                        let u = rng.next_f64() * (f.len() as f64 + va);
                        let y = if u < f.len() as f64 { f[u as usize] } else { dist::below(&mut rng, v as u32) };
                        if f.is_empty() {
                            sc.touched.push(s);
                        }
                        sc.followers[s].push(y);
                        y
                    };
                    *x = T::from_u32(y);
                    s = if t + 1 < k { s * v + y as usize } else { self.next_state(s, y as usize) };
                }
                sc.reset(v);
            },
        );
    }

    #[inline]
    fn check<T: InToken>(&self, x: T, i: usize, t: usize) -> Result<usize> {
        checked_index(x, self.vocab, i, t)
    }

    /// Walks a row, calling `visit(t, x_t, Some((state, scratch)))` with the
    /// counts as they were *before* x_t, or `visit(t, x_t, None)` for the
    /// first k (uniform) tokens; then records the transition.
    fn walk_states<T: InToken>(
        &self,
        sc: &mut Scratch,
        row: &[T],
        i: usize,
        mut visit: impl FnMut(usize, usize, Option<(usize, &Scratch)>),
    ) -> Result<()> {
        let (v, k) = (self.vocab, self.order);
        let mut s = 0usize;
        let result = (|| {
            for (t, &xt) in row.iter().enumerate() {
                let x = self.check(xt, i, t)?;
                if t < k {
                    visit(t, x, None);
                    s = s * v + x;
                    continue;
                }
                visit(t, x, Some((s, &*sc)));
                if sc.totals[s] == 0 {
                    sc.touched.push(s);
                }
                if sc.counts[s * v + x] == 0 {
                    sc.followers[s].push(x as u32);
                }
                sc.counts[s * v + x] += 1;
                sc.totals[s] += 1;
                s = self.next_state(s, x);
            }
            Ok(())
        })();
        sc.reset(v);
        result
    }

    /// Walks a row under the marginal (Bayes) law, calling
    /// `step(t, log p(x_t|x_<t), H(pred_t), V(pred_t))`; H and V are only
    /// computed when `moments` (they cost O(distinct followers of s)).
    fn walk<T: InToken>(
        &self,
        sc: &mut Scratch,
        row: &[T],
        i: usize,
        moments: bool,
        mut step: impl FnMut(usize, f64, f64, f64),
    ) -> Result<()> {
        let (v, a) = (self.vocab, self.alpha);
        let va = v as f64 * a;
        let log_v = (v as f64).ln();
        self.walk_states(sc, row, i, |t, x, state| match state {
            None => step(t, -log_v, if moments { log_v } else { 0.0 }, 0.0),
            Some((s, sc)) => {
                let z = sc.totals[s] as f64 + va;
                let c = sc.counts[s * v + x] as f64;
                let (h, var) = if moments { self.predictive_moments(sc, s, z) } else { (0.0, 0.0) };
                step(t, ((c + a) / z).ln(), h, var);
            }
        })
    }

    /// Entropy and varentropy of the predictive law at state s (normaliser z).
    fn predictive_moments(&self, sc: &Scratch, s: usize, z: f64) -> (f64, f64) {
        let (v, a) = (self.vocab, self.alpha);
        let distinct = &sc.followers[s];
        let p0 = a / z;
        let l0 = p0.ln();
        let rest = (v - distinct.len()) as f64;
        let mut h = -rest * p0 * l0;
        let mut m2 = rest * p0 * l0 * l0;
        for &j in distinct {
            let p = (sc.counts[s * v + j as usize] as f64 + a) / z;
            let l = p.ln();
            h -= p * l;
            m2 += p * l * l;
        }
        (h, (m2 - h * h).max(0.0))
    }

    fn rows_scored<T: InToken, O: Send>(
        &self,
        tokens: &[T],
        length: usize,
        out: &mut [O],
        per_row: usize,
        f: impl Fn(&mut Scratch, &[T], usize, &mut [O]) -> Result<()> + Sync,
    ) -> Result<()> {
        if length == 0 {
            return Ok(());
        }
        tokens
            .par_chunks(length)
            .zip(out.par_chunks_mut(per_row))
            .enumerate()
            .try_for_each_init(|| Scratch::new(self.n_states, self.vocab, true), |sc, (i, (row, o))| f(sc, row, i, o))
    }

    /// Exact marginal log p(x) of each row.
    pub fn log_prob<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        if length == 0 {
            out.iter_mut().for_each(|o| *o = 0.0);
        }
        self.rows_scored(tokens, length, out, 1, |sc, row, i, o| {
            let mut acc = 0.0;
            self.walk(sc, row, i, false, |_, lp, _, _| acc += lp)?;
            o[0] = acc;
            Ok(())
        })
    }

    /// log p(x_t | x_<t) under the marginal law (the Bayes predictor).
    pub fn token_log_probs<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        self.rows_scored(tokens, length, out, length.max(1), |sc, row, i, o| {
            self.walk(sc, row, i, false, |t, lp, _, _| o[t] = lp)
        })
    }

    /// Per row: [log p(x), Σ_t (-log p_t - H_t), Σ_t V_t] (see typicality).
    pub fn path_stats<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        if length == 0 {
            out.iter_mut().for_each(|o| *o = 0.0);
        }
        self.rows_scored(tokens, length, out, 3, |sc, row, i, o| {
            let (mut lp, mut c, mut var) = (0.0, 0.0, 0.0);
            self.walk(sc, row, i, true, |_, l, h, v| {
                lp += l;
                c += -l - h;
                var += v;
            })?;
            o.copy_from_slice(&[lp, c, var]);
            Ok(())
        })
    }

    /// The Bayes predictive law (c_{s ·} + α)/(c_s + Vα) at every position
    /// (uniform for the first k tokens), written to `out` [N, T, V].
    pub fn predictive<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        let (v, a) = (self.vocab, self.alpha);
        let va = v as f64 * a;
        self.rows_scored(tokens, length, out, length * v, |sc, row, i, o| {
            self.walk_states(sc, row, i, |t, _, state| {
                let dst = &mut o[t * v..(t + 1) * v];
                match state {
                    None => dst.iter_mut().for_each(|d| *d = 1.0 / v as f64),
                    Some((s, sc)) => {
                        let z = sc.totals[s] as f64 + va;
                        for (d, &c) in dst.iter_mut().zip(&sc.counts[s * v..(s + 1) * v]) {
                            *d = (c as f64 + a) / z;
                        }
                    }
                }
            })
        })
    }

    /// Draws, for each row, a chain [V^k, V] from the posterior given the row,
    /// Dirichlet(α + c_{s ·}) per state, into `out` [N, V^k, V]; row r uses
    /// stream `(salted seed, indices[r])`.
    pub fn posterior_chains<T: InToken>(
        &self,
        tokens: &[T],
        length: usize,
        seed: u64,
        indices: &[u64],
        out: &mut [f64],
    ) -> Result<()> {
        let (v, k, a) = (self.vocab, self.order, self.alpha);
        let per_row = self.n_states * v;
        let n_rows = out.len() / per_row.max(1);
        if n_rows * per_row != out.len() || (length > 0 && tokens.len() != n_rows * length) {
            return Err(Error::value("chains: the output does not have one chain per row of tokens"));
        }
        if indices.len() != n_rows {
            return Err(Error::value("indices must have one entry per row of tokens"));
        }
        let index = |r: usize| indices[r];
        let salted = mix64(seed ^ CHAIN_SALT);
        (0..n_rows).into_par_iter().zip(out.par_chunks_mut(per_row)).try_for_each_init(
            || vec![0u32; per_row],
            |counts, (r, chain)| {
                counts.iter_mut().for_each(|c| *c = 0);
                let row = if length == 0 { &tokens[..0] } else { &tokens[r * length..(r + 1) * length] };
                let mut s = 0usize;
                for (t, &xt) in row.iter().enumerate() {
                    let x = self.check(xt, r, t)?;
                    if t >= k {
                        counts[s * v + x] += 1;
                        s = self.next_state(s, x);
                    } else {
                        s = s * v + x;
                    }
                }
                let mut rng = Xoshiro256pp::for_sequence(salted, index(r));
                for (st, dst) in chain.chunks_mut(v).enumerate() {
                    dist::dirichlet(&mut rng, |j| a + counts[st * v + j] as f64, dst);
                }
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// log Γ via the Lanczos approximation (g = 7), for an independent
    /// Dirichlet-multinomial check.
    fn ln_gamma(x: f64) -> f64 {
        const G: [f64; 9] = [
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
        let x = x - 1.0;
        let mut a = G[0];
        let t = x + 7.5;
        for (i, &g) in G.iter().enumerate().skip(1) {
            a += g / (x + i as f64);
        }
        0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
    }

    #[test]
    fn marginal_is_dirichlet_multinomial() {
        // order 1, V = 3: p(x) = (1/V) Π_s Γ(Vα)/Γ(c_s + Vα) Π_j Γ(c_sj + α)/Γ(α)
        let (v, a) = (3usize, 0.7);
        let icl = InContextMarkov::new(v, 1, a).unwrap();
        let x: Vec<u8> = vec![0, 1, 1, 2, 0, 1, 1, 1, 0, 2, 2];
        let mut lp = [0.0];
        icl.log_prob(&x, x.len(), &mut lp).unwrap();
        let mut c = vec![0f64; v * v];
        for w in x.windows(2) {
            c[w[0] as usize * v + w[1] as usize] += 1.0;
        }
        let mut want = -(v as f64).ln();
        for s in 0..v {
            let cs: f64 = c[s * v..(s + 1) * v].iter().sum();
            want += ln_gamma(v as f64 * a) - ln_gamma(cs + v as f64 * a);
            for j in 0..v {
                want += ln_gamma(c[s * v + j] + a) - ln_gamma(a);
            }
        }
        assert!((lp[0] - want).abs() < 1e-10, "{} vs {want}", lp[0]);
    }

    #[test]
    fn sampled_first_transitions_follow_the_predictive() {
        // After a fixed prefix, the next token's frequency over many sequences
        // must match the marginal law. Check the very first transition: p = 1/V.
        let icl = InContextMarkov::new(4, 1, 1.0).unwrap();
        let (n, len) = (40_000, 2);
        let mut out = vec![0u8; n * len];
        icl.sample_rows(&mut out, len, 3, |r| r as u64);
        let mut c = [0f64; 4];
        for row in out.chunks(2) {
            c[row[1] as usize] += 1.0;
        }
        let chi2: f64 = c.iter().map(|&x| (x - 1e4).powi(2) / 1e4).sum();
        assert!(chi2 < 16.27, "{chi2}");
        // P(x2 = x1) = (1 + α)/(1 + Vα) = 2/5 for the second transition when x1 -> x1
        let mut out = vec![0u8; n * 3];
        icl.sample_rows(&mut out, 3, 4, |r| r as u64);
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for row in out.chunks(3) {
            if row[0] == row[1] {
                den += 1.0;
                if row[2] == row[1] {
                    num += 1.0;
                }
            }
        }
        let p: f64 = num / den;
        assert!((p - 0.4).abs() < 4.0 * (0.4f64 * 0.6 / den).sqrt(), "{p} over {den}");
    }
}
