//! Overlap statistics of many token sequences, for the fast diversity
//! measures (docs/math.md, "Fast diversity measures"): distinct n-grams,
//! self-repetition, self-BLEU of every item against all the others, and the
//! mean pairwise ROUGE-L F-measure.
//!
//! Items are sequences of 64-bit token keys ([`Seqs`]): a token id as is, or
//! a text token's fast hash (`hash::fast_token`, FNV-1a-64 then `mix64`). An
//! n-gram is the chained hash of its keys ([`gram`]); for n = 1 that is a
//! bijection (exact), for n ≥ 2 two distinct n-grams collide with probability
//! 2^-64 per pair.
//!
//! Counting never compares items pairwise where it need not: distinct counts
//! go through one open-addressing set per order (the orders in parallel);
//! self-repetition and self-BLEU sort (n-gram, item) entries once; self-BLEU
//! keeps, for every distinct n-gram, its
//! largest count in any item and the runner-up, so that each item's clipped
//! matches against *all other* items are read off in one pass (linear in the
//! number of n-grams instead of quadratic in the number of items). ROUGE-L is
//! pairwise by definition: one bit-parallel LCS per pair (Crochemore et al.
//! 2001), rows spread over the process pool. Every result is independent of
//! the number of threads (integer counts; float sums in a fixed order).

use super::hash::{fast_token, fnv_step, FNV_OFFSET};
use super::tokenize;
use super::unicode::{self, ClassTable, Lower, PythonRe, ASCII_CLASS, SPACE};
use crate::alloc::{with_capacity, zeros};
use crate::error::{Error, Result};
use crate::rng::mix64;
use crate::tokens::InToken;
use rayon::prelude::*;

/// The largest n-gram order.
pub const MAX_N: usize = 64;
const PHI: u64 = 0x9E37_79B9_7F4A_7C15;
const GRAM_SEED: u64 = 0x243F_6A88_85A3_08D3;
/// Tokens per parallel work unit when rows are grouped.
const CHUNK_TOKENS: usize = 1 << 15;

/// How a text is cut into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Python's `str.split()`: runs of characters that are not `str.isspace()`.
    Whitespace,
    /// Python's `str.split(' ')`: pieces between single U+0020 spaces (empty
    /// pieces included), as the `diversity` package's n-gram diversity.
    Space,
    /// `rouge_score`'s default tokeniser: lower-case, then runs of `[a-z0-9]`.
    Rouge,
    /// `re.findall(r"\w+|[^\w\s]+", s.lower())` (`tokenize::scan`).
    WordPunct,
}

impl Split {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "split" => Ok(Split::Whitespace),
            "space" => Ok(Split::Space),
            "rouge" => Ok(Split::Rouge),
            "wordpunct" => Ok(Split::WordPunct),
            other => Err(Error::value(format!(
                "tokenize must be 'split', 'space', 'rouge', 'wordpunct' or a callable, got {other:?}"
            ))),
        }
    }
}

/// Token sequences: row `i` is `keys[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Seqs {
    pub keys: Vec<u64>,
    pub offsets: Vec<usize>,
}

impl Seqs {
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn row(&self, i: usize) -> &[u64] {
        &self.keys[self.offsets[i]..self.offsets[i + 1]]
    }
    /// All rows as one sequence (the `diversity` package joins its texts).
    pub fn joined(mut self) -> Seqs {
        self.offsets = vec![0, self.keys.len()];
        self
    }

    /// Rows from per-row key vectors.
    pub fn from_rows(rows: Vec<Vec<u64>>) -> Result<Seqs> {
        let total = rows.iter().map(|r| r.len()).sum();
        let mut keys = with_capacity(total, "the token keys")?;
        let mut offsets = with_capacity(rows.len() + 1, "the row offsets")?;
        offsets.push(0);
        for r in rows {
            keys.extend_from_slice(&r);
            offsets.push(keys.len());
        }
        Ok(Seqs { keys, offsets })
    }

    /// Rows of token ids cut at `offsets` (0 first, non-decreasing, the
    /// number of ids last); a negative id is a `ValueError`.
    pub fn from_ids<T: InToken>(flat: &[T], offsets: &[u64]) -> Result<Seqs> {
        let ok = offsets.first() == Some(&0)
            && offsets.windows(2).all(|w| w[0] <= w[1])
            && offsets.last() == Some(&(flat.len() as u64));
        if !ok {
            return Err(Error::value("offsets must start at 0, not decrease and end at the number of token ids"));
        }
        let mut keys = with_capacity(flat.len(), "the token keys")?;
        for &x in flat {
            let k = x.index();
            if k == u64::MAX {
                return Err(Error::value(format!("token ids must be >= 0, got {x}")));
            }
            keys.push(k);
        }
        let mut offs = with_capacity(offsets.len(), "the row offsets")?;
        offs.extend(offsets.iter().map(|&o| o as usize));
        Ok(Seqs { keys, offsets: offs })
    }

    /// Texts cut by `split` (in parallel).
    pub fn from_texts(texts: &[&str], split: Split) -> Result<Seqs> {
        let rows: Vec<Vec<u64>> = texts
            .par_iter()
            .map(|t| {
                let mut v = Vec::new();
                split_text(t, split, &mut v);
                v
            })
            .collect();
        Seqs::from_rows(rows)
    }

    /// Row ranges of about [`CHUNK_TOKENS`] tokens each (work units).
    fn chunks(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut a = 0;
        while a < self.len() {
            let mut b = a + 1;
            while b < self.len() && self.offsets[b] - self.offsets[a] < CHUNK_TOKENS {
                b += 1;
            }
            out.push((a, b));
            a = b;
        }
        out
    }
}

/// Appends the token keys of `text` under `split` to `out`.
pub fn split_text(text: &str, split: Split, out: &mut Vec<u64>) {
    match split {
        Split::Space => out.extend(text.split(' ').map(|p| fast_token(p.as_bytes()))),
        Split::Whitespace => split_whitespace(text, out),
        Split::Rouge => split_rouge(text, out),
        Split::WordPunct => {
            let mut buf = Vec::new();
            tokenize::scan::<false, PythonRe>(text, true, &mut buf, |t, _| out.push(t));
        }
    }
}

fn split_whitespace(text: &str, out: &mut Vec<u64>) {
    let b = text.as_bytes();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let (space, len) = if b[i] < 0x80 {
            (ASCII_CLASS[b[i] as usize] == SPACE, 1)
        } else {
            // `i` is at a character boundary: we advance by whole characters.
            let Some(c) = text[i..].chars().next() else { break };
            (PythonRe::class(c) == SPACE, c.len_utf8())
        };
        if space {
            if let Some(s) = start.take() {
                out.push(fast_token(&b[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
        i += len;
    }
    if let Some(s) = start {
        out.push(fast_token(&b[s..]));
    }
}

fn split_rouge(text: &str, out: &mut Vec<u64>) {
    let mut h = FNV_OFFSET;
    let mut open = false;
    let mut step = |l: char| {
        if l.is_ascii_alphanumeric() {
            // `l` is lower case already (the lower-case mapping ran first).
            h = fnv_step(h, l as u8);
            open = true;
        } else if open {
            out.push(mix64(h));
            h = FNV_OFFSET;
            open = false;
        }
    };
    for c in text.chars() {
        if c.is_ascii() {
            step(c.to_ascii_lowercase());
        } else if c == '\u{3A3}' {
            step('\u{3C3}'); // Σ: either lower form is not [a-z0-9]
        } else {
            match unicode::lower(c) {
                Lower::One(l) => step(l),
                Lower::Many(s) => s.chars().for_each(&mut step),
            }
        }
    }
    if open {
        out.push(mix64(h));
    }
}

/// The hash of the n-gram `keys` (order n = `keys.len()`).
#[inline(always)]
pub fn gram(keys: &[u64]) -> u64 {
    keys.iter().fold(GRAM_SEED, |h, &k| mix64(h.wrapping_mul(PHI) ^ k))
}

fn check_n(n: usize, what: &str) -> Result<()> {
    if n == 0 || n > MAX_N {
        return Err(Error::value(format!("{what} must be in [1, {MAX_N}], got {n}")));
    }
    Ok(())
}

/// Concatenates per-chunk vectors into one fallibly allocated vector.
fn concat<X: Copy>(parts: Vec<Vec<X>>, what: &str) -> Result<Vec<X>> {
    let total = parts.iter().map(|p| p.len()).sum();
    let mut all = with_capacity(total, what)?;
    for p in parts {
        all.extend_from_slice(&p);
    }
    Ok(all)
}

/// An open-addressing set of n-gram hashes (already uniformly random: the
/// low bits index the table), grown at half load; 0 (probability 2^-64) is
/// kept aside. Memory follows the number of distinct n-grams.
struct GramSet {
    keys: Vec<u64>,
    len: usize,
    zero: bool,
}

impl GramSet {
    fn new() -> Result<Self> {
        Ok(GramSet { keys: zeros(1 << 12, "the n-gram table")?, len: 0, zero: false })
    }

    #[inline]
    fn insert(&mut self, k: u64) -> Result<()> {
        if k == 0 {
            self.zero = true;
            return Ok(());
        }
        if 2 * (self.len + 1) > self.keys.len() {
            let bigger = zeros(2 * self.keys.len(), "the n-gram table")?;
            let old = std::mem::replace(&mut self.keys, bigger);
            let mask = self.keys.len() - 1;
            for k in old.into_iter().filter(|&k| k != 0) {
                let mut i = k as usize & mask;
                while self.keys[i] != 0 {
                    i = (i + 1) & mask;
                }
                self.keys[i] = k;
            }
        }
        let mask = self.keys.len() - 1;
        let mut i = k as usize & mask;
        loop {
            let here = self.keys[i];
            if here == k {
                return Ok(());
            }
            if here == 0 {
                self.keys[i] = k;
                self.len += 1;
                return Ok(());
            }
            i = (i + 1) & mask;
        }
    }

    fn count(&self) -> usize {
        self.len + self.zero as usize
    }
}

/// For n = 1..=`max_n`: (distinct n-grams, total n-grams) over all rows
/// (n-grams never cross rows). The orders run in parallel, each counting its
/// distinct hashes in one [`GramSet`].
pub fn ngram_counts(s: &Seqs, max_n: usize) -> Result<Vec<(u64, u64)>> {
    check_n(max_n, "n")?;
    (1..=max_n)
        .into_par_iter()
        .map(|n| {
            let mut set = GramSet::new()?;
            let mut total = 0u64;
            for i in 0..s.len() {
                for w in s.row(i).windows(n) {
                    set.insert(gram(w))?;
                    total += 1;
                }
            }
            Ok((set.count() as u64, total))
        })
        .collect()
}

fn doc_index(s: &Seqs) -> Result<()> {
    if s.len() > u32::MAX as usize {
        return Err(Error::value(format!("items: at most 2^32 - 1 items a call, got {}", s.len())));
    }
    Ok(())
}

/// Self-repetition sums: for every row i, Σ over its distinct n-grams g of
/// (number of rows containing g) − 1, i.e. the occurrences of i's n-grams in
/// the other rows (Salkar et al. 2022, as the `diversity` package).
pub fn self_repetition_sums(s: &Seqs, n: usize) -> Result<Vec<u64>> {
    check_n(n, "n")?;
    doc_index(s)?;
    let parts: Vec<Vec<(u64, u32)>> = s
        .chunks()
        .par_iter()
        .map(|&(a, b)| {
            let mut v = Vec::new();
            let mut h = Vec::new();
            for i in a..b {
                h.clear();
                h.extend(s.row(i).windows(n).map(gram));
                h.sort_unstable();
                h.dedup();
                v.extend(h.iter().map(|&g| (g, i as u32)));
            }
            v
        })
        .collect();
    let mut all = concat(parts, "the n-gram hashes")?;
    all.par_sort_unstable();
    let mut sums: Vec<u64> = zeros(s.len(), "the self-repetition sums")?;
    for run in all.chunk_by(|a, b| a.0 == b.0) {
        let c = run.len() as u64 - 1;
        for &(_, d) in run {
            sums[d as usize] += c;
        }
    }
    Ok(sums)
}

/// Sentence-BLEU definition and smoothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bleu {
    /// nltk's `sentence_bleu` with uniform weights: no smoothing (`method0`:
    /// a zero precision becomes the smallest positive float).
    NltkMethod0,
    /// nltk's `SmoothingFunction().method1` (ε added to zero numerators).
    NltkMethod1(f64),
    /// sacrebleu's `sentence_bleu` (effective order) with 'exp' smoothing.
    SacreExp,
    /// sacrebleu with 'floor' smoothing (value).
    SacreFloor(f64),
    /// sacrebleu with 'add-k' smoothing (k).
    SacreAddK(f64),
    /// sacrebleu without smoothing.
    SacreNone,
}

/// The closest length to `len` among `sorted` without one copy of `len`
/// (ties to the shorter), as nltk and sacrebleu choose the reference length.
fn closest_other(sorted: &[usize], len: usize) -> usize {
    let lo = sorted.partition_point(|&x| x < len);
    let hi = sorted.partition_point(|&x| x <= len);
    if hi - lo >= 2 {
        return len;
    }
    let below = if lo > 0 { Some(sorted[lo - 1]) } else { None };
    let above = sorted.get(hi).copied();
    match (below, above) {
        (Some(b), Some(a)) => {
            if a - len < len - b {
                a
            } else {
                b
            }
        }
        (Some(b), None) => b,
        (None, Some(a)) => a,
        (None, None) => len,
    }
}

/// The sentence BLEU of a hypothesis of `len` tokens with `matches[k]`
/// clipped (k+1)-gram matches against references of closest length `r`.
pub fn sentence_bleu(kind: Bleu, len: usize, r: usize, matches: &[u64]) -> f64 {
    let max_n = matches.len();
    let total = |k: usize| (len + 1).saturating_sub(k + 1) as u64; // len - (k+1) + 1
    match kind {
        Bleu::NltkMethod0 | Bleu::NltkMethod1(_) => {
            if matches[0] == 0 {
                return 0.0;
            }
            let bp = if len > r { 1.0 } else { (1.0 - r as f64 / len as f64).exp() };
            let w = 1.0 / max_n as f64;
            let mut s = 0.0;
            for (k, &m) in matches.iter().enumerate() {
                let den = total(k).max(1) as f64;
                let p = match (m, kind) {
                    (0, Bleu::NltkMethod1(eps)) => eps / den,
                    (0, _) => f64::MIN_POSITIVE,
                    _ => m as f64 / den,
                };
                if p > 0.0 {
                    s += w * p.ln();
                }
            }
            bp * s.exp()
        }
        _ => {
            let mut bp = 1.0;
            if len < r {
                bp = if len > 0 { (1.0 - r as f64 / len as f64).exp() } else { 0.0 };
            }
            if matches.iter().all(|&m| m == 0) {
                return 0.0;
            }
            let mut smooth = 1.0;
            let mut eff = max_n;
            let mut logs = 0.0;
            for (k, &m) in matches.iter().enumerate() {
                let (mut c, mut t) = (m as f64, total(k) as f64);
                if let (Bleu::SacreAddK(add), true) = (kind, k > 0) {
                    c += add;
                    t += add;
                }
                if t == 0.0 {
                    break;
                }
                eff = k + 1;
                let p = if c == 0.0 {
                    match kind {
                        Bleu::SacreExp => {
                            smooth *= 2.0;
                            100.0 / (smooth * t)
                        }
                        Bleu::SacreFloor(v) => 100.0 * v / t,
                        _ => 0.0,
                    }
                } else {
                    100.0 * c / t
                };
                logs += if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
            }
            bp * (logs / eff as f64).exp() / 100.0
        }
    }
}

/// Self-BLEU terms: the sentence BLEU of every row as the hypothesis against
/// all other rows as references (uniform weights over n = 1..=`max_n`).
pub fn self_bleu(s: &Seqs, max_n: usize, kind: Bleu) -> Result<Vec<f64>> {
    check_n(max_n, "max_n")?;
    doc_index(s)?;
    let docs = s.len();
    if docs < 2 {
        return Err(Error::value(format!("self-BLEU needs at least 2 items, got {docs}")));
    }
    let chunks = s.chunks();
    let mut matches: Vec<u64> = zeros(docs * max_n, "the BLEU match counts")?;
    for n in 1..=max_n {
        // (n-gram, row, count in the row), one entry per distinct n-gram of a row
        let parts: Vec<Vec<(u64, u32, u32)>> = chunks
            .par_iter()
            .map(|&(a, b)| {
                let mut v = Vec::new();
                let mut h = Vec::new();
                for i in a..b {
                    h.clear();
                    h.extend(s.row(i).windows(n).map(gram));
                    h.sort_unstable();
                    for run in h.chunk_by(|x, y| x == y) {
                        v.push((run[0], i as u32, run.len().min(u32::MAX as usize) as u32));
                    }
                }
                v
            })
            .collect();
        let mut all = concat(parts, "the n-gram counts")?;
        all.par_sort_unstable();
        for run in all.chunk_by(|a, b| a.0 == b.0) {
            // largest count, its row, and the largest count of any other row
            let (mut c1, mut d1, mut c2) = (0u32, u32::MAX, 0u32);
            for &(_, d, c) in run {
                if c > c1 {
                    c2 = c1;
                    c1 = c;
                    d1 = d;
                } else if c > c2 {
                    c2 = c;
                }
            }
            for &(_, d, c) in run {
                let other = if d == d1 { c2 } else { c1 };
                matches[d as usize * max_n + n - 1] += c.min(other) as u64;
            }
        }
    }
    let mut sorted: Vec<usize> = with_capacity(docs, "the item lengths")?;
    sorted.extend((0..docs).map(|i| s.row(i).len()));
    sorted.sort_unstable();
    Ok((0..docs)
        .into_par_iter()
        .map(|i| {
            let len = s.row(i).len();
            let r = closest_other(&sorted, len);
            sentence_bleu(kind, len, r, &matches[i * max_n..(i + 1) * max_n])
        })
        .collect())
}

/// Dense ids (0..V) of the keys in order of value, and V.
fn dense_ids(keys: &[u64]) -> Result<(Vec<u32>, usize)> {
    let mut uniq = with_capacity(keys.len(), "the vocabulary")?;
    uniq.extend_from_slice(keys);
    uniq.par_sort_unstable();
    uniq.dedup();
    if uniq.len() > u32::MAX as usize {
        return Err(Error::value("items: at most 2^32 - 1 distinct tokens"));
    }
    let mut ids = with_capacity(keys.len(), "the token ids")?;
    keys.par_iter().map(|k| uniq.binary_search(k).unwrap_or(0) as u32).collect_into_vec(&mut ids);
    Ok((ids, uniq.len()))
}

/// Length of the longest common subsequence of `b` with the row whose
/// position masks are `masks` (`w` words per token slot; slot 0 is all
/// zeros) and whose token → slot table is `slot`: Crochemore et al.'s
/// V' = (V + (V & M)) | (V & ~M); the LCS is the number of zero bits of V.
#[inline]
fn lcs_bits(b: &[u32], slot: &[u32], masks: &[u64], w: usize, v: &mut [u64]) -> usize {
    v.fill(!0);
    for &t in b {
        let m = &masks[slot[t as usize] as usize * w..][..w];
        let mut carry = 0u64;
        for (vk, &mk) in v.iter_mut().zip(m) {
            let u = *vk & mk;
            let (s1, c1) = vk.overflowing_add(u);
            let (s2, c2) = s1.overflowing_add(carry);
            carry = (c1 | c2) as u64;
            *vk = s2 | (*vk & !mk);
        }
    }
    v.iter().map(|x| x.count_zeros() as usize).sum()
}

/// The LCS length of two token sequences (the textbook dynamic programme;
/// the reference for the bit-parallel one).
pub fn lcs_dp<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `rouge_score`'s F-measure of an LCS of `lcs` between lengths `la`, `lb`.
#[inline]
pub fn rougel_f(lcs: usize, la: usize, lb: usize) -> f64 {
    if la == 0 || lb == 0 {
        return 0.0;
    }
    let p = lcs as f64 / la as f64;
    let r = lcs as f64 / lb as f64;
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// For every row i in `lo..hi`: Σ_{j > i} ROUGE-L F(row i, row j)
/// (bit-parallel LCS). Rows can be done in blocks (a progress bar): each sum
/// is the same whatever the block or the thread count.
pub fn rougel_row_sums(s: &Seqs, lo: usize, hi: usize) -> Result<Vec<f64>> {
    let docs = s.len();
    if lo > hi || hi > docs {
        return Err(Error::value(format!("rows {lo}..{hi} are not within the {docs} items")));
    }
    let (ids, vocab) = dense_ids(&s.keys)?;
    let row = |i: usize| &ids[s.offsets[i]..s.offsets[i + 1]];
    let threads = rayon::current_num_threads().max(1);
    let stripes = (4 * threads).min((hi - lo).max(1));
    // Stripe k holds rows k, k + stripes, ...: balanced triangular work.
    let per: Vec<Result<Vec<(usize, f64)>>> = (0..stripes)
        .into_par_iter()
        .map(|k| {
            let mut slot: Vec<u32> = zeros(vocab, "the LCS token table")?;
            let mut masks: Vec<u64> = Vec::new();
            let mut v: Vec<u64> = Vec::new();
            let mut out = Vec::new();
            for i in (lo + k..hi).step_by(stripes) {
                let a = row(i);
                let la = a.len();
                let w = la.div_ceil(64).max(1);
                masks.clear();
                masks.resize(w, 0); // slot 0: tokens not in a
                let mut next = 1u32;
                for (p, &t) in a.iter().enumerate() {
                    if slot[t as usize] == 0 {
                        slot[t as usize] = next;
                        next += 1;
                        masks.resize(masks.len() + w, 0);
                    }
                    masks[slot[t as usize] as usize * w + p / 64] |= 1u64 << (p % 64);
                }
                v.resize(w, 0);
                let mut sum = 0.0;
                for j in i + 1..docs {
                    let b = row(j);
                    if la == 0 || b.is_empty() {
                        continue;
                    }
                    // padding bits above `la` stay ones: the zeros are the LCS
                    let lcs = lcs_bits(b, &slot, &masks, w, &mut v[..w]);
                    sum += rougel_f(lcs, la, b.len());
                }
                for &t in a {
                    slot[t as usize] = 0;
                }
                out.push((i, sum));
            }
            Ok(out)
        })
        .collect();
    let mut sums: Vec<f64> = zeros(hi - lo, "the ROUGE-L sums")?;
    for part in per {
        for (i, x) in part? {
            sums[i - lo] = x;
        }
    }
    Ok(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn lcg(state: &mut u64) -> u64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *state >> 33
    }

    fn random_seqs(seed: u64, rows: usize, max_len: usize, vocab: u64) -> Seqs {
        let mut st = seed;
        let v: Vec<Vec<u64>> = (0..rows)
            .map(|_| {
                let l = (lcg(&mut st) as usize) % (max_len + 1);
                (0..l).map(|_| lcg(&mut st) % vocab).collect()
            })
            .collect();
        Seqs::from_rows(v).unwrap()
    }

    #[test]
    fn splits_like_python() {
        let keys = |t: &str, s: Split| {
            let mut v = Vec::new();
            split_text(t, s, &mut v);
            v
        };
        let h = |w: &str| fast_token(w.as_bytes());
        assert_eq!(keys(" a\u{1c}b\u{a0} c\t", Split::Whitespace), vec![h("a"), h("b"), h("c")]);
        assert_eq!(keys("a  b", Split::Space), vec![h("a"), h(""), h("b")]);
        assert_eq!(keys("", Split::Space), vec![h("")]);
        assert_eq!(keys("Hello, WORLD_x2 \u{130}", Split::Rouge), vec![h("hello"), h("world"), h("x2"), h("i")]);
        assert_eq!(keys("Don't!", Split::WordPunct), vec![h("don"), h("'"), h("t"), h("!")]);
    }

    #[test]
    fn counts_match_brute_force() {
        for seed in 0..20 {
            let s = random_seqs(seed, 7, 12, 4);
            let got = ngram_counts(&s, 3).unwrap();
            for n in 1..=3 {
                let mut set = HashSet::new();
                let mut total = 0;
                for i in 0..s.len() {
                    for w in s.row(i).windows(n) {
                        set.insert(w.to_vec());
                        total += 1;
                    }
                }
                assert_eq!(got[n - 1], (set.len() as u64, total));
            }
            let rep = self_repetition_sums(&s, 2).unwrap();
            let sets: Vec<HashSet<Vec<u64>>> =
                (0..s.len()).map(|i| s.row(i).windows(2).map(|w| w.to_vec()).collect()).collect();
            for i in 0..s.len() {
                let want: usize =
                    sets[i].iter().map(|g| (0..s.len()).filter(|&j| j != i && sets[j].contains(g)).count()).sum();
                assert_eq!(rep[i], want as u64);
            }
        }
    }

    #[test]
    fn bleu_matches_pairwise_counts() {
        for seed in 0..20 {
            let s = random_seqs(seed, 6, 10, 3);
            let got = self_bleu(&s, 4, Bleu::NltkMethod1(0.1)).unwrap();
            for i in 0..s.len() {
                let mut m = vec![0u64; 4];
                for n in 1..=4 {
                    let count = |r: &[u64]| {
                        let mut c: HashMap<Vec<u64>, u64> = HashMap::new();
                        r.windows(n).for_each(|w| *c.entry(w.to_vec()).or_default() += 1);
                        c
                    };
                    let hyp = count(s.row(i));
                    let refs: Vec<_> = (0..s.len()).filter(|&j| j != i).map(|j| count(s.row(j))).collect();
                    m[n - 1] = hyp
                        .iter()
                        .map(|(g, &c)| c.min(refs.iter().map(|r| *r.get(g).unwrap_or(&0)).max().unwrap_or(0)))
                        .sum();
                }
                let len = s.row(i).len();
                let r = (0..s.len())
                    .filter(|&j| j != i)
                    .map(|j| s.row(j).len())
                    .min_by_key(|&l| (l.abs_diff(len), l))
                    .unwrap();
                assert_eq!(got[i], sentence_bleu(Bleu::NltkMethod1(0.1), len, r, &m));
            }
        }
    }

    #[test]
    fn bit_parallel_lcs_is_exact() {
        for seed in 0..30 {
            let s = random_seqs(seed, 6, 150, 3 + seed % 5);
            let sums = rougel_row_sums(&s, 0, s.len()).unwrap();
            assert_eq!(rougel_row_sums(&s, 2, 5).unwrap(), sums[2..5]);
            for i in 0..s.len() {
                let want: f64 = (i + 1..s.len())
                    .map(|j| rougel_f(lcs_dp(s.row(i), s.row(j)), s.row(i).len(), s.row(j).len()))
                    .sum();
                assert_eq!(sums[i], want);
            }
        }
    }

    #[test]
    fn closest_reference_lengths() {
        assert_eq!(closest_other(&[3, 5, 7], 5), 3);
        assert_eq!(closest_other(&[3, 5, 5], 5), 5);
        assert_eq!(closest_other(&[2, 5, 8], 5), 2);
        assert_eq!(closest_other(&[4, 5, 7], 5), 4);
        assert_eq!(closest_other(&[5, 6], 5), 6);
        assert_eq!(closest_other(&[1, 5], 5), 1);
    }

    #[test]
    fn bad_arguments() {
        let s = random_seqs(1, 1, 5, 3);
        assert!(self_bleu(&s, 4, Bleu::SacreExp).is_err());
        assert!(ngram_counts(&s, 0).is_err());
        assert!(Seqs::from_ids(&[1u8, 2], &[0, 3]).is_err());
        assert!(Seqs::from_ids(&[1i8, -2], &[0, 2]).is_err());
        assert!(Split::parse("nltk").is_err());
    }
}
