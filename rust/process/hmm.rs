//! Hidden Markov models with categorical emissions.
//!
//! A hidden state path s_0, s_1, ... follows the Markov chain with transition
//! matrix `A` [S, S] started from `init` [S] (the stationary law of `A` unless
//! one is given), and token x_t is drawn from emission row `E[s_t, ·]` [S, V].
//!
//! Sampling costs two alias-table draws a token (one transition, one
//! emission; Vose 1991, see `alias.rs`), with the per-sequence streams of
//! `rng.rs`, so the output is bit-identical for any thread count or sharding.
//!
//! Scoring uses the scaled forward algorithm (Rabiner 1989, "A tutorial on
//! hidden Markov models and selected applications in speech recognition",
//! Proc. IEEE 77(2), §V.A). With the filter α_{t-1}(i) = p(s_{t-1} = i | x_<t)
//! normalised to sum 1:
//!
//! ```text
//! predicted state law   π_t(j) = Σ_i α_{t-1}(i) A[i, j]         (π_0 = init)
//! conditional           c_t    = p(x_t | x_<t) = Σ_j π_t(j) E[j, x_t]
//! filter                α_t(j) = π_t(j) E[j, x_t] / c_t
//! log p(x)                     = Σ_t log c_t
//! predictive            p(x_t = v | x_<t) = Σ_j π_t(j) E[j, v]
//! ```
//!
//! Because α stays normalised nothing underflows however long the sequence.
//! A token of conditional probability 0 (c_t = 0) gets log-probability -inf,
//! and so does the whole sequence; the filter then skips that observation
//! (α_t = π_t, as if the token were missing), so later positions keep finite,
//! well-defined conditionals and predictive rows still sum to 1. No NaN is
//! ever produced.
//!
//! Memory layout for speed: the transition matrix is padded to a multiple of
//! [`LANES`] columns and stored in column panels (see `panel_offset`), and
//! the emission matrix is stored by column (one padded row per token). A
//! step is then S axpys π += α_i A[i, ·] into blocks of accumulators that
//! stay in registers, one contiguous read of the emission column and one
//! normalisation, with no allocation. [`GROUP`] sequences are stepped in
//! lockstep so that every loaded block of A serves all of them. Every entry
//! is summed in the same order whatever the grouping, all reductions use a
//! fixed lane order and no fused multiply-adds, so single rows, groups, the
//! AVX2 path (chosen at run time) and the portable path all give
//! bit-identical results.

use crate::alias;
use crate::alloc::zeros;
use crate::error::{Error, Result};
use crate::process::law::{initial_law, normalise_rows, stationary_iterations, MAX_TABLE_ENTRIES, STATIONARY_TOL};
use crate::rng::Xoshiro256pp;
use crate::stats::entropy::entropy_varentropy;
use crate::stats::stationary::stationary;
use crate::tokens::{checked_index, InToken, OutToken};
use rayon::prelude::*;

/// Padding granularity of the state dimension and width of the reductions.
pub const LANES: usize = 4;
/// Sequences run through the forward pass in lockstep, so that each block of
/// the transition matrix is loaded once for all of them (this hides the
/// latency of the recursion for small S and the cache traffic for large S).
pub const GROUP: usize = 4;

/// Checks the sizes of an HMM with `n_states` hidden states and `vocab`
/// tokens before anything of that size is allocated.
pub fn check_sizes(n_states: usize, vocab: usize) -> Result<()> {
    if n_states == 0 {
        return Err(Error::value(
            "transition must have at least one hidden state (shape (num_states, num_states) with num_states >= 1)",
        ));
    }
    if vocab == 0 {
        return Err(Error::value("emission must have at least one column: vocab_size must be at least 1"));
    }
    if n_states > u32::MAX as usize {
        return Err(Error::value(format!("num_states {n_states} exceeds 2^32 - 1")));
    }
    if vocab > u32::MAX as usize {
        return Err(Error::value(format!("vocab_size {vocab} exceeds 2^32 - 1")));
    }
    let padded = n_states.div_ceil(LANES) * LANES;
    if n_states.checked_mul(padded).is_none_or(|e| e > MAX_TABLE_ENTRIES) {
        return Err(Error::value(format!(
            "transition too large: num_states^2 = {n_states}^2 exceeds {MAX_TABLE_ENTRIES} table entries"
        )));
    }
    if vocab.checked_mul(padded).is_none_or(|e| e > MAX_TABLE_ENTRIES) {
        return Err(Error::value(format!(
            "emission too large: num_states * vocab_size = {n_states} * {vocab} exceeds {MAX_TABLE_ENTRIES} table entries"
        )));
    }
    Ok(())
}

/// An HMM with everything needed to sample in O(1) a token and to run the
/// scaled forward algorithm in O(S^2) a token.
#[derive(Debug, Clone)]
pub struct Hmm {
    n_states: usize,
    vocab: usize,
    /// `n_states` rounded up to a multiple of [`LANES`].
    sp: usize,
    /// Row-normalised transition [S, S], emission [S, V], initial law [S].
    trans: Vec<f64>,
    emis: Vec<f64>,
    init: Vec<f64>,
    stationary: Vec<f64>,
    /// Transition rows padded with zeros to [S, sp], in panel layout
    /// (see [`panel_offset`]).
    trans_pad: Vec<f64>,
    /// Emission columns padded with zeros: `emis_col[x * sp + j] = E[j, x]`.
    emis_col: Vec<f64>,
    /// Initial law padded to sp.
    init_pad: Vec<f64>,
    trans_table: Vec<u64>,
    emis_table: Vec<u64>,
    init_table: Vec<u64>,
    /// Whether the forward pass uses the AVX2 code path.
    simd: bool,
}

/// Per-thread work space of the forward pass.
pub struct Scratch {
    alpha: Vec<f64>,
    pred: Vec<f64>,
    /// Predictive token law [V] (only for predictive / path statistics).
    tok: Vec<f64>,
}

impl Hmm {
    /// Builds an HMM from row-major `transition` [S, S], `emission` [S, V]
    /// and an optional `initial` law [S]. Rows must be probability vectors
    /// (summing to 1 within `ROW_SUM_TOL` unless `normalize`).
    pub fn new(
        transition: &[f64],
        emission: &[f64],
        n_states: usize,
        vocab: usize,
        initial: Option<&[f64]>,
        normalize: bool,
    ) -> Result<Self> {
        check_sizes(n_states, vocab)?;
        if transition.len() != n_states * n_states {
            return Err(Error::value(format!(
                "transition must have shape (num_states, num_states) = ({n_states}, {n_states}), got {} entries",
                transition.len()
            )));
        }
        if emission.len() != n_states * vocab {
            return Err(Error::value(format!(
                "emission must have shape (num_states, vocab_size) = ({n_states}, {vocab}), got {} entries",
                emission.len()
            )));
        }
        let mut trans: Vec<f64> = zeros(n_states * n_states, "the transition table")?;
        normalise_rows(transition, &mut trans, n_states, "transition", normalize)?;
        let mut emis: Vec<f64> = zeros(n_states * vocab, "the emission table")?;
        normalise_rows(emission, &mut emis, vocab, "emission", normalize)?;
        let init_given = initial_law(
            initial,
            n_states,
            &|| format!("num_states = {n_states} entries (a law over the hidden states)"),
            normalize,
        )?;
        let max_iter = stationary_iterations(n_states * n_states);
        let stationary = stationary(&trans, n_states, 1, init_given.as_deref(), STATIONARY_TOL, max_iter)?;
        let init = init_given.unwrap_or_else(|| stationary.clone());
        Self::assemble(trans, emis, init, stationary, n_states, vocab)
    }

    fn assemble(
        trans: Vec<f64>,
        emis: Vec<f64>,
        init: Vec<f64>,
        stationary: Vec<f64>,
        n_states: usize,
        vocab: usize,
    ) -> Result<Self> {
        let s = n_states;
        let sp = s.div_ceil(LANES) * LANES;
        let mut trans_pad: Vec<f64> = zeros(s * sp, "the padded transition table")?;
        for i in 0..s {
            for j in 0..s {
                trans_pad[panel_offset(i, j, s, sp)] = trans[i * s + j];
            }
        }
        let mut emis_col: Vec<f64> = zeros(vocab * sp, "the emission columns")?;
        emis_col.par_chunks_mut(sp).enumerate().for_each(|(x, o)| {
            for (j, oj) in o[..s].iter_mut().enumerate() {
                *oj = emis[j * vocab + x];
            }
        });
        let mut init_pad = vec![0.0; sp];
        init_pad[..s].copy_from_slice(&init);
        let mut trans_table: Vec<u64> = zeros(s * s, "the transition alias tables")?;
        trans_table.par_chunks_mut(s).zip(trans.par_chunks(s)).for_each(|(t, p)| alias::build(p, t));
        let mut emis_table: Vec<u64> = zeros(s * vocab, "the emission alias tables")?;
        emis_table.par_chunks_mut(vocab).zip(emis.par_chunks(vocab)).for_each(|(t, p)| alias::build(p, t));
        let mut init_table = vec![0u64; s];
        alias::build(&init, &mut init_table);
        Ok(Hmm {
            n_states,
            vocab,
            sp,
            trans,
            emis,
            init,
            stationary,
            trans_pad,
            emis_col,
            init_pad,
            trans_table,
            emis_table,
            init_table,
            simd: simd_available(),
        })
    }

    pub fn num_states(&self) -> usize {
        self.n_states
    }
    pub fn vocab(&self) -> usize {
        self.vocab
    }
    pub fn transition(&self) -> &[f64] {
        &self.trans
    }
    pub fn emission(&self) -> &[f64] {
        &self.emis
    }
    pub fn initial(&self) -> &[f64] {
        &self.init
    }
    pub fn stationary(&self) -> &[f64] {
        &self.stationary
    }
    /// Whether the forward pass runs the AVX2 code path.
    pub fn simd(&self) -> bool {
        self.simd
    }
    /// Turns the AVX2 path off (or back on where available); the results are
    /// bit-identical either way. For tests and benchmarks.
    pub fn set_simd(&mut self, on: bool) {
        self.simd = on && simd_available();
    }

    // ------------------------------------------------------------ sampling

    /// Writes `out.len() / length` sequences of `length` tokens (and, when
    /// `states` is given, their hidden paths, same shape), sequence i drawn
    /// from stream `(seed, start + i)`. The tokens do not depend on whether
    /// the states are returned.
    pub fn sample_into<T: OutToken, U: OutToken>(
        &self,
        out: &mut [T],
        states: Option<&mut [U]>,
        length: usize,
        seed: u64,
        start: u64,
    ) {
        self.sample_rows(out, states, length, seed, |i| start.wrapping_add(i as u64));
    }

    /// Like [`Self::sample_into`], with row r drawn from stream `(seed, index(r))`
    /// (what composite probes build on).
    pub fn sample_rows<T: OutToken, U: OutToken>(
        &self,
        out: &mut [T],
        states: Option<&mut [U]>,
        length: usize,
        seed: u64,
        index: impl Fn(usize) -> u64 + Sync,
    ) {
        if length == 0 {
            return;
        }
        let rng_of = |i: usize| Xoshiro256pp::for_sequence(seed, index(i));
        match states {
            None => out.par_chunks_mut(length).enumerate().for_each(|(i, row)| {
                self.sample_row::<T, U, false>(row, &mut [], &mut rng_of(i));
            }),
            Some(st) => {
                out.par_chunks_mut(length).zip(st.par_chunks_mut(length)).enumerate().for_each(|(i, (row, srow))| {
                    self.sample_row::<T, U, true>(row, srow, &mut rng_of(i));
                })
            }
        }
    }

    #[inline(always)]
    fn sample_row<T: OutToken, U: OutToken, const WITH_STATES: bool>(
        &self,
        row: &mut [T],
        srow: &mut [U],
        rng: &mut Xoshiro256pp,
    ) {
        let (ns, v) = (self.n_states, self.vocab);
        let mut s = alias::draw(&self.init_table, rng) as usize;
        for (t, x) in row.iter_mut().enumerate() {
            if t > 0 {
                s = alias::draw(&self.trans_table[s * ns..s * ns + ns], rng) as usize;
            }
            *x = T::from_u32(alias::draw(&self.emis_table[s * v..s * v + v], rng));
            if WITH_STATES {
                srow[t] = U::from_u32(s as u32);
            }
        }
    }

    // ------------------------------------------------------------ forward

    pub fn scratch(&self) -> Scratch {
        Scratch { alpha: vec![0.0; GROUP * self.sp], pred: vec![0.0; GROUP * self.sp], tok: vec![0.0; self.vocab] }
    }

    #[inline]
    fn check<T: InToken>(&self, x: T, i: usize, t: usize) -> Result<usize> {
        checked_index(x, self.vocab, i, t)
    }

    /// Runs the scaled forward recursion along each of the `rows.len() /
    /// length` (at most [`GROUP`]) rows of `rows`, which are rows `i0, i0 + 1,
    /// ...` of the input (for error messages), calling `step(r, t, c_t, π_t,
    /// α_t)` after token t of row r with the conditional probability
    /// c_t = p(x_t | x_<t), the predicted state law π_t = p(s_t | x_<t) and
    /// the filter α_t = p(s_t | x_≤t) (both padded to a multiple of [`LANES`]
    /// with zeros). A full group is run in lockstep; every row's arithmetic is
    /// the same either way, so the results do not depend on the grouping.
    #[inline]
    pub fn forward_rows<T: InToken, F: FnMut(usize, usize, f64, &[f64], &[f64])>(
        &self,
        rows: &[T],
        length: usize,
        i0: usize,
        sc: &mut Scratch,
        mut step: F,
    ) -> Result<()> {
        if length == 0 {
            return Ok(());
        }
        let k = rows.len() / length;
        if k == GROUP {
            let src = Given { hmm: self, rows, length, i0 };
            return self.dispatch::<_, F, GROUP>(src, length, sc, step);
        }
        for r in 0..k {
            let src = Given { hmm: self, rows: &rows[r * length..(r + 1) * length], length, i0: i0 + r };
            self.dispatch::<_, _, 1>(src, length, sc, |_, t, c, p, a| step(r, t, c, p, a))?;
        }
        Ok(())
    }

    #[inline(always)]
    fn dispatch<Src: TokenSource, F: FnMut(usize, usize, f64, &[f64], &[f64]), const G: usize>(
        &self,
        src: Src,
        length: usize,
        sc: &mut Scratch,
        step: F,
    ) -> Result<()> {
        #[cfg(target_arch = "x86_64")]
        if self.simd {
            // SAFETY: `simd` is only true when the CPU supports AVX2.
            return unsafe { self.forward_avx2::<Src, F, G>(src, length, sc, step) };
        }
        self.forward_impl::<Src, F, G>(src, length, sc, step)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_avx2<Src: TokenSource, F: FnMut(usize, usize, f64, &[f64], &[f64]), const G: usize>(
        &self,
        src: Src,
        length: usize,
        sc: &mut Scratch,
        step: F,
    ) -> Result<()> {
        self.forward_impl::<Src, F, G>(src, length, sc, step)
    }

    /// The forward recursion over `length` tokens of G rows read from `src`.
    #[inline(always)]
    fn forward_impl<Src: TokenSource, F: FnMut(usize, usize, f64, &[f64], &[f64]), const G: usize>(
        &self,
        mut src: Src,
        length: usize,
        sc: &mut Scratch,
        mut step: F,
    ) -> Result<()> {
        let (s, sp) = (self.n_states, self.sp);
        let alpha = &mut sc.alpha[..G * sp];
        let pred = &mut sc.pred[..G * sp];
        for p in pred.chunks_exact_mut(sp) {
            p.copy_from_slice(&self.init_pad);
        }
        for t in 0..length {
            let mut xs = [0usize; G];
            for (g, x) in xs.iter_mut().enumerate() {
                *x = src.token(g, t)?;
            }
            if t > 0 {
                propagate::<G>(alpha, &self.trans_pad, s, sp, pred);
            }
            for (g, &x) in xs.iter().enumerate() {
                let a = &mut alpha[g * sp..(g + 1) * sp];
                let p = &pred[g * sp..(g + 1) * sp];
                let b = &self.emis_col[x * sp..(x + 1) * sp];
                // c = Σ π ⊙ b, then α = (π ⊙ b) / c; the products are formed
                // twice rather than stored and reloaded (elementwise, so the
                // bits are the same, and the loops vectorise).
                let c = emission_sum(p, b);
                if c > 1e-300 {
                    let inv = 1.0 / c;
                    for ((av, &pv), &bv) in a.iter_mut().zip(p).zip(b) {
                        *av = (pv * bv) * inv;
                    }
                } else if c > 0.0 {
                    // 1/c would overflow; divide instead (every product is <= c).
                    for ((av, &pv), &bv) in a.iter_mut().zip(p).zip(b) {
                        *av = (pv * bv) / c;
                    }
                } else {
                    // Impossible observation: skip it (see the module docs).
                    a.copy_from_slice(p);
                }
                step(g, t, c, p, a);
            }
        }
        Ok(())
    }

    /// The predictive token law Σ_j π(j) E[j, ·] of the padded state law π.
    #[inline]
    fn token_law(&self, pred: &[f64], out: &mut [f64]) {
        let v = self.vocab;
        out.iter_mut().for_each(|o| *o = 0.0);
        for (j, &pj) in pred[..self.n_states].iter().enumerate() {
            if pj != 0.0 {
                for (o, &e) in out.iter_mut().zip(&self.emis[j * v..(j + 1) * v]) {
                    *o += pj * e;
                }
            }
        }
    }

    /// Runs `f(rows, i0, scratch, out)` over groups of up to [`GROUP`] rows of
    /// `tokens` in parallel; `out` holds `per_row` outputs per sequence.
    fn par_groups<T: InToken, F>(
        &self,
        tokens: &[T],
        length: usize,
        out: &mut [f64],
        per_row: usize,
        f: F,
    ) -> Result<()>
    where
        F: Fn(&[T], usize, &mut Scratch, &mut [f64]) -> Result<()> + Sync + Send,
    {
        if length == 0 || per_row == 0 {
            return Ok(());
        }
        tokens
            .par_chunks(GROUP * length)
            .zip(out.par_chunks_mut(GROUP * per_row))
            .enumerate()
            .try_for_each_init(|| self.scratch(), |sc, (k, (rows, o))| f(rows, k * GROUP, sc, o))
    }

    /// log p(x) of each row of `rows` into `out`.
    #[inline]
    fn group_log_prob<T: InToken>(
        &self,
        rows: &[T],
        length: usize,
        i0: usize,
        sc: &mut Scratch,
        out: &mut [f64],
    ) -> Result<()> {
        let mut acc = [LogSum::new(); GROUP];
        self.forward_rows(rows, length, i0, sc, |r, _, c, _, _| acc[r].add(c))?;
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = a.value();
        }
        Ok(())
    }

    /// Exact log p(x) of each of the `tokens.len() / length` rows (nats).
    pub fn log_prob<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        if length == 0 {
            out.iter_mut().for_each(|o| *o = 0.0);
            return Ok(());
        }
        self.par_groups(tokens, length, out, 1, |rows, i0, sc, o| self.group_log_prob(rows, length, i0, sc, o))
    }

    /// log p(x_t | x_<t) for every position; `out` has the shape of `tokens`.
    pub fn token_log_probs<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        self.par_groups(tokens, length, out, length, |rows, i0, sc, o| {
            self.forward_rows(rows, length, i0, sc, |r, t, c, _, _| o[r * length + t] = c.ln())
        })
    }

    /// The next-token law p(x_t = · | x_<t) at every position: `out` is
    /// [N, T, V] (row t = 0 is the initial emission marginal init · E).
    pub fn predictive<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        let v = self.vocab;
        self.par_groups(tokens, length, out, length * v, |rows, i0, sc, o| {
            self.forward_rows(rows, length, i0, sc, |r, t, _, pred, _| {
                let k = r * length + t;
                self.token_law(pred, &mut o[k * v..(k + 1) * v])
            })
        })
    }

    /// The filter p(s_t = · | x_≤t) at every position: `out` is [N, T, S].
    pub fn filtered_states<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        let s = self.n_states;
        crate::process::rows_of(tokens.len(), length, out.len(), length * s)?;
        self.par_groups(tokens, length, out, length * s, |rows, i0, sc, o| {
            self.forward_rows(rows, length, i0, sc, |r, t, _, _, alpha| {
                let k = r * length + t;
                o[k * s..(k + 1) * s].copy_from_slice(&alpha[..s])
            })
        })
    }

    /// Per row, into `out` [N, 3]: [log p(x), Σ_t (-log p(x_t|x_<t) - H_t),
    /// Σ_t V_t] where H_t and V_t are the entropy and varentropy of the
    /// predictive law at t: the pieces of the path-centred z-score (math.md,
    /// Typical sets).
    pub fn path_stats<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
        out.iter_mut().for_each(|o| *o = 0.0);
        self.par_groups(tokens, length, out, 3, |rows, i0, sc, o| {
            let mut tok = std::mem::take(&mut sc.tok);
            let r = self.forward_rows(rows, length, i0, sc, |r, _, c, pred, _| {
                self.token_law(pred, &mut tok);
                let (h, vv) = entropy_varentropy(&tok);
                let l = c.ln();
                o[3 * r] += l;
                o[3 * r + 1] += -l - h;
                o[3 * r + 2] += vv;
            });
            sc.tok = tok;
            r
        })
    }

    /// Shannon–McMillan–Breiman samples: for each of the `out.len()` sequences
    /// `start + i` of the sample for `seed` (the very sequences `sample_into`
    /// returns), `-(1/(length - burn_in)) Σ_{t >= burn_in} log p(x_t | x_<t)`.
    /// Tokens are drawn as the forward pass consumes them and never stored,
    /// so memory is O(S) a thread whatever `length` is.
    pub fn sampled_surprisal(
        &self,
        length: usize,
        burn_in: usize,
        seed: u64,
        start: u64,
        out: &mut [f64],
    ) -> Result<()> {
        if burn_in >= length {
            return Err(Error::value(format!(
                "burn_in must be smaller than length, got burn_in={burn_in} and length={length}"
            )));
        }
        let denom = (length - burn_in) as f64;
        let rng_of = |i: usize| Xoshiro256pp::for_sequence(seed, start.wrapping_add(i as u64));
        out.par_chunks_mut(GROUP).enumerate().try_for_each_init(
            || self.scratch(),
            |sc, (k, o)| {
                let i0 = k * GROUP;
                if o.len() == GROUP {
                    let src =
                        Drawn::<GROUP> { hmm: self, rng: std::array::from_fn(|g| rng_of(i0 + g)), state: [0; GROUP] };
                    let mut acc = [LogSum::new(); GROUP];
                    self.dispatch::<_, _, GROUP>(src, length, sc, |g, t, c, _, _| {
                        if t >= burn_in {
                            acc[g].add(c)
                        }
                    })?;
                    for (ov, a) in o.iter_mut().zip(&acc) {
                        *ov = -a.value() / denom;
                    }
                } else {
                    for (r, ov) in o.iter_mut().enumerate() {
                        let src = Drawn::<1> { hmm: self, rng: [rng_of(i0 + r)], state: [0] };
                        let mut acc = LogSum::new();
                        self.dispatch::<_, _, 1>(src, length, sc, |_, t, c, _, _| {
                            if t >= burn_in {
                                acc.add(c)
                            }
                        })?;
                        *ov = -acc.value() / denom;
                    }
                }
                Ok(())
            },
        )
    }
}

/// Where the forward pass reads token t of row g of its group.
trait TokenSource {
    fn token(&mut self, g: usize, t: usize) -> Result<usize>;
}

/// Tokens from user data (rows `i0 ..` of the input), validated.
struct Given<'a, T> {
    hmm: &'a Hmm,
    rows: &'a [T],
    length: usize,
    i0: usize,
}

impl<T: InToken> TokenSource for Given<'_, T> {
    #[inline(always)]
    fn token(&mut self, g: usize, t: usize) -> Result<usize> {
        self.hmm.check(self.rows[g * self.length + t], self.i0 + g, t)
    }
}

/// Tokens drawn on demand, with exactly the draws of `Hmm::sample_row` (so
/// row g is the sequence `sample_into` writes for its stream).
struct Drawn<'a, const G: usize> {
    hmm: &'a Hmm,
    rng: [Xoshiro256pp; G],
    state: [usize; G],
}

impl<const G: usize> TokenSource for Drawn<'_, G> {
    #[inline(always)]
    fn token(&mut self, g: usize, t: usize) -> Result<usize> {
        let h = self.hmm;
        let (ns, v) = (h.n_states, h.vocab);
        let rng = &mut self.rng[g];
        let s = if t == 0 {
            alias::draw(&h.init_table, rng) as usize
        } else {
            let prev = self.state[g];
            alias::draw(&h.trans_table[prev * ns..prev * ns + ns], rng) as usize
        };
        self.state[g] = s;
        Ok(alias::draw(&h.emis_table[s * v..s * v + v], rng) as usize)
    }
}

/// Σ log c_t without a logarithm per token: conditionals are multiplied into
/// a running product whose logarithm is taken only when it gets small.
#[derive(Clone, Copy)]
struct LogSum {
    lp: f64,
    prod: f64,
    impossible: bool,
}

impl LogSum {
    fn new() -> Self {
        LogSum { lp: 0.0, prod: 1.0, impossible: false }
    }
    #[inline(always)]
    fn add(&mut self, c: f64) {
        if c >= 1e-100 {
            self.prod *= c;
            if self.prod < 1e-200 {
                self.lp += self.prod.ln();
                self.prod = 1.0;
            }
        } else if c > 0.0 {
            self.lp += c.ln();
        } else {
            self.impossible = true;
        }
    }
    fn value(&self) -> f64 {
        if self.impossible {
            f64::NEG_INFINITY
        } else {
            self.lp + self.prod.ln()
        }
    }
}

/// Whether the CPU can run the AVX2 forward pass.
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Width of the column panels the transition matrix is stored in.
const PANEL: usize = 8;

/// Offset of entry (i, j) of the padded [S, sp] matrix in panel layout:
/// columns are cut into panels of [`PANEL`] (the last one possibly
/// [`LANES`]) columns, each stored row after row, so that a block of columns
/// is read as one contiguous stream (no cache-set conflicts from a large row
/// stride).
#[inline]
fn panel_offset(i: usize, j: usize, s: usize, sp: usize) -> usize {
    let k = j / PANEL;
    let w = PANEL.min(sp - k * PANEL);
    k * PANEL * s + i * w + j % PANEL
}

/// π_g = α_g A for the G padded filters in `alpha` ([G, sp]) and the
/// transition matrix in panel layout, into `out` ([G, sp]). Blocks of
/// columns are accumulated over the S rows in registers; each loaded block of
/// the matrix is used by all G rows. Every output entry is the sum over i in
/// increasing order whatever G and the blocking are.
#[inline(always)]
fn propagate<const G: usize>(alpha: &[f64], panels: &[f64], s: usize, sp: usize, out: &mut [f64]) {
    let mut jb = 0;
    if G == 1 {
        while jb + 4 * PANEL <= sp {
            block::<G, 4, PANEL>(alpha, panels, s, sp, jb, out);
            jb += 4 * PANEL;
        }
        if jb + 2 * PANEL <= sp {
            block::<G, 2, PANEL>(alpha, panels, s, sp, jb, out);
            jb += 2 * PANEL;
        }
    }
    while jb + PANEL <= sp {
        block::<G, 1, PANEL>(alpha, panels, s, sp, jb, out);
        jb += PANEL;
    }
    if sp - jb >= LANES {
        block::<G, 1, LANES>(alpha, panels, s, sp, jb, out);
    }
}

/// `NP` consecutive panels of width `W` starting at column `jb`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // explicit indices keep the accumulators in registers
fn block<const G: usize, const NP: usize, const W: usize>(
    alpha: &[f64],
    panels: &[f64],
    s: usize,
    sp: usize,
    jb: usize,
    out: &mut [f64],
) {
    let mut acc = [[[0.0f64; W]; NP]; G];
    let base = (jb / PANEL) * PANEL * s;
    let src: [&[f64]; NP] = std::array::from_fn(|p| &panels[base + p * W * s..base + (p + 1) * W * s]);
    let al: [&[f64]; G] = std::array::from_fn(|g| &alpha[g * sp..g * sp + s]);
    for i in 0..s {
        for p in 0..NP {
            let row: &[f64; W] = src[p][i * W..i * W + W].try_into().expect("panel row in range");
            for g in 0..G {
                let ai = al[g][i];
                for l in 0..W {
                    acc[g][p][l] += ai * row[l];
                }
            }
        }
    }
    for g in 0..G {
        for p in 0..NP {
            let o = g * sp + jb + p * W;
            out[o..o + W].copy_from_slice(&acc[g][p]);
        }
    }
}

/// Σ_j π_j b_j, accumulated in a fixed 4-lane order.
#[inline(always)]
fn emission_sum(pred: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; LANES];
    for (p, bb) in pred.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        let p: &[f64; LANES] = p.try_into().expect("lane chunk");
        let bb: &[f64; LANES] = bb.try_into().expect("lane chunk");
        for l in 0..LANES {
            acc[l] += p[l] * bb[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_rows(rows: usize, cols: usize, seed: u64) -> Vec<f64> {
        let mut r = Xoshiro256pp::from_u64(seed);
        let mut p = vec![0.0; rows * cols];
        for row in p.chunks_mut(cols) {
            let mut tot = 0.0;
            for x in row.iter_mut() {
                *x = -r.next_f64().ln();
                tot += *x;
            }
            row.iter_mut().for_each(|x| *x /= tot);
        }
        p
    }

    fn random_hmm(s: usize, v: usize, seed: u64) -> Hmm {
        let a = random_rows(s, s, seed);
        let e = random_rows(s, v, seed + 1);
        Hmm::new(&a, &e, s, v, None, false).unwrap()
    }

    /// log p(x) by summing over all S^T hidden paths.
    fn brute_force(h: &Hmm, x: &[u8]) -> f64 {
        let (s, v) = (h.n_states, h.vocab);
        let t = x.len();
        let mut total = 0.0;
        for code in 0..s.pow(t as u32) {
            let mut path = vec![0; t];
            let mut c = code;
            for p in path.iter_mut() {
                *p = c % s;
                c /= s;
            }
            let mut p = h.init[path[0]] * h.emis[path[0] * v + x[0] as usize];
            for k in 1..t {
                p *= h.trans[path[k - 1] * s + path[k]] * h.emis[path[k] * v + x[k] as usize];
            }
            total += p;
        }
        total.ln()
    }

    #[test]
    fn forward_matches_brute_force() {
        for (s, v, seed) in [(1usize, 3usize, 1u64), (2, 2, 2), (3, 4, 3), (5, 2, 4), (6, 3, 5)] {
            let h = random_hmm(s, v, seed);
            let mut r = Xoshiro256pp::from_u64(seed);
            let x: Vec<u8> = (0..5).map(|_| (r.next_u64() % v as u64) as u8).collect();
            let mut lp = [0.0];
            h.log_prob(&x, x.len(), &mut lp).unwrap();
            let want = brute_force(&h, &x);
            assert!((lp[0] - want).abs() < 1e-12 * want.abs().max(1.0), "s={s}: {} vs {want}", lp[0]);
            let mut tl = vec![0.0; x.len()];
            h.token_log_probs(&x, x.len(), &mut tl).unwrap();
            assert!((tl.iter().sum::<f64>() - want).abs() < 1e-12 * want.abs().max(1.0));
        }
    }

    #[test]
    fn simd_and_portable_paths_are_bit_identical() {
        for s in [1usize, 3, 4, 7, 16, 37, 64, 100] {
            let mut h = random_hmm(s, 11, s as u64);
            let mut x = vec![0u8; 8 * 300];
            h.sample_into::<u8, u8>(&mut x, None, 300, 5, 0);
            let mut a = vec![0.0; 8];
            let mut ta = vec![0.0; x.len()];
            h.log_prob(&x, 300, &mut a).unwrap();
            h.token_log_probs(&x, 300, &mut ta).unwrap();
            h.set_simd(false);
            let mut b = vec![0.0; 8];
            let mut tb = vec![0.0; x.len()];
            h.log_prob(&x, 300, &mut b).unwrap();
            h.token_log_probs(&x, 300, &mut tb).unwrap();
            assert_eq!(a, b);
            assert_eq!(ta, tb);
            // grouping: each row alone (no lockstep group) gives the same bits
            h.set_simd(true);
            for (i, row) in x.chunks(300).enumerate() {
                let mut one = [0.0];
                h.log_prob(row, 300, &mut one).unwrap();
                assert_eq!(one[0], a[i]);
            }
        }
    }

    #[test]
    fn emission_and_transition_frequencies_match() {
        let (s, v) = (3, 4);
        let h = random_hmm(s, v, 7);
        let (n, len) = (200, 1000);
        let mut x = vec![0u8; n * len];
        let mut z = vec![0u8; n * len];
        h.sample_into(&mut x, Some(&mut z), len, 1, 0);
        let mut emit_c = vec![0f64; s * v];
        let mut trans_c = vec![0f64; s * s];
        for (xr, zr) in x.chunks(len).zip(z.chunks(len)) {
            for t in 0..len {
                emit_c[zr[t] as usize * v + xr[t] as usize] += 1.0;
                if t > 0 {
                    trans_c[zr[t - 1] as usize * s + zr[t] as usize] += 1.0;
                }
            }
        }
        // Pearson chi-square; dof S(V-1) = 9 (0.999 quantile 27.9) and
        // S(S-1) = 6 (0.999 quantile 22.5).
        let chi2 = |c: &[f64], p: &[f64], k: usize| -> f64 {
            let mut tot = 0.0;
            for (cr, pr) in c.chunks(k).zip(p.chunks(k)) {
                let n: f64 = cr.iter().sum();
                tot += cr.iter().zip(pr).map(|(&o, &q)| (o - n * q).powi(2) / (n * q)).sum::<f64>();
            }
            tot
        };
        assert!(chi2(&emit_c, &h.emis, v) < 27.9);
        assert!(chi2(&trans_c, &h.trans, s) < 22.5);
        // the tokens do not depend on whether the states are written
        let mut y = vec![0u8; n * len];
        h.sample_into::<u8, u8>(&mut y, None, len, 1, 0);
        assert_eq!(x, y);
    }

    #[test]
    fn sharding_is_deterministic() {
        let h = random_hmm(5, 9, 2);
        let mut all = vec![0u8; 10 * 33];
        h.sample_into::<u8, u8>(&mut all, None, 33, 99, 0);
        let mut tail = vec![0u8; 4 * 33];
        h.sample_into::<u8, u8>(&mut tail, None, 33, 99, 6);
        assert_eq!(&all[6 * 33..], &tail[..]);
    }

    #[test]
    fn impossible_tokens_are_neg_inf_and_never_nan() {
        // state 0 emits only token 0, state 1 only token 1; 0 -> 1 -> 0 deterministically
        let a = [0.0, 1.0, 1.0, 0.0];
        let e = [1.0, 0.0, 0.0, 1.0];
        let h = Hmm::new(&a, &e, 2, 2, Some(&[1.0, 0.0]), false).unwrap();
        let x = [0u8, 0, 1, 0];
        let mut lp = [0.0];
        h.log_prob(&x, 4, &mut lp).unwrap();
        assert_eq!(lp[0], f64::NEG_INFINITY);
        let mut tl = [0.0; 4];
        h.token_log_probs(&x, 4, &mut tl).unwrap();
        assert_eq!(tl[0], 0.0);
        assert_eq!(tl[1], f64::NEG_INFINITY);
        assert!(tl.iter().all(|v| !v.is_nan()));
        let mut pr = [0.0; 8];
        h.predictive(&x, 4, &mut pr).unwrap();
        for row in pr.chunks(2) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-15);
        }
        let mut ok = [0.0];
        h.log_prob(&[0u8, 1, 0, 1], 4, &mut ok).unwrap();
        assert_eq!(ok[0], 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let e = [0.5, 0.5, 0.5, 0.5];
        assert!(Hmm::new(&[0.5, 0.5, 0.5], &e, 2, 2, None, false).is_err());
        assert!(Hmm::new(&[0.5, 0.6, 0.5, 0.5], &e, 2, 2, None, false).is_err());
        assert!(Hmm::new(&[0.5, 0.5, 0.5, 0.5], &[0.5, f64::NAN, 0.5, 0.5], 2, 2, None, true).is_err());
        assert!(Hmm::new(&[0.5, 0.5, 0.5, 0.5], &e, 2, 2, Some(&[1.0]), false).is_err());
        assert!(check_sizes(0, 3).is_err());
        assert!(check_sizes(3, 0).is_err());
        assert!(check_sizes(1 << 16, 2).is_err());
        let h = Hmm::new(&[0.5, 0.5, 0.5, 0.5], &e, 2, 2, None, false).unwrap();
        let mut o = [0.0];
        assert!(h.log_prob(&[0u8, 2], 2, &mut o).is_err());
        assert!(h.log_prob(&[0i32, -1], 2, &mut o).is_err());
        assert!(h.sampled_surprisal(4, 4, 0, 0, &mut o).is_err());
    }

    #[test]
    fn sampled_surprisal_scores_the_sampled_sequences() {
        let h = random_hmm(4, 6, 9);
        let (n, len) = (6, 50);
        let mut x = vec![0u8; n * len];
        h.sample_into::<u8, u8>(&mut x, None, len, 3, 10);
        let mut lp = vec![0.0; n];
        h.log_prob(&x, len, &mut lp).unwrap();
        let mut s = vec![0.0; n];
        h.sampled_surprisal(len, 0, 3, 10, &mut s).unwrap();
        for (a, b) in lp.iter().zip(&s) {
            assert_eq!(-a / len as f64, *b); // same draws, same arithmetic
        }
    }
}
