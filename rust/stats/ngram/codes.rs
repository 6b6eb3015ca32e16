//! N-gram codes: the code space, the vocabulary check, and the scan that
//! hands every window's base-V code to a [`Sink`], in pieces for threads.

use crate::error::{Error, Result};
use crate::tokens::InToken;
use rayon::prelude::*;

/// Below this many n-grams counting is sequential.
pub(super) const PARALLEL_MIN: usize = 1 << 16;

/// V^width, or an error naming `arg` when the codes would not fit in a u64.
pub fn code_space(vocab: u64, width: usize, arg: &str) -> Result<u64> {
    if vocab == 0 {
        return Err(Error::value("vocab_size must be at least 1"));
    }
    if vocab == 1 {
        return Ok(1);
    }
    u32::try_from(width).ok().and_then(|w| vocab.checked_pow(w)).ok_or_else(|| {
        Error::value(format!(
            "{arg}: vocab_size^{width} = {vocab}^{width} exceeds 2^64 - 1, so {width}-grams cannot be \
             coded in 64 bits; use a smaller {arg} or vocab_size"
        ))
    })
}

/// Checks every token (one parallel pass) and returns the vocabulary size:
/// `vocab` if given (all tokens must lie in [0, vocab)), else max token + 1
/// (all tokens must be non-negative). Errors name the first bad position.
pub fn resolve_vocab<T: InToken + Ord>(tokens: &[T], len: usize, vocab: Option<u64>) -> Result<u64> {
    if vocab == Some(0) {
        return Err(Error::value("vocab_size must be at least 1"));
    }
    let limit = vocab.unwrap_or(u64::MAX);
    // Min and max in the native type (vectorises); a negative minimum maps
    // to u64::MAX, above any limit.
    let range = tokens
        .par_chunks(1 << 16)
        .map(|c| c.iter().fold((c[0], c[0]), |(lo, hi), &x| (lo.min(x), hi.max(x))))
        .reduce_with(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let max = range.map(|(lo, hi)| lo.index().max(hi.index()));
    let m = match max {
        None => {
            return vocab.ok_or_else(|| {
                Error::value("vocab_size cannot be inferred from an empty tokens array; pass vocab_size")
            })
        }
        Some(m) => m,
    };
    if m < limit {
        return Ok(vocab.unwrap_or(m + 1));
    }
    let p = tokens.par_iter().position_first(|x| x.index() >= limit).unwrap_or(0);
    let (i, t) = match len {
        0 => (0, p),
        _ => (p / len, p % len),
    };
    let x = tokens[p];
    Err(Error::value(match vocab {
        Some(v) => {
            format!("tokens: value {x} at position [{i}, {t}] is outside the vocabulary [0, {v})")
        }
        None if x.to_string().starts_with('-') => {
            format!("tokens: value {x} at position [{i}, {t}] is negative; tokens must be non-negative")
        }
        None => {
            format!("tokens: value {x} at position [{i}, {t}] is too large (vocab_size = max token + 1 must be < 2^64)")
        }
    }))
}

/// V^(n-1), for a V^n already known to fit in a u64.
pub(super) fn pow_minus_one(vocab: u64, n: usize) -> u64 {
    if vocab == 1 {
        1
    } else {
        vocab.pow((n - 1) as u32)
    }
}

/// Number of n-gram windows per row of `len` tokens.
pub(super) fn windows_per_row(len: usize, n: usize) -> usize {
    if len >= n {
        len - n + 1
    } else {
        0
    }
}

/// Receives n-gram codes.
pub(super) trait Sink {
    fn put(&mut self, code: u64);
    /// A block of codes below 2^32.
    #[inline(always)]
    fn put_block(&mut self, codes: &[u32]) {
        for &c in codes {
            self.put(c as u64);
        }
    }
}

/// Puts, in order, the code of every n-gram whose first token lies at a flat
/// position in `lo..hi` (n-grams never cross rows of `len` tokens). Tokens
/// must already be checked to lie in [0, V).
pub(super) fn for_each_code<T: InToken, S: Sink>(
    tokens: &[T],
    len: usize,
    n: usize,
    vocab: u64,
    lo: usize,
    hi: usize,
    sink: &mut S,
) {
    let w = windows_per_row(len, n);
    if w == 0 {
        return;
    }
    // V = 2^b: shifts instead of multiplies (about 15% faster for n = 2..4).
    let shift = vocab.is_power_of_two().then(|| vocab.trailing_zeros());
    let narrow = code_space(vocab, n, "n").is_ok_and(|e| e <= u32::MAX as u64);
    let mut p = lo;
    while p < hi {
        let i = p / len;
        let t = p % len;
        let end = w.min(t + (hi - p)); // window starts t..end of row i
        if t < end {
            let row = &tokens[i * len..(i + 1) * len];
            match (n, shift) {
                (1, _) => fixed::<T, S, 1>(row, t, end, Mul(vocab), false, sink),
                (2, Some(b)) => fixed::<T, S, 2>(row, t, end, Shl(b), narrow, sink),
                (3, Some(b)) => fixed::<T, S, 3>(row, t, end, Shl(b), narrow, sink),
                (4, Some(b)) => fixed::<T, S, 4>(row, t, end, Shl(b), narrow, sink),
                (2, None) => fixed::<T, S, 2>(row, t, end, Mul(vocab), narrow, sink),
                (3, None) => fixed::<T, S, 3>(row, t, end, Mul(vocab), narrow, sink),
                (4, None) => fixed::<T, S, 4>(row, t, end, Mul(vocab), narrow, sink),
                _ => rolling(row, t, end, n, vocab, sink),
            }
        }
        p = (i + 1) * len;
    }
}

/// Appends one base-V digit to a code (u64, or u32 when V^n < 2^32).
pub(super) trait Digit: Copy {
    fn push(self, code: u64, x: u64) -> u64;
    fn push32(self, code: u32, x: u32) -> u32;
}

/// code * V + x.
#[derive(Clone, Copy)]
pub(super) struct Mul(u64);
impl Digit for Mul {
    #[inline(always)]
    fn push(self, code: u64, x: u64) -> u64 {
        code * self.0 + x
    }
    #[inline(always)]
    fn push32(self, code: u32, x: u32) -> u32 {
        code.wrapping_mul(self.0 as u32).wrapping_add(x)
    }
}

/// code << b | x, for V = 2^b.
#[derive(Clone, Copy)]
pub(super) struct Shl(u32);
impl Digit for Shl {
    #[inline(always)]
    fn push(self, code: u64, x: u64) -> u64 {
        (code << self.0) | x
    }
    #[inline(always)]
    fn push32(self, code: u32, x: u32) -> u32 {
        code.wrapping_shl(self.0) | x
    }
}

/// Small n: codes computed from scratch (no loop-carried dependency). When
/// codes fit in 32 bits (`narrow`: V^N < 2^32), a block of 64 is computed at
/// a time in a loop the compiler vectorises, then handed to the sink (about
/// 10% faster than one code at a time).
#[inline(always)]
pub(super) fn fixed<T: InToken, S: Sink, const N: usize>(
    row: &[T],
    t0: usize,
    end: usize,
    d: impl Digit,
    narrow: bool,
    sink: &mut S,
) {
    const B: usize = 64;
    let mut t = t0;
    if narrow {
        let mut codes = [0u32; B];
        while t + B <= end {
            code_block::<T, N, B>(&row[t..t + B + N - 1], d, &mut codes);
            sink.put_block(&codes);
            t += B;
        }
    }
    for w in row[t..end + N - 1].windows(N) {
        let mut code = 0u64;
        for x in w.iter().take(N) {
            code = d.push(code, x.index());
        }
        sink.put(code);
    }
}

/// Codes of the `B` windows of `N` tokens starting in `w` (`B + N - 1`
/// tokens), with AVX2 when the CPU has it (twice the lanes of the SSE2
/// baseline; detected once).
#[inline(always)]
pub(super) fn code_block<T: InToken, const N: usize, const B: usize>(w: &[T], d: impl Digit, codes: &mut [u32; B]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { code_block_avx2::<T, N, B>(w, d, codes) };
            return;
        }
    }
    code_block_generic::<T, N, B>(w, d, codes)
}

#[inline(always)]
pub(super) fn code_block_generic<T: InToken, const N: usize, const B: usize>(
    w: &[T],
    d: impl Digit,
    codes: &mut [u32; B],
) {
    for (j, c) in codes.iter_mut().enumerate() {
        let mut code = 0u32;
        for k in 0..N {
            code = d.push32(code, w[j + k].index() as u32);
        }
        *c = code;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn code_block_avx2<T: InToken, const N: usize, const B: usize>(
    w: &[T],
    d: impl Digit,
    codes: &mut [u32; B],
) {
    code_block_generic::<T, N, B>(w, d, codes)
}

/// Any n: rolling code, code' = (code - x_old V^(n-1)) V + x_new.
#[inline(always)]
pub(super) fn rolling<T: InToken, S: Sink>(row: &[T], t0: usize, end: usize, n: usize, vocab: u64, sink: &mut S) {
    let top = pow_minus_one(vocab, n);
    let mut code = 0u64;
    for x in &row[t0..t0 + n] {
        code = code * vocab + x.index();
    }
    sink.put(code);
    for (old, new) in row[t0..end - 1].iter().zip(&row[t0 + n..end + n - 1]) {
        code = (code - old.index() * top) * vocab + new.index();
        sink.put(code);
    }
}

/// Number of pieces to cut `total` tokens into for `threads` threads: 8 per
/// thread (load balancing on shared machines), each at least PARALLEL_MIN.
pub(super) fn pieces(total: usize, threads: usize) -> usize {
    (threads * 8).min(total / PARALLEL_MIN).max(1)
}

/// `parts` contiguous near-equal ranges of `0..total`.
pub(super) fn split(total: usize, parts: usize) -> Vec<(usize, usize)> {
    (0..parts).map(|j| (j * total / parts, (j + 1) * total / parts)).collect()
}

/// Number of n-gram windows of a `[rows, len]` array.
pub(super) fn windows(tokens_len: usize, len: usize, n: usize) -> usize {
    rows_of(tokens_len, len) * windows_per_row(len, n)
}

/// Number of rows of `len` tokens (0 when len = 0).
pub(super) fn rows_of(tokens_len: usize, len: usize) -> usize {
    tokens_len.checked_div(len).unwrap_or(0)
}
