//! Random processes whose law is known exactly. Pure Rust: no PyO3 types.
//!
//! Every process implements [`Process`]; the Python bindings are written once
//! against it (`rust/py/process.rs`).

pub mod hmm;
pub mod incontext;
pub mod law;
pub mod markov;
pub mod markov_simd;
pub mod transforms;

use crate::error::{Error, Result};
use crate::tokens::{InToken, OutToken};

/// Which per-sequence streams the rows of a sample are drawn from
/// (architecture.md, Determinism): row r of `From(start)` is stream
/// `start + r`, row r of `At(indices)` is stream `indices[r]`.
#[derive(Debug, Clone, Copy)]
pub enum Rows<'a> {
    From(u64),
    At(&'a [u64]),
}

impl Rows<'_> {
    /// The stream of row `r`.
    #[inline]
    pub fn stream(&self, r: usize) -> u64 {
        match *self {
            Rows::From(start) => start.wrapping_add(r as u64),
            Rows::At(indices) => indices[r],
        }
    }

    /// Checks that `num_rows` rows can be addressed: the last stream
    /// `start + num_rows - 1` must fit in 64 bits (so that no two rows share
    /// a stream), and an index list must have one entry per row.
    pub fn check(&self, num_rows: usize) -> Result<()> {
        match *self {
            Rows::From(start) => {
                if num_rows > 0 && start.checked_add(num_rows as u64 - 1).is_none() {
                    return Err(Error::value(format!(
                        "start + num_sequences - 1 = {start} + {num_rows} - 1 exceeds 2^64 - 1, the largest \
                         sequence index; use a smaller start"
                    )));
                }
            }
            Rows::At(indices) => {
                if indices.len() != num_rows {
                    return Err(Error::value(format!(
                        "indices: {} entries for {num_rows} rows; pass one index per row",
                        indices.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Width of one row of [`Process::path_stats`]: `[log p(x), Σ_t (-log q_t(x_t)
/// - H(q_t)), Σ_t V(q_t)]`, q_t the predictive law at t (math.md, Typical sets).
pub const PATH_STATS: usize = 3;

/// What every process with an exact law does over rows of `length` tokens.
/// Scoring inputs are row-major `[N, length]` tokens; outputs are row-major
/// too, and their sizes are checked against the input (a mismatch is an
/// error, never a panic).
pub trait Process: Sync {
    /// Vocabulary size V.
    fn vocab(&self) -> usize;
    /// Number of states: V^k for an order-k chain (in-context or not), the
    /// hidden states of an HMM.
    fn num_states(&self) -> usize;
    /// Samples `out.len() / length` rows of `length` tokens, row r from
    /// stream `(seed, rows.stream(r))`.
    fn sample_rows<T: OutToken>(&self, out: &mut [T], length: usize, seed: u64, rows: Rows<'_>) -> Result<()>;
    /// log p(x) of each row into `out` [N].
    fn log_prob<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()>;
    /// log p(x_t | x_<t) into `out` [N, T].
    fn token_log_probs<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()>;
    /// p(x_t = · | x_<t) into `out` [N, T, V].
    fn predictive<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()>;
    /// The [`PATH_STATS`] path statistics of each row into `out` [N, 3].
    fn path_stats<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()>;
}

/// Number of rows N of a `[N, length]` input of `tokens` entries whose output
/// has `out` entries, `per_row` a row; an error when they disagree.
pub fn rows_of(tokens: usize, length: usize, out: usize, per_row: usize) -> Result<usize> {
    let n = if per_row == 0 { tokens.checked_div(length).unwrap_or(0) } else { out.checked_div(per_row).unwrap_or(0) };
    if n.checked_mul(length) != Some(tokens) || n.checked_mul(per_row) != Some(out) {
        return Err(Error::value(format!(
            "tokens: {tokens} tokens in rows of {length} do not match an output of {out} values, {per_row} a row"
        )));
    }
    Ok(n)
}

/// The [`Process`] impl of a process type whose inherent methods have the
/// trait's signatures (sampling through `$sample`), with the sizes checked.
macro_rules! impl_process {
    ($t:ty, |$p:ident, $out:ident, $len:ident, $seed:ident, $rows:ident| $sample:expr) => {
        impl Process for $t {
            fn vocab(&self) -> usize {
                <$t>::vocab(self)
            }
            fn num_states(&self) -> usize {
                <$t>::num_states(self)
            }
            fn sample_rows<T: OutToken>(&self, $out: &mut [T], $len: usize, $seed: u64, $rows: Rows<'_>) -> Result<()> {
                if $len > 0 {
                    if $out.len() % $len != 0 {
                        return Err(Error::value("out: not a whole number of rows"));
                    }
                    $rows.check($out.len() / $len)?;
                }
                let $p = self;
                $sample;
                Ok(())
            }
            fn log_prob<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
                rows_of(tokens.len(), length, out.len(), 1)?;
                <$t>::log_prob(self, tokens, length, out)
            }
            fn token_log_probs<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
                rows_of(tokens.len(), length, out.len(), length)?;
                <$t>::token_log_probs(self, tokens, length, out)
            }
            fn predictive<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
                rows_of(tokens.len(), length, out.len(), length * <$t>::vocab(self))?;
                <$t>::predictive(self, tokens, length, out)
            }
            fn path_stats<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
                rows_of(tokens.len(), length, out.len(), PATH_STATS)?;
                <$t>::path_stats(self, tokens, length, out)
            }
        }
    };
}
impl_process!(markov::MarkovChain, |p, out, len, seed, rows| p.sample_rows(out, len, seed, |r| rows.stream(r)));
impl_process!(incontext::InContextMarkov, |p, out, len, seed, rows| p.sample_rows(out, len, seed, |r| rows.stream(r)));
impl_process!(hmm::Hmm, |p, out, len, seed, rows| p.sample_rows::<T, u8>(out, None, len, seed, |r| rows.stream(r)));

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> markov::MarkovChain {
        markov::MarkovChain::new(&[0.9, 0.1, 0.2, 0.8], 2, 1, None, false).unwrap()
    }

    #[test]
    fn rows_from_and_at_agree() {
        let c = chain();
        let mut a = vec![0u8; 5 * 7];
        Process::sample_rows(&c, &mut a, 7, 3, Rows::From(10)).unwrap();
        let idx: Vec<u64> = (10..15).collect();
        let mut b = vec![0u8; 5 * 7];
        Process::sample_rows(&c, &mut b, 7, 3, Rows::At(&idx)).unwrap();
        assert_eq!(a, b);
        assert!(Process::sample_rows(&c, &mut b, 7, 3, Rows::At(&idx[..4])).is_err());
        assert!(Process::sample_rows(&c, &mut b, 7, 3, Rows::From(u64::MAX - 3)).is_err());
        assert!(Process::sample_rows(&c, &mut b, 7, 3, Rows::From(u64::MAX - 4)).is_ok());
    }

    #[test]
    fn sizes_are_checked() {
        let c = chain();
        let x = [0u8, 1, 1, 0, 1, 1];
        let mut o = [0.0; 2];
        assert!(Process::log_prob(&c, &x, 3, &mut o).is_ok());
        assert!(Process::log_prob(&c, &x, 2, &mut o).is_err());
        let mut ps = [0.0; 6];
        assert!(Process::path_stats(&c, &x, 3, &mut ps).is_ok());
        assert!(Process::path_stats(&c, &x, 3, &mut o).is_err());
        let mut pred = [0.0; 12];
        assert!(Process::predictive(&c, &x, 3, &mut pred).is_ok());
        assert!(Process::token_log_probs(&c, &x, 3, &mut pred).is_err());
        assert_eq!(rows_of(0, 0, 4, 1).unwrap(), 4);
        assert_eq!(rows_of(0, 0, 0, 0).unwrap(), 0);
    }

    #[test]
    fn path_stats_layout_is_shared() {
        // An IID chain as an order-0 Markov chain, a one-state HMM and a
        // fully concentrated in-context chain all give [N, 3] rows whose
        // first column is log_prob.
        let c = markov::MarkovChain::new(&[0.25, 0.75], 2, 0, None, false).unwrap();
        let h = hmm::Hmm::new(&[1.0], &[0.25, 0.75], 1, 2, None, false).unwrap();
        let x = [0u8, 1, 1, 1, 0, 0];
        let (mut ps, mut lp) = ([0.0; 6], [0.0; 2]);
        Process::path_stats(&c, &x, 3, &mut ps).unwrap();
        Process::log_prob(&c, &x, 3, &mut lp).unwrap();
        let (mut ps_h, mut lp_h) = ([0.0; 6], [0.0; 2]);
        Process::path_stats(&h, &x, 3, &mut ps_h).unwrap();
        Process::log_prob(&h, &x, 3, &mut lp_h).unwrap();
        for r in 0..2 {
            assert!((ps[3 * r] - lp[r]).abs() < 1e-12);
            assert!((ps_h[3 * r] - lp_h[r]).abs() < 1e-12);
            assert!((ps[3 * r + 1] - ps_h[3 * r + 1]).abs() < 1e-12);
            assert!((ps[3 * r + 2] - ps_h[3 * r + 2]).abs() < 1e-12);
        }
    }
}
