//! The Python methods every process class shares, written once against
//! [`Process`]: [`process_class!`] generates them for each `#[pyclass]`
//! (which holds its process in a field `inner`), and the per-process binding
//! files keep only their constructors and what differs.

use crate::alloc::{output_len, zeros, Output};
use crate::error::Result;
use crate::process::{Process, Rows, PATH_STATS};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArray3, PyArrayMethods};
use pyo3::prelude::*;

/// A zeroed float64 output of shape `dims`: refused beyond the output cap
/// (`ValueError`) before anything is allocated, a `MemoryError` when it
/// does not fit.
pub(crate) fn new_floats(dims: &[usize], what: &str) -> Result<Vec<f64>> {
    let total = output_len(Output::Floats, dims, what)?;
    zeros(total, what)
}

/// Extracts `$tokens` ([N, T] integers), allocates a float64 output of shape
/// `[$dims]` (with `$n`, `$len` bound to N and T), and runs `$call` with the
/// typed token slice `$x` and the output `$out` while the GIL is released.
/// Evaluates to the output and its shape.
macro_rules! score_into {
    ($py:expr, $tokens:expr, $what:expr, |$n:ident, $len:ident| [$($dim:expr),*], |$x:ident, $out:ident| $call:expr) => {{
        let tok = $crate::py::tokens::Tokens::extract($tokens)?;
        let ($n, $len) = tok.shape();
        let dims = [$($dim),*];
        let mut $out = $crate::py::process::new_floats(&dims, $what)?;
        $crate::py::tokens::with_tokens!(tok, |$x| $crate::py::detach($py, || $call))?;
        ($out, dims)
    }};
}
pub(crate) use score_into;

/// `sample` / `sample_at` of any [`Process`]: [n, length] tokens in the
/// smallest unsigned dtype holding the vocabulary, row r from `rows`.
pub(crate) fn sample<'py, P: Process>(
    py: Python<'py>,
    p: &P,
    n: usize,
    length: usize,
    seed: u64,
    rows: Rows<'_>,
) -> PyResult<Bound<'py, PyAny>> {
    rows.check(n)?;
    super::sample_tokens!(py, p.vocab(), n, length, |o| p.sample_rows(o, length, seed, rows))
}

/// [N] log p(x).
pub(crate) fn log_prob<'py, P: Process>(
    py: Python<'py>,
    p: &P,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (out, _) = score_into!(py, tokens, "log_prob", |n, len| [n], |x, out| p.log_prob(x, len, &mut out));
    Ok(out.into_pyarray(py))
}

/// [N, T] log p(x_t | x_<t).
pub(crate) fn token_log_probs<'py, P: Process>(
    py: Python<'py>,
    p: &P,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (out, dims) =
        score_into!(py, tokens, "token_log_probs", |n, len| [n, len], |x, out| p.token_log_probs(x, len, &mut out));
    out.into_pyarray(py).reshape(dims)
}

/// [N, T, V] p(x_t = · | x_<t).
pub(crate) fn predictive<'py, P: Process>(
    py: Python<'py>,
    p: &P,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    let v = p.vocab();
    let (out, dims) =
        score_into!(py, tokens, "predictive", |n, len| [n, len, v], |x, out| p.predictive(x, len, &mut out));
    out.into_pyarray(py).reshape(dims)
}

/// [N, 3] path statistics: log p(x), the centred surprisal sum and the
/// varentropy sum of each row (`processes/base.py` reads the columns).
pub(crate) fn path_stats<'py, P: Process>(
    py: Python<'py>,
    p: &P,
    tokens: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let (out, dims) =
        score_into!(py, tokens, "path_stats", |n, _len| [n, PATH_STATS], |x, out| p.path_stats(x, _len, &mut out));
    out.into_pyarray(py).reshape(dims)
}

/// The shared `#[pymethods]` of a process class `$cls` (a struct whose field
/// `inner` implements [`Process`]), followed by the class's own methods:
/// `process_class!(Cls, sample, { ... })` also generates `sample` and
/// `sample_at`; `process_class!(Cls, { ... })` leaves them to the class.
macro_rules! process_class {
    ($cls:ident, sample, { $($own:tt)* }) => {
        $crate::py::process::process_class!($cls, {
            /// [num_sequences, length] tokens in the smallest unsigned dtype,
            /// row r drawn from stream `(seed, start + r)`.
            fn sample<'py>(
                &self,
                py: ::pyo3::Python<'py>,
                num_sequences: usize,
                length: usize,
                seed: u64,
                start: u64,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                let rows = $crate::process::Rows::From(start);
                $crate::py::process::sample(py, &self.inner, num_sequences, length, seed, rows)
            }

            /// Rows drawn from streams `(seed, indices[r])`.
            fn sample_at<'py>(
                &self,
                py: ::pyo3::Python<'py>,
                indices: ::numpy::PyReadonlyArray1<'py, u64>,
                length: usize,
                seed: u64,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::pyo3::PyAny>> {
                let idx = indices.as_slice()?;
                let rows = $crate::process::Rows::At(idx);
                $crate::py::process::sample(py, &self.inner, idx.len(), length, seed, rows)
            }

            $($own)*
        });
    };
    ($cls:ident, { $($own:tt)* }) => {
        #[::pyo3::pymethods]
        impl $cls {
            #[getter]
            fn vocab_size(&self) -> usize {
                $crate::process::Process::vocab(&self.inner)
            }

            /// V^k for an order-k chain, the hidden states of an HMM.
            #[getter]
            fn num_states(&self) -> usize {
                $crate::process::Process::num_states(&self.inner)
            }

            /// [N] log p(x) of each row of a 2-D integer token array.
            fn log_prob<'py>(
                &self,
                py: ::pyo3::Python<'py>,
                tokens: &::pyo3::Bound<'py, ::pyo3::PyAny>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::numpy::PyArray1<f64>>> {
                $crate::py::process::log_prob(py, &self.inner, tokens)
            }

            /// [N, T] log p(x_t | x_<t).
            fn token_log_probs<'py>(
                &self,
                py: ::pyo3::Python<'py>,
                tokens: &::pyo3::Bound<'py, ::pyo3::PyAny>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::numpy::PyArray2<f64>>> {
                $crate::py::process::token_log_probs(py, &self.inner, tokens)
            }

            /// [N, T, V] next-token law p(x_t = · | x_<t) at every position.
            fn predictive<'py>(
                &self,
                py: ::pyo3::Python<'py>,
                tokens: &::pyo3::Bound<'py, ::pyo3::PyAny>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::numpy::PyArray3<f64>>> {
                $crate::py::process::predictive(py, &self.inner, tokens)
            }

            /// [N, 3]: log p(x), Σ centred surprisal, Σ predictive varentropy.
            fn path_stats<'py>(
                &self,
                py: ::pyo3::Python<'py>,
                tokens: &::pyo3::Bound<'py, ::pyo3::PyAny>,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'py, ::numpy::PyArray2<f64>>> {
                $crate::py::process::path_stats(py, &self.inner, tokens)
            }

            $($own)*
        }
    };
}
pub(crate) use process_class;
