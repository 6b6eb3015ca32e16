//! Bindings for `process::incontext`: the constructor and the posterior
//! chains; the shared methods come from `process_class!`.

use super::process::{process_class, score_into};
use crate::process::incontext::InContextMarkov;
use numpy::{IntoPyArray, PyArray3, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

/// In-context Markov chain core. See `dataprobes.InContextMarkov`.
#[pyclass(module = "dataprobes._core", frozen)]
pub struct InContextCore {
    inner: InContextMarkov,
}

process_class!(InContextCore, sample, {
    #[new]
    fn new(vocab_size: usize, order: usize, concentration: f64) -> PyResult<Self> {
        Ok(InContextCore { inner: InContextMarkov::new(vocab_size, order, concentration)? })
    }

    #[getter]
    fn order(&self) -> usize {
        self.inner.order()
    }
    #[getter]
    fn concentration(&self) -> f64 {
        self.inner.alpha()
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
        let idx = indices.as_slice()?;
        let (s, v) = (self.inner.num_states(), self.inner.vocab());
        let (out, dims) = score_into!(py, tokens, "posterior_chains", |n, len| [n, s, v], |x, out| self
            .inner
            .posterior_chains(x, len, seed, idx, &mut out));
        out.into_pyarray(py).reshape(dims)
    }
});
