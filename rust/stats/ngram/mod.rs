//! N-gram counts and plug-in conditional-entropy estimators for arbitrary
//! integer token arrays (not only probes: any corpus of token ids).
//!
//! Tokens come as a row-major `[rows, len]` slice; n-grams are the windows of
//! `n` consecutive tokens *within* a row (they never cross row boundaries).
//! An n-gram `(x_0, .., x_{n-1})` is coded as the base-V number
//! `Σ_j x_j V^(n-1-j)` (first token most significant), so that sorting codes
//! sorts n-grams lexicographically and all n-grams sharing their first n-1
//! tokens (a *context*) are contiguous, context = `code / V`.
//!
//! Counting runs at memory speed in one of two forms:
//! * **dense** (`V^n <= max_dense` entries): a `V^n` table (see [`Plan`]).
//!   Normally each rayon thread counts into a private table of narrow
//!   counters (u16, or u8 for tables beyond 2^15 entries: 8x less cache than
//!   u64, which is what bounds the speed) whose rare wrap-arounds are logged;
//!   the token array is cut into 8 pieces per thread, so a thread slowed by
//!   other load does less of the work. The tables are then summed (integer
//!   sums: the result does not depend on the thread count), or, for an
//!   entropy, read directly without building the u64 table. When private
//!   tables would cost too much memory, or the table is larger than the
//!   input, one shared table of atomic counters is used instead. Codes of
//!   small n are computed 64 at a time in a vectorised loop (shifts when V is
//!   a power of two).
//! * **sparse**: every n-gram occurrence is coded (as a `u32` when
//!   `V^n <= 2^32`, else a `u64`), the codes are radix-sorted in parallel
//!   (`rdst`, 1.5x faster than rayon's comparison sort here) and run-length
//!   reduced to the sorted unique codes and their counts. Memory: 4 or 8
//!   bytes per occurrence, plus as much scratch for the sort.
//!
//! Entropy estimates are computed from the (k+1)-gram counts `c(s, x)` with
//! context `s` (k tokens) and next token `x`; see [`EntropyStats`]. Floating
//! point sums are taken over fixed blocks of contexts and the block partials
//! summed in order, so estimates are bit-identical for any thread count.
//!
//! Files, each using only those listed before it: `table` (the types),
//! `codes` (code space, vocabulary check, the window scan), `entropy` (the
//! statistics), `dense` and `sparse` (the two counters), `profile` (lower
//! orders from higher ones); this file holds the public entry points.

mod codes;
mod dense;
mod entropy;
mod profile;
mod sparse;
mod table;

pub use codes::{code_space, resolve_vocab};
pub use entropy::entropy_from_counts;
pub use table::{EntropyStats, NgramCounts, Table, DEFAULT_MAX_DENSE, MAX_DENSE_NDIM};

use crate::error::{Error, Result};
use crate::tokens::InToken;
use codes::{rows_of, windows};
use dense::{count_dense, plan, Narrowed, Plan};
use profile::{densify, marginalize};
use sparse::count_sparse;
use table::use_dense;

/// Counts of all n-grams (n >= 1) within the rows of `tokens` ([rows, len],
/// row-major). `vocab`: None = max token + 1. Dense when V^n <= `max_dense`
/// (and n <= [`MAX_DENSE_NDIM`]), sparse otherwise.
pub fn ngram_counts<T: InToken + Ord>(
    tokens: &[T],
    len: usize,
    n: usize,
    vocab: Option<u64>,
    max_dense: u64,
) -> Result<NgramCounts> {
    if n == 0 {
        return Err(Error::value("n must be >= 1"));
    }
    let vocab = resolve_vocab(tokens, len, vocab)?;
    count_checked(tokens, len, n, vocab, max_dense, "n")
}

fn count_checked<T: InToken>(
    tokens: &[T],
    len: usize,
    n: usize,
    vocab: u64,
    max_dense: u64,
    arg: &str,
) -> Result<NgramCounts> {
    let entries = code_space(vocab, n, arg)?;
    let total = windows(tokens.len(), len, n) as u64;
    let table = if use_dense(entries, n, max_dense) {
        Table::Dense(count_dense(tokens, len, n, vocab, entries as usize)?)
    } else {
        let (codes, counts) = count_sparse(tokens, len, n, vocab)?;
        Table::Sparse { codes, counts }
    };
    Ok(NgramCounts { n, vocab, total, table })
}

fn check_order(len: usize, rows: usize, order: usize, arg: &str) -> Result<()> {
    if rows == 0 || len < order + 1 {
        return Err(Error::value(format!(
            "{arg} = {order} is too large for tokens of shape ({rows}, {len}): an order-k estimate needs \
             rows of at least k + 1 = {} tokens",
            order + 1
        )));
    }
    Ok(())
}

/// Plug-in statistics of the order-`order` conditional entropy of `tokens`.
pub fn conditional_entropy<T: InToken + Ord>(
    tokens: &[T],
    len: usize,
    order: usize,
    vocab: Option<u64>,
    max_dense: u64,
) -> Result<EntropyStats> {
    let rows = rows_of(tokens.len(), len);
    check_order(len, rows, order, "order")?;
    let vocab = resolve_vocab(tokens, len, vocab)?;
    let n = order + 1;
    let entries = code_space(vocab, n, "order")?;
    if use_dense(entries, n, max_dense) {
        // Private narrow tables: entropy without materialising the u64 table.
        let entries = entries as usize;
        match plan(windows(tokens.len(), len, n), entries) {
            Plan::Private16(t) => return Ok(Narrowed::<u16>::count(tokens, len, n, vocab, entries, t)?.entropy(vocab)),
            Plan::Private8(t) => return Ok(Narrowed::<u8>::count(tokens, len, n, vocab, entries, t)?.entropy(vocab)),
            _ => {}
        }
    }
    let c = count_checked(tokens, len, n, vocab, max_dense, "order")?;
    Ok(entropy_from_counts(&c))
}

/// Statistics for orders 0..=max_order from one counting pass at the top
/// order: lower orders are obtained by marginalising the last token (plus
/// the last window of each row, which no longer n-gram starts at), so each
/// entry equals [`conditional_entropy`] at that order. Sparse counts become
/// dense at the first order whose table is small enough.
pub fn entropy_profile<T: InToken + Ord>(
    tokens: &[T],
    len: usize,
    max_order: usize,
    vocab: Option<u64>,
    max_dense: u64,
) -> Result<Vec<EntropyStats>> {
    let rows = rows_of(tokens.len(), len);
    check_order(len, rows, max_order, "max_order")?;
    let vocab = resolve_vocab(tokens, len, vocab)?;
    let mut c = count_checked(tokens, len, max_order + 1, vocab, max_dense, "max_order")?;
    let mut out = vec![EntropyStats::default(); max_order + 1];
    loop {
        out[c.n - 1] = entropy_from_counts(&c);
        if c.n == 1 {
            break;
        }
        c = marginalize(c, tokens, len);
        c = densify(c, max_dense)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Xoshiro256pp;
    use std::collections::BTreeMap;

    fn random_tokens(rows: usize, len: usize, v: u64, seed: u64) -> Vec<u16> {
        let mut r = Xoshiro256pp::from_u64(seed);
        (0..rows * len).map(|_| (r.next_f64() * v as f64) as u16).collect()
    }

    fn naive(tokens: &[u16], len: usize, n: usize, v: u64) -> BTreeMap<u64, u64> {
        let mut m = BTreeMap::new();
        if len == 0 {
            return m;
        }
        for row in tokens.chunks(len) {
            for w in row.windows(n) {
                let code = w.iter().fold(0u64, |a, &x| a * v + x as u64);
                *m.entry(code).or_insert(0) += 1;
            }
        }
        m
    }

    fn as_map(c: &NgramCounts) -> BTreeMap<u64, u64> {
        match &c.table {
            Table::Dense(t) => t.iter().enumerate().filter(|(_, &x)| x > 0).map(|(i, &x)| (i as u64, x)).collect(),
            Table::Sparse { codes, counts } => {
                assert!(codes.windows(2).all(|w| w[0] < w[1]));
                assert!(counts.iter().all(|&x| x > 0));
                codes.iter().copied().zip(counts.iter().copied()).collect()
            }
        }
    }

    fn naive_entropy(tokens: &[u16], len: usize, k: usize, v: u64) -> (f64, f64) {
        let m = naive(tokens, len, k + 1, v);
        let mut ctx: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for (&code, &c) in &m {
            let e = ctx.entry(code / v).or_insert((0, 0));
            e.0 += c;
            e.1 += 1;
        }
        let n: u64 = m.values().sum();
        let mut h = 0.0;
        for (&code, &c) in &m {
            let ns = ctx[&(code / v)].0 as f64;
            h -= c as f64 / n as f64 * (c as f64 / ns).ln();
        }
        let mm: f64 = ctx.values().map(|&(_, ms)| (ms - 1) as f64).sum::<f64>() / (2.0 * n as f64);
        (h, mm)
    }

    #[test]
    fn counts_match_naive_dense_and_sparse() {
        for &(rows, len, v) in &[(1usize, 1000usize, 3u64), (7, 13, 5), (50, 3, 4), (3, 0, 2), (0, 5, 2), (200, 700, 6)]
        {
            let x = random_tokens(rows, len, v, 7 + rows as u64);
            for n in 1..=4 {
                let want = naive(&x, len, n, v);
                for max_dense in [0, DEFAULT_MAX_DENSE] {
                    let c = ngram_counts(&x, len, n, Some(v), max_dense).unwrap();
                    assert_eq!(as_map(&c), want, "rows {rows} len {len} n {n} dense {max_dense}");
                    assert_eq!(c.total, want.values().sum::<u64>());
                }
            }
        }
    }

    #[test]
    fn sparse_buckets_match_naive_on_every_path() {
        // (rows, len, V, n): low bits 0 / dense (<= 16 bits) / dense wide /
        // radix-sorted buckets / u64 low parts; skewed tokens give one huge
        // bucket next to tiny ones.
        let cases: &[(usize, usize, u64, usize)] = &[
            (3, 50, 7, 3),          // V^n = 343: one bucket per code
            (4, 40_000, 300, 3),    // 2^25: 13 low bits, dense
            (4, 40_000, 1000, 3),   // 2^30: 18 low bits, dense where busy, sorted elsewhere
            (4, 40_000, 3000, 3),   // 2^35: 23 low bits, radix-sorted buckets
            (2, 30_000, 60_000, 4), // 2^64: 52 low bits in u64
        ];
        for &(rows, len, v, n) in cases {
            for skew in [false, true] {
                let mut x = random_tokens(rows, len, v, v + n as u64);
                if skew {
                    for (i, t) in x.iter_mut().enumerate() {
                        if i % 5 != 0 {
                            *t = (i % 3) as u16; // 80% of tokens among three values
                        }
                    }
                }
                let want = naive(&x, len, n, v);
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let c = pool.install(|| ngram_counts(&x, len, n, Some(v), 0).unwrap());
                    assert!(matches!(c.table, Table::Sparse { .. }));
                    assert_eq!(as_map(&c), want, "V {v} n {n} skew {skew} threads {threads}");
                }
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let x = random_tokens(3, 200_000, 11, 1);
        let run = |threads: usize, max_dense: u64| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let c = ngram_counts(&x, 200_000, 3, None, max_dense).unwrap();
                let mut p = entropy_profile(&x, 200_000, 3, None, max_dense).unwrap();
                p.extend((0..4).map(|k| conditional_entropy(&x, 200_000, k, None, max_dense).unwrap()));
                (c, p)
            })
        };
        for max_dense in [0, DEFAULT_MAX_DENSE] {
            let (c1, p1) = run(1, max_dense);
            for t in [2, 3, 8] {
                let (c, p) = run(t, max_dense);
                assert_eq!(c, c1);
                assert_eq!(p, p1); // bit-identical floats
            }
        }
    }

    #[test]
    fn shared_atomic_table_path() {
        // V^n = 10^6 entries > 10^5 windows: counted into one atomic table.
        let (len, v) = (100_000, 100u64);
        let x = random_tokens(1, len, v, 5);
        let want = naive(&x, len, 3, v);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let c = pool.install(|| ngram_counts(&x, len, 3, Some(v), DEFAULT_MAX_DENSE).unwrap());
            assert!(matches!(c.table, Table::Dense(_)));
            assert_eq!(as_map(&c), want);
        }
    }

    #[test]
    fn narrow_counters_wrap_correctly() {
        // (V, n) = (100, 2): 10^4 entries, u16 counters; (40, 3): 64000
        // entries, u8 counters. 80% of the tokens are 0, so the all-zero
        // n-gram occurs ~10^5 times and its counter wraps.
        let mut r = Xoshiro256pp::from_u64(4);
        for (v, n) in [(100u64, 2usize), (40, 3)] {
            let mut x = random_tokens(4, 50_000, v, 9);
            for t in x.iter_mut() {
                if r.next_f64() < 0.8 {
                    *t = 0;
                }
            }
            let want = naive(&x, 50_000, n, v);
            assert!(want[&0] > 30_000);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (c, e) = pool.install(|| {
                    (
                        ngram_counts(&x, 50_000, n, Some(v), DEFAULT_MAX_DENSE).unwrap(),
                        conditional_entropy(&x, 50_000, n - 1, Some(v), DEFAULT_MAX_DENSE).unwrap(),
                    )
                });
                assert_eq!(as_map(&c), want);
                // The fused entropy (from the narrow tables) equals the one
                // from the merged table, bit for bit.
                assert_eq!(e, entropy_from_counts(&c));
                let (h, mm) = naive_entropy(&x, 50_000, n - 1, v);
                assert!((e.plugin - h).abs() < 1e-12 && (e.miller_madow - mm).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn entropy_matches_naive_and_profile_matches_direct() {
        let (rows, len, v) = (40, 57, 5u64);
        let x = random_tokens(rows, len, v, 3);
        for max_dense in [0, DEFAULT_MAX_DENSE] {
            let prof = entropy_profile(&x, len, 4, Some(v), max_dense).unwrap();
            for k in 0..=4 {
                let e = conditional_entropy(&x, len, k, Some(v), max_dense).unwrap();
                let (h, mm) = naive_entropy(&x, len, k, v);
                assert!((e.plugin - h).abs() < 1e-12, "order {k}: {} vs {h}", e.plugin);
                assert!((e.miller_madow - mm).abs() < 1e-15);
                assert_eq!(e.samples, (rows * (len - k)) as u64);
                let p = prof[k];
                assert_eq!((p.samples, p.contexts, p.distinct), (e.samples, e.contexts, e.distinct));
                assert!((p.plugin - e.plugin).abs() < 1e-13);
                assert!((p.variance - e.variance).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn variance_is_surprisal_variance() {
        // One context, counts 1 and 3: p̂ = (1/4, 3/4).
        let x: Vec<u8> = vec![0, 1, 1, 1];
        let e = conditional_entropy(&x, 4, 0, None, DEFAULT_MAX_DENSE).unwrap();
        let (p, q) = (0.25f64, 0.75f64);
        let h = -(p * p.ln() + q * q.ln());
        assert!((e.plugin - h).abs() < 1e-15);
        let var = p * p.ln().powi(2) + q * q.ln().powi(2) - h * h;
        assert!((e.variance - var).abs() < 1e-15);
        assert_eq!(e.miller_madow, 1.0 / 8.0);
    }

    #[test]
    fn bad_inputs() {
        let x: Vec<i32> = vec![0, 1, 2, -1, 0, 1];
        let e = ngram_counts(&x, 3, 1, None, DEFAULT_MAX_DENSE).unwrap_err();
        assert!(e.to_string().contains("value -1 at position [1, 0] is negative"), "{e}");
        let e = ngram_counts(&[0u8, 5, 1], 3, 2, Some(4), DEFAULT_MAX_DENSE).unwrap_err();
        assert!(e.to_string().contains("value 5 at position [0, 1] is outside the vocabulary [0, 4)"), "{e}");
        assert!(ngram_counts(&[0u8, 1], 2, 0, None, 0).is_err());
        let e = ngram_counts(&[0u8, 1], 2, 2, Some(1 << 40), 0).unwrap_err();
        assert!(e.to_string().starts_with("n: vocab_size^2"), "{e}");
        let e = conditional_entropy(&[0u8, 1, 1], 3, 3, None, 0).unwrap_err();
        assert!(e.to_string().starts_with("order = 3 is too large"), "{e}");
        let e = entropy_profile::<u8>(&[], 0, 0, None, 0).unwrap_err();
        assert!(e.to_string().starts_with("max_order = 0 is too large"), "{e}");
        assert!(ngram_counts::<u8>(&[], 0, 1, None, 0).is_err());
        assert_eq!(ngram_counts::<u8>(&[], 0, 1, Some(3), 10).unwrap().table, Table::Dense(vec![0; 3]));
        assert!(ngram_counts(&[u64::MAX], 1, 1, None, 10).is_err());
    }
}
