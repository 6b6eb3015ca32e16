//! The row checks and limits every process shares: stochastic-row
//! validation, the size of a state space, the table cap and the stationary
//! solver's tolerance. No process module borrows these from another.

use crate::error::{Error, Result};
use crate::tokens::{checked_index, InToken};

/// Largest accepted transition table, in entries (V^(k+1) for a chain, S^2 and
/// S·V for an HMM). At 24 bytes an entry (probabilities, log-probabilities,
/// alias table) this is 12 GiB.
pub const MAX_TABLE_ENTRIES: usize = 1 << 29;
/// Rows (and the initial law) must sum to 1 within this absolute tolerance
/// unless `normalize` is set; accepted rows are renormalised exactly.
pub const ROW_SUM_TOL: f64 = 1e-6;
/// L1 change of one lazy power-iteration step at which π is taken as converged.
pub const STATIONARY_TOL: f64 = 1e-14;

/// Number of states V^order of a chain over `vocab` tokens whose table of
/// V^(order+1) entries must stay within `max_entries`; `what` ends the
/// error message (what the cap is about and the fix).
pub fn bounded_state_space(vocab: usize, order: usize, max_entries: usize, what: &str) -> Result<usize> {
    if vocab == 0 {
        return Err(Error::value("vocab_size must be at least 1"));
    }
    if vocab > u32::MAX as usize {
        return Err(Error::value(format!("vocab_size {vocab} exceeds 2^32 - 1")));
    }
    let states = u32::try_from(order)
        .ok()
        .and_then(|k| vocab.checked_pow(k))
        .filter(|s| s.checked_mul(vocab).is_some_and(|e| e <= max_entries));
    states.ok_or_else(|| {
        Error::value(format!(
            "state space too large: vocab_size^(order+1) = {vocab}^{} exceeds {max_entries}{what}",
            order as u128 + 1
        ))
    })
}

/// Number of states V^order of an order-k chain, refusing state spaces whose
/// table would exceed [`MAX_TABLE_ENTRIES`].
pub fn state_space(vocab: usize, order: usize) -> Result<usize> {
    bounded_state_space(vocab, order, MAX_TABLE_ENTRIES, " table entries; use a smaller vocab_size or order")
}

/// Iteration budget of the stationary solver for a table of `entries`
/// entries: about 2·10^9 multiply-adds, between 10^3 and 10^5 iterations.
pub fn stationary_iterations(entries: usize) -> usize {
    (2_000_000_000usize / entries.max(1)).clamp(1_000, 100_000)
}

/// Checks that `p` is a probability vector (finite, non-negative, positive
/// sum, and summing to 1 within [`ROW_SUM_TOL`] unless `normalize`), and
/// writes its normalised copy to `out`. `what` names the row in errors.
pub fn normalise_row(p: &[f64], out: &mut [f64], what: &dyn Fn() -> String, normalize: bool) -> Result<()> {
    if out.len() != p.len() {
        return Err(Error::value(format!("{}: {} entries for {} outputs", what(), p.len(), out.len())));
    }
    let mut total = 0.0;
    for (j, &x) in p.iter().enumerate() {
        if !x.is_finite() || x < 0.0 {
            return Err(Error::value(format!(
                "{}: entry {j} is {x}; probabilities must be finite and non-negative",
                what()
            )));
        }
        total += x;
    }
    if !(total > 0.0) {
        return Err(Error::value(format!("{} sums to 0; it must be a probability distribution", what())));
    }
    if !normalize && (total - 1.0).abs() > ROW_SUM_TOL {
        return Err(Error::value(format!(
            "{} sums to {total}, not 1 (tolerance {ROW_SUM_TOL}); pass normalize=True to rescale it",
            what()
        )));
    }
    for (o, &x) in out.iter_mut().zip(p) {
        *o = x / total;
    }
    Ok(())
}

/// Normalises the rows of a row-major `[rows, width]` table `p` into `out`
/// (in parallel), naming row s as `"{name} row {s}"` in errors.
pub fn normalise_rows(p: &[f64], out: &mut [f64], width: usize, name: &str, normalize: bool) -> Result<()> {
    use rayon::prelude::*;
    if width == 0 || p.len() != out.len() || !p.len().is_multiple_of(width) {
        return Err(Error::value(format!("{name}: {} entries do not make rows of {width}", p.len())));
    }
    out.par_chunks_mut(width)
        .zip(p.par_chunks(width))
        .enumerate()
        .try_for_each(|(s, (o, row))| normalise_row(row, o, &|| format!("{name} row {s}"), normalize))
}

/// Checks an optional initial law of `states` entries and returns its
/// normalised copy; `shape` says what it must have (for the error).
pub fn initial_law(
    initial: Option<&[f64]>,
    states: usize,
    shape: &dyn Fn() -> String,
    normalize: bool,
) -> Result<Option<Vec<f64>>> {
    let Some(init) = initial else { return Ok(None) };
    if init.len() != states {
        return Err(Error::value(format!("initial must have {}, got {}", shape(), init.len())));
    }
    let mut out = vec![0.0; states];
    normalise_row(init, &mut out, &|| "initial".to_string(), normalize)?;
    Ok(Some(out))
}

/// The state of an order-`order` chain before each position t = k .. T-1 of
/// each row of `tokens` ([N, length], tokens below `vocab`): the previous k
/// tokens read as a base-V number, most recent last,
/// `s_t = Σ_j x_{t-k+j} V^(k-1-j)` (math.md, Markov chains). Written to `out`
/// [N, max(T - k, 0)] as int64, ready to index a table of V^k rows. Errors
/// name a token outside the vocabulary, or V^k beyond 2^63 - 1.
pub fn state_indices<T: InToken>(
    tokens: &[T],
    length: usize,
    vocab: usize,
    order: usize,
    out: &mut [i64],
) -> Result<()> {
    use rayon::prelude::*;
    if vocab == 0 {
        return Err(Error::value("vocab_size must be at least 1"));
    }
    let fits =
        u32::try_from(order).ok().and_then(|k| (vocab as u64).checked_pow(k)).is_some_and(|s| s <= i64::MAX as u64);
    if !fits {
        return Err(Error::value(format!(
            "order: vocab_size^order = {vocab}^{order} exceeds 2^63 - 1, so states cannot be indexed"
        )));
    }
    let width = length.saturating_sub(order);
    crate::process::rows_of(tokens.len(), length, out.len(), width)?;
    if width == 0 {
        // Still check the tokens: an out-of-vocabulary token is an error
        // however short the rows are.
        return tokens.par_chunks(length.max(1)).enumerate().try_for_each(|(i, row)| {
            row.iter().enumerate().try_for_each(|(t, &x)| checked_index(x, vocab, i, t).map(|_| ()))
        });
    }
    let v = vocab as i64;
    tokens.par_chunks(length).zip(out.par_chunks_mut(width)).enumerate().try_for_each(|(i, (row, o))| {
        let mut s = 0i64;
        let mut high = 1i64; // V^(k-1): the weight of the oldest token
        for _ in 1..order {
            high *= v;
        }
        for (t, &x) in row.iter().enumerate() {
            let x = checked_index(x, vocab, i, t)? as i64;
            if t >= order {
                o[t - order] = s;
            }
            if order > 0 {
                // Drop the oldest token once k are held, then append x.
                if t >= order {
                    s -= row[t - order].index() as i64 * high; // checked when it was read
                }
                s = s * v + x;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_spaces() {
        assert_eq!(state_space(3, 2).unwrap(), 9);
        assert_eq!(state_space(5, 0).unwrap(), 1);
        assert!(state_space(1 << 20, 3).is_err());
        assert!(state_space(0, 1).is_err());
        assert!(state_space(2, usize::MAX).is_err());
        let e = bounded_state_space(4, 20, 1 << 24, " for in-context chains").unwrap_err();
        assert!(e.to_string().ends_with("exceeds 16777216 for in-context chains"), "{e}");
    }

    #[test]
    fn state_indices_match_the_definition() {
        let (v, len) = (3usize, 7usize);
        let x: Vec<u8> = vec![2, 0, 1, 1, 2, 0, 2, 1, 1, 0, 0, 2, 2, 1];
        for k in 0..=8 {
            let w = len.saturating_sub(k);
            let mut out = vec![-1i64; 2 * w];
            state_indices(&x, len, v, k, &mut out).unwrap();
            for (i, row) in x.chunks(len).enumerate() {
                for t in k..len {
                    let want = row[t - k..t].iter().fold(0i64, |a, &y| a * v as i64 + y as i64);
                    assert_eq!(out[i * w + t - k], want, "k={k} row {i} t={t}");
                }
            }
        }
        let mut out = vec![0i64; 2 * 6];
        assert!(state_indices(&[0i64, 1, 2, 3, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], 7, 3, 1, &mut out).is_err());
        assert!(state_indices(&[0i8, -1], 2, 3, 1, &mut out[..2]).is_err());
        assert!(state_indices(&[0u8, 1], 2, 3, 3, &mut []).is_ok());
        assert!(state_indices(&[0u8, 5], 2, 3, 3, &mut []).is_err());
        assert!(state_indices(&[0u8, 1], 2, 1 << 20, 4, &mut []).is_err());
        assert!(state_indices(&[0u8, 1], 2, 3, 1, &mut [0; 3]).is_err());
    }

    #[test]
    fn rows() {
        let mut o = [0.0; 2];
        assert!(normalise_row(&[0.5, 0.5], &mut o, &|| "r".into(), false).is_ok());
        assert!(normalise_row(&[0.5, 0.6], &mut o, &|| "r".into(), false).is_err());
        normalise_row(&[1.0, 3.0], &mut o, &|| "r".into(), true).unwrap();
        assert_eq!(o, [0.25, 0.75]);
        assert!(normalise_row(&[f64::NAN, 1.0], &mut o, &|| "r".into(), true).is_err());
        assert!(normalise_row(&[0.0, 0.0], &mut o, &|| "r".into(), true).is_err());
        assert!(normalise_row(&[1.0], &mut o, &|| "r".into(), true).is_err());
        let mut t = [0.0; 4];
        let e = normalise_rows(&[0.5, 0.5, 0.2, 0.2], &mut t, 2, "transition", false).unwrap_err();
        assert!(e.to_string().starts_with("transition row 1 sums to"), "{e}");
        assert!(initial_law(Some(&[1.0]), 2, &|| "x".into(), false).is_err());
        assert_eq!(initial_law(None, 2, &|| "x".into(), false).unwrap(), None);
    }
}
