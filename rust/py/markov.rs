//! Bindings for `process::markov`: the constructor and the chain's tables;
//! the shared methods come from `process_class!`.

use super::process::process_class;
use crate::error::Error;
use crate::process::law;
use crate::process::markov::{self, MarkovChain};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

/// Order-k Markov chain (order 0: i.i.d.) core. See `dataprobes.MarkovChain`.
#[pyclass(module = "dataprobes._core", frozen)]
pub struct MarkovCore {
    inner: MarkovChain,
}

process_class!(MarkovCore, sample, {
    #[new]
    #[pyo3(signature = (transition, order, initial=None, normalize=false))]
    fn new(
        py: Python<'_>,
        transition: PyReadonlyArray2<'_, f64>,
        order: usize,
        initial: Option<PyReadonlyArray1<'_, f64>>,
        normalize: bool,
    ) -> PyResult<Self> {
        let vocab = transition.shape()[1];
        let rows = transition.shape()[0];
        let num_states = law::state_space(vocab, order)?;
        if rows != num_states {
            return Err(Error::value(format!(
                "transition must have shape (vocab_size**order, vocab_size) = ({num_states}, {vocab}) \
                 for order {order}, got ({rows}, {vocab})"
            ))
            .into());
        }
        let t = transition.as_slice()?;
        let init = match &initial {
            Some(a) => Some(a.as_slice()?),
            None => None,
        };
        let inner = super::detach(py, || MarkovChain::new(t, vocab, order, init, normalize))?;
        Ok(MarkovCore { inner })
    }

    #[getter]
    fn order(&self) -> usize {
        self.inner.order()
    }

    fn transition<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (s, v) = (self.inner.num_states(), self.inner.vocab());
        PyArray1::from_slice(py, self.inner.probs()).reshape([s, v])
    }
    fn initial<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.inner.initial())
    }
    fn stationary<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.inner.stationary())
    }
    fn row_entropies<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.inner.row_entropies())
    }
    fn row_varentropies<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.inner.row_varentropies())
    }
    fn entropy_rate(&self) -> f64 {
        self.inner.entropy_rate()
    }
    fn varentropy_rate(&self) -> f64 {
        self.inner.varentropy_rate()
    }
});

/// (τ, softmax(logits/τ) rows, achieved rate): the temperature at which the
/// chain's exact entropy rate equals `target` nats within `tol`.
#[pyfunction]
#[pyo3(signature = (logits, order, target, tol=1e-9))]
pub fn tune_temperature<'py>(
    py: Python<'py>,
    logits: PyReadonlyArray2<'py, f64>,
    order: usize,
    target: f64,
    tol: f64,
) -> PyResult<(f64, Bound<'py, PyArray2<f64>>, f64)> {
    let (s, v) = (logits.shape()[0], logits.shape()[1]);
    let g = logits.as_slice()?;
    let (tau, probs, h) = super::detach(py, || markov::tune_temperature(g, v, order, target, tol))?;
    Ok((tau, probs.into_pyarray(py).reshape([s, v])?, h))
}

/// vocab_size**order, or a ValueError if the table would be too large.
#[pyfunction]
pub fn check_state_space(vocab_size: usize, order: usize) -> PyResult<usize> {
    Ok(law::state_space(vocab_size, order)?)
}

/// Benchmark baseline: one raw RNG draw per token, no table lookup (built
/// only with the cargo feature `bench`).
#[cfg(feature = "bench")]
#[pyfunction]
pub fn rng_only_fill<'py>(
    py: Python<'py>,
    num_sequences: usize,
    length: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyAny>> {
    super::output_size(num_sequences, length)?;
    super::fill_new::<u8, _>(py, num_sequences, length, |o| {
        crate::rng::fill_raw(o, length, seed, 0);
        Ok(())
    })
}

/// [N, max(T - order, 0)] int64: the base-V state of an order-`order` chain
/// before each position `order .. T-1` of each row of `tokens`.
#[pyfunction]
pub fn state_indices<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    vocab_size: usize,
    order: usize,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let tok = super::tokens::Tokens::extract(tokens)?;
    let (n, len) = tok.shape();
    let width = len.saturating_sub(order);
    let total = crate::alloc::output_len(crate::alloc::Output::Floats, &[n, width], "state_indices")?;
    let mut out: Vec<i64> = crate::alloc::zeros(total, "state_indices")?;
    super::tokens::with_tokens!(tok, |x| super::detach(py, || law::state_indices(
        x, len, vocab_size, order, &mut out
    )))?;
    out.into_pyarray(py).reshape([n, width])
}
