//! Bindings for `text`: DSIR's hashed n-gram features, fitted counts, log
//! importance weights and Gumbel noise (python/dataprobes/selection/dsir.py).

use super::tokens::{with_tokens, Tokens};
use crate::error::Error;
use crate::text::hash::HashKind;
use crate::text::ngram::{self, Csr, Ids, Spec, Texts};
use crate::text::resample;
use crate::text::unicode::WordClasses;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadwriteArray1};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

type CsrTuple<'py> =
    (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<u64>>);

fn spec(num_buckets: u64, ngrams: usize, hash: &str, lowercase: bool, word_classes: &str) -> PyResult<Spec> {
    let hash = match hash {
        "fast" => HashKind::Fast,
        "sha256" => HashKind::Sha256,
        other => return Err(Error::value(format!("hash must be 'fast' or 'sha256', got {other:?}")).into()),
    };
    let classes = WordClasses::parse(word_classes).ok_or_else(|| {
        Error::value(format!("word_classes must be 'nltk-regex' or 'python-re', got {word_classes:?}"))
    })?;
    let s = Spec { num_buckets, ngrams, hash, lowercase, classes };
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
#[pyo3(signature = (texts, num_buckets, ngrams, hash, lowercase, word_classes))]
pub fn dsir_text_features<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    num_buckets: u64,
    ngrams: usize,
    hash: &str,
    lowercase: bool,
    word_classes: &str,
) -> PyResult<CsrTuple<'py>> {
    let s = spec(num_buckets, ngrams, hash, lowercase, word_classes)?;
    Ok(csr_tuple(py, with_texts(py, texts, |t| ngram::features(t, &s))?))
}

/// Adds the bucket counts summed over texts to `out` (int64, contiguous,
/// `num_buckets = len(out)` entries).
#[pyfunction]
#[pyo3(signature = (texts, out, ngrams, hash, lowercase, word_classes))]
pub fn dsir_text_counts<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    mut out: PyReadwriteArray1<'py, i64>,
    ngrams: usize,
    hash: &str,
    lowercase: bool,
    word_classes: &str,
) -> PyResult<()> {
    let total = out.as_slice_mut()?;
    let s = spec(total.len() as u64, ngrams, hash, lowercase, word_classes)?;
    with_texts(py, texts, |t| ngram::counts_into(t, &s, total))
}

/// Log importance weights of texts (−inf below `min_length`).
#[pyfunction]
#[pyo3(signature = (texts, log_ratio, ngrams, hash, lowercase, word_classes, min_length))]
#[allow(clippy::too_many_arguments)]
pub fn dsir_text_log_weights<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    log_ratio: PyReadonlyArray1<'py, f64>,
    ngrams: usize,
    hash: &str,
    lowercase: bool,
    word_classes: &str,
    min_length: u64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let lr = log_ratio.as_slice()?;
    let s = spec(lr.len() as u64, ngrams, hash, lowercase, word_classes)?;
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
    let s = spec(num_buckets, ngrams, hash, false, "python-re")?;
    let c = with_ids!(py, tokens, offsets, |ex| ngram::features(&ex, &s))?;
    Ok(csr_tuple(py, c))
}

/// Adds the bucket counts summed over rows of token ids to `out` (int64,
/// contiguous, `num_buckets = len(out)` entries).
#[pyfunction]
#[pyo3(signature = (tokens, offsets, out, ngrams, hash))]
pub fn dsir_id_counts<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, u64>,
    mut out: PyReadwriteArray1<'py, i64>,
    ngrams: usize,
    hash: &str,
) -> PyResult<()> {
    let total = out.as_slice_mut()?;
    let s = spec(total.len() as u64, ngrams, hash, false, "python-re")?;
    Ok(with_ids!(py, tokens, offsets, |ex| ngram::counts_into(&ex, &s, total))?)
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
    let s = spec(lr.len() as u64, ngrams, hash, false, "python-re")?;
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
