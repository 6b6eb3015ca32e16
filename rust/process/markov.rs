//! Order-k Markov chains over a vocabulary of V tokens (order 0 is i.i.d.).
//!
//! State convention (math.md, Markov chains): the state after reading tokens
//! `x_{t-k} .. x_{t-1}` is `Σ_j x_{t-k+j} V^(k-1-j)`, i.e. the last k tokens as
//! a base-V number with the most recent token last (least significant). The
//! first k tokens of a sequence are one draw from the initial law over the V^k
//! states (the stationary law unless one is given); every later token is drawn
//! from the row of the current state.

use super::markov_simd;
use crate::alias;
use crate::alloc::zeros;
use crate::error::{Error, Result};
use crate::process::law::{initial_law, normalise_rows, state_space, stationary_iterations, STATIONARY_TOL};
use crate::rng::Xoshiro256pp;
use crate::stats::entropy::entropy_varentropy;
use crate::stats::stationary::stationary;
use crate::tokens::{checked_index, InToken, OutToken};
use rayon::prelude::*;

/// Sequences sampled in lockstep by one thread (first-order chains).
pub const LANES: usize = 8;
/// An order-k Markov chain with everything needed to sample and score in O(1)
/// per token.
#[derive(Debug, Clone)]
pub struct MarkovChain {
    vocab: usize,
    order: usize,
    n_states: usize,
    /// Row-normalised transition probabilities [S, V].
    probs: Vec<f64>,
    /// Their logarithms [S, V] (-inf where 0).
    log_p: Vec<f64>,
    /// Packed alias tables, one row of V buckets per state.
    table: Vec<u64>,
    /// Initial law over the S states (= `stationary` unless given).
    init: Vec<f64>,
    init_table: Vec<u64>,
    stationary: Vec<f64>,
    /// Entropy and varentropy of each row.
    row_h: Vec<f64>,
    row_v: Vec<f64>,
    /// `prefix_logp[j-1][a]` = log of the initial law's marginal of the first
    /// j tokens, a = those tokens in base V (j = 1..=k).
    prefix_logp: Vec<Vec<f64>>,
    /// Entropy and varentropy of each of those marginals.
    prefix_hv: Vec<(f64, f64)>,
}

impl MarkovChain {
    /// Builds a chain from a row-stochastic `transition` matrix of shape
    /// [V^order, V] (row-major) and an optional initial law over the V^order
    /// states.
    pub fn new(
        transition: &[f64],
        vocab: usize,
        order: usize,
        initial: Option<&[f64]>,
        normalize: bool,
    ) -> Result<Self> {
        let n_states = state_space(vocab, order)?;
        if transition.len() != n_states * vocab {
            return Err(Error::value(format!(
                "transition must have shape (vocab_size**order, vocab_size) = ({n_states}, {vocab}), \
                 got {} entries",
                transition.len()
            )));
        }
        let mut probs: Vec<f64> = zeros(n_states * vocab, "the transition table")?;
        normalise_rows(transition, &mut probs, vocab, "transition", normalize)?;
        let init_given = initial_law(
            initial,
            n_states,
            &|| format!("vocab_size**order = {n_states} entries (a law over the first {order} tokens)"),
            normalize,
        )?;
        let max_iter = stationary_iterations(n_states * vocab);
        let stationary = stationary(&probs, vocab, order, init_given.as_deref(), STATIONARY_TOL, max_iter)?;
        Self::assemble(probs, vocab, order, n_states, init_given, stationary)
    }

    fn assemble(
        probs: Vec<f64>,
        vocab: usize,
        order: usize,
        n_states: usize,
        init_given: Option<Vec<f64>>,
        stationary: Vec<f64>,
    ) -> Result<Self> {
        let mut log_p: Vec<f64> = zeros(probs.len(), "the log transition table")?;
        log_p.par_iter_mut().zip(probs.par_iter()).for_each(|(l, &p)| *l = p.ln());
        let mut table: Vec<u64> = zeros(n_states * vocab, "the alias tables")?;
        table.par_chunks_mut(vocab).zip(probs.par_chunks(vocab)).for_each(|(t, p)| alias::build(p, t));
        let (mut row_h, mut row_v): (Vec<f64>, Vec<f64>) =
            (zeros(n_states, "the row entropies")?, zeros(n_states, "the row varentropies")?);
        row_h.par_iter_mut().zip(row_v.par_iter_mut()).zip(probs.par_chunks(vocab)).for_each(|((h, v), p)| {
            (*h, *v) = entropy_varentropy(p);
        });
        let init = init_given.unwrap_or_else(|| stationary.clone());
        let mut init_table = vec![0u64; n_states];
        alias::build(&init, &mut init_table);
        // Marginals of the first j tokens: contiguous blocks of V^(k-j) states.
        let mut prefix_logp = Vec::with_capacity(order);
        let mut prefix_hv = Vec::with_capacity(order);
        for j in 1..=order {
            let block = vocab.pow((order - j) as u32);
            let marg: Vec<f64> = init.chunks(block).map(|c| c.iter().sum()).collect();
            prefix_hv.push(entropy_varentropy(&marg));
            prefix_logp.push(marg.iter().map(|p: &f64| p.ln()).collect());
        }
        Ok(MarkovChain {
            vocab,
            order,
            n_states,
            probs,
            log_p,
            table,
            init,
            init_table,
            stationary,
            row_h,
            row_v,
            prefix_logp,
            prefix_hv,
        })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }
    pub fn order(&self) -> usize {
        self.order
    }
    pub fn num_states(&self) -> usize {
        self.n_states
    }
    pub fn probs(&self) -> &[f64] {
        &self.probs
    }
    pub fn initial(&self) -> &[f64] {
        &self.init
    }
    pub fn stationary(&self) -> &[f64] {
        &self.stationary
    }
    pub fn row_entropies(&self) -> &[f64] {
        &self.row_h
    }
    pub fn row_varentropies(&self) -> &[f64] {
        &self.row_v
    }
    #[cfg(test)]
    pub(crate) fn log_probs_table(&self) -> &[f64] {
        &self.log_p
    }
    #[cfg(test)]
    pub(crate) fn prefix_log_probs(&self) -> &[f64] {
        self.prefix_logp.first().map_or(&[], |p| &p[..])
    }

    /// Entropy rate H = Σ_s π(s) H(P(·|s)) in nats/token.
    pub fn entropy_rate(&self) -> f64 {
        dot(&self.stationary, &self.row_h)
    }

    /// Varentropy rate Σ_s π(s) V(P(·|s)) in nats²/token: the per-token
    /// variance of the surprisal's martingale increments, so that
    /// Var[-log p(x_1..n)] ≈ n × this for long stationary sequences.
    pub fn varentropy_rate(&self) -> f64 {
        dot(&self.stationary, &self.row_v)
    }

    /// Writes `out.len() / length` sequences of `length` tokens, sequence i
    /// drawn from stream `(seed, start + i)`. Parallel over sequences.
    pub fn sample_into<T: OutToken>(&self, out: &mut [T], length: usize, seed: u64, start: u64) {
        self.sample_rows(out, length, seed, |i| start.wrapping_add(i as u64));
    }

    /// Like [`Self::sample_into`], with row r drawn from stream `(seed, index(r))`.
    ///
    /// First-order chains are sampled [`LANES`] sequences at a time in
    /// lockstep: each token's table row depends on the previous token, so one
    /// sequence is a chain of dependent cache (or DRAM) misses; interleaving
    /// independent sequences lets those misses overlap. Each sequence still
    /// consumes its own stream in the same order, so the output is identical.
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
        let scalar = |c: usize, chunk: &mut [T]| {
            let base = c * LANES;
            if self.order == 1 && chunk.len() == length * LANES {
                self.sample_lanes(chunk, length, seed, |g| index(base + g));
            } else {
                for (g, row) in chunk.chunks_mut(length).enumerate() {
                    let mut rng = Xoshiro256pp::for_sequence(seed, index(base + g));
                    self.sample_row(row, &mut rng);
                }
            }
        };
        if self.order <= 1 && markov_simd::available() {
            // SIMD_ROWS sequences per vector group (markov_simd); a ragged
            // tail goes through the scalar lanes above. Same streams, same bytes.
            let w = markov_simd::SIMD_ROWS;
            out.par_chunks_mut(length * w).enumerate().for_each(|(c, chunk)| {
                if chunk.len() == length * w {
                    let mut rngs = std::array::from_fn(|g| Xoshiro256pp::for_sequence(seed, index(c * w + g)));
                    let first = if self.order == 0 { &self.table[..self.vocab] } else { &self.init_table[..] };
                    let (t, v) = (&self.table[..], self.vocab);
                    if markov_simd::sample_rows(t, first, v, self.order == 0, chunk, length, &mut rngs) {
                        return;
                    }
                }
                for (c2, sub) in chunk.chunks_mut(length * LANES).enumerate() {
                    scalar(c * (w / LANES) + c2, sub);
                }
            });
            return;
        }
        out.par_chunks_mut(length * LANES).enumerate().for_each(|(c, chunk)| scalar(c, chunk));
    }

    /// [`LANES`] order-1 sequences of `length` (>= 1) tokens, interleaved.
    fn sample_lanes<T: OutToken>(&self, chunk: &mut [T], length: usize, seed: u64, index: impl Fn(usize) -> u64) {
        let v = self.vocab;
        let mut rngs: [Xoshiro256pp; LANES] = std::array::from_fn(|g| Xoshiro256pp::for_sequence(seed, index(g)));
        let mut s = [0usize; LANES];
        for g in 0..LANES {
            let x = alias::draw(&self.init_table, &mut rngs[g]);
            chunk[g * length] = T::from_u32(x);
            s[g] = x as usize;
        }
        for t in 1..length {
            for g in 0..LANES {
                let y = alias::draw(&self.table[s[g] * v..s[g] * v + v], &mut rngs[g]);
                chunk[g * length + t] = T::from_u32(y);
                s[g] = y as usize;
            }
        }
    }

    pub(crate) fn sample_row<T: OutToken>(&self, row: &mut [T], rng: &mut Xoshiro256pp) {
        let v = self.vocab;
        let k = self.order;
        let len = row.len();
        if k == 0 {
            let t = &self.table[..v];
            for x in row.iter_mut() {
                *x = T::from_u32(alias::draw(t, rng));
            }
            return;
        }
        let s0 = alias::draw(&self.init_table, rng) as usize;
        let mut rem = s0;
        for t in (0..k).rev() {
            if t < len {
                row[t] = T::from_u32((rem % v) as u32);
            }
            rem /= v;
        }
        let mut s = s0;
        if k == 1 {
            for x in row.iter_mut().skip(1) {
                let y = alias::draw(&self.table[s * v..s * v + v], rng);
                *x = T::from_u32(y);
                s = y as usize;
            }
        } else {
            let n = self.n_states;
            for x in row.iter_mut().skip(k) {
                let y = alias::draw(&self.table[s * v..s * v + v], rng);
                *x = T::from_u32(y);
                s = (s * v + y as usize) % n;
            }
        }
    }

    /// The token `x` at position [i, t] as an index, or an error naming it.
    #[inline]
    fn check<T: InToken>(&self, x: T, i: usize, t: usize) -> Result<usize> {
        checked_index(x, self.vocab, i, t)
    }

    /// Calls `step(t, log p(x_t | x_<t), H, V)` along the row, where H and V
    /// are the entropy and varentropy of the conditional law the token was
    /// drawn from. The initial block of min(k, len) tokens is reported as one
    /// step (at its last position) with its joint log-probability, unless
    /// `per_token_prefix`, in which case each of its tokens is reported with
    /// its conditional given the earlier ones (H and V then 0).
    #[inline]
    fn walk<T: InToken>(
        &self,
        row: &[T],
        i: usize,
        per_token_prefix: bool,
        mut step: impl FnMut(usize, f64, f64, f64),
    ) -> Result<()> {
        let v = self.vocab;
        let k = self.order;
        let m = k.min(row.len());
        let mut idx = 0usize;
        let mut prev = 0.0;
        for t in 0..m {
            idx = idx * v + self.check(row[t], i, t)?;
            if per_token_prefix {
                let joint = self.prefix_logp[t][idx];
                let cond = if joint == f64::NEG_INFINITY { joint } else { joint - prev };
                step(t, cond, 0.0, 0.0);
                prev = joint;
            }
        }
        if m > 0 && !per_token_prefix {
            let (h, var) = self.prefix_hv[m - 1];
            step(m - 1, self.prefix_logp[m - 1][idx], h, var);
        }
        let mut s = idx; // == state once m == k; unused otherwise
        for t in k..row.len() {
            let x = self.check(row[t], i, t)?;
            step(t, self.log_p[s * v + x], self.row_h[s], self.row_v[s]);
            s = match k {
                0 => 0,
                1 => x,
                _ => (s * v + x) % self.n_states,
            };
        }
        Ok(())
    }

    /// Exact log p(x) of each of the `tokens.len() / length` rows.
    pub fn log_prob<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        if length == 0 {
            out.iter_mut().for_each(|o| *o = 0.0);
            return Ok(());
        }
        let one_row = |i: usize, row: &[T], o: &mut f64| -> Result<()> {
            if self.order <= 1 && row.iter().all(|x| x.index() < self.vocab as u64) {
                *o = self.log_prob_order01(row);
                return Ok(());
            }
            let mut acc = 0.0;
            self.walk(row, i, false, |_, lp, _, _| acc += lp)?;
            *o = acc;
            Ok(())
        };
        let table = if self.order == 0 { self.vocab } else { self.vocab * self.vocab };
        if self.order <= 1 && table <= markov_simd::LP_MAX_TABLE && markov_simd::available() {
            // LP_ROWS validated rows at a time through the gather kernel
            // (markov_simd): the same sums in the same order, so the same bits.
            let w = markov_simd::LP_ROWS;
            let first: &[f64] = if self.order == 0 { &[] } else { &self.prefix_logp[0] };
            return tokens.par_chunks(length * w).zip(out.par_chunks_mut(w)).enumerate().try_for_each(
                |(c, (rows, o))| {
                    if o.len() == w
                        && markov_simd::all_below(rows, self.vocab)
                        && markov_simd::log_prob_rows(&self.log_p, first, self.vocab, self.order == 0, rows, length, o)
                    {
                        return Ok(());
                    }
                    for (r, (row, oi)) in rows.chunks(length).zip(o.iter_mut()).enumerate() {
                        one_row(c * w + r, row, oi)?;
                    }
                    Ok(())
                },
            );
        }
        tokens.par_chunks(length).zip(out.par_iter_mut()).enumerate().try_for_each(|(i, (row, o))| one_row(i, row, o))
    }

    /// log p(x) of a validated row of an order-0 or order-1 chain: no state
    /// arithmetic and four independent partial sums, so consecutive table
    /// loads overlap instead of waiting on one another.
    pub(crate) fn log_prob_order01<T: InToken>(&self, row: &[T]) -> f64 {
        let v = self.vocab;
        let idx = |x: T| x.index() as usize;
        let (first, rest, prev): (f64, &[T], &[T]) = if self.order == 0 {
            (0.0, row, row)
        } else {
            (self.prefix_logp[0][idx(row[0])], &row[1..], &row[..row.len() - 1])
        };
        let lp = &self.log_p;
        let term = |t: usize| -> f64 {
            let s = if self.order == 0 { 0 } else { idx(prev[t]) };
            lp[s * v + idx(rest[t])]
        };
        let mut acc = [0.0f64; 4];
        let n = rest.len();
        let mut t = 0;
        while t + 4 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                *a += term(t + j);
            }
            t += 4;
        }
        for (j, a) in acc.iter_mut().enumerate().take(n - t) {
            *a += term(t + j);
        }
        first + (acc[0] + acc[1]) + (acc[2] + acc[3])
    }

    /// log p(x_t | x_<t) for every position; `out` has the shape of `tokens`.
    pub fn token_log_probs<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        if length == 0 {
            return Ok(());
        }
        tokens
            .par_chunks(length)
            .zip(out.par_chunks_mut(length))
            .enumerate()
            .try_for_each(|(i, (row, o))| self.walk(row, i, true, |t, lp, _, _| o[t] = lp))
    }

    /// The exact next-token law p(x_t = · | x_<t) at every position, written
    /// to `out` [N, T, V]. Inside the initial block it is the conditional of
    /// the initial law's prefix marginals (uniform after a zero-probability
    /// prefix, where it is undefined); afterwards the row of the state.
    pub fn predictive<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        if length == 0 {
            return Ok(());
        }
        let (v, k) = (self.vocab, self.order);
        tokens.par_chunks(length).zip(out.par_chunks_mut(length * v)).enumerate().try_for_each(|(i, (row, o))| {
            let mut idx = 0usize;
            let mut prev = 0.0f64; // log prob of the prefix so far
            let mut s = 0usize;
            for (t, dst) in o.chunks_mut(v).enumerate() {
                let x = self.check(row[t], i, t)?;
                if t < k {
                    let joint = &self.prefix_logp[t][idx * v..idx * v + v];
                    if prev == f64::NEG_INFINITY {
                        dst.iter_mut().for_each(|d| *d = 1.0 / v as f64);
                    } else {
                        for (d, &l) in dst.iter_mut().zip(joint) {
                            *d = (l - prev).exp();
                        }
                    }
                    idx = idx * v + x;
                    prev = self.prefix_logp[t][idx];
                    s = idx;
                } else {
                    dst.copy_from_slice(&self.probs[s * v..s * v + v]);
                    s = if k == 0 { 0 } else { (s * v + x) % self.n_states };
                }
            }
            Ok(())
        })
    }

    /// Per row, into `out` [N, 3]: [log p(x), Σ_t (-log p(x_t|·) - H_t),
    /// Σ_t V_t], the pieces of the path-centred z-score (math.md, Typical sets).
    pub fn path_stats<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        if length == 0 {
            out.iter_mut().for_each(|o| *o = 0.0);
            return Ok(());
        }
        tokens.par_chunks(length).zip(out.par_chunks_mut(3)).enumerate().try_for_each(|(i, (row, o))| {
            let (mut lp_acc, mut c_acc, mut v_acc) = (0.0, 0.0, 0.0);
            self.walk(row, i, false, |_, lp, h, var| {
                lp_acc += lp;
                c_acc += -lp - h;
                v_acc += var;
            })?;
            o.copy_from_slice(&[lp_acc, c_acc, v_acc]);
            Ok(())
        })
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Entropy rate of the chain with row-stochastic `probs` [V^order, V],
/// reusing (and updating) `pi` as the power iteration's start.
pub fn entropy_rate_of(probs: &[f64], vocab: usize, order: usize, pi: &mut Vec<f64>) -> Result<f64> {
    let n_states = probs.len() / vocab;
    let max_iter = stationary_iterations(n_states * vocab);
    let start = if pi.len() == n_states { Some(pi.as_slice()) } else { None };
    let st = stationary(probs, vocab, order, start, STATIONARY_TOL, max_iter)?;
    let h: f64 = probs.par_chunks(vocab).zip(st.par_iter()).map(|(row, &w)| w * entropy_varentropy(row).0).sum::<f64>();
    *pi = st;
    Ok(h)
}

/// Row-wise softmax of `logits / tau` into `out`.
pub fn softmax_rows(logits: &[f64], vocab: usize, tau: f64, out: &mut [f64]) {
    out.par_chunks_mut(vocab).zip(logits.par_chunks(vocab)).for_each(|(o, g)| {
        let m = g.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut tot = 0.0;
        for (oi, &gi) in o.iter_mut().zip(g) {
            *oi = ((gi - m) / tau).exp();
            tot += *oi;
        }
        for oi in o.iter_mut() {
            *oi /= tot;
        }
    });
}

/// Finds the temperature τ at which the chain with rows softmax(G/τ) has
/// entropy rate `target` (nats) within `tol`, by bisection on log τ
/// (math.md, Markov chains: row entropy increases with τ; the rate is continuous in τ
/// and goes from 0 at τ → 0 to log V at τ → ∞, so a root exists for any
/// target in (0, log V)). Returns (τ, rows, achieved rate).
pub fn tune_temperature(
    logits: &[f64],
    vocab: usize,
    order: usize,
    target: f64,
    tol: f64,
) -> Result<(f64, Vec<f64>, f64)> {
    let n_states = state_space(vocab, order)?;
    if logits.len() != n_states * vocab {
        return Err(Error::value("logits must have shape (vocab_size**order, vocab_size)"));
    }
    let log_v = (vocab as f64).ln();
    if !(target > 0.0 && target < log_v) {
        return Err(Error::value(format!(
            "entropy_rate must lie strictly between 0 and log(vocab_size) = {log_v:.6} nats, got {target}"
        )));
    }
    let mut probs: Vec<f64> = zeros(logits.len(), "the transition table")?;
    let mut pi = Vec::new();
    let eval = |tau: f64, probs: &mut Vec<f64>, pi: &mut Vec<f64>| -> Result<f64> {
        softmax_rows(logits, vocab, tau, probs);
        entropy_rate_of(probs, vocab, order, pi)
    };
    // Bracket the root in log τ.
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    let mut h_lo = eval(lo.exp(), &mut probs, &mut pi)?;
    let mut h_hi = h_lo;
    while h_lo > target {
        lo -= 1.0;
        if lo < -60.0 {
            return Err(Error::value(format!("entropy_rate {target} is too small to reach")));
        }
        h_lo = eval(lo.exp(), &mut probs, &mut pi)?;
    }
    while h_hi < target {
        hi += 1.0;
        if hi > 60.0 {
            return Err(Error::value(format!("entropy_rate {target} is too close to log(vocab_size)")));
        }
        h_hi = eval(hi.exp(), &mut probs, &mut pi)?;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        let h = eval(mid.exp(), &mut probs, &mut pi)?;
        if (h - target).abs() <= tol {
            return Ok((mid.exp(), probs, h));
        }
        if h < target {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-15 {
            break;
        }
    }
    Err(Error::value(format!("could not tune the chain to entropy_rate {target} within {tol}; try another seed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_chain(v: usize, order: usize, seed: u64) -> Vec<f64> {
        let s = v.pow(order as u32);
        let mut r = Xoshiro256pp::from_u64(seed);
        let mut p = vec![0.0; s * v];
        for row in p.chunks_mut(v) {
            let mut tot = 0.0;
            for x in row.iter_mut() {
                *x = -r.next_f64().ln(); // Dirichlet(1) via normalised exponentials
                tot += *x;
            }
            row.iter_mut().for_each(|x| *x /= tot);
        }
        p
    }

    #[test]
    fn transition_frequencies_match() {
        let v = 5;
        let p = random_chain(v, 1, 3);
        let c = MarkovChain::new(&p, v, 1, None, false).unwrap();
        let (n, len) = (200, 2000);
        let mut out = vec![0u8; n * len];
        c.sample_into(&mut out, len, 1, 0);
        let mut counts = vec![0f64; v * v];
        for row in out.chunks(len) {
            for w in row.windows(2) {
                counts[w[0] as usize * v + w[1] as usize] += 1.0;
            }
        }
        // Pearson chi-square over all rows: V(V-1) = 20 degrees of freedom,
        // 0.999 quantile 45.3.
        let mut chi2 = 0.0;
        for s in 0..v {
            let tot: f64 = counts[s * v..(s + 1) * v].iter().sum();
            for x in 0..v {
                let e = tot * p[s * v + x];
                chi2 += (counts[s * v + x] - e).powi(2) / e;
            }
        }
        assert!(chi2 < 45.3, "chi2 = {chi2}");
    }

    #[test]
    fn order_k_state_convention_and_log_prob() {
        let v = 3;
        let p = random_chain(v, 2, 5);
        let c = MarkovChain::new(&p, v, 2, None, false).unwrap();
        let x: Vec<u8> = vec![2, 0, 1, 1, 2, 0];
        let mut lp = [0.0];
        c.log_prob(&x, x.len(), &mut lp).unwrap();
        // by hand: log init[(2,0)] + Σ log P[(x_{t-2}, x_{t-1}), x_t]
        let mut want = c.initial()[2 * 3 + 0].ln();
        for t in 2..x.len() {
            let s = x[t - 2] as usize * 3 + x[t - 1] as usize;
            want += p[s * 3 + x[t] as usize].ln();
        }
        assert!((lp[0] - want).abs() < 1e-12);
        let mut tl = vec![0.0; x.len()];
        c.token_log_probs(&x, x.len(), &mut tl).unwrap();
        assert!((tl.iter().sum::<f64>() - want).abs() < 1e-12);
    }

    #[test]
    fn interleaved_lanes_equal_one_sequence_at_a_time() {
        let v = 11;
        let p = random_chain(v, 1, 12);
        let c = MarkovChain::new(&p, v, 1, None, false).unwrap();
        for len in [1usize, 2, 37] {
            let n = 3 * LANES + 5; // full groups and a ragged tail
            let mut lanes = vec![0u8; n * len];
            c.sample_into(&mut lanes, len, 5, 100);
            for (i, row) in lanes.chunks(len).enumerate() {
                let mut one = vec![0u8; len];
                let mut rng = Xoshiro256pp::for_sequence(5, 100 + i as u64);
                c.sample_row(&mut one, &mut rng);
                assert_eq!(row, &one[..], "row {i}, length {len}");
            }
        }
    }

    #[test]
    fn sampling_is_deterministic_under_sharding() {
        let v = 7;
        let p = random_chain(v, 1, 8);
        let c = MarkovChain::new(&p, v, 1, None, false).unwrap();
        let mut all = vec![0u8; 10 * 33];
        c.sample_into(&mut all, 33, 99, 0);
        let mut tail = vec![0u8; 4 * 33];
        c.sample_into(&mut tail, 33, 99, 6);
        assert_eq!(&all[6 * 33..], &tail[..]);
    }

    #[test]
    fn predictive_matches_token_log_probs() {
        let v = 3;
        let p = random_chain(v, 2, 6);
        let c = MarkovChain::new(&p, v, 2, None, false).unwrap();
        let x: Vec<u8> = vec![1, 2, 0, 0, 2, 1, 1];
        let mut pred = vec![0.0; x.len() * v];
        c.predictive(&x, x.len(), &mut pred).unwrap();
        let mut tl = vec![0.0; x.len()];
        c.token_log_probs(&x, x.len(), &mut tl).unwrap();
        for t in 0..x.len() {
            let row = &pred[t * v..(t + 1) * v];
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!((row[x[t] as usize].ln() - tl[t]).abs() < 1e-12);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(MarkovChain::new(&[0.5, 0.5, 1.0], 2, 1, None, false).is_err());
        assert!(MarkovChain::new(&[0.5, 0.6, 0.5, 0.5], 2, 1, None, false).is_err());
        assert!(MarkovChain::new(&[0.5, 0.6, 0.5, 0.5], 2, 1, None, true).is_ok());
        assert!(MarkovChain::new(&[f64::NAN, 1.0, 0.5, 0.5], 2, 1, None, true).is_err());
        assert!(MarkovChain::new(&[-0.1, 1.1, 0.5, 0.5], 2, 1, None, false).is_err());
        let c = MarkovChain::new(&[0.5, 0.5, 0.5, 0.5], 2, 1, None, false).unwrap();
        let mut o = [0.0];
        assert!(c.log_prob(&[0u8, 2], 2, &mut o).is_err());
        assert!(c.log_prob(&[0i64, -1], 2, &mut o).is_err());
    }

    #[test]
    fn zero_probability_transition_is_neg_inf() {
        let c = MarkovChain::new(&[0.0, 1.0, 1.0, 0.0], 2, 1, None, false).unwrap();
        let mut o = [0.0];
        c.log_prob(&[0u8, 0], 2, &mut o).unwrap();
        assert_eq!(o[0], f64::NEG_INFINITY);
        c.log_prob(&[0u8, 1, 0], 3, &mut o).unwrap();
        assert!((o[0] - 0.5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn tuned_temperature_hits_target() {
        let v = 16;
        let mut r = Xoshiro256pp::from_u64(2);
        let g: Vec<f64> = (0..v * v).map(|_| r.next_f64() * 4.0).collect();
        for target in [0.3, 1.0, 2.5] {
            let (_, probs, h) = tune_temperature(&g, v, 1, target, 1e-9).unwrap();
            assert!((h - target).abs() < 1e-9);
            let c = MarkovChain::new(&probs, v, 1, None, false).unwrap();
            assert!((c.entropy_rate() - target).abs() < 1e-8);
        }
    }
}
