//! Thin PyO3 bindings: convert arguments, release the GIL, convert results.

mod hmm;
mod incontext;
mod markov;
mod ngram;
mod tokens;
mod transforms;

use crate::error::Error;
use crate::process::Scorer;
use crate::tokens::OutToken;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Releases the GIL and runs `f` on the process's fork-safe thread pool
/// (`crate::pool`): the one way heavy work is entered from Python.
pub(crate) fn detach<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
    py.detach(|| crate::pool::install(f))
}

/// Largest [N, T, V] float64 output of `predictive` (2^34 values, 128 GiB).
const MAX_PREDICTIVE_VALUES: usize = 1 << 34;

/// `log_prob` for any [`Scorer`]: [N] float64.
pub(crate) fn log_prob_py<'py, S: Scorer>(
    py: Python<'py>,
    scorer: &S,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let tok = tokens::Tokens::extract(tokens)?;
    let (n, len) = tok.shape();
    let mut out = vec![0.0; n];
    tokens::with_tokens!(tok, |x| detach(py, || scorer.log_prob(x, len, &mut out)))?;
    Ok(out.into_pyarray(py))
}

/// `token_log_probs` for any [`Scorer`]: [N, T] float64.
pub(crate) fn token_log_probs_py<'py, S: Scorer>(
    py: Python<'py>,
    scorer: &S,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let tok = tokens::Tokens::extract(tokens)?;
    let (n, len) = tok.shape();
    let mut out = vec![0.0; n * len];
    tokens::with_tokens!(tok, |x| detach(py, || scorer.token_log_probs(x, len, &mut out)))?;
    out.into_pyarray(py).reshape([n, len])
}

/// `predictive` for any [`Scorer`]: [N, T, V] float64, refused beyond
/// [`MAX_PREDICTIVE_VALUES`] before allocating.
pub(crate) fn predictive_py<'py, S: Scorer>(
    py: Python<'py>,
    scorer: &S,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    let tok = tokens::Tokens::extract(tokens)?;
    let (n, len) = tok.shape();
    let v = scorer.vocab();
    let total =
        n.checked_mul(len).and_then(|x| x.checked_mul(v)).filter(|&x| x <= MAX_PREDICTIVE_VALUES).ok_or_else(|| {
            Error::value(format!(
                "tokens: predictive of {n} x {len} positions x {v} tokens is too large; pass fewer sequences at a time"
            ))
        })?;
    let mut out = vec![0.0; total];
    tokens::with_tokens!(tok, |x| detach(py, || scorer.predictive(x, len, &mut out)))?;
    out.into_pyarray(py).reshape([n, len, v])
}

/// Largest number of tokens one call may write (2^40 bytes at one byte each).
const MAX_OUTPUT_TOKENS: usize = 1 << 40;

pub(crate) fn output_size(num_sequences: usize, length: usize) -> PyResult<usize> {
    num_sequences.checked_mul(length).filter(|&n| n <= MAX_OUTPUT_TOKENS).ok_or_else(|| {
        Error::value(format!(
            "num_sequences * length = {num_sequences} * {length} is too large (at most 2^40 tokens a call); \
                 generate in shards with `start=`"
        ))
        .into()
    })
}

/// Allocates an uninitialised [n, len] array of `T`, fills it with `fill`
/// while the GIL is released, and returns it.
pub(crate) fn fill_new<'py, T, F>(py: Python<'py>, n: usize, len: usize, fill: F) -> PyResult<Bound<'py, PyAny>>
where
    T: OutToken + numpy::Element,
    F: FnOnce(&mut [T]) + Send,
{
    // SAFETY: every element is written by `fill` before the array is exposed.
    let arr = unsafe { PyArray2::<T>::new(py, [n, len], false) };
    {
        let mut rw = arr.readwrite();
        let slice = rw.as_slice_mut()?;
        detach(py, || fill(slice));
    }
    Ok(arr.into_any())
}

/// Samples [n, len] tokens into a new array of the smallest unsigned dtype
/// holding `vocab` tokens: `$fill` is called with the output slice `$o`.
macro_rules! sample_tokens {
    ($py:expr, $vocab:expr, $n:expr, $len:expr, |$o:ident| $fill:expr) => {{
        let (n, len) = ($n, $len);
        $crate::py::output_size(n, len)?;
        let v: usize = $vocab;
        if v <= 1 << 8 {
            $crate::py::fill_new::<u8, _>($py, n, len, |$o: &mut [u8]| $fill)
        } else if v <= 1 << 16 {
            $crate::py::fill_new::<u16, _>($py, n, len, |$o: &mut [u16]| $fill)
        } else {
            $crate::py::fill_new::<u32, _>($py, n, len, |$o: &mut [u32]| $fill)
        }
    }};
}
pub(crate) use sample_tokens;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Value(m) => PyValueError::new_err(m),
            Error::Type(m) => PyTypeError::new_err(m),
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<markov::MarkovCore>()?;
    m.add_class::<incontext::InContextCore>()?;
    m.add_class::<hmm::HmmCore>()?;
    m.add_function(wrap_pyfunction!(transforms::mixture_labels, m)?)?;
    m.add_function(wrap_pyfunction!(transforms::duplicate_sources, m)?)?;
    m.add_function(wrap_pyfunction!(transforms::corrupt_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(markov::tune_temperature, m)?)?;
    m.add_function(wrap_pyfunction!(markov::check_state_space, m)?)?;
    m.add_function(wrap_pyfunction!(markov::rng_only_fill, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::ngram_counts, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::conditional_entropy_stats, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::entropy_profile_stats, m)?)?;
    m.add("DEFAULT_MAX_DENSE_ENTRIES", crate::stats::ngram::DEFAULT_MAX_DENSE)?;
    m.add("MAX_DENSE_NDIM", crate::stats::ngram::MAX_DENSE_NDIM)?;
    m.add("MAX_TABLE_ENTRIES", crate::process::law::MAX_TABLE_ENTRIES)?;
    m.add("ROW_SUM_TOL", crate::process::law::ROW_SUM_TOL)?;
    Ok(())
}
