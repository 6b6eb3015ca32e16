//! Bindings for `process::hmm`: the constructor, the tables, sampling with
//! the hidden states, the filter and the sampled surprisal; the shared
//! methods come from `process_class!`.

use super::output_size;
use super::process::{process_class, score_into};
use crate::alloc::{zeros, Zero};
use crate::error::Error;
use crate::process::hmm::{self, Hmm};
use crate::process::Rows;
use crate::tokens::OutToken;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

/// Smallest unsigned dtype class for values below `n`: 0 = u8, 1 = u16, 2 = u32.
fn width_class(n: usize) -> u8 {
    if n <= 1 << 8 {
        0
    } else if n <= 1 << 16 {
        1
    } else {
        2
    }
}

/// Allocates zeroed [n, len] buffers of tokens (`T`) and states (`U`) (a
/// `MemoryError` if they do not fit), samples row r of both from stream
/// `(seed, rows.stream(r))` with the GIL released, and hands them to numpy.
fn sample_pair<'py, T, U>(
    py: Python<'py>,
    inner: &Hmm,
    n: usize,
    len: usize,
    seed: u64,
    rows: Rows<'_>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)>
where
    T: OutToken + numpy::Element + Zero,
    U: OutToken + numpy::Element + Zero,
{
    let mut xs: Vec<T> = zeros(n * len, "the sampled tokens")?;
    let mut zs: Vec<U> = zeros(n * len, "the sampled hidden states")?;
    super::detach(py, || inner.sample_rows(&mut xs, Some(&mut zs), len, seed, |r| rows.stream(r)));
    Ok((xs.into_pyarray(py).reshape([n, len])?.into_any(), zs.into_pyarray(py).reshape([n, len])?.into_any()))
}

/// `n` rows of `len` tokens, row r from stream `(seed, rows.stream(r))`, in
/// the smallest unsigned dtype; with `return_states` a (tokens, states) tuple.
fn sample_impl<'py>(
    py: Python<'py>,
    inner: &Hmm,
    n: usize,
    len: usize,
    seed: u64,
    rows: Rows<'_>,
    return_states: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if !return_states {
        return super::process::sample(py, inner, n, len, seed, rows);
    }
    rows.check(n)?;
    output_size(n, len)?;
    let pair = match (width_class(inner.vocab()), width_class(inner.num_states())) {
        (0, 0) => sample_pair::<u8, u8>(py, inner, n, len, seed, rows),
        (0, 1) => sample_pair::<u8, u16>(py, inner, n, len, seed, rows),
        (0, _) => sample_pair::<u8, u32>(py, inner, n, len, seed, rows),
        (1, 0) => sample_pair::<u16, u8>(py, inner, n, len, seed, rows),
        (1, 1) => sample_pair::<u16, u16>(py, inner, n, len, seed, rows),
        (1, _) => sample_pair::<u16, u32>(py, inner, n, len, seed, rows),
        (_, 0) => sample_pair::<u32, u8>(py, inner, n, len, seed, rows),
        (_, 1) => sample_pair::<u32, u16>(py, inner, n, len, seed, rows),
        (_, _) => sample_pair::<u32, u32>(py, inner, n, len, seed, rows),
    }?;
    Ok(pair.into_pyobject(py)?.into_any())
}

/// Hidden Markov model core. See `dataprobes.HMM`.
#[pyclass(module = "dataprobes._core", frozen)]
pub struct HmmCore {
    inner: Hmm,
}

process_class!(HmmCore, {
    #[new]
    #[pyo3(signature = (transition, emission, initial=None, normalize=false))]
    fn new(
        py: Python<'_>,
        transition: PyReadonlyArray2<'_, f64>,
        emission: PyReadonlyArray2<'_, f64>,
        initial: Option<PyReadonlyArray1<'_, f64>>,
        normalize: bool,
    ) -> PyResult<Self> {
        let (r, c) = (transition.shape()[0], transition.shape()[1]);
        if r != c {
            return Err(Error::value(format!(
                "transition must be square, shape (num_states, num_states), got ({r}, {c})"
            ))
            .into());
        }
        let (er, v) = (emission.shape()[0], emission.shape()[1]);
        if er != r {
            return Err(Error::value(format!(
                "emission must have one row per hidden state, shape (num_states, vocab_size) = ({r}, vocab_size), \
                 got ({er}, {v}) for a transition of shape ({r}, {r})"
            ))
            .into());
        }
        hmm::check_sizes(r, v)?;
        let t = transition.as_slice()?;
        let e = emission.as_slice()?;
        let init = match &initial {
            Some(a) => Some(a.as_slice()?),
            None => None,
        };
        let inner = super::detach(py, || Hmm::new(t, e, r, v, init, normalize))?;
        Ok(HmmCore { inner })
    }

    /// Whether the forward pass runs the AVX2 code path (results are
    /// bit-identical either way).
    #[getter]
    fn simd(&self) -> bool {
        self.inner.simd()
    }

    fn transition<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let s = self.inner.num_states();
        PyArray1::from_slice(py, self.inner.transition()).reshape([s, s])
    }
    fn emission<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (s, v) = (self.inner.num_states(), self.inner.vocab());
        PyArray1::from_slice(py, self.inner.emission()).reshape([s, v])
    }
    fn initial<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.inner.initial())
    }
    fn stationary<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.inner.stationary())
    }

    /// [num_sequences, length] tokens in the smallest unsigned dtype, and with
    /// `return_states` also the hidden paths (smallest unsigned dtype for S).
    #[pyo3(signature = (num_sequences, length, seed, start, return_states=false))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        num_sequences: usize,
        length: usize,
        seed: u64,
        start: u64,
        return_states: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        sample_impl(py, &self.inner, num_sequences, length, seed, Rows::From(start), return_states)
    }

    /// Rows drawn from streams `(seed, indices[r])` (same layout as `sample`).
    #[pyo3(signature = (indices, length, seed, return_states=false))]
    fn sample_at<'py>(
        &self,
        py: Python<'py>,
        indices: PyReadonlyArray1<'py, u64>,
        length: usize,
        seed: u64,
        return_states: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let idx = indices.as_slice()?;
        sample_impl(py, &self.inner, idx.len(), length, seed, Rows::At(idx), return_states)
    }

    /// [N, T, S]: p(s_t = j | x_≤t).
    fn filtered_states<'py>(&self, py: Python<'py>, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray3<f64>>> {
        let s = self.inner.num_states();
        let (out, dims) = score_into!(py, tokens, "filtered_states", |n, len| [n, len, s], |x, out| self
            .inner
            .filtered_states(x, len, &mut out));
        out.into_pyarray(py).reshape(dims)
    }

    /// [num_sequences]: -(1/(length - burn_in)) Σ_{t >= burn_in} log p(x_t | x_<t)
    /// of the sequences `sample(num_sequences, length, seed, start)` returns,
    /// sampled and scored without materialising them.
    fn sampled_surprisal<'py>(
        &self,
        py: Python<'py>,
        num_sequences: usize,
        length: usize,
        burn_in: usize,
        seed: u64,
        start: u64,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        output_size(num_sequences, length)?;
        Rows::From(start).check(num_sequences)?;
        let mut out = super::process::new_floats(&[num_sequences], "sampled_surprisal")?;
        super::detach(py, || self.inner.sampled_surprisal(length, burn_in, seed, start, &mut out))?;
        Ok(out.into_pyarray(py))
    }
});
