//! Thin PyO3 bindings: convert arguments, release the GIL, convert results.

mod diversity;
mod hmm;
mod incontext;
mod markov;
mod minhash;
mod ngram;
mod process;
mod text;
mod tokens;
mod transforms;

use crate::alloc::{output_len, zeros, Output, Zero};
use crate::error::Error;
use crate::tokens::OutToken;
use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Releases the GIL and runs `f` on the process's fork-safe thread pool
/// (`crate::pool`): the one way heavy work is entered from Python.
pub(crate) fn detach<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
    py.detach(|| crate::pool::install(f))
}

/// The number of tokens of a [num_sequences, length] output, refused beyond
/// the output cap (`crate::alloc`).
pub(crate) fn output_size(num_sequences: usize, length: usize) -> PyResult<usize> {
    Ok(output_len(Output::Tokens, &[num_sequences, length], "num_sequences * length")?)
}

/// Allocates a zeroed [n, len] buffer of `T` (a `MemoryError` if it does not
/// fit), fills it with `fill` while the GIL is released, and hands it to
/// numpy without copying.
pub(crate) fn fill_new<'py, T, F>(py: Python<'py>, n: usize, len: usize, fill: F) -> PyResult<Bound<'py, PyAny>>
where
    T: OutToken + numpy::Element + Zero,
    F: FnOnce(&mut [T]) -> crate::error::Result<()> + Send,
{
    let total = output_len(Output::Tokens, &[n, len], "num_sequences * length")?;
    let mut buf: Vec<T> = zeros(total, "the sampled tokens")?;
    detach(py, || fill(&mut buf))?;
    Ok(buf.into_pyarray(py).reshape([n, len])?.into_any())
}

/// Samples [n, len] tokens into a new array of the smallest unsigned dtype
/// holding `vocab` tokens: `$fill` (a core `Result<()>`) is called with the
/// output slice `$o`.
macro_rules! sample_tokens {
    ($py:expr, $vocab:expr, $n:expr, $len:expr, |$o:ident| $fill:expr) => {{
        let (n, len) = ($n, $len);
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

/// The one conversion of core errors: `Value` → `ValueError`, `Type` →
/// `TypeError`, `Memory` → `MemoryError`.
impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Value(m) => PyValueError::new_err(m),
            Error::Type(m) => PyTypeError::new_err(m),
            Error::Memory(m) => PyMemoryError::new_err(m),
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
    m.add_function(wrap_pyfunction!(markov::state_indices, m)?)?;
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(markov::rng_only_fill, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::ngram_counts, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::conditional_entropy_stats, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::entropy_profile_stats, m)?)?;
    m.add_function(wrap_pyfunction!(text::dsir_text_features, m)?)?;
    m.add_function(wrap_pyfunction!(text::dsir_text_counts, m)?)?;
    m.add_function(wrap_pyfunction!(text::dsir_text_log_weights, m)?)?;
    m.add_function(wrap_pyfunction!(text::dsir_id_features, m)?)?;
    m.add_function(wrap_pyfunction!(text::dsir_id_counts, m)?)?;
    m.add_function(wrap_pyfunction!(text::dsir_id_log_weights, m)?)?;
    m.add_function(wrap_pyfunction!(text::gumbel_noise, m)?)?;
    m.add_function(wrap_pyfunction!(diversity::diversity_ngram_counts, m)?)?;
    m.add_function(wrap_pyfunction!(diversity::diversity_self_repetition, m)?)?;
    m.add_function(wrap_pyfunction!(diversity::diversity_self_bleu, m)?)?;
    m.add_function(wrap_pyfunction!(diversity::diversity_rougel_row_sums, m)?)?;
    m.add("DIVERSITY_MAX_N", crate::text::overlap::MAX_N)?;

    m.add_function(wrap_pyfunction!(minhash::minhash_texts, m)?)?;
    m.add_function(wrap_pyfunction!(minhash::minhash_ids, m)?)?;
    m.add_function(wrap_pyfunction!(minhash::minhash_cluster, m)?)?;
    m.add("MINHASH_FAST_VERSION", crate::text::minhash::FAST_VERSION)?;
    m.add("MINHASH_MAX_PERM", crate::text::minhash::MAX_PERM)?;
    m.add("DSIR_FAST_HASH_VERSION", crate::text::hash::FAST_VERSION)?;
    m.add("DSIR_UNICODE_VERSION", crate::text::unicode_tables::UNICODE_VERSION)?;
    m.add("DSIR_REGEX_UNICODE_VERSION", crate::text::unicode_tables::REGEX_UNICODE_VERSION)?;
    m.add("DSIR_REGEX_MODULE_VERSION", crate::text::unicode_tables::REGEX_MODULE_VERSION)?;
    m.add("DSIR_MAX_BUCKETS", crate::text::ngram::MAX_BUCKETS)?;
    m.add("DSIR_MAX_NGRAMS", crate::text::ngram::MAX_NGRAMS)?;
    m.add("DEFAULT_MAX_DENSE_ENTRIES", crate::stats::ngram::DEFAULT_MAX_DENSE)?;
    m.add("MAX_DENSE_NDIM", crate::stats::ngram::MAX_DENSE_NDIM)?;
    m.add("MAX_TABLE_ENTRIES", crate::process::law::MAX_TABLE_ENTRIES)?;
    m.add("ROW_SUM_TOL", crate::process::law::ROW_SUM_TOL)?;
    Ok(())
}
