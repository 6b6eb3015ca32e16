//! Bindings for `text::overlap`: the fast diversity measures
//! (python/dataprobes/metrics/diversity.py). Every function takes items as
//! either a list of str (cut by `tokenize`) or token ids `tokens` (2-D
//! [1, total]) cut at `offsets`; `joined` reads all items as one sequence.

use super::tokens::{with_tokens, Tokens};
use crate::error::Error;
use crate::text::overlap::{self, Bleu, Seqs, Split};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

/// Runs `f` on the items as [`Seqs`] with the GIL released (texts are cut
/// on the process pool too).
fn with_seqs<R: Send>(
    py: Python<'_>,
    items: &Bound<'_, PyAny>,
    offsets: Option<PyReadonlyArray1<'_, u64>>,
    tokenize: &str,
    joined: bool,
    f: impl FnOnce(&Seqs) -> crate::error::Result<R> + Send,
) -> PyResult<R> {
    let finish = |s: Seqs| if joined { s.joined() } else { s };
    match offsets {
        None => {
            let split = Split::parse(tokenize)?;
            let list = items.cast::<PyList>().map_err(|_| Error::type_("items must be a list of str"))?;
            let owned: Vec<Bound<'_, PyString>> = list
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    t.cast_into::<PyString>().map_err(|e| {
                        Error::type_(format!("items[{i}] must be a str, got {}", e.into_inner().get_type())).into()
                    })
                })
                .collect::<PyResult<_>>()?;
            let strs: Vec<&str> = owned.iter().map(|s| s.to_str()).collect::<PyResult<_>>()?;
            Ok(super::detach(py, || f(&finish(Seqs::from_texts(&strs, split)?)))?)
        }
        Some(off) => {
            let tok = Tokens::extract(items)?;
            let off = off.as_slice()?;
            with_tokens!(tok, |x| Ok(super::detach(py, || f(&finish(Seqs::from_ids(x, off)?)))?))
        }
    }
}

/// (distinct, total) n-gram counts for n = 1..=max_n, as two uint64 arrays.
#[pyfunction]
#[pyo3(signature = (items, offsets, tokenize, max_n, joined))]
pub fn diversity_ngram_counts<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyAny>,
    offsets: Option<PyReadonlyArray1<'py, u64>>,
    tokenize: &str,
    max_n: usize,
    joined: bool,
) -> PyResult<(Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<u64>>)> {
    let c = with_seqs(py, items, offsets, tokenize, joined, |s| overlap::ngram_counts(s, max_n))?;
    let (d, t): (Vec<u64>, Vec<u64>) = c.into_iter().unzip();
    Ok((d.into_pyarray(py), t.into_pyarray(py)))
}

/// Per item: occurrences of its distinct n-grams in the other items.
#[pyfunction]
#[pyo3(signature = (items, offsets, tokenize, n))]
pub fn diversity_self_repetition<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyAny>,
    offsets: Option<PyReadonlyArray1<'py, u64>>,
    tokenize: &str,
    n: usize,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    Ok(with_seqs(py, items, offsets, tokenize, false, |s| overlap::self_repetition_sums(s, n))?.into_pyarray(py))
}

/// Per item: sentence BLEU against all other items.
#[pyfunction]
#[pyo3(signature = (items, offsets, tokenize, max_n, smoothing, smooth_value))]
pub fn diversity_self_bleu<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyAny>,
    offsets: Option<PyReadonlyArray1<'py, u64>>,
    tokenize: &str,
    max_n: usize,
    smoothing: &str,
    smooth_value: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let kind = match smoothing {
        "nltk-method0" => Bleu::NltkMethod0,
        "nltk-method1" => Bleu::NltkMethod1(smooth_value),
        "sacrebleu-exp" => Bleu::SacreExp,
        "sacrebleu-floor" => Bleu::SacreFloor(smooth_value),
        "sacrebleu-add-k" => Bleu::SacreAddK(smooth_value),
        "sacrebleu-none" => Bleu::SacreNone,
        other => return Err(Error::value(format!("unknown BLEU smoothing {other:?}")).into()),
    };
    Ok(with_seqs(py, items, offsets, tokenize, false, |s| overlap::self_bleu(s, max_n, kind))?.into_pyarray(py))
}

/// Per item i in `lo..hi`: the sum of ROUGE-L F over the items after it.
#[pyfunction]
#[pyo3(signature = (items, offsets, tokenize, lo, hi))]
pub fn diversity_rougel_row_sums<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyAny>,
    offsets: Option<PyReadonlyArray1<'py, u64>>,
    tokenize: &str,
    lo: usize,
    hi: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    Ok(with_seqs(py, items, offsets, tokenize, false, |s| overlap::rougel_row_sums(s, lo, hi))?.into_pyarray(py))
}
