//! The count tables and the statistics they yield: the types the rest of
//! `ngram` passes around, and when a table is dense.

/// Default largest dense table, in entries (`V^n`): 2^26 counts = 512 MiB.
pub const DEFAULT_MAX_DENSE: u64 = 1 << 26;

/// Dense tables are only used up to this many dimensions (numpy allows 64).
pub const MAX_DENSE_NDIM: usize = 32;

/// The counts of one n-gram order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// `V^n` counts indexed by code (row-major `(V,)*n` array).
    Dense(Vec<u64>),
    /// Sorted unique codes of the n-grams that occur, and their counts (> 0).
    Sparse { codes: Vec<u64>, counts: Vec<u64> },
}

/// N-gram counts of a token array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgramCounts {
    /// n-gram length.
    pub n: usize,
    /// Vocabulary size V (given, or max token + 1).
    pub vocab: u64,
    /// Number of n-gram occurrences (windows): rows × max(len - n + 1, 0).
    pub total: u64,
    pub table: Table,
}

/// Statistics of the plug-in estimate of H(X_t | X_{t-k} .. X_{t-1}) from
/// (k+1)-gram counts `c(s, x)`, `n_s = Σ_x c(s, x)`, `N = Σ_s n_s`, in nats:
///
/// * `plugin = Σ_s (n_s/N) Ĥ_s = (1/N) Σ_{s,x} c(s,x) [ln n_s - ln c(s,x)]`,
///   with Ĥ_s the entropy of the empirical next-token law p̂(·|s);
/// * `miller_madow = Σ_s (m_s - 1) / (2N)`, m_s the number of distinct next
///   tokens seen after s (the Miller–Madow correction, Miller 1955, applied
///   per context and weighted by n_s/N);
/// * `variance = Σ_{s,x} (c/N) u² - plugin²` with u = ln n_s - ln c(s,x): the
///   variance of the surprisal -ln p̂(x|s) under the empirical joint law,
///   so that `sqrt(variance / N)` is the delta-method standard error of the
///   plug-in for N i.i.d. (context, next-token) pairs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EntropyStats {
    /// Vocabulary size V the tokens were checked against.
    pub vocab: u64,
    /// N: number of (k+1)-gram occurrences used.
    pub samples: u64,
    /// Number of distinct contexts observed.
    pub contexts: u64,
    /// Number of distinct (k+1)-grams observed.
    pub distinct: u64,
    pub plugin: f64,
    pub miller_madow: f64,
    pub variance: f64,
}

pub(super) fn use_dense(entries: u64, n: usize, max_dense: u64) -> bool {
    entries <= max_dense && n <= MAX_DENSE_NDIM && usize::try_from(entries).is_ok()
}
