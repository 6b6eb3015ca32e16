//! Plug-in conditional-entropy statistics from counts, summed over fixed
//! blocks of contexts (bit-identical for any thread count).

use super::table::{EntropyStats, NgramCounts, Table};
use rayon::prelude::*;

/// Contexts are summed in blocks of about this many table entries / unique
/// n-grams (fixed, so floating-point results ignore the thread count).
pub(super) const SUM_BLOCK: usize = 1 << 14;

/// Partial sums over a block of contexts.
#[derive(Default, Clone, Copy)]
pub(super) struct Partial {
    samples: u64,
    contexts: u64,
    distinct: u64,
    extra_symbols: u64, // Σ (m_s - 1)
    s1: f64,            // Σ c u
    s2: f64,            // Σ c u²
}

impl Partial {
    /// Adds one context with next-token counts `cs` (zeros allowed).
    #[inline]
    pub(super) fn context(&mut self, cs: impl Iterator<Item = u64> + Clone) {
        let n_s: u64 = cs.clone().sum();
        if n_s == 0 {
            return;
        }
        let ln_n = (n_s as f64).ln();
        let mut m = 0u64;
        for c in cs.filter(|&c| c > 0) {
            let cf = c as f64;
            let u = ln_n - cf.ln();
            self.s1 += cf * u;
            self.s2 += cf * u * u;
            m += 1;
        }
        self.samples += n_s;
        self.contexts += 1;
        self.distinct += m;
        self.extra_symbols += m - 1;
    }

    pub(super) fn add(mut self, o: &Partial) -> Partial {
        self.samples += o.samples;
        self.contexts += o.contexts;
        self.distinct += o.distinct;
        self.extra_symbols += o.extra_symbols;
        self.s1 += o.s1;
        self.s2 += o.s2;
        self
    }

    pub(super) fn finish(self, vocab: u64) -> EntropyStats {
        if self.samples == 0 {
            return EntropyStats { vocab, ..EntropyStats::default() };
        }
        let nf = self.samples as f64;
        let plugin = (self.s1 / nf).max(0.0);
        EntropyStats {
            vocab,
            samples: self.samples,
            contexts: self.contexts,
            distinct: self.distinct,
            plugin,
            miller_madow: self.extra_symbols as f64 / (2.0 * nf),
            variance: (self.s2 / nf - plugin * plugin).max(0.0),
        }
    }
}

/// Conditional-entropy statistics from n-gram counts (n = order + 1): the
/// context of an n-gram is its first n - 1 tokens, `code / V`.
pub fn entropy_from_counts(c: &NgramCounts) -> EntropyStats {
    let v = c.vocab as usize;
    let partials: Vec<Partial> = match &c.table {
        Table::Dense(t) => {
            let rows = (SUM_BLOCK / v.max(1)).max(1);
            t.par_chunks(rows * v)
                .map(|blk| {
                    let mut p = Partial::default();
                    for row in blk.chunks(v) {
                        p.context(row.iter().copied());
                    }
                    p
                })
                .collect()
        }
        Table::Sparse { codes, counts } => {
            let vv = c.vocab;
            let len = codes.len();
            let blocks = len.div_ceil(SUM_BLOCK).max(1);
            let mut cuts: Vec<usize> = (0..=blocks).map(|j| (j * SUM_BLOCK).min(len)).collect();
            for cut in cuts.iter_mut().take(blocks).skip(1) {
                while *cut < len && codes[*cut] / vv == codes[*cut - 1] / vv {
                    *cut += 1;
                }
            }
            cuts.par_windows(2)
                .map(|w| {
                    let (lo, hi) = (w[0], w[1].max(w[0]));
                    let mut p = Partial::default();
                    let mut i = lo;
                    while i < hi {
                        let s = codes[i] / vv;
                        let mut j = i + 1;
                        while j < hi && codes[j] / vv == s {
                            j += 1;
                        }
                        p.context(counts[i..j].iter().copied());
                        i = j;
                    }
                    p
                })
                .collect()
        }
    };
    partials.iter().fold(Partial::default(), |a, b| a.add(b)).finish(c.vocab)
}
