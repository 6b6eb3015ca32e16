//! Sparse counting: a counting sort of the codes into buckets, each counted
//! densely or by a radix sort and run lengths.

use super::codes::{code_space, for_each_code, pieces, split, windows, Sink, PARALLEL_MIN};
use crate::alloc::{zeros, Zero};
use crate::error::Result;
use crate::tokens::InToken;
use rayon::prelude::*;
use rdst::RadixSort;

/// The low bits of an n-gram code inside its sparse-count bucket: u32 when
/// they fit (half the memory and sort traffic), else u64.
pub(super) trait Code: Zero + Ord + Send + Sync + Copy + rdst::RadixKey {
    fn from_u64(c: u64) -> Self;
    fn get(self) -> u64;
}
impl Code for u32 {
    #[inline(always)]
    fn from_u64(c: u64) -> Self {
        c as u32
    }
    #[inline(always)]
    fn get(self) -> u64 {
        self as u64
    }
}
impl Code for u64 {
    #[inline(always)]
    fn from_u64(c: u64) -> Self {
        c
    }
    #[inline(always)]
    fn get(self) -> u64 {
        self
    }
}

/// Run-length reduction of a sequence sorted by `key`: the distinct keys and
/// the sums of `weight` over each run. Parallel over pieces cut at run starts.
pub(super) fn reduce_sorted<K, W>(len: usize, key: K, weight: W) -> (Vec<u64>, Vec<u64>)
where
    K: Fn(usize) -> u64 + Sync,
    W: Fn(usize) -> u64 + Sync,
{
    if len == 0 {
        return (Vec::new(), Vec::new());
    }
    let parts = (len / PARALLEL_MIN).clamp(1, 4 * rayon::current_num_threads().max(1));
    let mut cuts: Vec<usize> = (0..=parts).map(|j| j * len / parts).collect();
    for c in cuts.iter_mut().take(parts).skip(1) {
        while *c < len && key(*c) == key(*c - 1) {
            *c += 1;
        }
    }
    let pieces: Vec<(Vec<u64>, Vec<u64>)> = cuts
        .par_windows(2)
        .map(|w| {
            let (lo, hi) = (w[0], w[1].max(w[0]));
            let (mut ks, mut ws) = (Vec::new(), Vec::new());
            let mut i = lo;
            while i < hi {
                let k = key(i);
                let mut s = 0u64;
                while i < hi && key(i) == k {
                    s += weight(i);
                    i += 1;
                }
                ks.push(k);
                ws.push(s);
            }
            (ks, ws)
        })
        .collect();
    let total: usize = pieces.iter().map(|p| p.0.len()).sum();
    let (mut ks, mut ws) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for (k, w) in pieces {
        ks.extend_from_slice(&k);
        ws.extend_from_slice(&w);
    }
    (ks, ws)
}

/// Bits of a code that pick its bucket in the sparse count (at most 4096
/// buckets: the scatter's write frontier, one cache line per bucket, stays in L2).
pub(super) const BUCKET_BITS: u32 = 12;
/// Buckets whose low parts span at most 2^DENSE_BITS values are counted in a
/// dense table (256 KiB of u32); wider ones too when the table is at most
/// 4x the bucket's length and at most 2^DENSE_MAX_BITS entries.
pub(super) const DENSE_BITS: u32 = 16;
pub(super) const DENSE_MAX_BITS: u32 = 20;

/// Sparse counts: the distinct codes in increasing order and their counts.
///
/// A counting sort by the top [`BUCKET_BITS`] bits of the codes, then a count
/// inside each bucket: (1) every piece of the input histograms its codes'
/// buckets; (2) every piece writes the codes' *low* bits into its own slots
/// of each bucket (codes are recomputed from the tokens instead of stored,
/// and the low bits usually fit a u32: 4 bytes per occurrence in all);
/// (3) buckets are counted in parallel, in a dense table when their low bits
/// span few values, else by a radix sort (`rdst`) and run lengths. Integer
/// counts throughout, so the result does not depend on the thread count.
pub(super) fn count_sparse<T: InToken>(tokens: &[T], len: usize, n: usize, vocab: u64) -> Result<(Vec<u64>, Vec<u64>)> {
    let m = windows(tokens.len(), len, n);
    if m == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let entries = code_space(vocab, n, "n")?;
    let bits = 64 - (entries - 1).leading_zeros();
    let low = bits.saturating_sub(BUCKET_BITS);
    if low <= 32 {
        bucketed::<T, u32>(tokens, len, n, vocab, m, entries, low)
    } else {
        bucketed::<T, u64>(tokens, len, n, vocab, m, entries, low)
    }
}

/// Histogram of code buckets (`code >> low`).
pub(super) struct Hist<'a> {
    counts: &'a mut [usize],
    low: u32,
}
impl Sink for Hist<'_> {
    #[inline(always)]
    fn put(&mut self, code: u64) {
        self.counts[(code >> self.low) as usize] += 1;
    }
}

/// Writes the low bits of each code into the next slot of its bucket.
pub(super) struct Scatter<'a, K> {
    out: &'a SharedSlots<K>,
    next: Vec<usize>,
    end: Vec<usize>,
    low: u32,
}
impl<K: Code> Sink for Scatter<'_, K> {
    #[inline(always)]
    fn put(&mut self, code: u64) {
        let b = (code >> self.low) as usize;
        let i = self.next[b];
        if i < self.end[b] {
            // SAFETY: [next[b], end[b]) is this piece's own range of slots in
            // bucket b (disjoint from every other piece's, see `bucketed`), and
            // lies inside the buffer.
            unsafe { self.out.write(i, K::from_u64(code & ((1u64 << self.low) - 1))) };
            self.next[b] = i + 1;
        }
    }
}

/// A buffer written concurrently at disjoint indices.
pub(super) struct SharedSlots<K> {
    ptr: *mut K,
    len: usize,
}
// SAFETY: writers only touch disjoint index ranges (see `Scatter`).
unsafe impl<K: Send> Sync for SharedSlots<K> {}
impl<K> SharedSlots<K> {
    /// # Safety
    /// No other thread reads or writes index `i` meanwhile.
    #[inline(always)]
    unsafe fn write(&self, i: usize, v: K) {
        debug_assert!(i < self.len);
        self.ptr.add(i).write(v);
    }
}

pub(super) fn bucketed<T: InToken, K: Code>(
    tokens: &[T],
    len: usize,
    n: usize,
    vocab: u64,
    m: usize,
    entries: u64,
    low: u32,
) -> Result<(Vec<u64>, Vec<u64>)> {
    let nb = ((entries - 1) >> low) as usize + 1;
    let threads = if m < PARALLEL_MIN { 1 } else { rayon::current_num_threads().max(1) };
    let ranges = split(tokens.len(), pieces(tokens.len(), threads));
    // (1) per-piece bucket histograms
    let hists: Vec<Vec<usize>> = ranges
        .par_iter()
        .map(|&(lo, hi)| {
            let mut counts = vec![0usize; nb];
            for_each_code(tokens, len, n, vocab, lo, hi, &mut Hist { counts: &mut counts, low });
            counts
        })
        .collect();
    // bucket b holds slots starts[b]..starts[b + 1]; piece p writes its codes
    // of bucket b at firsts[p][b].. in piece order
    let mut starts = vec![0usize; nb + 1];
    for b in 0..nb {
        starts[b + 1] = starts[b] + hists.iter().map(|h| h[b]).sum::<usize>();
    }
    debug_assert_eq!(starts[nb], m);
    let mut firsts = Vec::with_capacity(ranges.len());
    let mut cursor = starts[..nb].to_vec();
    for h in &hists {
        firsts.push(cursor.clone());
        for b in 0..nb {
            cursor[b] += h[b];
        }
    }
    // (2) scatter the low bits
    let mut buf: Vec<K> = zeros(m, "the sparse n-gram buffer")?;
    let slots = SharedSlots { ptr: buf.as_mut_ptr(), len: buf.len() };
    ranges.par_iter().zip(firsts.par_iter().zip(hists.par_iter())).for_each(|(&(lo, hi), (first, h))| {
        let end = first.iter().zip(h).map(|(f, c)| f + c).collect();
        let mut sink = Scatter { out: &slots, next: first.clone(), end, low };
        for_each_code(tokens, len, n, vocab, lo, hi, &mut sink);
    });
    // (3) count each bucket
    let mut rest: &mut [K] = &mut buf;
    let mut buckets = Vec::with_capacity(nb);
    for b in 0..nb {
        let (head, tail) = rest.split_at_mut(starts[b + 1] - starts[b]);
        if !head.is_empty() {
            buckets.push((b as u64, head));
        }
        rest = tail;
    }
    let parts: Vec<(Vec<u64>, Vec<u64>)> = buckets
        .into_par_iter()
        .map_init(Vec::<u32>::new, |table, (b, slice)| count_bucket(slice, b << low, low, table))
        .collect();
    drop(buf);
    concat(parts)
}

/// The buckets' (codes, counts) joined in order (copied in parallel: with
/// many distinct n-grams this is hundreds of MB).
pub(super) fn concat(parts: Vec<(Vec<u64>, Vec<u64>)>) -> Result<(Vec<u64>, Vec<u64>)> {
    let total: usize = parts.iter().map(|p| p.0.len()).sum();
    let (mut codes, mut counts): (Vec<u64>, Vec<u64>) =
        (zeros(total, "the n-gram codes")?, zeros(total, "the n-gram counts")?);
    let (mut rc, mut rk): (&mut [u64], &mut [u64]) = (&mut codes, &mut counts);
    let mut jobs = Vec::with_capacity(parts.len());
    for p in &parts {
        let (hc, tc) = rc.split_at_mut(p.0.len());
        let (hk, tk) = rk.split_at_mut(p.1.len());
        jobs.push((p, hc, hk));
        (rc, rk) = (tc, tk);
    }
    jobs.into_par_iter().for_each(|(p, c, k)| {
        c.copy_from_slice(&p.0);
        k.copy_from_slice(&p.1);
    });
    Ok((codes, counts))
}

/// Distinct values (plus `base`) of one bucket's low parts, in increasing
/// order, with their counts. `table` is a zeroed scratch table, left zeroed.
pub(super) fn count_bucket<K: Code>(
    slice: &mut [K],
    base: u64,
    low: u32,
    table: &mut Vec<u32>,
) -> (Vec<u64>, Vec<u64>) {
    let dense = slice.len() < u32::MAX as usize
        && (low <= DENSE_BITS || (low <= DENSE_MAX_BITS && (1usize << low) <= 4 * slice.len()));
    if dense {
        let size = 1usize << low;
        if table.len() < size {
            table.resize(size, 0);
        }
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for x in slice.iter() {
            let v = x.get() as usize;
            table[v] += 1;
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let (mut codes, mut counts) = (Vec::new(), Vec::new());
        for (v, c) in table[lo..=hi].iter_mut().enumerate() {
            if *c != 0 {
                codes.push(base + (lo + v) as u64);
                counts.push(*c as u64);
                *c = 0;
            }
        }
        return (codes, counts);
    }
    slice.radix_sort_unstable();
    let (mut codes, mut counts) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < slice.len() {
        let v = slice[i];
        let mut j = i + 1;
        while j < slice.len() && slice[j] == v {
            j += 1;
        }
        codes.push(base + v.get());
        counts.push((j - i) as u64);
        i = j;
    }
    (codes, counts)
}
