//! Hashed bag-of-n-grams over many examples (DSIR, Xie et al. 2023;
//! docs/math.md, "DSIR"): per-example sparse counts, summed bucket counts
//! (the fitted models), and log importance weights accumulated inside the
//! featuriser pass, without a feature matrix.
//!
//! An example is either a text (tokenised by `tokenize`) or a row of token
//! ids. Every n-gram of 1..=`ngrams` consecutive tokens counts once. Each
//! example is processed by one thread from its own content alone, so every
//! result is the same for any thread count and any chunking of the input.

use super::hash::{self, HashKind};
use super::tokenize::for_each_token;
use crate::error::{Error, Result};
use crate::tokens::InToken;
use rayon::prelude::*;
use std::collections::VecDeque;
use std::io::Write;

/// The largest n-gram order accepted.
pub const MAX_NGRAMS: usize = 32;
/// The largest number of buckets accepted (counts are dense per bucket).
pub const MAX_BUCKETS: u64 = 1 << 32;

/// What is hashed and how.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub num_buckets: u64,
    pub ngrams: usize,
    pub hash: HashKind,
    pub lowercase: bool,
}

impl Spec {
    pub fn check(&self) -> Result<()> {
        if self.num_buckets == 0 || self.num_buckets > MAX_BUCKETS {
            return Err(Error::value(format!(
                "num_buckets must lie in [1, {MAX_BUCKETS}], got {}",
                self.num_buckets
            )));
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

/// Per-thread scratch: the current token and the previous `ngrams − 1`
/// tokens (their hashes, or their bytes for sha256).
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    hashes: VecDeque<u64>,
    words: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    digits: Vec<u8>,
}

impl Scratch {
    fn reset(&mut self) {
        self.hashes.clear();
        while let Some(v) = self.words.pop_front() {
            self.spare.push(v);
        }
    }
}

/// Emits the buckets of every n-gram ending at the token `tok`, then makes
/// `tok` part of the history. `t` is its fast hash (unused for sha256).
#[inline(always)]
fn emit_token(
    spec: &Spec,
    tok: &[u8],
    t: u64,
    hashes: &mut VecDeque<u64>,
    words: &mut VecDeque<Vec<u8>>,
    spare: &mut Vec<Vec<u8>>,
    sink: &mut impl FnMut(usize),
) {
    let m = spec.num_buckets;
    let keep = spec.ngrams - 1;
    match spec.hash {
        HashKind::Fast => {
            sink(hash::fast_bucket(t, m));
            let mut g = t;
            for &p in hashes.iter().rev() {
                g = hash::extend_left(g, p);
                sink(hash::fast_bucket(g, m));
            }
            if keep > 0 {
                if hashes.len() == keep {
                    hashes.pop_front();
                }
                hashes.push_back(t);
            }
        }
        HashKind::Sha256 => {
            sink(hash::sha256_bucket(std::iter::once(tok), m));
            let h = words.len();
            for k in 1..=h {
                let parts = words.iter().skip(h - k).map(|v| v.as_slice()).chain(std::iter::once(tok));
                sink(hash::sha256_bucket(parts, m));
            }
            if keep > 0 {
                let mut v = if words.len() == keep { words.pop_front() } else { spare.pop() }.unwrap_or_default();
                v.clear();
                v.extend_from_slice(tok);
                words.push_back(v);
            }
        }
    }
}

/// Calls `sink(bucket)` for every n-gram of `text`; returns its number of tokens.
pub fn text_buckets(text: &str, spec: &Spec, s: &mut Scratch, mut sink: impl FnMut(usize)) -> usize {
    s.reset();
    let Scratch { buf, hashes, words, spare, .. } = s;
    let fast = spec.hash == HashKind::Fast;
    for_each_token(text, spec.lowercase, buf, |tok| {
        let t = if fast { hash::fast_token(tok) } else { 0 };
        emit_token(spec, tok, t, hashes, words, spare, &mut sink);
    })
}

/// Calls `sink(bucket)` for every n-gram of a row of token ids (sha256 mode
/// hashes their decimal strings, so it equals the text mode on the ids
/// written out with single spaces); returns the row's length.
pub fn id_buckets<T: InToken>(row: &[T], spec: &Spec, s: &mut Scratch, mut sink: impl FnMut(usize)) -> usize {
    s.reset();
    let Scratch { hashes, words, spare, digits, .. } = s;
    for &x in row {
        match spec.hash {
            HashKind::Fast => emit_token(spec, &[], hash::fast_id(x.index()), hashes, words, spare, &mut sink),
            HashKind::Sha256 => {
                digits.clear();
                // Writing into a Vec cannot fail.
                let _ = write!(digits, "{x}");
                emit_token(spec, digits, 0, hashes, words, spare, &mut sink);
            }
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
}

impl<T: InToken> Examples for Ids<'_, T> {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    fn buckets(&self, i: usize, spec: &Spec, s: &mut Scratch, sink: impl FnMut(usize)) -> usize {
        let row = &self.flat[self.offsets[i] as usize..self.offsets[i + 1] as usize];
        id_buckets(row, spec, s, sink)
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
/// before normalisation), and the total number of n-grams.
pub fn counts<E: Examples>(ex: &E, spec: &Spec) -> Result<Vec<i64>> {
    spec.check()?;
    let m = spec.num_buckets as usize;
    let n = ex.len();
    // Integer sums are exact: the chunking (which follows the pool size)
    // cannot change the result.
    let chunks = (rayon::current_num_threads() * 4).clamp(1, n.max(1));
    let size = n.div_ceil(chunks).max(1);
    let parts: Vec<Result<Vec<i64>>> = (0..n.div_ceil(size))
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
    let mut total: Vec<i64> = crate::alloc::zeros(m, "the bucket counts")?;
    for p in parts {
        for (t, v) in total.iter_mut().zip(p?) {
            *t += v;
        }
    }
    Ok(total)
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
        Spec { num_buckets: 10_000, ngrams, hash, lowercase: true }
    }

    #[test]
    fn reference_buckets_of_a_text() {
        let mut s = Scratch::default();
        let mut got = Vec::new();
        let w = text_buckets("Alice went", &spec(HashKind::Sha256, 2), &mut s, |k| got.push(k));
        assert_eq!(w, 2);
        got.sort();
        let mut want = vec![
            6720,
            114,
            hash::sha256_bucket(std::iter::once(b"went".as_slice()), 10_000),
        ];
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
                let sp = Spec { num_buckets: 97, ngrams: n, hash, lowercase: true };
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
                    let dot: f64 = f.indices[r.clone()].iter().zip(&f.data[r]).map(|(k, v)| lr[*k as usize] * *v as f64).sum();
                    assert!((dot - w[i]).abs() < 1e-9, "{dot} vs {}", w[i]);
                }
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
