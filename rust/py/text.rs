//! Bindings for `text`: DSIR's hashed n-gram features, fitted counts, log
//! importance weights and Gumbel noise (python/dataprobes/selection/dsir.py).

use super::tokens::{with_tokens, Tokens};
use crate::error::Error;
use crate::text::hash::HashKind;
use crate::text::ngram::{self, Csr, Ids, Spec, Texts};
use crate::text::resample;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

type CsrTuple<'py> =
    (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u64>>);

fn spec(num_buckets: u64, ngrams: usize, hash: &str, lowercase: bool) -> PyResult<Spec> {
    let hash = match hash {
        "fast" => HashKind::Fast,
        "sha256" => HashKind::Sha256,
        other => return Err(Error::value(format!("hash must be 'fast' or 'sha256', got {other:?}")).into()),
    };
    let s = Spec { num_buckets, ngrams, hash, lowercase };
    s.check()?;
    Ok(s)
}

/// Borrows the UTF-8 of every str of `texts` (a list of str).
fn strings<'py>(texts: &Bound<'py, PyList>) -> PyResult<Vec<Bound<'py, PyString>>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.cast_into::<PyString>().map_err(|e| {
                Error::type_(format!("items[{i}] must be a str, got {}", e.into_inner().get_type())).into()
            })
        })
        .collect()
}

fn with_texts<R: Send>(
    py: Python<'_>,
    texts: &Bound<'_, PyList>,
    f: impl FnOnce(&Texts<'_>) -> crate::error::Result<R> + Send,
) -> PyResult<R> {
    let owned = strings(texts)?;
    let strs: Vec<&str> = owned.iter().map(|s| s.to_str()).collect::<PyResult<_>>()?;
    Ok(super::detach(py, || f(&Texts(&strs)))?)
}

fn csr_tuple(py: Python<'_>, c: Csr) -> CsrTuple<'_> {
    (c.indptr.into_pyarray(py), c.indices.into_pyarray(py), c.data.into_pyarray(py), c.lengths.into_pyarray(py))
}

/// Sparse hashed n-gram counts of texts: (indptr, indices, data, lengths).
#[pyfunction]
#[pyo3(signature = (texts, num_buckets, ngrams, hash, lowercase))]
pub fn dsir_text_features<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    num_buckets: u64,
    ngrams: usize,
    hash: &str,
    lowercase: bool,
) -> PyResult<CsrTuple<'py>> {
    let s = spec(num_buckets, ngrams, hash, lowercase)?;
    Ok(csr_tuple(py, with_texts(py, texts, |t| ngram::features(t, &s))?))
}

/// Bucket counts summed over texts.
#[pyfunction]
#[pyo3(signature = (texts, num_buckets, ngrams, hash, lowercase))]
pub fn dsir_text_counts<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    num_buckets: u64,
    ngrams: usize,
    hash: &str,
    lowercase: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let s = spec(num_buckets, ngrams, hash, lowercase)?;
    Ok(with_texts(py, texts, |t| ngram::counts(t, &s))?.into_pyarray(py))
}

/// Log importance weights of texts (−inf below `min_length`).
#[pyfunction]
#[pyo3(signature = (texts, log_ratio, ngrams, hash, lowercase, min_length))]
pub fn dsir_text_log_weights<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    log_ratio: PyReadonlyArray1<'py, f64>,
    ngrams: usize,
    hash: &str,
    lowercase: bool,
    min_length: u64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let lr = log_ratio.as_slice()?;
    let s = spec(lr.len() as u64, ngrams, hash, lowercase)?;
    Ok(with_texts(py, texts, |t| ngram::log_weights(t, &s, lr, min_length))?.into_pyarray(py))
}

/// Runs `f` on the rows of token ids `tokens` (2-D [1, total]) cut at `offsets`.
macro_rules! with_ids {
    ($py:expr, $tokens:expr, $offsets:expr, |$ex:ident| $body:expr) => {{
        let tok = Tokens::extract($tokens)?;
        let off = $offsets.as_slice()?;
        with_tokens!(tok, |x| {
            let $ex = Ids::new(x, off)?;
            super::detach($py, || $body)
        })
    }};
}

/// Sparse hashed n-gram counts of rows of token ids.
#[pyfunction]
#[pyo3(signature = (tokens, offsets, num_buckets, ngrams, hash))]
pub fn dsir_id_features<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, u64>,
    num_buckets: u64,
    ngrams: usize,
    hash: &str,
) -> PyResult<CsrTuple<'py>> {
    let s = spec(num_buckets, ngrams, hash, false)?;
    let c = with_ids!(py, tokens, offsets, |ex| ngram::features(&ex, &s))?;
    Ok(csr_tuple(py, c))
}

/// Bucket counts summed over rows of token ids.
#[pyfunction]
#[pyo3(signature = (tokens, offsets, num_buckets, ngrams, hash))]
pub fn dsir_id_counts<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, u64>,
    num_buckets: u64,
    ngrams: usize,
    hash: &str,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let s = spec(num_buckets, ngrams, hash, false)?;
    Ok(with_ids!(py, tokens, offsets, |ex| ngram::counts(&ex, &s))?.into_pyarray(py))
}

/// Log importance weights of rows of token ids.
#[pyfunction]
#[pyo3(signature = (tokens, offsets, log_ratio, ngrams, hash, min_length))]
pub fn dsir_id_log_weights<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, u64>,
    log_ratio: PyReadonlyArray1<'py, f64>,
    ngrams: usize,
    hash: &str,
    min_length: u64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let lr = log_ratio.as_slice()?;
    let s = spec(lr.len() as u64, ngrams, hash, false)?;
    let w = with_ids!(py, tokens, offsets, |ex| ngram::log_weights(&ex, &s, lr, min_length))?;
    Ok(w.into_pyarray(py))
}

/// Counter-based Gumbel(0, 1) noise of items `indices` under `seed`.
#[pyfunction]
#[pyo3(signature = (indices, seed))]
pub fn gumbel_noise<'py>(
    py: Python<'py>,
    indices: PyReadonlyArray1<'py, u64>,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let idx = indices.as_slice()?;
    let mut out: Vec<f64> = crate::alloc::zeros(idx.len(), "the Gumbel noise")?;
    super::detach(py, || resample::gumbel_fill(idx, seed, &mut out));
    Ok(out.into_pyarray(py))
}
