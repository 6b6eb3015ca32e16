//! Bindings for `process::incontext`.

use super::sample_tokens;
use super::tokens::{with_tokens, Tokens};
use crate::process::incontext::InContextMarkov;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

/// In-context Markov chain core. See `dataprobes.InContextMarkov`.
#[pyclass(module = "dataprobes._core", frozen)]
pub struct InContextCore {
    inner: InContextMarkov,
}

#[pymethods]
impl InContextCore {
    #[new]
    fn new(vocab_size: usize, order: usize, concentration: f64) -> PyResult<Self> {
        Ok(InContextCore { inner: InContextMarkov::new(vocab_size, order, concentration)? })
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab()
    }
    #[getter]
    fn order(&self) -> usize {
        self.inner.order()
    }
    #[getter]
    fn concentration(&self) -> f64 {
        self.inner.alpha()
    }
    #[getter]
    fn n_states(&self) -> usize {
        self.inner.n_states()
    }

    fn sample<'py>(
        &self,
        py: Python<'py>,
        num_sequences: usize,
        length: usize,
        seed: u64,
        start: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let inner = &self.inner;
        sample_tokens!(py, inner.vocab(), num_sequences, length, |o| inner
            .sample_rows(o, length, seed, |r| start.wrapping_add(r as u64)))
    }

    fn sample_at<'py>(
        &self,
        py: Python<'py>,
        indices: PyReadonlyArray1<'py, u64>,
        length: usize,
        seed: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let idx = indices.as_slice()?;
        let inner = &self.inner;
        sample_tokens!(py, inner.vocab(), idx.len(), length, |o| inner.sample_rows(o, length, seed, |r| idx[r]))
    }

    /// [N, V^k, V] chains drawn from the posterior given each row; row r uses
    /// the chain stream of `indices[r]`.
    fn posterior_chains<'py>(
        &self,
        py: Python<'py>,
        tokens: &Bound<'py, PyAny>,
        seed: u64,
        indices: PyReadonlyArray1<'py, u64>,
    ) -> PyResult<Bound<'py, PyArray3<f64>>> {
        let tok = Tokens::extract(tokens)?;
        let (n, len) = tok.shape();
        let idx = indices.as_slice()?;
        if idx.len() != n {
            return Err(crate::error::Error::value("indices must have one entry per row of tokens").into());
        }
        let (s, v) = (self.inner.n_states(), self.inner.vocab());
        let total = n.checked_mul(s * v).ok_or_else(|| crate::error::Error::value("too many chains requested"))?;
        let mut out = vec![0.0f64; total];
        with_tokens!(tok, |x| super::detach(py, || self.inner.posterior_chains(x, len, seed, |r| idx[r], &mut out)))?;
        out.into_pyarray(py).reshape([n, s, v])
    }

    fn log_prob<'py>(&self, py: Python<'py>, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        super::log_prob_py(py, &self.inner, tokens)
    }

    fn token_log_probs<'py>(&self, py: Python<'py>, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        super::token_log_probs_py(py, &self.inner, tokens)
    }

    /// [N, T, V] next-token law p(x_t = · | x_<t) at every position.
    fn predictive<'py>(&self, py: Python<'py>, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray3<f64>>> {
        super::predictive_py(py, &self.inner, tokens)
    }

    /// (log p(x), Σ centred surprisal, Σ predictive varentropy) per row.
    #[allow(clippy::type_complexity)]
    fn path_stats<'py>(
        &self,
        py: Python<'py>,
        tokens: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)> {
        let tok = Tokens::extract(tokens)?;
        let (n, len) = tok.shape();
        let mut out = vec![0.0; n * 3];
        with_tokens!(tok, |x| super::detach(py, || self.inner.path_stats(x, len, &mut out)))?;
        let col = |j: usize| PyArray1::from_iter(py, out.chunks(3).map(|r| r[j]));
        Ok((col(0), col(1), col(2)))
    }
}
