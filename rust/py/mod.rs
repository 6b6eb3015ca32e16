//! Thin PyO3 bindings: convert arguments, release the GIL, convert results.

mod markov;
mod ngram;
mod tokens;

use crate::error::Error;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

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
    m.add_function(wrap_pyfunction!(markov::tune_temperature, m)?)?;
    m.add_function(wrap_pyfunction!(markov::check_state_space, m)?)?;
    m.add_function(wrap_pyfunction!(markov::rng_only_fill, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::ngram_counts, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::conditional_entropy_stats, m)?)?;
    m.add_function(wrap_pyfunction!(ngram::entropy_profile_stats, m)?)?;
    m.add("DEFAULT_MAX_DENSE_ENTRIES", crate::stats::ngram::DEFAULT_MAX_DENSE)?;
    m.add("MAX_DENSE_NDIM", crate::stats::ngram::MAX_DENSE_NDIM)?;
    m.add("MAX_TABLE_ENTRIES", crate::process::markov::MAX_TABLE_ENTRIES)?;
    m.add("ROW_SUM_TOL", crate::process::markov::ROW_SUM_TOL)?;
    Ok(())
}
