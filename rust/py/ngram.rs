//! Bindings for `stats::ngram`: n-gram counts and entropy estimators.

use super::tokens::{with_tokens, Tokens};
use crate::stats::ngram::{self, EntropyStats, Table};
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;

/// (vocab_size, total, dense table or None, sorted codes or None, counts or None).
type CountsTuple<'py> =
    (u64, u64, Option<Bound<'py, PyArray1<u64>>>, Option<Bound<'py, PyArray1<u64>>>, Option<Bound<'py, PyArray1<u64>>>);

/// (plugin, miller_madow, variance, samples, contexts, distinct, vocab_size);
/// the first three in nats.
type StatsTuple = (f64, f64, f64, u64, u64, u64, u64);

fn stats_tuple(s: &EntropyStats) -> StatsTuple {
    (s.plugin, s.miller_madow, s.variance, s.samples, s.contexts, s.distinct, s.vocab)
}

/// N-gram counts of a 2-D token array; see `dataprobes.ngram_counts`.
#[pyfunction]
#[pyo3(signature = (tokens, n, vocab_size, max_dense_entries))]
pub fn ngram_counts<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    n: usize,
    vocab_size: Option<u64>,
    max_dense_entries: u64,
) -> PyResult<CountsTuple<'py>> {
    let tok = Tokens::extract(tokens)?;
    let (_, len) = tok.shape();
    let c = with_tokens!(tok, |x| super::detach(py, || ngram::ngram_counts(x, len, n, vocab_size, max_dense_entries)))?;
    Ok(match c.table {
        Table::Dense(t) => (c.vocab, c.total, Some(t.into_pyarray(py)), None, None),
        Table::Sparse { codes, counts } => {
            (c.vocab, c.total, None, Some(codes.into_pyarray(py)), Some(counts.into_pyarray(py)))
        }
    })
}

/// Statistics of the order-`order` plug-in conditional entropy.
#[pyfunction]
#[pyo3(signature = (tokens, order, vocab_size, max_dense_entries))]
pub fn conditional_entropy_stats(
    py: Python<'_>,
    tokens: &Bound<'_, PyAny>,
    order: usize,
    vocab_size: Option<u64>,
    max_dense_entries: u64,
) -> PyResult<StatsTuple> {
    let tok = Tokens::extract(tokens)?;
    let (_, len) = tok.shape();
    let s = with_tokens!(tok, |x| super::detach(py, || ngram::conditional_entropy(
        x,
        len,
        order,
        vocab_size,
        max_dense_entries
    )))?;
    Ok(stats_tuple(&s))
}

/// Stats for orders 0..=max_order from one counting pass.
#[pyfunction]
#[pyo3(signature = (tokens, max_order, vocab_size, max_dense_entries))]
pub fn entropy_profile_stats(
    py: Python<'_>,
    tokens: &Bound<'_, PyAny>,
    max_order: usize,
    vocab_size: Option<u64>,
    max_dense_entries: u64,
) -> PyResult<Vec<StatsTuple>> {
    let tok = Tokens::extract(tokens)?;
    let (_, len) = tok.shape();
    let s = with_tokens!(tok, |x| super::detach(py, || ngram::entropy_profile(
        x,
        len,
        max_order,
        vocab_size,
        max_dense_entries
    )))?;
    Ok(s.iter().map(stats_tuple).collect())
}
