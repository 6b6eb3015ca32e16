//! Bindings for `process::hmm`.

use super::tokens::{with_tokens, Tokens};
use super::{output_size, sample_tokens};
use crate::error::Error;
use crate::process::hmm::{self, Hmm};
use crate::tokens::OutToken;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

/// Largest float64 output of `predictive` / `filtered_states` (2^32 values,
/// 32 GiB): beyond that the caller should score in chunks of sequences.
const MAX_OUTPUT_FLOATS: usize = 1 << 32;

fn float_output(n: usize, len: usize, width: usize, what: &str) -> PyResult<usize> {
    n.checked_mul(len).and_then(|x| x.checked_mul(width)).filter(|&x| x <= MAX_OUTPUT_FLOATS).ok_or_else(|| {
        Error::value(format!(
            "{what}: num_sequences * length * {width} = {n} * {len} * {width} float64 values exceeds 2^32; \
                 pass fewer sequences at a time"
        ))
        .into()
    })
}

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

/// Allocates uninitialised [n, len] arrays of tokens (`T`) and states (`U`),
/// samples row r of both from stream `(seed, index(r))` with the GIL
/// released, and returns them.
fn sample_pair<'py, T, U>(
    py: Python<'py>,
    inner: &Hmm,
    n: usize,
    len: usize,
    seed: u64,
    index: &(dyn Fn(usize) -> u64 + Sync),
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)>
where
    T: OutToken + numpy::Element,
    U: OutToken + numpy::Element,
{
    // SAFETY: every element of both arrays is written before they are exposed.
    let x = unsafe { PyArray2::<T>::new(py, [n, len], false) };
    let z = unsafe { PyArray2::<U>::new(py, [n, len], false) };
    {
        let mut xw = x.readwrite();
        let mut zw = z.readwrite();
        let xs = xw.as_slice_mut()?;
        let zs = zw.as_slice_mut()?;
        super::detach(py, || inner.sample_rows(xs, Some(zs), len, seed, index));
    }
    Ok((x.into_any(), z.into_any()))
}

/// `n` rows of `len` tokens, row r from stream `(seed, index(r))`, in the
/// smallest unsigned dtype; with `return_states` a (tokens, states) tuple.
fn sample_impl<'py>(
    py: Python<'py>,
    inner: &Hmm,
    n: usize,
    len: usize,
    seed: u64,
    index: &(dyn Fn(usize) -> u64 + Sync),
    return_states: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if !return_states {
        return sample_tokens!(py, inner.vocab(), n, len, |o| inner.sample_rows::<_, u8>(o, None, len, seed, index));
    }
    output_size(n, len)?;
    let pair = match (width_class(inner.vocab()), width_class(inner.n_states())) {
        (0, 0) => sample_pair::<u8, u8>(py, inner, n, len, seed, index),
        (0, 1) => sample_pair::<u8, u16>(py, inner, n, len, seed, index),
        (0, _) => sample_pair::<u8, u32>(py, inner, n, len, seed, index),
        (1, 0) => sample_pair::<u16, u8>(py, inner, n, len, seed, index),
        (1, 1) => sample_pair::<u16, u16>(py, inner, n, len, seed, index),
        (1, _) => sample_pair::<u16, u32>(py, inner, n, len, seed, index),
        (_, 0) => sample_pair::<u32, u8>(py, inner, n, len, seed, index),
        (_, 1) => sample_pair::<u32, u16>(py, inner, n, len, seed, index),
        (_, _) => sample_pair::<u32, u32>(py, inner, n, len, seed, index),
    }?;
    Ok(pair.into_pyobject(py)?.into_any())
}

/// Hidden Markov model core. See `dataprobes.HMM`.
#[pyclass(module = "dataprobes._core", frozen)]
pub struct HmmCore {
    inner: Hmm,
}

#[pymethods]
impl HmmCore {
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

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab()
    }
    #[getter]
    fn n_states(&self) -> usize {
        self.inner.n_states()
    }
    /// Whether the forward pass runs the AVX2 code path (results are
    /// bit-identical either way).
    #[getter]
    fn simd(&self) -> bool {
        self.inner.simd()
    }

    fn transition<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let s = self.inner.n_states();
        PyArray1::from_slice(py, self.inner.transition()).reshape([s, s])
    }
    fn emission<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (s, v) = (self.inner.n_states(), self.inner.vocab());
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
        sample_impl(py, &self.inner, num_sequences, length, seed, &|i| start.wrapping_add(i as u64), return_states)
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
        sample_impl(py, &self.inner, idx.len(), length, seed, &|r| idx[r], return_states)
    }

    fn log_prob<'py>(&self, py: Python<'py>, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<f64>>> {
        super::log_prob_py(py, &self.inner, tokens)
    }

    fn token_log_probs<'py>(&self, py: Python<'py>, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        super::token_log_probs_py(py, &self.inner, tokens)
    }

    /// [N, T, V]: p(x_t = v | x_<t).
    fn predictive<'py>(&self, py: Python<'py>, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray3<f64>>> {
        super::predictive_py(py, &self.inner, tokens)
    }

    /// [N, T, S]: p(s_t = j | x_≤t).
    fn filtered_states<'py>(&self, py: Python<'py>, tokens: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray3<f64>>> {
        let tok = Tokens::extract(tokens)?;
        let (n, len) = tok.shape();
        let s = self.inner.n_states();
        float_output(n, len, s, "filtered_states")?;
        let mut out = vec![0.0; n * len * s];
        with_tokens!(tok, |x| super::detach(py, || self.inner.filtered_states(x, len, &mut out)))?;
        out.into_pyarray(py).reshape([n, len, s])
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
        let (mut lp, mut c, mut v) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        with_tokens!(tok, |x| super::detach(py, || self.inner.path_stats(x, len, &mut lp, &mut c, &mut v)))?;
        Ok((lp.into_pyarray(py), c.into_pyarray(py), v.into_pyarray(py)))
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
        let mut out = vec![0.0; num_sequences];
        super::detach(py, || self.inner.sampled_surprisal(length, burn_in, seed, start, &mut out))?;
        Ok(out.into_pyarray(py))
    }
}
