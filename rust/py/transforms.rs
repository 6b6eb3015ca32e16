//! Bindings for `process::transforms`.

use crate::error::Error;
use crate::process::transforms;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

/// Mixture component label of each row (stream `indices[r]`).
#[pyfunction]
pub fn mixture_labels<'py>(
    py: Python<'py>,
    weights: PyReadonlyArray1<'py, f64>,
    indices: PyReadonlyArray1<'py, u64>,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let w = weights.as_slice()?;
    if w.is_empty()
        || w.len() > u32::MAX as usize
        || !w.iter().all(|x| x.is_finite() && *x >= 0.0)
        || !(w.iter().sum::<f64>() > 0.0)
    {
        return Err(Error::value("weights must be finite, non-negative, with a positive sum").into());
    }
    let idx = indices.as_slice()?;
    let mut out = vec![0u32; idx.len()];
    super::detach(py, || transforms::labels(w, &mut out, seed, |r| idx[r]));
    Ok(out.into_pyarray(py))
}

/// For each row index, the fresh row it copies in a duplicated data set.
#[pyfunction]
pub fn duplicate_sources<'py>(
    py: Python<'py>,
    fraction: f64,
    indices: PyReadonlyArray1<'py, u64>,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::value(format!("fraction must lie in [0, 1], got {fraction}")).into());
    }
    let idx = indices.as_slice()?;
    let out: Vec<u64> =
        super::detach(py, || idx.iter().map(|&i| transforms::duplicate_source(fraction, seed, i)).collect());
    Ok(out.into_pyarray(py))
}

/// Redraws each token uniformly with probability `rho`, in place; returns the
/// mask of redrawn positions.
#[pyfunction]
pub fn corrupt_tokens<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    vocab_size: u32,
    rho: f64,
    seed: u64,
    indices: PyReadonlyArray1<'py, u64>,
) -> PyResult<Bound<'py, PyArray2<bool>>> {
    if !(0.0..=1.0).contains(&rho) {
        return Err(Error::value(format!("rho must lie in [0, 1], got {rho}")).into());
    }
    if vocab_size == 0 {
        return Err(Error::value("vocab_size must be at least 1").into());
    }
    let idx = indices.as_slice()?;
    macro_rules! run {
        ($t:ty) => {
            if let Ok(mut a) = tokens.extract::<PyReadwriteArray2<'py, $t>>() {
                let (n, len) = (a.shape()[0], a.shape()[1]);
                if idx.len() != n {
                    return Err(Error::value("indices must have one entry per row of tokens").into());
                }
                let mut mask = vec![false; n * len];
                let x = a.as_slice_mut()?;
                super::detach(py, || transforms::corrupt(x, len, vocab_size, rho, seed, |r| idx[r], Some(&mut mask)));
                return mask.into_pyarray(py).reshape([n, len]);
            }
        };
    }
    run!(u8);
    run!(u16);
    run!(u32);
    Err(pyo3::exceptions::PyTypeError::new_err("tokens must be a writable C-contiguous uint8/16/32 array"))
}
