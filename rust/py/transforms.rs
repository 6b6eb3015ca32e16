//! Bindings for `process::transforms` (which check their own inputs).

use crate::alloc::zeros;
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
    let idx = indices.as_slice()?;
    let mut out: Vec<u32> = zeros(idx.len(), "mixture labels")?;
    super::detach(py, || transforms::labels(w, idx, seed, &mut out))?;
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
    let idx = indices.as_slice()?;
    let mut out: Vec<u64> = zeros(idx.len(), "duplication sources")?;
    super::detach(py, || transforms::duplicate_sources(fraction, seed, idx, &mut out))?;
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
    let idx = indices.as_slice()?;
    macro_rules! run {
        ($t:ty) => {
            if let Ok(mut a) = tokens.extract::<PyReadwriteArray2<'py, $t>>() {
                let (n, len) = (a.shape()[0], a.shape()[1]);
                let mut mask: Vec<bool> = zeros(n * len, "the noise mask")?;
                let x = a.as_slice_mut()?;
                super::detach(py, || transforms::corrupt(x, len, vocab_size, rho, seed, idx, Some(&mut mask)))?;
                return mask.into_pyarray(py).reshape([n, len]);
            }
        };
    }
    run!(u8);
    run!(u16);
    run!(u32);
    Err(Error::type_("tokens must be a writable C-contiguous uint8/16/32 array").into())
}
