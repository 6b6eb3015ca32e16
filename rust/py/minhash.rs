//! Bindings for `text::minhash`: MinHash signatures of texts and token ids,
//! and banded-LSH clustering (python/dataprobes/metrics/dedup.py).

use super::tokens::{with_tokens, Tokens};
use crate::alloc::{output_len, zeros, Output, Zero};
use crate::error::Error;
use crate::text::minhash::{self, Items, Lsh, Scheme};
use crate::text::shingle::Unit;
use numpy::{IntoPyArray, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

fn scheme(name: &str) -> PyResult<Scheme> {
    Scheme::parse(name).ok_or_else(|| {
        Error::value(format!("scheme must be 'fast', 'affine32', 'affine64' or 'legacy', got {name:?}")).into()
    })
}

fn unit(name: &str) -> PyResult<Unit> {
    match name {
        "word" => Ok(Unit::Word),
        "char" => Ok(Unit::Char),
        other => Err(Error::value(format!("shingle must be 'word' or 'char', got {other:?}")).into()),
    }
}

/// The permutations of `scheme`: generated from `seed` (`fast`) or the
/// caller's `a`, `b` (datasketch's, drawn by numpy).
fn perms(
    s: Scheme,
    seed: u64,
    num_perm: usize,
    a: Option<PyReadonlyArray1<'_, u64>>,
    b: Option<PyReadonlyArray1<'_, u64>>,
) -> PyResult<(Vec<u64>, Vec<u64>)> {
    if num_perm == 0 || num_perm > minhash::MAX_PERM {
        return Err(Error::value(format!("num_perm must lie in [1, {}], got {num_perm}", minhash::MAX_PERM)).into());
    }
    if s == Scheme::Fast {
        let (a, b) = minhash::fast_perms(seed, num_perm);
        return Ok((a.into_iter().map(u64::from).collect(), b.into_iter().map(u64::from).collect()));
    }
    let (Some(a), Some(b)) = (a, b) else {
        return Err(Error::value("the datasketch schemes need the permutations a and b").into());
    };
    let (a, b) = (a.as_slice()?.to_vec(), b.as_slice()?.to_vec());
    if a.len() != num_perm || b.len() != num_perm {
        return Err(Error::value("the permutations a and b must have num_perm entries each").into());
    }
    if s == Scheme::Affine32 && a.iter().chain(&b).any(|&v| v > u32::MAX as u64) {
        return Err(Error::value("affine32 permutations must fit in 32 bits").into());
    }
    Ok((a, b))
}

/// Fills a new [n, k] array with the signatures of `items`.
fn signatures<'py, I: Items>(
    py: Python<'py>,
    items: &I,
    ngram: usize,
    s: Scheme,
    a: Vec<u64>,
    b: Vec<u64>,
) -> PyResult<Bound<'py, PyAny>> {
    if ngram == 0 {
        return Err(Error::value("ngram must be >= 1").into());
    }
    let (n, k) = (items.len(), a.len());
    fn fresh<T: numpy::Element + Zero>(py: Python<'_>, buf: Vec<T>, n: usize, k: usize) -> PyResult<Bound<'_, PyAny>> {
        Ok(buf.into_pyarray(py).reshape([n, k])?.into_any())
    }
    let total = output_len(Output::Floats, &[n, k], "the signatures")?;
    if s.is_u32() {
        let (a, b): (Vec<u32>, Vec<u32>) =
            (a.iter().map(|&v| v as u32).collect(), b.iter().map(|&v| v as u32).collect());
        let mut out: Vec<u32> = zeros(total, "the signatures")?;
        super::detach(py, || minhash::signatures_u32(items, ngram, s, &a, &b, &mut out));
        fresh(py, out, n, k)
    } else {
        let mut out: Vec<u64> = zeros(total, "the signatures")?;
        super::detach(py, || minhash::signatures_u64(items, ngram, s, &a, &b, &mut out));
        fresh(py, out, n, k)
    }
}

/// MinHash signatures of texts: [len(texts), num_perm], uint32 (`fast`,
/// `affine32`) or uint64 (`affine64`, `legacy`).
#[pyfunction]
#[pyo3(signature = (texts, ngram, shingle, lowercase, scheme_name, seed, num_perm, a=None, b=None))]
#[allow(clippy::too_many_arguments)]
pub fn minhash_texts<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyList>,
    ngram: usize,
    shingle: &str,
    lowercase: bool,
    scheme_name: &str,
    seed: u64,
    num_perm: usize,
    a: Option<PyReadonlyArray1<'py, u64>>,
    b: Option<PyReadonlyArray1<'py, u64>>,
) -> PyResult<Bound<'py, PyAny>> {
    let s = scheme(scheme_name)?;
    let u = unit(shingle)?;
    let (a, b) = perms(s, seed, num_perm, a, b)?;
    let owned: Vec<Bound<'py, PyString>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.cast_into::<PyString>().map_err(|e| {
                Error::type_(format!("items[{i}] must be a str, got {}", e.into_inner().get_type())).into()
            })
        })
        .collect::<PyResult<_>>()?;
    let strs: Vec<&str> = owned.iter().map(|s| s.to_str()).collect::<PyResult<_>>()?;
    let items = minhash::Texts { texts: &strs, unit: u, lowercase };
    signatures(py, &items, ngram, s, a, b)
}

/// MinHash signatures of rows of token ids (2-D [1, total] cut at `offsets`).
#[pyfunction]
#[pyo3(signature = (tokens, offsets, ngram, scheme_name, seed, num_perm, a=None, b=None))]
#[allow(clippy::too_many_arguments)]
pub fn minhash_ids<'py>(
    py: Python<'py>,
    tokens: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, u64>,
    ngram: usize,
    scheme_name: &str,
    seed: u64,
    num_perm: usize,
    a: Option<PyReadonlyArray1<'py, u64>>,
    b: Option<PyReadonlyArray1<'py, u64>>,
) -> PyResult<Bound<'py, PyAny>> {
    let s = scheme(scheme_name)?;
    let (a, b) = perms(s, seed, num_perm, a, b)?;
    let tok = Tokens::extract(tokens)?;
    let off = offsets.as_slice()?;
    with_tokens!(tok, |x| {
        let items = minhash::Ids::new(x, off)?;
        signatures(py, &items, ngram, s, a, b)
    })
}

type ClusterTuple<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyAny>, u64, u64);

/// Banded-LSH clusters of signatures ([n, k] uint32 or uint64):
/// (labels, pairs [m, 2] or an empty [0, 2], candidates checked, pairs kept).
#[pyfunction]
#[pyo3(signature = (signatures, bands, rows, threshold=None, pairs=false))]
pub fn minhash_cluster<'py>(
    py: Python<'py>,
    signatures: &Bound<'py, PyAny>,
    bands: usize,
    rows: usize,
    threshold: Option<f64>,
    pairs: bool,
) -> PyResult<ClusterTuple<'py>> {
    if let Some(t) = threshold {
        if !(t > 0.0 && t <= 1.0) {
            return Err(Error::value(format!("threshold must lie in (0, 1], got {t}")).into());
        }
    }
    let lsh = Lsh { bands, rows, threshold, pairs };
    macro_rules! run {
        ($t:ty) => {
            if let Ok(arr) = signatures.extract::<PyReadonlyArray2<'py, $t>>() {
                if !arr.is_c_contiguous() {
                    return Err(Error::type_("signatures must be C-contiguous").into());
                }
                let (n, k) = (arr.shape()[0], arr.shape()[1]);
                let sig = arr.as_slice()?;
                let c = super::detach(py, || minhash::cluster(sig, n, k, &lsh))?;
                let m = c.pairs.len();
                let flat: Vec<i64> = c.pairs.into_iter().flatten().collect();
                let p = flat.into_pyarray(py).reshape([m, 2])?.into_any();
                return Ok((c.labels.into_pyarray(py), p, c.candidates, c.kept));
            }
        };
    }
    run!(u32);
    run!(u64);
    Err(Error::type_("signatures must be a 2-D uint32 or uint64 array (from minhash)").into())
}
