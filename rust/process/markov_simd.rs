//! SIMD kernels for order-0 and order-1 Markov chains (BENCHMARKS.md, "Markov
//! sampling and log_prob (issue 9)").
//!
//! * Sampling: [`SIMD_ROWS`] sequences in lockstep, four per 256-bit vector,
//!   each lane running its own sequence's xoshiro256++ stream
//!   (`rng::Xoshiro256pp`) through the same alias arithmetic as
//!   [`alias::draw`]: the Lemire bucket and the coin come from one vector of
//!   draws, the table entries of all lanes from one gather. Lane g therefore
//!   consumes exactly the draws the scalar sampler would, in the same order,
//!   and writes the same tokens. The rare draw that Lemire's method may have
//!   to reject (probability < V / 2^32) is done by the scalar code from the
//!   lane's state before the draw, so that case is exact too.
//! * `log_prob`: several rows at a time, each row with the scalar loop's four
//!   partial sums as the four lanes of one vector (lane j sums the terms at
//!   positions ≡ j mod 4, in order) and its final combination
//!   `first + (a0 + a1) + (a2 + a3)`; the table entries come from gathers.
//!   Same additions in the same order: the same bits. Interleaving rows keeps
//!   several independent gathers and additions in flight (the table is
//!   128 KiB at V = 128 and misses L1).
//!
//! The kernels need AVX2 and are chosen at run time ([`available`]); the
//! scalar loops in `markov.rs` remain the fallback and the reference the tests
//! compare against.

use crate::alias;
use crate::rng::Xoshiro256pp;
use crate::tokens::{InToken, OutToken};

/// Sequences one thread samples in lockstep on the SIMD path.
pub const SIMD_ROWS: usize = 16;
/// Rows one thread scores at a time on the SIMD path.
pub const LP_ROWS: usize = 4;
/// Largest log-probability table (entries) the `log_prob` kernels take: 8 MiB
/// (V <= 1024 at order 1). Beyond it every entry is a DRAM and TLB miss, and
/// the gathers were slower than the scalar row loop (0.7-0.9x at V = 4096;
/// software prefetching did not help), so those rows stay scalar.
pub const LP_MAX_TABLE: usize = 1 << 20;

/// Whether the SIMD kernels can run on this CPU.
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Samples [`SIMD_ROWS`] rows of `length` (>= 1) tokens into `chunk` (row
/// after row), row g from `rngs[g]`. Order 1: the first token from
/// `first_table` (the initial law), then token t from the table row of token
/// t - 1. Order 0 (`order0`): every token from `table[..v]`, and
/// `first_table` must be that row. Returns false (writing nothing) when the
/// SIMD path is not available.
pub fn sample_rows<T: OutToken>(
    table: &[u64],
    first_table: &[u64],
    v: usize,
    order0: bool,
    chunk: &mut [T],
    length: usize,
    rngs: &mut [Xoshiro256pp; SIMD_ROWS],
) -> bool {
    assert!(length >= 1 && chunk.len() == length * SIMD_ROWS);
    assert!(v >= 1 && table.len() >= if order0 { v } else { v * v } && v <= u32::MAX as usize);
    #[cfg(target_arch = "x86_64")]
    {
        if available() {
            // SAFETY: AVX2 is present; the table bounds were checked above.
            unsafe { avx2::sample_rows(table, first_table, v, order0, chunk, length, rngs) };
            return true;
        }
    }
    let _ = (table, first_table, order0, rngs);
    false
}

/// log p(x) of [`LP_ROWS`] rows of `length` (>= 1) validated tokens (every
/// index < `v`) into `out`, bit-identical to `MarkovChain::log_prob_order01`:
/// order 0 sums `lp[x_t]`, order 1 `first[x_0] + Σ lp[x_{t-1} v + x_t]`.
/// Returns false (writing nothing) when the SIMD path is not available or the
/// table exceeds [`LP_MAX_TABLE`].
pub fn log_prob_rows<T: InToken>(
    lp: &[f64],
    first: &[f64],
    v: usize,
    order0: bool,
    rows: &[T],
    length: usize,
    out: &mut [f64],
) -> bool {
    assert!(length >= 1 && rows.len() == length * LP_ROWS && out.len() == LP_ROWS);
    let max_index = if order0 { v } else { v * v };
    assert!(lp.len() >= max_index);
    if max_index > LP_MAX_TABLE {
        return false;
    }
    debug_assert!(rows.iter().all(|x| x.index() < v as u64));
    #[cfg(target_arch = "x86_64")]
    {
        if available() {
            // SAFETY: AVX2 (and AVX-512F where used) is present; the rows are
            // validated (indices < v), so every gathered index is below
            // max_index <= lp.len().
            unsafe {
                match as_bytes(rows) {
                    Some(x) if avx512_available() => {
                        avx2::log_prob_rows_u8_avx512(lp, first, v, order0, x, length, out)
                    }
                    Some(x) => avx2::log_prob_rows_u8(lp, first, v, order0, x, length, out),
                    None => avx2::log_prob_rows(lp, first, v, order0, rows, length, out),
                }
            }
            return true;
        }
    }
    let _ = (first, order0);
    false
}

/// Whether every token of `rows` is below `v` (one vectorisable pass; byte
/// tokens compared as bytes).
pub fn all_below<T: InToken>(rows: &[T], v: usize) -> bool {
    match as_bytes(rows) {
        Some(x) => v > 255 || x.iter().fold(0u8, |m, &b| m.max(b)) < v as u8,
        None => rows.iter().fold(0u64, |m, x| m.max(x.index())) < v as u64,
    }
}

/// The rows as bytes when the tokens are `u8` (what the samplers write for
/// V <= 256): their kernels widen them in registers.
fn as_bytes<T: InToken>(rows: &[T]) -> Option<&[u8]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<u8>() {
        // SAFETY: T is u8.
        Some(unsafe { std::slice::from_raw_parts(rows.as_ptr() as *const u8, rows.len()) })
    } else {
        None
    }
}

/// Whether the 8-wide gather kernels can run (AVX-512F).
#[inline]
pub fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    const G: usize = SIMD_ROWS / 4;
    /// Steps buffered before the tokens are written out row by row.
    const BLOCK: usize = 64;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi64::<L>(x), _mm256_srli_epi64::<R>(x))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes(x: __m256i) -> [u64; 4] {
        let mut a = [0u64; 4];
        // SAFETY: a is 32 bytes.
        unsafe { _mm256_storeu_si256(a.as_mut_ptr() as *mut __m256i, x) };
        a
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn from_lanes(a: [u64; 4]) -> __m256i {
        _mm256_setr_epi64x(a[0] as i64, a[1] as i64, a[2] as i64, a[3] as i64)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sample_rows<T: OutToken>(
        table: &[u64],
        first_table: &[u64],
        v: usize,
        order0: bool,
        chunk: &mut [T],
        length: usize,
        rngs: &mut [Xoshiro256pp; SIMD_ROWS],
    ) {
        // First token of every row: one scalar draw each.
        let mut s0 = [0u64; SIMD_ROWS];
        for (g, rng) in rngs.iter_mut().enumerate() {
            let x = alias::draw(first_table, rng);
            chunk[g * length] = T::from_u32(x);
            s0[g] = x as u64;
        }
        if length == 1 {
            return;
        }
        let n = _mm256_set1_epi64x(v as i64);
        let stride = if order0 { _mm256_setzero_si256() } else { n };
        let lo32 = _mm256_set1_epi64x(0xFFFF_FFFF);
        let pack = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
        let base = table.as_ptr() as *const i64;
        // st[q][w]: word w of the states of rows 4q..4q+4; sv[q]: their tokens.
        let mut st = [[_mm256_setzero_si256(); 4]; G];
        let mut sv = [_mm256_setzero_si256(); G];
        for (q, (stq, svq)) in st.iter_mut().zip(sv.iter_mut()).enumerate() {
            for (w, word) in stq.iter_mut().enumerate() {
                *word = from_lanes(std::array::from_fn(|l| rngs[4 * q + l].state()[w]));
            }
            *svq = from_lanes(std::array::from_fn(|l| s0[4 * q + l]));
        }
        let mut buf = [[0u32; SIMD_ROWS]; BLOCK];
        let mut t = 1;
        while t < length {
            let nb = BLOCK.min(length - t);
            for slot in buf.iter_mut().take(nb) {
                for q in 0..G {
                    let [a0, a1, a2, a3] = st[q];
                    // xoshiro256++ in each lane (Xoshiro256pp::next_u64)
                    let r = _mm256_add_epi64(rotl::<23, 41>(_mm256_add_epi64(a0, a3)), a0);
                    let tt = _mm256_slli_epi64::<17>(a1);
                    let b2 = _mm256_xor_si256(a2, a0);
                    let b3 = _mm256_xor_si256(a3, a1);
                    let b1 = _mm256_xor_si256(a1, b2);
                    let b0 = _mm256_xor_si256(a0, b3);
                    let b2 = _mm256_xor_si256(b2, tt);
                    let b3 = rotl::<45, 19>(b3);
                    // alias::draw: Lemire bucket from the high word, coin from the low one
                    let m = _mm256_mul_epu32(_mm256_srli_epi64::<32>(r), n);
                    let reject = _mm256_cmpgt_epi64(n, _mm256_and_si256(m, lo32));
                    let j = _mm256_srli_epi64::<32>(m);
                    let y = if _mm256_movemask_pd(_mm256_castsi256_pd(reject)) != 0 {
                        // Possibly rejected: redo this step in scalar code from the
                        // states before it (exact, and rare: < V / 2^32 per draw).
                        let (w0, w1, w2, w3) = (lanes(a0), lanes(a1), lanes(a2), lanes(a3));
                        let cur = lanes(sv[q]);
                        let mut ys = [0u64; 4];
                        let mut after = [[0u64; 4]; 4];
                        for l in 0..4 {
                            let mut rng = Xoshiro256pp::from_state([w0[l], w1[l], w2[l], w3[l]]);
                            let row = if order0 { 0 } else { cur[l] as usize * v };
                            ys[l] = alias::draw(&table[row..row + v], &mut rng) as u64;
                            let s = rng.state();
                            for w in 0..4 {
                                after[w][l] = s[w];
                            }
                        }
                        st[q] =
                            [from_lanes(after[0]), from_lanes(after[1]), from_lanes(after[2]), from_lanes(after[3])];
                        from_lanes(ys)
                    } else {
                        let idx = _mm256_add_epi64(_mm256_mul_epu32(sv[q], stride), j);
                        // SAFETY: idx = s * v + j with s, j < v: inside the table.
                        let e = unsafe { _mm256_i64gather_epi64::<8>(base, idx) };
                        let keep = _mm256_cmpgt_epi64(_mm256_srli_epi64::<32>(e), _mm256_and_si256(r, lo32));
                        st[q] = [b0, b1, b2, b3];
                        _mm256_blendv_epi8(_mm256_and_si256(e, lo32), j, keep)
                    };
                    sv[q] = y;
                    let packed = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(y, pack));
                    // SAFETY: slot[4q..4q+4] is in bounds (4q + 4 <= SIMD_ROWS).
                    unsafe { _mm_storeu_si128(slot.as_mut_ptr().add(4 * q) as *mut __m128i, packed) };
                }
            }
            for (g, row) in chunk.chunks_exact_mut(length).enumerate() {
                for (o, slot) in row[t..t + nb].iter_mut().zip(&buf) {
                    *o = T::from_u32(slot[g]);
                }
            }
            t += nb;
        }
    }

    /// Defines a `log_prob_rows` kernel for u8 tokens: indices widened and
    /// computed in registers, 8 positions of a row per step. `$gather` turns
    /// (table base, 8 indices) into the 8 entries as two 4-wide halves in
    /// position order, added to the lane sums in that order, so lane j still
    /// sums positions ≡ j mod 4 in order whichever gather is used.
    macro_rules! log_prob_rows_u8_kernel {
        ($(#[$doc:meta])* $name:ident, $features:literal, |$base:ident, $idx:ident| $gather:expr) => {
            $(#[$doc])*
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(
                lp: &[f64],
                first: &[f64],
                v: usize,
                order0: bool,
                rows: &[u8],
                length: usize,
                out: &mut [f64],
            ) {
                let $base = lp.as_ptr();
                let off = if order0 { 0 } else { 1 };
                let n = length - off;
                let vv = _mm256_set1_epi32(if order0 { 0 } else { v as i32 });
                let mut acc = [_mm256_setzero_pd(); LP_ROWS];
                let full = n / 8 * 8;
                let mut q = 0;
                while q < full {
                    for (r, a) in acc.iter_mut().enumerate() {
                        // SAFETY: q + 8 <= n, so bytes [q, q + 8 + off) of the row
                        // exist; every index is < max_index (validated rows).
                        unsafe {
                            let row = rows.as_ptr().add(r * length + q);
                            let prev = _mm256_cvtepu8_epi32(_mm_loadl_epi64(row as *const __m128i));
                            let cur = _mm256_cvtepu8_epi32(_mm_loadl_epi64(row.add(off) as *const __m128i));
                            let $idx = _mm256_add_epi32(_mm256_mullo_epi32(prev, vv), cur);
                            let (lo, hi): (__m256d, __m256d) = $gather;
                            *a = _mm256_add_pd(_mm256_add_pd(*a, lo), hi);
                        }
                    }
                    q += 8;
                }
                finish_u8(lp, first, v, order0, rows, length, out, &acc, q);
            }
        };
    }

    log_prob_rows_u8_kernel!(
        /// AVX2: two 4-wide gathers per 8 positions of a row.
        log_prob_rows_u8,
        "avx2",
        |base, idx| (
            _mm256_i32gather_pd::<8>(base, _mm256_castsi256_si128(idx)),
            _mm256_i32gather_pd::<8>(base, _mm256_extracti128_si256::<1>(idx)),
        )
    );

    log_prob_rows_u8_kernel!(
        /// AVX-512F: one 8-wide gather per 8 positions of a row.
        log_prob_rows_u8_avx512,
        "avx2,avx512f",
        |base, idx| {
            let g = _mm512_i32gather_pd::<8>(idx, base);
            (_mm512_castpd512_pd256(g), _mm512_extractf64x4_pd::<1>(g))
        }
    );

    /// Positions q.. (q a multiple of 4) of each row in scalar code, then the
    /// scalar loop's final combination of the four partial sums.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    fn finish_u8(
        lp: &[f64],
        first: &[f64],
        v: usize,
        order0: bool,
        rows: &[u8],
        length: usize,
        out: &mut [f64],
        acc: &[__m256d; LP_ROWS],
        q: usize,
    ) {
        let off = if order0 { 0 } else { 1 };
        for r in 0..LP_ROWS {
            let row = &rows[r * length..(r + 1) * length];
            let mut a = [0.0f64; 4];
            // SAFETY: a is 32 bytes.
            unsafe { _mm256_storeu_pd(a.as_mut_ptr(), acc[r]) };
            for p in q..length - off {
                let s = if order0 { 0 } else { row[p] as usize * v };
                a[(p - q) % 4] += lp[s + row[p + off] as usize];
            }
            let f = if order0 { 0.0 } else { first[row[0] as usize] };
            out[r] = f + (a[0] + a[1]) + (a[2] + a[3]);
        }
    }

    /// Positions whose table indices are computed at once.
    const LP_BLOCK: usize = 256;

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn log_prob_rows<T: InToken>(
        lp: &[f64],
        first: &[f64],
        v: usize,
        order0: bool,
        rows: &[T],
        length: usize,
        out: &mut [f64],
    ) {
        let base = lp.as_ptr();
        // Terms: order 0, lp[x_t] for t in 0..length; order 1, lp[x_{t-1} v + x_t]
        // for t in 1..length (the scalar loop's `rest`).
        let off = if order0 { 0 } else { 1 };
        let n = length - off;
        let mut acc = [_mm256_setzero_pd(); LP_ROWS];
        let mut idx = [[0i32; LP_BLOCK]; LP_ROWS];
        let mut t0 = 0;
        while t0 < n {
            let nb = LP_BLOCK.min(n - t0);
            for (r, ib) in idx.iter_mut().enumerate() {
                let row = &rows[r * length..(r + 1) * length];
                let cur = &row[off + t0..off + t0 + nb];
                if order0 {
                    for (d, x) in ib.iter_mut().zip(cur) {
                        *d = x.index() as i32;
                    }
                } else {
                    let prev = &row[t0..t0 + nb];
                    for ((d, x), p) in ib.iter_mut().zip(cur).zip(prev) {
                        *d = (p.index() as usize * v + x.index() as usize) as i32;
                    }
                }
            }
            let full = nb / 4 * 4;
            let mut q = 0;
            while q < full {
                for r in 0..LP_ROWS {
                    // SAFETY: idx[r][q..q + 4] is in bounds; every index < v * v.
                    let e = unsafe {
                        let i = _mm_loadu_si128(idx[r].as_ptr().add(q) as *const __m128i);
                        _mm256_i32gather_pd::<8>(base, i)
                    };
                    acc[r] = _mm256_add_pd(acc[r], e);
                }
                q += 4;
            }
            if full < nb {
                // Only in the last block (LP_BLOCK is a multiple of 4): the
                // scalar loop's tail, lane j += term(full + j).
                for r in 0..LP_ROWS {
                    let mut a = [0.0f64; 4];
                    // SAFETY: a is 32 bytes.
                    unsafe { _mm256_storeu_pd(a.as_mut_ptr(), acc[r]) };
                    for (j, aj) in a.iter_mut().enumerate().take(nb - full) {
                        *aj += lp[idx[r][full + j] as usize];
                    }
                    acc[r] = unsafe { _mm256_loadu_pd(a.as_ptr()) };
                }
            }
            t0 += nb;
        }
        for r in 0..LP_ROWS {
            let mut a = [0.0f64; 4];
            // SAFETY: a is 32 bytes.
            unsafe { _mm256_storeu_pd(a.as_mut_ptr(), acc[r]) };
            let f = if order0 { 0.0 } else { first[rows[r * length].index() as usize] };
            out[r] = f + (a[0] + a[1]) + (a[2] + a[3]);
        }
    }
}

/// A log_prob kernel over byte rows (the tests call each one directly).
#[cfg(test)]
type LpKernel = unsafe fn(&[f64], &[f64], usize, bool, &[u8], usize, &mut [f64]);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::markov::MarkovChain;

    fn random_chain(v: usize, order: usize, seed: u64, zeros: bool) -> Vec<f64> {
        let s = v.pow(order as u32);
        let mut r = Xoshiro256pp::from_u64(seed);
        let mut p = vec![0.0; s * v];
        for row in p.chunks_mut(v) {
            let mut tot = 0.0;
            for x in row.iter_mut() {
                // skewed rows, and exact zeros (log p = -inf) when asked
                *x = if zeros && r.next_f64() < 0.3 { 0.0 } else { r.next_f64().powi(4) };
                tot += *x;
            }
            if tot == 0.0 {
                row[0] = 1.0;
                tot = 1.0;
            }
            row.iter_mut().for_each(|x| *x /= tot);
        }
        p
    }

    /// The chain's sampler (SIMD path where available) against the scalar
    /// one-row sampler, row by row.
    fn check_sampling<T: OutToken + PartialEq + std::fmt::Debug + Default>(c: &MarkovChain) {
        for &len in &[1usize, 2, 3, 5, 64, 65, 130] {
            for &n in &[1usize, 15, 16, 17, 33, 40] {
                let mut out = vec![T::default(); n * len];
                c.sample_into(&mut out, len, 11, 1000);
                for (i, row) in out.chunks(len).enumerate() {
                    let mut one = vec![T::default(); len];
                    c.sample_row(&mut one, &mut Xoshiro256pp::for_sequence(11, 1000 + i as u64));
                    assert_eq!(row, &one[..], "V={} order={} n={n} len={len} row {i}", c.vocab(), c.order());
                }
            }
        }
    }

    #[test]
    fn simd_sampling_equals_scalar() {
        for &v in &[1usize, 2, 3, 5, 16, 100, 128, 255, 256] {
            for order in 0..=1 {
                let c = MarkovChain::new(&random_chain(v, order, v as u64, v % 2 == 1), v, order, None, false).unwrap();
                check_sampling::<u8>(&c);
                check_sampling::<u32>(&c);
            }
        }
        for &v in &[257usize, 1000, 4096] {
            for order in 0..=1 {
                let c = MarkovChain::new(&random_chain(v, order, 3, false), v, order, None, false).unwrap();
                check_sampling::<u16>(&c);
            }
        }
    }

    /// xoshiro256++ run one step backwards (the step is a bijection).
    fn unstep(s: [u64; 4]) -> [u64; 4] {
        let [a0, a1, a2, a3] = s;
        let b3 = a3.rotate_right(45); // old s3 ^ old s1
        let s0 = a0 ^ b3;
        // a1 = s1 ^ c2 and a2 = c2 ^ (s1 << 17), with c2 = s2 ^ s0
        let k = a1 ^ a2; // = s1 ^ (s1 << 17)
        let s1 = k ^ (k << 17) ^ (k << 34) ^ (k << 51);
        let c2 = a2 ^ (s1 << 17);
        [s0, s1, c2 ^ s0, b3 ^ s1]
    }

    /// Lanes whose second draw has a zero high word take the scalar path
    /// (Lemire's possible rejection; with V = 3 it is a rejection): the kernel
    /// must still equal the scalar sampler.
    #[test]
    fn simd_rejection_path_equals_scalar() {
        let mut r = Xoshiro256pp::from_u64(1);
        for _ in 0..1000 {
            let s = [r.next_u64(), r.next_u64(), r.next_u64(), r.next_u64()];
            let mut x = Xoshiro256pp::from_state(unstep(s));
            x.next_u64();
            assert_eq!(x.state(), s);
        }
        for &(v, order) in &[(3usize, 1usize), (3, 0), (5, 1), (4, 1)] {
            let p = random_chain(v, order, 9, false);
            let c = MarkovChain::new(&p, v, order, None, false).unwrap();
            let mut table = vec![0u64; p.len()];
            for (t, row) in table.chunks_mut(v).zip(p.chunks(v)) {
                alias::build(row, t);
            }
            let mut init = vec![0u64; c.initial().len()];
            alias::build(c.initial(), &mut init);
            let first: &[u64] = if order == 0 { &table[..v] } else { &init };
            let len = 9;
            // After its first draw, lane g (g odd) is in a state whose next
            // output is 0: s0 = s3 = 0.
            let rngs: [Xoshiro256pp; SIMD_ROWS] = std::array::from_fn(|g| {
                if g % 2 == 1 {
                    Xoshiro256pp::from_state(unstep([0, 0x1234_5678 + g as u64, 0x9E37_79B9 ^ g as u64, 0]))
                } else {
                    Xoshiro256pp::for_sequence(4, g as u64)
                }
            });
            let mut out = vec![0u8; SIMD_ROWS * len];
            if !sample_rows(&table, first, v, order == 0, &mut out, len, &mut rngs.clone()) {
                return; // no SIMD on this CPU: nothing to compare
            }
            for (g, row) in out.chunks(len).enumerate() {
                let mut rng = rngs[g].clone();
                let mut want = vec![0u8; len];
                let mut s = alias::draw(first, &mut rng) as usize;
                want[0] = s as u8;
                for w in want.iter_mut().skip(1) {
                    let r0 = if order == 0 { 0 } else { s * v };
                    s = alias::draw(&table[r0..r0 + v], &mut rng) as usize;
                    *w = s as u8;
                }
                assert_eq!(row, &want[..], "V={v} order={order} lane {g}");
            }
        }
    }

    fn check_log_prob<T: InToken + Copy>(c: &MarkovChain, x: &[T], len: usize) {
        let n = x.len() / len;
        let mut got = vec![0.0; n];
        c.log_prob(x, len, &mut got).unwrap();
        for (i, row) in x.chunks(len).enumerate() {
            let want = c.log_prob_order01(row);
            assert_eq!(got[i].to_bits(), want.to_bits(), "V={} order={} len={len} row {i}", c.vocab(), c.order());
        }
    }

    #[test]
    fn simd_log_prob_is_bit_identical() {
        for &v in &[1usize, 2, 3, 7, 128, 256, 1000, 4096] {
            for order in 0..=1 {
                let c = MarkovChain::new(&random_chain(v, order, 5, v == 7), v, order, None, false).unwrap();
                for &len in &[1usize, 2, 4, 5, 255, 256, 257, 258, 600] {
                    let n = 9; // two full groups of LP_ROWS and a ragged one
                    let mut x32 = vec![0u32; n * len];
                    c.sample_into(&mut x32, len, 3, 0);
                    let x64: Vec<i64> = x32.iter().map(|&t| t as i64).collect();
                    check_log_prob(&c, &x32, len);
                    check_log_prob(&c, &x64, len);
                    if v <= 256 {
                        let x8: Vec<u8> = x32.iter().map(|&t| t as u8).collect();
                        check_log_prob(&c, &x8, len);
                    }
                    // -inf terms: a token sequence that uses zero-probability transitions
                    let mut r = Xoshiro256pp::from_u64(len as u64);
                    let xr: Vec<u32> = (0..n * len).map(|_| (r.next_u64() % v as u64) as u32).collect();
                    check_log_prob(&c, &xr, len);
                }
            }
        }
    }

    /// Every log_prob kernel this CPU can run, called directly, against the
    /// scalar row loop.
    #[test]
    fn each_log_prob_kernel_is_bit_identical() {
        if !available() {
            return;
        }
        for &v in &[1usize, 2, 5, 128, 256] {
            for order in 0..=1 {
                let c = MarkovChain::new(&random_chain(v, order, 7, v == 5), v, order, None, false).unwrap();
                let (lp, first) = (c.log_probs_table(), c.prefix_log_probs());
                for &len in &[1usize, 2, 7, 8, 9, 12, 15, 16, 17, 300] {
                    let mut x = vec![0u8; LP_ROWS * len];
                    let mut r = Xoshiro256pp::from_u64(len as u64);
                    if len % 2 == 0 {
                        c.sample_into(&mut x, len, 1, 0);
                    } else {
                        x.iter_mut().for_each(|t| *t = (r.next_u64() % v as u64) as u8);
                    }
                    let want: Vec<u64> = x.chunks(len).map(|row| c.log_prob_order01(row).to_bits()).collect();
                    let mut kernels: Vec<(&str, LpKernel)> =
                        vec![("u8", avx2::log_prob_rows_u8), ("generic", avx2::log_prob_rows::<u8>)];
                    if avx512_available() {
                        kernels.push(("u8 avx512", avx2::log_prob_rows_u8_avx512));
                    }
                    for (name, k) in kernels {
                        let mut o = vec![0.0; LP_ROWS];
                        unsafe { k(lp, first, v, order == 0, &x, len, &mut o) };
                        let got: Vec<u64> = o.iter().map(|y| y.to_bits()).collect();
                        assert_eq!(got, want, "{name} V={v} order={order} len={len}");
                    }
                }
            }
        }
    }

    #[test]
    fn simd_log_prob_out_of_range_is_an_error() {
        let c = MarkovChain::new(&random_chain(4, 1, 1, false), 4, 1, None, false).unwrap();
        let mut x = vec![0u8; 8 * 10];
        x[5 * 10 + 3] = 4;
        let mut o = vec![0.0; 8];
        let e = c.log_prob(&x, 10, &mut o).unwrap_err();
        assert!(format!("{e:?}").contains("[5, 3]"), "{e:?}");
    }
}

#[cfg(test)]
mod throughput {
    //! Single-thread throughput of each kernel against the scalar loops (not
    //! a test; BENCHMARKS.md, issue 9). Run with
    //! `RAYON_NUM_THREADS=1 cargo test --release -- --ignored --nocapture kernel_throughput`
    //! (`KERNEL_BENCH_V=256` for another vocabulary size).
    use super::*;
    use crate::process::markov::MarkovChain;
    use std::time::Instant;

    /// Prints the best rate of `reps` runs of `f` over `tokens` tokens.
    fn report(label: &str, reps: usize, tokens: usize, f: &mut dyn FnMut()) {
        let mut best = f64::MAX;
        for _ in 0..reps {
            let t0 = Instant::now();
            f();
            best = best.min(t0.elapsed().as_secs_f64());
        }
        eprintln!("{label:>18}: {:.0} M tok/s", tokens as f64 / best / 1e6);
    }

    #[test]
    #[ignore]
    fn kernel_throughput() {
        let v: usize = std::env::var("KERNEL_BENCH_V").ok().and_then(|s| s.parse().ok()).unwrap_or(128);
        assert!(v <= 256, "byte tokens: V <= 256");
        let (n, len) = (4096usize, 1024usize);
        let mut r = Xoshiro256pp::from_u64(1);
        let mut p = vec![0.0; v * v];
        for row in p.chunks_mut(v) {
            let mut tot = 0.0;
            for x in row.iter_mut() {
                *x = r.next_f64().powi(6);
                tot += *x;
            }
            row.iter_mut().for_each(|x| *x /= tot);
        }
        let c = MarkovChain::new(&p, v, 1, None, false).unwrap();
        let mut x = vec![0u8; n * len];
        c.sample_into(&mut x, len, 1, 0);
        let (lp, first) = (c.log_probs_table(), c.prefix_log_probs());
        let mut o = vec![0.0; n];
        let time = |name: &str, f: &mut dyn FnMut()| report(name, 15, n * len, f);
        time("scalar", &mut || {
            for (row, oi) in x.chunks(len).zip(o.iter_mut()) {
                *oi = c.log_prob_order01(row);
            }
        });
        time("validate", &mut || {
            for rows in x.chunks(len * LP_ROWS) {
                assert!(all_below(rows, v));
            }
        });
        if !available() {
            return;
        }
        let mut ks: Vec<(&str, LpKernel)> =
            vec![("generic", avx2::log_prob_rows::<u8>), ("u8", avx2::log_prob_rows_u8)];
        if avx512_available() {
            ks.push(("u8 avx512", avx2::log_prob_rows_u8_avx512));
        }
        for (name, k) in ks {
            time(name, &mut || {
                for (rows, oo) in x.chunks(len * LP_ROWS).zip(o.chunks_mut(LP_ROWS)) {
                    unsafe { k(lp, first, v, false, rows, len, oo) };
                }
            });
        }
        time("full", &mut || c.log_prob(&x, len, &mut o).unwrap());
        // u16 tokens at larger V (generic kernel vs the scalar row loop)
        for vb in [512usize, 1024, 4096] {
            let p: Vec<f64> = (0..vb * vb).map(|_| r.next_f64().powi(6) + 1e-12).collect();
            let c = MarkovChain::new(&p, vb, 1, None, true).unwrap();
            let n = 1024;
            let mut x = vec![0u16; n * len];
            c.sample_into(&mut x, len, 1, 0);
            let (lp, first) = (c.log_probs_table(), c.prefix_log_probs());
            let tm = |name: &str, f: &mut dyn FnMut()| report(&format!("V={vb} {name}"), 7, n * len, f);
            tm("scalar u16", &mut || {
                for (row, oi) in x.chunks(len).zip(o.iter_mut()) {
                    *oi = c.log_prob_order01(row);
                }
            });
            tm("generic u16", &mut || {
                for (rows, oo) in x.chunks(len * LP_ROWS).zip(o.chunks_mut(LP_ROWS)) {
                    unsafe { avx2::log_prob_rows::<u16>(lp, first, vb, false, rows, len, oo) };
                }
            });
        }
        let mut s8 = vec![0u8; n * len];
        time("sample", &mut || c.sample_into(&mut s8, len, 1, 0));
        #[cfg(feature = "bench")]
        time("rng_only", &mut || crate::rng::fill_raw(&mut s8, len, 1, 0));
    }
}
