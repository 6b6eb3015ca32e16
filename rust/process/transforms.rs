//! Row-level randomness shared by composite probes: mixture labels,
//! duplication sources and token noise. Each uses its own salted stream per
//! row index, so it is independent of the token streams and deterministic in
//! `(seed, index)` alone.

use crate::alias;
use crate::dist;
use crate::error::{Error, Result};
use crate::rng::{mix64, Xoshiro256pp};
use crate::tokens::OutToken;
use rayon::prelude::*;

const LABEL_SALT: u64 = 0x4C41_4245_4C00_0001;
const DUP_SALT: u64 = 0x4455_504C_0000_0001;
const NOISE_SALT: u64 = 0x4E4F_4953_4500_0001;

/// Component label of each row r, drawn from the (normalised) `weights`
/// with stream `indices[r]`, into `out`. The weights must be finite,
/// non-negative, with a positive sum.
pub fn labels(weights: &[f64], indices: &[u64], seed: u64, out: &mut [u32]) -> Result<()> {
    if weights.is_empty()
        || weights.len() > u32::MAX as usize
        || !weights.iter().all(|x| x.is_finite() && *x >= 0.0)
        || !(weights.iter().sum::<f64>() > 0.0)
    {
        return Err(Error::value("weights must be finite, non-negative, with a positive sum"));
    }
    check_indices(indices, out.len())?;
    let mut table = vec![0u64; weights.len()];
    alias::build(weights, &mut table);
    let salted = mix64(seed ^ LABEL_SALT);
    out.par_iter_mut().enumerate().for_each(|(r, o)| {
        let mut rng = Xoshiro256pp::for_sequence(salted, indices[r]);
        *o = alias::draw(&table, &mut rng);
    });
    Ok(())
}

/// An index list must have one entry per row.
fn check_indices(indices: &[u64], rows: usize) -> Result<()> {
    if indices.len() != rows {
        return Err(Error::value("indices must have one entry per row of tokens"));
    }
    Ok(())
}

/// Checks that `fraction` is a probability; the duplication sources of rows
/// `indices` into `out` (see [`duplicate_source`]).
pub fn duplicate_sources(fraction: f64, seed: u64, indices: &[u64], out: &mut [u64]) -> Result<()> {
    if !(0.0..=1.0).contains(&fraction) {
        return Err(Error::value(format!("fraction must lie in [0, 1], got {fraction}")));
    }
    check_indices(indices, out.len())?;
    out.par_iter_mut().zip(indices.par_iter()).for_each(|(o, &i)| *o = duplicate_source(fraction, seed, i));
    Ok(())
}

/// The fresh row that row `i` of a duplicated data set copies: with
/// probability `fraction` (and i > 0) row i repeats a uniformly chosen
/// earlier row, itself resolved the same way; otherwise it is fresh (itself).
pub fn duplicate_source(fraction: f64, seed: u64, mut i: u64) -> u64 {
    let salted = mix64(seed ^ DUP_SALT);
    loop {
        if i == 0 {
            return 0;
        }
        let mut rng = Xoshiro256pp::for_sequence(salted, i);
        if rng.next_f64() >= fraction {
            return i;
        }
        // uniform in [0, i): bias below i / 2^64
        i = ((rng.next_u64() as u128 * i as u128) >> 64) as u64;
    }
}

/// Replaces each token, independently with probability `rho`, by a uniform
/// draw over the vocabulary (which may equal the original token). Row r
/// uses stream `(salted seed, indices[r])`. `mask`, when given, records which
/// positions were redrawn. Checks `rho` (a probability), `vocab` (>= 1) and
/// the sizes.
pub fn corrupt<T: OutToken>(
    tokens: &mut [T],
    length: usize,
    vocab: u32,
    rho: f64,
    seed: u64,
    indices: &[u64],
    mask: Option<&mut [bool]>,
) -> Result<()> {
    if !(0.0..=1.0).contains(&rho) {
        return Err(Error::value(format!("rho must lie in [0, 1], got {rho}")));
    }
    if vocab == 0 {
        return Err(Error::value("vocab_size must be at least 1"));
    }
    if mask.as_ref().is_some_and(|m| m.len() != tokens.len()) {
        return Err(Error::value("mask must have the shape of tokens"));
    }
    if length == 0 {
        return Ok(());
    }
    if !tokens.len().is_multiple_of(length) {
        return Err(Error::value("tokens: not a whole number of rows"));
    }
    check_indices(indices, tokens.len() / length)?;
    let salted = mix64(seed ^ NOISE_SALT);
    let work = |r: usize, row: &mut [T], m: Option<&mut [bool]>| {
        let mut rng = Xoshiro256pp::for_sequence(salted, indices[r]);
        let mut m = m;
        for (t, x) in row.iter_mut().enumerate() {
            let hit = rng.next_f64() < rho;
            let y = dist::below(&mut rng, vocab);
            if hit {
                *x = T::from_u32(y);
            }
            if let Some(m) = m.as_deref_mut() {
                m[t] = hit;
            }
        }
    };
    match mask {
        Some(mask) => tokens
            .par_chunks_mut(length)
            .zip(mask.par_chunks_mut(length))
            .enumerate()
            .for_each(|(r, (row, m))| work(r, row, Some(m))),
        None => tokens.par_chunks_mut(length).enumerate().for_each(|(r, row)| work(r, row, None)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_sources_point_to_fresh_earlier_rows() {
        for i in 0..2000u64 {
            let s = duplicate_source(0.4, 7, i);
            assert!(s <= i);
            assert_eq!(duplicate_source(0.4, 7, s), s, "a source is fresh");
        }
        let dups = (0..10_000u64).filter(|&i| duplicate_source(0.3, 1, i) != i).count();
        // about 30% duplicates (a row whose chosen row is itself fresh still counts)
        assert!((dups as f64 / 1e4 - 0.3).abs() < 0.02, "{dups}");
        assert!((0..100).all(|i| duplicate_source(0.0, 3, i) == i));
    }

    #[test]
    fn corruption_rate() {
        let mut x = vec![0u8; 100 * 1000];
        let mut mask = vec![false; x.len()];
        let idx: Vec<u64> = (0..100).collect();
        corrupt(&mut x, 1000, 5, 0.2, 3, &idx, Some(&mut mask)).unwrap();
        let hits = mask.iter().filter(|&&m| m).count() as f64 / x.len() as f64;
        assert!((hits - 0.2).abs() < 0.01);
        let changed = x.iter().filter(|&&v| v != 0).count() as f64 / x.len() as f64;
        assert!((changed - 0.2 * 0.8).abs() < 0.01, "{changed}");
    }

    #[test]
    fn inputs_are_checked() {
        let mut x = vec![0u8; 6];
        assert!(corrupt(&mut x, 3, 5, 1.5, 0, &[0, 1], None).is_err());
        assert!(corrupt(&mut x, 3, 0, 0.5, 0, &[0, 1], None).is_err());
        assert!(corrupt(&mut x, 3, 5, 0.5, 0, &[0], None).is_err());
        assert!(corrupt(&mut x, 3, 5, 0.5, 0, &[0, 1], Some(&mut [false; 5])).is_err());
        assert!(corrupt(&mut x, 3, 5, 0.5, 0, &[0, 1], None).is_ok());
        let mut l = [0u32; 2];
        assert!(labels(&[0.5, f64::NAN], &[0, 1], 0, &mut l).is_err());
        assert!(labels(&[0.0, 0.0], &[0, 1], 0, &mut l).is_err());
        assert!(labels(&[], &[0, 1], 0, &mut l).is_err());
        assert!(labels(&[1.0, 2.0], &[0], 0, &mut l).is_err());
        labels(&[0.0, 2.0], &[0, 1], 0, &mut l).unwrap();
        assert_eq!(l, [1, 1]);
        let mut d = [0u64; 3];
        assert!(duplicate_sources(f64::NAN, 0, &[0, 1, 2], &mut d).is_err());
        assert!(duplicate_sources(-0.1, 0, &[0, 1, 2], &mut d).is_err());
        duplicate_sources(0.0, 0, &[0, 1, 2], &mut d).unwrap();
        assert_eq!(d, [0, 1, 2]);
    }
}
