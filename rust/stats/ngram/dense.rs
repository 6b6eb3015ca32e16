//! Dense counting into a V^n table: one thread, a shared atomic table, or
//! private narrow per-thread tables (see [`Plan`]).

use super::codes::{for_each_code, pieces, split, windows, Sink, PARALLEL_MIN};
use super::entropy::{Partial, SUM_BLOCK};
use super::table::EntropyStats;
use crate::alloc::{zeros, Zero};
use crate::error::{Error, Result};
use crate::tokens::InToken;
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Entries (u8 or u16 counters, all threads together) that private
/// per-thread tables may hold before counting switches to one shared atomic
/// table: 2^27 entries, at most 256 MiB.
pub(super) const PRIVATE_BUDGET: usize = 1 << 27;

/// Private dense tables up to this many entries count in u16, larger ones in u8.
pub(super) const SMALL_TABLE: usize = 1 << 15;

// The shared-table path views a `[u64]` as `[AtomicU64]`.
const _: () = assert!(
    std::mem::size_of::<AtomicU64>() == std::mem::size_of::<u64>()
        && std::mem::align_of::<AtomicU64>() == std::mem::align_of::<u64>()
);

/// Plain increments of a u64 table.
pub(super) struct Direct<'a>(&'a mut [u64]);
impl Sink for Direct<'_> {
    #[inline(always)]
    fn put(&mut self, code: u64) {
        self.0[code as usize] += 1;
    }
}

/// Relaxed atomic increments of a shared table.
pub(super) struct Shared<'a>(&'a [AtomicU64]);
impl Sink for Shared<'_> {
    #[inline(always)]
    fn put(&mut self, code: u64) {
        self.0[code as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Increments of a private narrow table, logging wraps.
pub(super) struct Private<'a, C> {
    /// Length a power of two (>= V^n): see `put_block`.
    tab: &'a mut [C],
    wraps: &'a mut Vec<u64>,
}
impl<C: Narrow> Sink for Private<'_, C> {
    #[inline(always)]
    fn put(&mut self, code: u64) {
        if self.tab[code as usize].inc() {
            self.wraps.push(code);
        }
    }
    #[inline(always)]
    fn put_block(&mut self, codes: &[u32]) {
        // The table as a local slice: the compiler keeps it in registers
        // across the (rare) pushes.
        let tab = &mut *self.tab;
        // One vectorised check per block instead of a bounds check per
        // increment (which costs ~20%): the OR of the codes bounds them all,
        // and is below the power-of-two table length for valid codes.
        let any = codes.iter().fold(0u32, |a, &c| a | c) as usize;
        if any >= tab.len() {
            // Unreachable for validated tokens; the checked path panics.
            codes.iter().for_each(|&c| self.put(c as u64));
            return;
        }
        // Unrolled by 4 (the loop overhead is a third of the instructions).
        let mut quads = codes.chunks_exact(4);
        for q in &mut quads {
            for &c in q {
                // SAFETY: c <= any < tab.len(), checked just above.
                if unsafe { tab.get_unchecked_mut(c as usize) }.inc() {
                    self.wraps.push(c as u64);
                }
            }
        }
        for &c in quads.remainder() {
            // SAFETY: as above.
            if unsafe { tab.get_unchecked_mut(c as usize) }.inc() {
                self.wraps.push(c as u64);
            }
        }
    }
}

/// How a dense table is counted, with `P` threads and `E = V^n` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// Nothing to count.
    Empty,
    /// One thread, plain increments of the u64 table (small inputs, or
    /// tables larger than the input).
    Direct,
    /// Several threads, relaxed atomic increments of one shared u64 table
    /// (tables larger than the input, or too large to replicate per thread).
    Shared(usize),
    /// One private narrow table per thread (`E <= windows` and
    /// `P E <= PRIVATE_BUDGET`, E rounded up to a power of two): u16
    /// counters for tables of at most [`SMALL_TABLE`] entries, u8 beyond.
    Private16(usize),
    Private8(usize),
}

pub(super) fn plan(m: usize, entries: usize) -> Plan {
    if m == 0 {
        return Plan::Empty;
    }
    let threads = if m < PARALLEL_MIN { 1 } else { rayon::current_num_threads().max(1) };
    if entries > m || entries.next_power_of_two().saturating_mul(threads) > PRIVATE_BUDGET {
        return if threads == 1 { Plan::Direct } else { Plan::Shared(threads) };
    }
    if entries <= SMALL_TABLE {
        Plan::Private16(threads)
    } else {
        Plan::Private8(threads)
    }
}

/// Dense counts: a u64 table of `entries` = V^n counts (see [`Plan`]).
pub(super) fn count_dense<T: InToken>(
    tokens: &[T],
    len: usize,
    n: usize,
    vocab: u64,
    entries: usize,
) -> Result<Vec<u64>> {
    match plan(windows(tokens.len(), len, n), entries) {
        Plan::Empty => zeros(entries, "the dense n-gram table"),
        Plan::Direct => {
            let mut out = zeros(entries, "the dense n-gram table")?;
            for_each_code(tokens, len, n, vocab, 0, tokens.len(), &mut Direct(&mut out));
            Ok(out)
        }
        Plan::Shared(threads) => {
            let mut out: Vec<u64> = zeros(entries, "the dense n-gram table")?;
            // SAFETY: AtomicU64 has the size and alignment of u64 (checked at
            // compile time above) and `out` is exclusively borrowed meanwhile.
            let shared: &[AtomicU64] =
                unsafe { std::slice::from_raw_parts(out.as_mut_ptr() as *const AtomicU64, out.len()) };
            split(tokens.len(), pieces(tokens.len(), threads))
                .par_iter()
                .for_each(|&(lo, hi)| for_each_code(tokens, len, n, vocab, lo, hi, &mut Shared(shared)));
            Ok(out)
        }
        Plan::Private16(threads) => Narrowed::<u16>::count(tokens, len, n, vocab, entries, threads)?.into_u64(),
        Plan::Private8(threads) => Narrowed::<u8>::count(tokens, len, n, vocab, entries, threads)?.into_u64(),
    }
}

/// A narrow per-thread counter: increments wrap around, and the caller logs
/// each wrap (worth `WRAP` counts). Narrow counters keep the hot part of a
/// table in cache; wraps are rare (one per `WRAP` increments of an entry).
pub(super) trait Narrow: Zero + Default + Send + Sync + 'static {
    const WRAP: u64;
    /// Increments; true when the counter wrapped to 0.
    fn inc(&mut self) -> bool;
    fn get(self) -> u64;
}

macro_rules! narrow {
    ($($t:ty),*) => {$(
        impl Narrow for $t {
            const WRAP: u64 = <$t>::MAX as u64 + 1;
            #[inline(always)]
            fn inc(&mut self) -> bool {
                *self = self.wrapping_add(1);
                *self == 0
            }
            #[inline(always)]
            fn get(self) -> u64 {
                self as u64
            }
        }
    )*};
}
narrow!(u8, u16);

/// Dense counts held as per-thread narrow tables: count of entry e =
/// Σ_t tabs[t][e] + WRAP × (occurrences of e in `wraps`).
pub(super) struct Narrowed<C> {
    entries: usize,
    tabs: Vec<Vec<C>>,
    /// Codes whose counter wrapped (one per wrap, any order).
    wraps: Vec<u64>,
}

impl<C: Narrow> Narrowed<C> {
    pub(super) fn count<T: InToken>(
        tokens: &[T],
        len: usize,
        n: usize,
        vocab: u64,
        entries: usize,
        threads: usize,
    ) -> Result<Self> {
        // One table per pool thread; the tokens are cut into several pieces
        // per thread so that a thread slowed down by other load does less of
        // the work (a thread runs one piece at a time: its lock is never
        // contended).
        let slots = (0..threads)
            .map(|_| Ok(Mutex::new((zeros::<C>(entries.next_power_of_two(), "per-thread n-gram tables")?, Vec::new()))))
            .collect::<Result<Vec<_>>>()?;
        split(tokens.len(), pieces(tokens.len(), threads)).par_iter().for_each(|&(lo, hi)| {
            let i = rayon::current_thread_index().unwrap_or(0) % threads;
            let mut slot = slots[i].lock().unwrap_or_else(|e| e.into_inner());
            let (tab, wraps) = &mut *slot;
            for_each_code(tokens, len, n, vocab, lo, hi, &mut Private { tab, wraps });
        });
        let (tabs, wraps): (Vec<Vec<C>>, Vec<Vec<u64>>) =
            slots.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).unzip();
        Ok(Narrowed { entries, tabs, wraps: wraps.concat() })
    }

    #[inline]
    pub(super) fn sum_at(&self, e: usize) -> u64 {
        self.tabs.iter().map(|t| t[e].get()).sum()
    }

    /// The u64 table (each entry written once, no zeroing pass).
    pub(super) fn into_u64(self) -> Result<Vec<u64>> {
        let mut out: Vec<u64> = Vec::new();
        out.try_reserve_exact(self.entries).map_err(|_| {
            Error::value(format!("not enough memory for the dense n-gram table ({} entries)", self.entries))
        })?;
        out.spare_capacity_mut()[..self.entries].par_chunks_mut(SUM_BLOCK).enumerate().for_each(|(b, o)| {
            for (j, slot) in o.iter_mut().enumerate() {
                slot.write(self.sum_at(b * SUM_BLOCK + j));
            }
        });
        // SAFETY: all `entries` slots were written above.
        unsafe { out.set_len(self.entries) };
        for &c in &self.wraps {
            out[c as usize] += C::WRAP;
        }
        Ok(out)
    }

    /// Entropy statistics straight from the narrow tables (rows of V entries
    /// are contexts), without building the u64 table. Same blocks and order
    /// of summation as [`entropy_from_counts`] on the dense table, so the
    /// result is bit-identical to it.
    pub(super) fn entropy(&self, vocab: u64) -> EntropyStats {
        let v = vocab as usize;
        let rows_per_block = (SUM_BLOCK / v.max(1)).max(1);
        let block = rows_per_block * v;
        let blocks = self.entries.div_ceil(block);
        // Wraps bucketed by block (counting sort): wrapped[starts[b]..starts[b+1]].
        let mut starts = vec![0usize; blocks + 1];
        for &c in &self.wraps {
            starts[c as usize / block + 1] += 1;
        }
        for b in 0..blocks {
            starts[b + 1] += starts[b];
        }
        let mut wrapped = vec![0u64; self.wraps.len()];
        let mut fill = starts.clone();
        for &c in &self.wraps {
            let b = c as usize / block;
            wrapped[fill[b]] = c;
            fill[b] += 1;
        }
        let partials: Vec<Partial> = (0..blocks)
            .into_par_iter()
            .map(|b| {
                let (lo, hi) = (b * block, ((b + 1) * block).min(self.entries));
                let mut buf = vec![0u64; hi - lo];
                for tab in &self.tabs {
                    for (r, c) in buf.iter_mut().zip(&tab[lo..hi]) {
                        *r += c.get();
                    }
                }
                for &c in &wrapped[starts[b]..starts[b + 1]] {
                    buf[c as usize - lo] += C::WRAP;
                }
                let mut p = Partial::default();
                for row in buf.chunks(v) {
                    p.context(row.iter().copied());
                }
                p
            })
            .collect();
        partials.iter().fold(Partial::default(), |a, b| a.add(b)).finish(vocab)
    }
}
