//! Hashed bag-of-n-grams over many examples (DSIR, Xie et al. 2023;
//! docs/math.md, "DSIR"): per-example sparse counts, summed bucket counts
//! (the fitted models), and log importance weights accumulated inside the
//! featuriser pass, without a feature matrix.
//!
//! An example is either a text (tokenised by `tokenize`) or a row of token
//! ids. Every n-gram of 1..=`ngrams` consecutive tokens counts once. Each
//! example is processed by one thread from its own content alone, so every
//! result is the same for any thread count and any chunking of the input.

use super::hash::{self, HashKind, Sha256Cache};
use super::tokenize::{scan, token_states};
use super::unicode::{NltkRegex, PythonRe, WordClasses};
use crate::error::{Error, Result};
use crate::rng::mix64;
use crate::tokens::InToken;
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;

/// The largest n-gram order accepted.
pub const MAX_NGRAMS: usize = 32;
/// The largest number of buckets accepted (the summed counts are one dense
/// `i64` per bucket; the per-thread accumulators of [`counts_into`] are dense
/// only while small).
pub const MAX_BUCKETS: u64 = 1 << 32;
/// Budget of the per-thread dense accumulators of [`counts_into`]: above it,
/// each chunk collects sorted (bucket, count) runs instead.
const DENSE_ACCUMULATOR_BYTES: usize = 64 << 20;
/// Buckets a sparse chunk buffers before sorting them into its runs.
const SPARSE_BUFFER: usize = 1 << 20;

/// What is hashed and how.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub num_buckets: u64,
    pub ngrams: usize,
    pub hash: HashKind,
    pub lowercase: bool,
    /// The tokeniser's `\w` / `\s` (texts only).
    pub classes: WordClasses,
}

impl Spec {
    pub fn check(&self) -> Result<()> {
        if self.num_buckets == 0 || self.num_buckets > MAX_BUCKETS {
            return Err(Error::value(format!("num_buckets must lie in [1, {MAX_BUCKETS}], got {}", self.num_buckets)));
        }
        if self.ngrams == 0 || self.ngrams > MAX_NGRAMS {
            return Err(Error::value(format!("ngrams must lie in [1, {MAX_NGRAMS}], got {}", self.ngrams)));
        }
        Ok(())
    }

    /// The reference's example length from the number of tokens `w`:
    /// `(Σ_j h_j + n(n−1)/2) // n` with `Σ_j h_j = Σ_{i=1..n} max(w−i+1, 0)`
    /// n-grams; equal to `w` whenever `w ≥ n − 1`.
    pub fn example_length(&self, w: usize) -> u64 {
        let n = self.ngrams as u64;
        let w = w as u64;
        let total: u64 = (1..=n).map(|i| (w + 1).saturating_sub(i)).sum();
        (total + n * (n - 1) / 2) / n
    }
}

/// Per-thread scratch: the current token's bytes and the previous
/// `ngrams − 1` tokens' bytes (sha256 mode).
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    states: Vec<u64>,
    words: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    digits: Vec<u8>,
}

impl Scratch {
    fn reset(&mut self) {
        while let Some(v) = self.words.pop_front() {
            self.spare.push(v);
        }
    }
}

thread_local! {
    /// Unigram sha256 buckets of this worker thread (exact, bounded).
    static SHA256_CACHE: RefCell<Sha256Cache> = RefCell::new(Sha256Cache::default());
}

/// The fast hashes of the previous `keep` (≤ `MAX_NGRAMS` − 1) tokens, oldest first.
struct History {
    h: [u64; MAX_NGRAMS],
    len: usize,
    keep: usize,
}

impl History {
    fn new(spec: &Spec) -> Self {
        History { h: [0; MAX_NGRAMS], len: 0, keep: spec.ngrams - 1 }
    }

    /// Emits the buckets of every n-gram ending at the token of fast hash
    /// `t` (the unigram, then the bigram, …), then appends `t`.
    #[inline(always)]
    fn emit(&mut self, t: u64, m: u64, sink: &mut impl FnMut(usize)) {
        sink(hash::fast_bucket(t, m));
        let mut g = t;
        for &p in self.h[..self.len].iter().rev() {
            g = hash::extend_left(g, p);
            sink(hash::fast_bucket(g, m));
        }
        if self.len < self.keep {
            self.h[self.len] = t;
            self.len += 1;
        } else if self.keep > 0 {
            self.h.copy_within(1..self.keep, 0);
            self.h[self.keep - 1] = t;
        }
    }
}

/// Emits the fast buckets of every n-gram of the tokens of fast hashes `ts`,
/// in the order of [`History::emit`]; bigrams (the default) and unigrams
/// take a loop without the history.
#[inline(always)]
fn emit_fast(spec: &Spec, ts: impl Iterator<Item = u64>, sink: &mut impl FnMut(usize)) {
    let m = spec.num_buckets;
    match spec.ngrams {
        1 => ts.for_each(|t| sink(hash::fast_bucket(t, m))),
        2 => {
            let mut ts = ts;
            let Some(mut p) = ts.next() else { return };
            sink(hash::fast_bucket(p, m));
            for t in ts {
                sink(hash::fast_bucket(t, m));
                sink(hash::fast_bucket(hash::extend_left(t, p), m));
                p = t;
            }
        }
        _ => {
            let mut hist = History::new(spec);
            ts.for_each(|t| hist.emit(t, m, sink));
        }
    }
}

/// Emits the sha256 buckets of every n-gram ending at the token `tok` (fast
/// hash `t`, the unigram's cache key), then makes `tok` part of the history.
#[inline]
fn emit_sha256(
    spec: &Spec,
    t: u64,
    tok: &[u8],
    cache: &mut Sha256Cache,
    words: &mut VecDeque<Vec<u8>>,
    spare: &mut Vec<Vec<u8>>,
    sink: &mut impl FnMut(usize),
) {
    let m = spec.num_buckets;
    sink(cache.unigram(t, tok, m));
    let h = words.len();
    for k in 1..=h {
        let parts = words.range(h - k..).map(|v| v.as_slice()).chain(std::iter::once(tok));
        sink(hash::sha256_bucket(parts, m));
    }
    let keep = spec.ngrams - 1;
    if keep > 0 {
        let mut v = if words.len() == keep { words.pop_front() } else { spare.pop() }.unwrap_or_default();
        v.clear();
        v.extend_from_slice(tok);
        words.push_back(v);
    }
}

/// Calls `sink(bucket)` for every n-gram of `text`; returns its number of tokens.
pub fn text_buckets(text: &str, spec: &Spec, s: &mut Scratch, mut sink: impl FnMut(usize)) -> usize {
    match spec.hash {
        HashKind::Fast => {
            // One monomorphic copy of the tokeniser per class table (constant addresses).
            let w = match spec.classes {
                WordClasses::PythonRe => token_states::<PythonRe>(text, spec.lowercase, &mut s.states),
                WordClasses::NltkRegex => token_states::<NltkRegex>(text, spec.lowercase, &mut s.states),
            };
            emit_fast(spec, s.states[..w].iter().map(|&h| mix64(h)), &mut sink);
            w
        }
        HashKind::Sha256 => {
            s.reset();
            let Scratch { buf, words, spare, .. } = s;
            SHA256_CACHE.with_borrow_mut(|cache| {
                let emit = |t, tok: &[u8]| emit_sha256(spec, t, tok, cache, words, spare, &mut sink);
                match spec.classes {
                    WordClasses::PythonRe => scan::<true, PythonRe>(text, spec.lowercase, buf, emit),
                    WordClasses::NltkRegex => scan::<true, NltkRegex>(text, spec.lowercase, buf, emit),
                }
            })
        }
    }
}

/// Calls `sink(bucket)` for every n-gram of a row of token ids (sha256 mode
/// hashes their decimal strings, so it equals the text mode on the ids
/// written out with single spaces); returns the row's length.
pub fn id_buckets<T: InToken>(row: &[T], spec: &Spec, s: &mut Scratch, mut sink: impl FnMut(usize)) -> usize {
    match spec.hash {
        HashKind::Fast => emit_fast(spec, row.iter().map(|&x| hash::fast_id(x.index())), &mut sink),
        HashKind::Sha256 => {
            s.reset();
            let Scratch { words, spare, digits, .. } = s;
            SHA256_CACHE.with_borrow_mut(|cache| {
                for &x in row {
                    digits.clear();
                    // Writing into a Vec cannot fail.
                    let _ = write!(digits, "{x}");
                    let t = hash::fast_token(digits);
                    emit_sha256(spec, t, digits, cache, words, spare, &mut sink);
                }
            });
        }
    }
    row.len()
}

/// A collection of examples the drivers below run over.
pub trait Examples: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Buckets of example `i` into `sink`; returns its number of tokens.
    fn buckets(&self, i: usize, spec: &Spec, s: &mut Scratch, sink: impl FnMut(usize)) -> usize;
}

/// Texts.
pub struct Texts<'a>(pub &'a [&'a str]);

impl Examples for Texts<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn buckets(&self, i: usize, spec: &Spec, s: &mut Scratch, sink: impl FnMut(usize)) -> usize {
        text_buckets(self.0[i], spec, s, sink)
    }
}

/// Rows of token ids: row `i` is `flat[offsets[i]..offsets[i+1]]`.
pub struct Ids<'a, T> {
    flat: &'a [T],
    offsets: &'a [u64],
}

impl<'a, T: InToken> Ids<'a, T> {
    /// Checks that `offsets` starts at 0, never decreases and ends at `flat.len()`.
    pub fn new(flat: &'a [T], offsets: &'a [u64]) -> Result<Self> {
        let ok = offsets.first() == Some(&0)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.last() == Some(&(flat.len() as u64));
        if !ok {
            return Err(Error::value("offsets must start at 0, not decrease and end at the number of token ids"));
        }
        Ok(Ids { flat, offsets })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.flat[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

impl<T: InToken> Examples for Ids<'_, T> {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    fn buckets(&self, i: usize, spec: &Spec, s: &mut Scratch, sink: impl FnMut(usize)) -> usize {
        id_buckets(self.row(i), spec, s, sink)
    }
}

/// Sparse features: row `i` holds `indices[indptr[i]..indptr[i+1]]`
/// (increasing buckets) with counts `data[..]`; `lengths[i]` is the
/// reference's example length ([`Spec::example_length`]).
pub struct Csr {
    pub indptr: Vec<i64>,
    pub indices: Vec<i64>,
    pub data: Vec<i64>,
    pub lengths: Vec<u64>,
}

/// The hashed n-gram counts of every example.
pub fn features<E: Examples>(ex: &E, spec: &Spec) -> Result<Csr> {
    spec.check()?;
    let rows: Vec<(Vec<(i64, i64)>, u64)> = (0..ex.len())
        .into_par_iter()
        .map_init(
            || (Scratch::default(), Vec::<u32>::new()),
            |(s, b), i| {
                b.clear();
                let w = ex.buckets(i, spec, s, |k| b.push(k as u32));
                b.sort_unstable();
                let mut row: Vec<(i64, i64)> = Vec::new();
                for &k in b.iter() {
                    match row.last_mut() {
                        Some((last, c)) if *last == k as i64 => *c += 1,
                        _ => row.push((k as i64, 1)),
                    }
                }
                (row, spec.example_length(w))
            },
        )
        .collect();
    let nnz: usize = rows.iter().map(|r| r.0.len()).sum();
    let mut out = Csr {
        indptr: Vec::with_capacity(rows.len() + 1),
        indices: Vec::with_capacity(nnz),
        data: Vec::with_capacity(nnz),
        lengths: Vec::with_capacity(rows.len()),
    };
    out.indptr.push(0);
    for (row, len) in rows {
        for (k, c) in row {
            out.indices.push(k);
            out.data.push(c);
        }
        out.indptr.push(out.indices.len() as i64);
        out.lengths.push(len);
    }
    Ok(out)
}

/// Bucket counts summed over all examples (the fitted bag-of-n-grams model
/// before normalisation).
pub fn counts<E: Examples>(ex: &E, spec: &Spec) -> Result<Vec<i64>> {
    spec.check()?;
    let mut total: Vec<i64> = crate::alloc::zeros(spec.num_buckets as usize, "the bucket counts")?;
    counts_into(ex, spec, &mut total)?;
    Ok(total)
}

/// Adds the bucket counts summed over all examples to `total`
/// (`num_buckets` entries). Examples are cut into `4 × threads` chunks; each
/// chunk counts into a dense accumulator while all of them fit in
/// `DENSE_ACCUMULATOR_BYTES`, else into sorted (bucket, count) runs (buffered
/// buckets sorted and merged), so memory follows the n-grams seen, not
/// `threads × num_buckets`. Integer sums are exact: neither the chunking nor
/// the representation can change the result.
pub fn counts_into<E: Examples>(ex: &E, spec: &Spec, total: &mut [i64]) -> Result<()> {
    spec.check()?;
    let m = spec.num_buckets as usize;
    if total.len() != m {
        return Err(Error::value(format!("out must have num_buckets = {m} entries, got {}", total.len())));
    }
    let n = ex.len();
    if n == 0 {
        return Ok(());
    }
    let chunks = (rayon::current_num_threads() * 4).clamp(1, n);
    let size = n.div_ceil(chunks);
    let chunks = n.div_ceil(size);
    let dense = m.saturating_mul(8).saturating_mul(chunks) <= DENSE_ACCUMULATOR_BYTES;
    if dense {
        let parts: Vec<Result<Vec<i64>>> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let mut acc: Vec<i64> = crate::alloc::zeros(m, "the bucket counts")?;
                let mut s = Scratch::default();
                for i in c * size..((c + 1) * size).min(n) {
                    ex.buckets(i, spec, &mut s, |k| acc[k] += 1);
                }
                Ok(acc)
            })
            .collect();
        for p in parts {
            for (t, v) in total.iter_mut().zip(p?) {
                *t += v;
            }
        }
    } else {
        let parts: Vec<Result<Runs>> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let mut runs = Runs::default();
                let mut buf: Vec<u32> = crate::alloc::with_capacity(SPARSE_BUFFER, "the bucket buffer")?;
                let mut s = Scratch::default();
                for i in c * size..((c + 1) * size).min(n) {
                    ex.buckets(i, spec, &mut s, |k| {
                        // k < num_buckets <= 2^32
                        buf.push(k as u32);
                    });
                    if buf.len() >= SPARSE_BUFFER {
                        runs.absorb(&mut buf)?;
                    }
                }
                runs.absorb(&mut buf)?;
                Ok(runs)
            })
            .collect();
        for p in parts {
            for (k, c) in p?.0 {
                total[k as usize] += c;
            }
        }
    }
    Ok(())
}

/// Sorted, distinct (bucket, count) pairs.
#[derive(Default)]
struct Runs(Vec<(u32, i64)>);

impl Runs {
    /// Sorts the buffered buckets `buf` into runs, merges them in and clears `buf`.
    fn absorb(&mut self, buf: &mut Vec<u32>) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        buf.sort_unstable();
        let mut fresh: Vec<(u32, i64)> = Vec::new();
        for &k in buf.iter() {
            match fresh.last_mut() {
                Some((last, c)) if *last == k => *c += 1,
                _ => {
                    fresh.try_reserve(1).map_err(|_| Error::memory("not enough memory for the bucket counts"))?;
                    fresh.push((k, 1));
                }
            }
        }
        buf.clear();
        if self.0.is_empty() {
            self.0 = fresh;
            return Ok(());
        }
        let old = std::mem::take(&mut self.0);
        let mut merged: Vec<(u32, i64)> = crate::alloc::with_capacity(old.len() + fresh.len(), "the bucket counts")?;
        let (mut a, mut b) = (old.into_iter().peekable(), fresh.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&x), Some(&y)) if x.0 == y.0 => {
                    a.next();
                    b.next();
                    (x.0, x.1 + y.1)
                }
                (Some(&x), Some(&y)) => {
                    if x.0 < y.0 {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            merged.push(next);
        }
        self.0 = merged;
        Ok(())
    }
}

/// The log importance weight `Σ_j h_j · log_ratio[j]` of every example,
/// accumulated n-gram by n-gram in the featuriser pass (no feature vector);
/// examples whose [`Spec::example_length`] is below `min_length` get −∞.
pub fn log_weights<E: Examples>(ex: &E, spec: &Spec, log_ratio: &[f64], min_length: u64) -> Result<Vec<f64>> {
    spec.check()?;
    if log_ratio.len() as u64 != spec.num_buckets {
        return Err(Error::value(format!(
            "log_ratio must have num_buckets = {} entries, got {}",
            spec.num_buckets,
            log_ratio.len()
        )));
    }
    let mut out: Vec<f64> = crate::alloc::zeros(ex.len(), "the log importance weights")?;
    out.par_iter_mut().enumerate().with_min_len(16).for_each_init(Scratch::default, |s, (i, o)| {
        let mut acc = 0.0f64;
        let w = ex.buckets(i, spec, s, |k| acc += log_ratio[k]);
        *o = if spec.example_length(w) < min_length { f64::NEG_INFINITY } else { acc };
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hash: HashKind, ngrams: usize) -> Spec {
        Spec { num_buckets: 10_000, ngrams, hash, lowercase: true, classes: WordClasses::PythonRe }
    }

    #[test]
    fn reference_buckets_of_a_text() {
        let mut s = Scratch::default();
        let mut got = Vec::new();
        let w = text_buckets("Alice went", &spec(HashKind::Sha256, 2), &mut s, |k| got.push(k));
        assert_eq!(w, 2);
        got.sort();
        let mut want = vec![6720, 114, hash::sha256_bucket(std::iter::once(b"went".as_slice()), 10_000)];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn ids_in_sha256_mode_equal_their_decimal_text() {
        let ids: Vec<u32> = vec![12, 345, 6, 12, 345];
        let mut s = Scratch::default();
        for n in 1..4 {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            id_buckets(&ids, &spec(HashKind::Sha256, n), &mut s, |k| a.push(k));
            text_buckets("12 345 6 12 345", &spec(HashKind::Sha256, n), &mut s, |k| b.push(k));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn counts_sum_features_and_weights_are_dot_products() {
        let texts = ["the cat sat on the mat", "", "a b a b a", "Ünïcödé, words; and punctuation!!"];
        let ex = Texts(&texts);
        for hash in [HashKind::Fast, HashKind::Sha256] {
            for n in 1..4 {
                let sp = Spec { num_buckets: 97, ngrams: n, hash, lowercase: true, classes: WordClasses::PythonRe };
                let f = features(&ex, &sp).unwrap();
                let c = counts(&ex, &sp).unwrap();
                let mut sum = vec![0i64; 97];
                for (k, v) in f.indices.iter().zip(&f.data) {
                    sum[*k as usize] += v;
                }
                assert_eq!(sum, c);
                let lr: Vec<f64> = (0..97).map(|j| (j as f64 * 0.37).sin()).collect();
                let w = log_weights(&ex, &sp, &lr, 0).unwrap();
                for i in 0..texts.len() {
                    let r = f.indptr[i] as usize..f.indptr[i + 1] as usize;
                    let dot: f64 =
                        f.indices[r.clone()].iter().zip(&f.data[r]).map(|(k, v)| lr[*k as usize] * *v as f64).sum();
                    assert!((dot - w[i]).abs() < 1e-9, "{dot} vs {}", w[i]);
                }
            }
        }
    }

    #[test]
    fn sparse_runs_equal_dense_counts() {
        // Many buckets per chunk force the sparse path; few force the dense one.
        let texts: Vec<String> =
            (0..300).map(|i| format!("w{} x{} the cat {} sat{}", i % 17, i % 5, i * 7919 % 1000, i % 3)).collect();
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let ex = Texts(&refs);
        for m in [97u64, 1 << 24, 1 << 32] {
            let sp = Spec {
                num_buckets: m,
                ngrams: 3,
                hash: HashKind::Fast,
                lowercase: true,
                classes: WordClasses::NltkRegex,
            };
            let f = features(&ex, &sp).unwrap();
            let mut want = std::collections::BTreeMap::new();
            for (k, v) in f.indices.iter().zip(&f.data) {
                *want.entry(*k as usize).or_insert(0i64) += v;
            }
            let mut runs = Runs::default();
            let mut buf = Vec::new();
            let mut s = Scratch::default();
            for (i, _) in refs.iter().enumerate() {
                ex.buckets(i, &sp, &mut s, |k| buf.push(k as u32));
                if buf.len() > 50 {
                    runs.absorb(&mut buf).unwrap();
                }
            }
            runs.absorb(&mut buf).unwrap();
            let got: Vec<(usize, i64)> = runs.0.iter().map(|&(k, c)| (k as usize, c)).collect();
            assert_eq!(got, want.clone().into_iter().collect::<Vec<_>>());
            if m <= 1 << 24 {
                let c = counts(&ex, &sp).unwrap();
                let nz: Vec<(usize, i64)> = c.iter().enumerate().filter(|x| *x.1 != 0).map(|(k, &v)| (k, v)).collect();
                assert_eq!(nz, want.into_iter().collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn example_length_is_the_word_count_from_n_minus_one_words() {
        for n in 1..6 {
            let sp = spec(HashKind::Fast, n);
            for w in (n - 1)..50 {
                assert_eq!(sp.example_length(w), w as u64);
            }
        }
        assert_eq!(spec(HashKind::Fast, 3).example_length(0), 1);
    }

    #[test]
    fn bad_specs_and_offsets() {
        assert!(spec(HashKind::Fast, 0).check().is_err());
        assert!(Spec { num_buckets: 0, ..spec(HashKind::Fast, 2) }.check().is_err());
        let flat = [1u8, 2, 3];
        assert!(Ids::new(&flat, &[0, 2]).is_err());
        assert!(Ids::new(&flat, &[0, 2, 1, 3]).is_err());
        assert!(Ids::new(&flat, &[]).is_err());
        assert!(Ids::new(&flat, &[0, 3]).is_ok());
    }
}
