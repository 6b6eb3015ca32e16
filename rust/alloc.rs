//! Allocation of everything whose size a user controls (outputs, tables,
//! scratch): fallible, so that a request that does not fit is an
//! [`Error::Memory`] (Python `MemoryError`) instead of an abort, and capped,
//! so that an absurd request is a `ValueError` naming the argument before
//! anything is allocated (architecture.md, Rust core).

use crate::error::{Error, Result};

/// Types whose all-zero bit pattern is a valid value (0, 0.0, false).
pub trait Zero: Copy {}
impl Zero for u8 {}
impl Zero for u16 {}
impl Zero for u32 {}
impl Zero for u64 {}
impl Zero for usize {}
impl Zero for i64 {}
impl Zero for f64 {}
impl Zero for bool {}

/// A zeroed vector of `n` entries (`calloc`: large ones are lazily zeroed
/// pages, touched first by the thread that uses them), or an
/// [`Error::Memory`] naming `what` instead of an allocation abort.
pub fn zeros<X: Zero>(n: usize, what: &str) -> Result<Vec<X>> {
    if n == 0 || std::mem::size_of::<X>() == 0 {
        return Ok(Vec::new());
    }
    let err =
        || Error::memory(format!("not enough memory for {what}: {n} entries of {} bytes", std::mem::size_of::<X>()));
    let layout = std::alloc::Layout::array::<X>(n).map_err(|_| err())?;
    // SAFETY: the layout has non-zero size; a null pointer is checked for;
    // the memory comes from the global allocator with the layout of a
    // Vec<X> of capacity n, and all-zero bytes are valid values of X.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout) as *mut X;
        if ptr.is_null() {
            return Err(err());
        }
        advise_huge_pages(ptr as *mut u8, layout.size());
        Ok(Vec::from_raw_parts(ptr, n, n))
    }
}

/// Asks Linux to back a large fresh allocation with transparent huge pages
/// (where THP is in `madvise` mode): first touches then fault 2 MiB at a time
/// instead of 4 KiB. Page faults took about a fifth of a large sparse count's
/// time; the hint cut that count's wall time by about 8%. A hint only.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    const HUGE: usize = 2 << 20;
    if bytes < 4 * HUGE {
        return;
    }
    // the 2 MiB-aligned part of the allocation
    let start = (ptr as usize).div_ceil(HUGE) * HUGE;
    let end = (ptr as usize + bytes) / HUGE * HUGE;
    if end > start {
        // SAFETY: [start, end) lies inside the allocation just made; madvise
        // with MADV_HUGEPAGE changes no contents, and its result is ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _bytes: usize) {}

/// Largest number of tokens one call may write (2^40: 1 TiB at one byte each).
pub const MAX_OUTPUT_TOKENS: usize = 1 << 40;
/// Largest number of float64 values one call may return (2^34: 128 GiB).
pub const MAX_OUTPUT_FLOATS: usize = 1 << 34;

/// What an output holds, for its size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Sampled tokens (or hidden states): at most [`MAX_OUTPUT_TOKENS`].
    Tokens,
    /// float64 (or other 8-byte) values: at most [`MAX_OUTPUT_FLOATS`].
    Floats,
}

/// The number of entries of an output of shape `dims`, or a `ValueError`
/// naming `what` when it exceeds the cap of its kind: the one output-size
/// check of the core (architecture.md, Rust core).
pub fn output_len(kind: Output, dims: &[usize], what: &str) -> Result<usize> {
    let (cap, log2, unit, fix) = match kind {
        Output::Tokens => (MAX_OUTPUT_TOKENS, 40, "tokens", "generate in shards with `start=`"),
        Output::Floats => (MAX_OUTPUT_FLOATS, 34, "float64 values", "pass fewer sequences at a time"),
    };
    let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&t| t <= cap);
    total.ok_or_else(|| {
        let shape: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        Error::value(format!(
            "{what}: an output of shape ({}) is too large (at most 2^{log2} {unit} a call); {fix}",
            shape.join(", ")
        ))
    })
}

/// An empty vector with room for exactly `n` entries, or an
/// [`Error::Memory`] naming `what`.
pub fn with_capacity<X>(n: usize, what: &str) -> Result<Vec<X>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::memory(format!("not enough memory for {what}: {n} entries of {} bytes", std::mem::size_of::<X>()))
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_caps() {
        assert_eq!(output_len(Output::Tokens, &[3, 4], "x").unwrap(), 12);
        assert_eq!(output_len(Output::Tokens, &[1 << 20, 1 << 20], "x").unwrap(), 1 << 40);
        assert!(output_len(Output::Tokens, &[(1 << 20) + 1, 1 << 20], "x").is_err());
        assert!(output_len(Output::Floats, &[1 << 20, 1 << 10, 1 << 5], "x").is_err());
        let e = output_len(Output::Floats, &[usize::MAX, 2], "predictive").unwrap_err();
        assert!(e.to_string().starts_with("predictive: an output of shape"), "{e}");
        assert_eq!(output_len(Output::Floats, &[0, usize::MAX], "x").unwrap(), 0);
    }

    #[test]
    fn impossible_allocations_are_errors() {
        assert!(matches!(zeros::<f64>(usize::MAX / 4, "x"), Err(Error::Memory(_))));
        assert!(matches!(zeros::<u64>(1 << 60, "x"), Err(Error::Memory(_))));
        assert!(matches!(with_capacity::<u64>(1 << 60, "x"), Err(Error::Memory(_))));
        let z: Vec<f64> = zeros(1000, "x").unwrap();
        assert!(z.len() == 1000 && z.iter().all(|&x| x == 0.0));
        let b: Vec<bool> = zeros(3, "x").unwrap();
        assert_eq!(b, [false; 3]);
        assert_eq!(with_capacity::<u8>(10, "x").unwrap().capacity(), 10);
    }
}
