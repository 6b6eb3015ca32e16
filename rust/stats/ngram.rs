//! N-gram counts and plug-in conditional-entropy estimators for arbitrary
//! integer token arrays (not only probes: any corpus of token ids).
//!
//! Tokens come as a row-major `[rows, len]` slice; n-grams are the windows of
//! `n` consecutive tokens *within* a row (they never cross row boundaries).
//! An n-gram `(x_0, .., x_{n-1})` is coded as the base-V number
//! `Σ_j x_j V^(n-1-j)` (first token most significant), so that sorting codes
//! sorts n-grams lexicographically and all n-grams sharing their first n-1
//! tokens (a *context*) are contiguous, context = `code / V`.
//!
//! Counting runs at memory speed in one of two forms:
//! * **dense** (`V^n <= max_dense` entries): a `V^n` table (see [`Plan`]).
//!   Normally each rayon thread counts into a private table of narrow
//!   counters (u16, or u8 for tables beyond 2^15 entries: 8x less cache than
//!   u64, which is what bounds the speed) whose rare wrap-arounds are logged;
//!   the token array is cut into 8 pieces per thread, so a thread slowed by
//!   other load does less of the work. The tables are then summed (integer
//!   sums: the result does not depend on the thread count), or, for an
//!   entropy, read directly without building the u64 table. When private
//!   tables would cost too much memory, or the table is larger than the
//!   input, one shared table of atomic counters is used instead. Codes of
//!   small n are computed 64 at a time in a vectorised loop (shifts when V is
//!   a power of two).
//! * **sparse**: every n-gram occurrence is coded (as a `u32` when
//!   `V^n <= 2^32`, else a `u64`), the codes are radix-sorted in parallel
//!   (`rdst`, 1.5x faster than rayon's comparison sort here) and run-length
//!   reduced to the sorted unique codes and their counts. Memory: 4 or 8
//!   bytes per occurrence, plus as much scratch for the sort.
//!
//! Entropy estimates are computed from the (k+1)-gram counts `c(s, x)` with
//! context `s` (k tokens) and next token `x`; see [`EntropyStats`]. Floating
//! point sums are taken over fixed blocks of contexts and the block partials
//! summed in order, so estimates are bit-identical for any thread count.

use crate::error::{Error, Result};
use crate::tokens::InToken;
use rayon::prelude::*;
use rdst::RadixSort;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Default largest dense table, in entries (`V^n`): 2^26 counts = 512 MiB.
pub const DEFAULT_MAX_DENSE: u64 = 1 << 26;
/// Dense tables are only used up to this many dimensions (numpy allows 64).
pub const MAX_DENSE_NDIM: usize = 32;
/// Entries (u8 or u16 counters, all threads together) that private
/// per-thread tables may hold before counting switches to one shared atomic
/// table: 2^27 entries, at most 256 MiB.
const PRIVATE_BUDGET: usize = 1 << 27;
/// Private dense tables up to this many entries count in u16, larger ones in u8.
const SMALL_TABLE: usize = 1 << 15;
/// Below this many n-grams counting is sequential.
const PARALLEL_MIN: usize = 1 << 16;
/// Contexts are summed in blocks of about this many table entries / unique
/// n-grams (fixed, so floating-point results ignore the thread count).
const SUM_BLOCK: usize = 1 << 14;

// The shared-table path views a `[u64]` as `[AtomicU64]`.
const _: () = assert!(
    std::mem::size_of::<AtomicU64>() == std::mem::size_of::<u64>()
        && std::mem::align_of::<AtomicU64>() == std::mem::align_of::<u64>()
);

/// The counts of one n-gram order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// `V^n` counts indexed by code (row-major `(V,)*n` array).
    Dense(Vec<u64>),
    /// Sorted unique codes of the n-grams that occur, and their counts (> 0).
    Sparse { codes: Vec<u64>, counts: Vec<u64> },
}

/// N-gram counts of a token array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NgramCounts {
    /// n-gram length.
    pub n: usize,
    /// Vocabulary size V (given, or max token + 1).
    pub vocab: u64,
    /// Number of n-gram occurrences (windows): rows × max(len - n + 1, 0).
    pub total: u64,
    pub table: Table,
}

/// Statistics of the plug-in estimate of H(X_t | X_{t-k} .. X_{t-1}) from
/// (k+1)-gram counts `c(s, x)`, `n_s = Σ_x c(s, x)`, `N = Σ_s n_s`, in nats:
///
/// * `plugin = Σ_s (n_s/N) Ĥ_s = (1/N) Σ_{s,x} c(s,x) [ln n_s - ln c(s,x)]`,
///   with Ĥ_s the entropy of the empirical next-token law p̂(·|s);
/// * `miller_madow = Σ_s (m_s - 1) / (2N)`, m_s the number of distinct next
///   tokens seen after s (the Miller–Madow correction, Miller 1955, applied
///   per context and weighted by n_s/N);
/// * `variance = Σ_{s,x} (c/N) u² - plugin²` with u = ln n_s - ln c(s,x): the
///   variance of the surprisal -ln p̂(x|s) under the empirical joint law,
///   so that `sqrt(variance / N)` is the delta-method standard error of the
///   plug-in for N i.i.d. (context, next-token) pairs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EntropyStats {
    /// Vocabulary size V the tokens were checked against.
    pub vocab: u64,
    /// N: number of (k+1)-gram occurrences used.
    pub samples: u64,
    /// Number of distinct contexts observed.
    pub contexts: u64,
    /// Number of distinct (k+1)-grams observed.
    pub distinct: u64,
    pub plugin: f64,
    pub miller_madow: f64,
    pub variance: f64,
}

/// V^width, or an error naming `arg` when the codes would not fit in a u64.
pub fn code_space(vocab: u64, width: usize, arg: &str) -> Result<u64> {
    if vocab == 0 {
        return Err(Error::value("vocab_size must be at least 1"));
    }
    if vocab == 1 {
        return Ok(1);
    }
    u32::try_from(width).ok().and_then(|w| vocab.checked_pow(w)).ok_or_else(|| {
        Error::value(format!(
            "{arg}: vocab_size^{width} = {vocab}^{width} exceeds 2^64 - 1, so {width}-grams cannot be \
             coded in 64 bits; use a smaller {arg} or vocab_size"
        ))
    })
}

/// Checks every token (one parallel pass) and returns the vocabulary size:
/// `vocab` if given (all tokens must lie in [0, vocab)), else max token + 1
/// (all tokens must be non-negative). Errors name the first bad position.
pub fn resolve_vocab<T: InToken + Ord>(tokens: &[T], len: usize, vocab: Option<u64>) -> Result<u64> {
    if vocab == Some(0) {
        return Err(Error::value("vocab_size must be at least 1"));
    }
    let limit = vocab.unwrap_or(u64::MAX);
    // Min and max in the native type (vectorises); a negative minimum maps
    // to u64::MAX, above any limit.
    let range = tokens
        .par_chunks(1 << 16)
        .map(|c| c.iter().fold((c[0], c[0]), |(lo, hi), &x| (lo.min(x), hi.max(x))))
        .reduce_with(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let max = range.map(|(lo, hi)| lo.index().max(hi.index()));
    let m = match max {
        None => {
            return vocab.ok_or_else(|| {
                Error::value("vocab_size cannot be inferred from an empty tokens array; pass vocab_size")
            })
        }
        Some(m) => m,
    };
    if m < limit {
        return Ok(vocab.unwrap_or(m + 1));
    }
    let p = tokens.par_iter().position_first(|x| x.index() >= limit).unwrap_or(0);
    let (i, t) = match len {
        0 => (0, p),
        _ => (p / len, p % len),
    };
    let x = tokens[p];
    Err(Error::value(match vocab {
        Some(v) => {
            format!("tokens: value {x} at position [{i}, {t}] is outside the vocabulary [0, {v})")
        }
        None if x.to_string().starts_with('-') => {
            format!("tokens: value {x} at position [{i}, {t}] is negative; tokens must be non-negative")
        }
        None => {
            format!("tokens: value {x} at position [{i}, {t}] is too large (vocab_size = max token + 1 must be < 2^64)")
        }
    }))
}

/// Integer types whose all-zero bit pattern is 0.
trait Zero: Copy {}
impl Zero for u8 {}
impl Zero for u16 {}
impl Zero for u32 {}
impl Zero for u64 {}

/// A zeroed vector (`calloc`: large ones are lazily zeroed pages, touched
/// first by the thread that uses them), or an error instead of an
/// allocation abort.
fn zeros<X: Zero>(n: usize, what: &str) -> Result<Vec<X>> {
    if n == 0 || std::mem::size_of::<X>() == 0 {
        return Ok(Vec::new());
    }
    let err = || Error::value(format!("not enough memory for {what} ({n} entries)"));
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

/// V^(n-1), for a V^n already known to fit in a u64.
fn pow_minus_one(vocab: u64, n: usize) -> u64 {
    if vocab == 1 {
        1
    } else {
        vocab.pow((n - 1) as u32)
    }
}

/// Number of n-gram windows per row of `len` tokens.
fn windows_per_row(len: usize, n: usize) -> usize {
    if len >= n {
        len - n + 1
    } else {
        0
    }
}

/// Receives n-gram codes.
trait Sink {
    fn put(&mut self, code: u64);
    /// A block of codes below 2^32.
    #[inline(always)]
    fn put_block(&mut self, codes: &[u32]) {
        for &c in codes {
            self.put(c as u64);
        }
    }
}

/// Plain increments of a u64 table.
struct Direct<'a>(&'a mut [u64]);
impl Sink for Direct<'_> {
    #[inline(always)]
    fn put(&mut self, code: u64) {
        self.0[code as usize] += 1;
    }
}

/// Relaxed atomic increments of a shared table.
struct Shared<'a>(&'a [AtomicU64]);
impl Sink for Shared<'_> {
    #[inline(always)]
    fn put(&mut self, code: u64) {
        self.0[code as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Increments of a private narrow table, logging wraps.
struct Private<'a, C> {
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

/// The low bits of an n-gram code inside its sparse-count bucket: u32 when
/// they fit (half the memory and sort traffic), else u64.
trait Code: Zero + Ord + Send + Sync + Copy + rdst::RadixKey {
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

/// Puts, in order, the code of every n-gram whose first token lies at a flat
/// position in `lo..hi` (n-grams never cross rows of `len` tokens). Tokens
/// must already be checked to lie in [0, V).
fn for_each_code<T: InToken, S: Sink>(
    tokens: &[T],
    len: usize,
    n: usize,
    vocab: u64,
    lo: usize,
    hi: usize,
    sink: &mut S,
) {
    let w = windows_per_row(len, n);
    if w == 0 {
        return;
    }
    // V = 2^b: shifts instead of multiplies (about 15% faster for n = 2..4).
    let shift = vocab.is_power_of_two().then(|| vocab.trailing_zeros());
    let narrow = code_space(vocab, n, "n").is_ok_and(|e| e <= u32::MAX as u64);
    let mut p = lo;
    while p < hi {
        let i = p / len;
        let t = p % len;
        let end = w.min(t + (hi - p)); // window starts t..end of row i
        if t < end {
            let row = &tokens[i * len..(i + 1) * len];
            match (n, shift) {
                (1, _) => fixed::<T, S, 1>(row, t, end, Mul(vocab), false, sink),
                (2, Some(b)) => fixed::<T, S, 2>(row, t, end, Shl(b), narrow, sink),
                (3, Some(b)) => fixed::<T, S, 3>(row, t, end, Shl(b), narrow, sink),
                (4, Some(b)) => fixed::<T, S, 4>(row, t, end, Shl(b), narrow, sink),
                (2, None) => fixed::<T, S, 2>(row, t, end, Mul(vocab), narrow, sink),
                (3, None) => fixed::<T, S, 3>(row, t, end, Mul(vocab), narrow, sink),
                (4, None) => fixed::<T, S, 4>(row, t, end, Mul(vocab), narrow, sink),
                _ => rolling(row, t, end, n, vocab, sink),
            }
        }
        p = (i + 1) * len;
    }
}

/// Appends one base-V digit to a code (u64, or u32 when V^n < 2^32).
trait Digit: Copy {
    fn push(self, code: u64, x: u64) -> u64;
    fn push32(self, code: u32, x: u32) -> u32;
}

/// code * V + x.
#[derive(Clone, Copy)]
struct Mul(u64);
impl Digit for Mul {
    #[inline(always)]
    fn push(self, code: u64, x: u64) -> u64 {
        code * self.0 + x
    }
    #[inline(always)]
    fn push32(self, code: u32, x: u32) -> u32 {
        code.wrapping_mul(self.0 as u32).wrapping_add(x)
    }
}

/// code << b | x, for V = 2^b.
#[derive(Clone, Copy)]
struct Shl(u32);
impl Digit for Shl {
    #[inline(always)]
    fn push(self, code: u64, x: u64) -> u64 {
        (code << self.0) | x
    }
    #[inline(always)]
    fn push32(self, code: u32, x: u32) -> u32 {
        code.wrapping_shl(self.0) | x
    }
}

/// Small n: codes computed from scratch (no loop-carried dependency). When
/// codes fit in 32 bits (`narrow`: V^N < 2^32), a block of 64 is computed at
/// a time in a loop the compiler vectorises, then handed to the sink (about
/// 10% faster than one code at a time).
#[inline(always)]
fn fixed<T: InToken, S: Sink, const N: usize>(
    row: &[T],
    t0: usize,
    end: usize,
    d: impl Digit,
    narrow: bool,
    sink: &mut S,
) {
    const B: usize = 64;
    let mut t = t0;
    if narrow {
        let mut codes = [0u32; B];
        while t + B <= end {
            code_block::<T, N, B>(&row[t..t + B + N - 1], d, &mut codes);
            sink.put_block(&codes);
            t += B;
        }
    }
    for w in row[t..end + N - 1].windows(N) {
        let mut code = 0u64;
        for x in w.iter().take(N) {
            code = d.push(code, x.index());
        }
        sink.put(code);
    }
}

/// Codes of the `B` windows of `N` tokens starting in `w` (`B + N - 1`
/// tokens), with AVX2 when the CPU has it (twice the lanes of the SSE2
/// baseline; detected once).
#[inline(always)]
fn code_block<T: InToken, const N: usize, const B: usize>(w: &[T], d: impl Digit, codes: &mut [u32; B]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { code_block_avx2::<T, N, B>(w, d, codes) };
            return;
        }
    }
    code_block_generic::<T, N, B>(w, d, codes)
}

#[inline(always)]
fn code_block_generic<T: InToken, const N: usize, const B: usize>(w: &[T], d: impl Digit, codes: &mut [u32; B]) {
    for (j, c) in codes.iter_mut().enumerate() {
        let mut code = 0u32;
        for k in 0..N {
            code = d.push32(code, w[j + k].index() as u32);
        }
        *c = code;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn code_block_avx2<T: InToken, const N: usize, const B: usize>(w: &[T], d: impl Digit, codes: &mut [u32; B]) {
    code_block_generic::<T, N, B>(w, d, codes)
}

/// Any n: rolling code, code' = (code - x_old V^(n-1)) V + x_new.
#[inline(always)]
fn rolling<T: InToken, S: Sink>(row: &[T], t0: usize, end: usize, n: usize, vocab: u64, sink: &mut S) {
    let top = pow_minus_one(vocab, n);
    let mut code = 0u64;
    for x in &row[t0..t0 + n] {
        code = code * vocab + x.index();
    }
    sink.put(code);
    for (old, new) in row[t0..end - 1].iter().zip(&row[t0 + n..end + n - 1]) {
        code = (code - old.index() * top) * vocab + new.index();
        sink.put(code);
    }
}

/// Number of pieces to cut `total` tokens into for `threads` threads: 8 per
/// thread (load balancing on shared machines), each at least PARALLEL_MIN.
fn pieces(total: usize, threads: usize) -> usize {
    (threads * 8).min(total / PARALLEL_MIN).max(1)
}

/// `parts` contiguous near-equal ranges of `0..total`.
fn split(total: usize, parts: usize) -> Vec<(usize, usize)> {
    (0..parts).map(|j| (j * total / parts, (j + 1) * total / parts)).collect()
}

/// How a dense table is counted, with `P` threads and `E = V^n` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
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

fn plan(m: usize, entries: usize) -> Plan {
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

/// Number of n-gram windows of a `[rows, len]` array.
fn windows(tokens_len: usize, len: usize, n: usize) -> usize {
    rows_of(tokens_len, len) * windows_per_row(len, n)
}

/// Number of rows of `len` tokens (0 when len = 0).
fn rows_of(tokens_len: usize, len: usize) -> usize {
    tokens_len.checked_div(len).unwrap_or(0)
}

/// Dense counts: a u64 table of `entries` = V^n counts (see [`Plan`]).
fn count_dense<T: InToken>(tokens: &[T], len: usize, n: usize, vocab: u64, entries: usize) -> Result<Vec<u64>> {
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
trait Narrow: Zero + Default + Send + Sync + 'static {
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
struct Narrowed<C> {
    entries: usize,
    tabs: Vec<Vec<C>>,
    /// Codes whose counter wrapped (one per wrap, any order).
    wraps: Vec<u64>,
}

impl<C: Narrow> Narrowed<C> {
    fn count<T: InToken>(
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
    fn sum_at(&self, e: usize) -> u64 {
        self.tabs.iter().map(|t| t[e].get()).sum()
    }

    /// The u64 table (each entry written once, no zeroing pass).
    fn into_u64(self) -> Result<Vec<u64>> {
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
    fn entropy(&self, vocab: u64) -> EntropyStats {
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

/// Run-length reduction of a sequence sorted by `key`: the distinct keys and
/// the sums of `weight` over each run. Parallel over pieces cut at run starts.
fn reduce_sorted<K, W>(len: usize, key: K, weight: W) -> (Vec<u64>, Vec<u64>)
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
const BUCKET_BITS: u32 = 12;
/// Buckets whose low parts span at most 2^DENSE_BITS values are counted in a
/// dense table (256 KiB of u32); wider ones too when the table is at most
/// 4x the bucket's length and at most 2^DENSE_MAX_BITS entries.
const DENSE_BITS: u32 = 16;
const DENSE_MAX_BITS: u32 = 20;

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
fn count_sparse<T: InToken>(tokens: &[T], len: usize, n: usize, vocab: u64) -> Result<(Vec<u64>, Vec<u64>)> {
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
struct Hist<'a> {
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
struct Scatter<'a, K> {
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
struct SharedSlots<K> {
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

fn bucketed<T: InToken, K: Code>(
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
fn concat(parts: Vec<(Vec<u64>, Vec<u64>)>) -> Result<(Vec<u64>, Vec<u64>)> {
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
fn count_bucket<K: Code>(slice: &mut [K], base: u64, low: u32, table: &mut Vec<u32>) -> (Vec<u64>, Vec<u64>) {
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

fn use_dense(entries: u64, n: usize, max_dense: u64) -> bool {
    entries <= max_dense && n <= MAX_DENSE_NDIM && usize::try_from(entries).is_ok()
}

/// Counts of all n-grams (n >= 1) within the rows of `tokens` ([rows, len],
/// row-major). `vocab`: None = max token + 1. Dense when V^n <= `max_dense`
/// (and n <= [`MAX_DENSE_NDIM`]), sparse otherwise.
pub fn ngram_counts<T: InToken + Ord>(
    tokens: &[T],
    len: usize,
    n: usize,
    vocab: Option<u64>,
    max_dense: u64,
) -> Result<NgramCounts> {
    if n == 0 {
        return Err(Error::value("n must be >= 1"));
    }
    let vocab = resolve_vocab(tokens, len, vocab)?;
    count_checked(tokens, len, n, vocab, max_dense, "n")
}

fn count_checked<T: InToken>(
    tokens: &[T],
    len: usize,
    n: usize,
    vocab: u64,
    max_dense: u64,
    arg: &str,
) -> Result<NgramCounts> {
    let entries = code_space(vocab, n, arg)?;
    let total = windows(tokens.len(), len, n) as u64;
    let table = if use_dense(entries, n, max_dense) {
        Table::Dense(count_dense(tokens, len, n, vocab, entries as usize)?)
    } else {
        let (codes, counts) = count_sparse(tokens, len, n, vocab)?;
        Table::Sparse { codes, counts }
    };
    Ok(NgramCounts { n, vocab, total, table })
}

/// Partial sums over a block of contexts.
#[derive(Default, Clone, Copy)]
struct Partial {
    samples: u64,
    contexts: u64,
    distinct: u64,
    extra_symbols: u64, // Σ (m_s - 1)
    s1: f64,            // Σ c u
    s2: f64,            // Σ c u²
}

impl Partial {
    /// Adds one context with next-token counts `cs` (zeros allowed).
    #[inline]
    fn context(&mut self, cs: impl Iterator<Item = u64> + Clone) {
        let n_s: u64 = cs.clone().sum();
        if n_s == 0 {
            return;
        }
        let ln_n = (n_s as f64).ln();
        let mut m = 0u64;
        for c in cs.filter(|&c| c > 0) {
            let cf = c as f64;
            let u = ln_n - cf.ln();
            self.s1 += cf * u;
            self.s2 += cf * u * u;
            m += 1;
        }
        self.samples += n_s;
        self.contexts += 1;
        self.distinct += m;
        self.extra_symbols += m - 1;
    }

    fn add(mut self, o: &Partial) -> Partial {
        self.samples += o.samples;
        self.contexts += o.contexts;
        self.distinct += o.distinct;
        self.extra_symbols += o.extra_symbols;
        self.s1 += o.s1;
        self.s2 += o.s2;
        self
    }

    fn finish(self, vocab: u64) -> EntropyStats {
        if self.samples == 0 {
            return EntropyStats { vocab, ..EntropyStats::default() };
        }
        let nf = self.samples as f64;
        let plugin = (self.s1 / nf).max(0.0);
        EntropyStats {
            vocab,
            samples: self.samples,
            contexts: self.contexts,
            distinct: self.distinct,
            plugin,
            miller_madow: self.extra_symbols as f64 / (2.0 * nf),
            variance: (self.s2 / nf - plugin * plugin).max(0.0),
        }
    }
}

/// Conditional-entropy statistics from n-gram counts (n = order + 1): the
/// context of an n-gram is its first n - 1 tokens, `code / V`.
pub fn entropy_from_counts(c: &NgramCounts) -> EntropyStats {
    let v = c.vocab as usize;
    let partials: Vec<Partial> = match &c.table {
        Table::Dense(t) => {
            let rows = (SUM_BLOCK / v.max(1)).max(1);
            t.par_chunks(rows * v)
                .map(|blk| {
                    let mut p = Partial::default();
                    for row in blk.chunks(v) {
                        p.context(row.iter().copied());
                    }
                    p
                })
                .collect()
        }
        Table::Sparse { codes, counts } => {
            let vv = c.vocab;
            let len = codes.len();
            let blocks = len.div_ceil(SUM_BLOCK).max(1);
            let mut cuts: Vec<usize> = (0..=blocks).map(|j| (j * SUM_BLOCK).min(len)).collect();
            for cut in cuts.iter_mut().take(blocks).skip(1) {
                while *cut < len && codes[*cut] / vv == codes[*cut - 1] / vv {
                    *cut += 1;
                }
            }
            cuts.par_windows(2)
                .map(|w| {
                    let (lo, hi) = (w[0], w[1].max(w[0]));
                    let mut p = Partial::default();
                    let mut i = lo;
                    while i < hi {
                        let s = codes[i] / vv;
                        let mut j = i + 1;
                        while j < hi && codes[j] / vv == s {
                            j += 1;
                        }
                        p.context(counts[i..j].iter().copied());
                        i = j;
                    }
                    p
                })
                .collect()
        }
    };
    partials.iter().fold(Partial::default(), |a, b| a.add(b)).finish(c.vocab)
}

fn check_order(len: usize, rows: usize, order: usize, arg: &str) -> Result<()> {
    if rows == 0 || len < order + 1 {
        return Err(Error::value(format!(
            "{arg} = {order} is too large for tokens of shape ({rows}, {len}): an order-k estimate needs \
             rows of at least k + 1 = {} tokens",
            order + 1
        )));
    }
    Ok(())
}

/// Plug-in statistics of the order-`order` conditional entropy of `tokens`.
pub fn conditional_entropy<T: InToken + Ord>(
    tokens: &[T],
    len: usize,
    order: usize,
    vocab: Option<u64>,
    max_dense: u64,
) -> Result<EntropyStats> {
    let rows = rows_of(tokens.len(), len);
    check_order(len, rows, order, "order")?;
    let vocab = resolve_vocab(tokens, len, vocab)?;
    let n = order + 1;
    let entries = code_space(vocab, n, "order")?;
    if use_dense(entries, n, max_dense) {
        // Private narrow tables: entropy without materialising the u64 table.
        let entries = entries as usize;
        match plan(windows(tokens.len(), len, n), entries) {
            Plan::Private16(t) => return Ok(Narrowed::<u16>::count(tokens, len, n, vocab, entries, t)?.entropy(vocab)),
            Plan::Private8(t) => return Ok(Narrowed::<u8>::count(tokens, len, n, vocab, entries, t)?.entropy(vocab)),
            _ => {}
        }
    }
    let c = count_checked(tokens, len, n, vocab, max_dense, "order")?;
    Ok(entropy_from_counts(&c))
}

/// Counts of (n-1)-grams from counts of n-grams (n >= 2): sum over the last
/// token, then add the one (n-1)-gram window per row that no n-gram window
/// starts at (the last one of each row).
fn marginalize<T: InToken>(c: NgramCounts, tokens: &[T], len: usize) -> NgramCounts {
    let v = c.vocab;
    let n = c.n - 1;
    let rows = tokens.len() / len;
    // Code of the last (n-1)-window of row i.
    let tail = |i: usize| tokens[i * len + len - n..(i + 1) * len].iter().fold(0u64, |a, x| a * v + x.index());
    let table = match c.table {
        Table::Dense(t) => {
            let mut out: Vec<u64> = t.par_chunks(v as usize).map(|r| r.iter().sum()).collect();
            for i in 0..rows {
                out[tail(i) as usize] += 1;
            }
            Table::Dense(out)
        }
        Table::Sparse { codes, counts } => {
            let mut tails: Vec<u64> = (0..rows).into_par_iter().map(tail).collect();
            tails.par_sort_unstable();
            let (tk, tw) = reduce_sorted(tails.len(), |i| tails[i], |_| 1);
            let (mk, mw) = reduce_sorted(codes.len(), |i| codes[i] / v, |i| counts[i]);
            drop((codes, counts));
            let (codes, counts) = merge_add(mk, mw, &tk, &tw);
            Table::Sparse { codes, counts }
        }
    };
    NgramCounts { n, vocab: v, total: c.total + rows as u64, table }
}

/// Adds the sorted sparse counts (bk, bw) into the sorted (ak, aw), in linear
/// time: in place when every key of b is already in a (the common case),
/// else by a merge into new vectors.
fn merge_add(mut ak: Vec<u64>, mut aw: Vec<u64>, bk: &[u64], bw: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let mut pos = Vec::with_capacity(bk.len());
    let mut i = 0;
    for k in bk {
        while i < ak.len() && ak[i] < *k {
            i += 1;
        }
        if i < ak.len() && ak[i] == *k {
            pos.push(i);
        } else {
            break;
        }
    }
    if pos.len() == bk.len() {
        for (i, w) in pos.into_iter().zip(bw) {
            aw[i] += w;
        }
        return (ak, aw);
    }
    let (mut ck, mut cw) = (Vec::with_capacity(ak.len() + bk.len()), Vec::with_capacity(ak.len() + bk.len()));
    let (mut i, mut j) = (0, 0);
    while i < ak.len() || j < bk.len() {
        if j == bk.len() || (i < ak.len() && ak[i] < bk[j]) {
            ck.push(ak[i]);
            cw.push(aw[i]);
            i += 1;
        } else if i == ak.len() || bk[j] < ak[i] {
            ck.push(bk[j]);
            cw.push(bw[j]);
            j += 1;
        } else {
            ck.push(ak[i]);
            cw.push(aw[i] + bw[j]);
            i += 1;
            j += 1;
        }
    }
    ak.clear();
    aw.clear();
    (ck, cw)
}

/// Statistics for orders 0..=max_order from one counting pass at the top
/// order: lower orders are obtained by marginalising the last token (plus
/// the last window of each row, which no longer n-gram starts at), so each
/// entry equals [`conditional_entropy`] at that order. Sparse counts become
/// dense at the first order whose table is small enough.
pub fn entropy_profile<T: InToken + Ord>(
    tokens: &[T],
    len: usize,
    max_order: usize,
    vocab: Option<u64>,
    max_dense: u64,
) -> Result<Vec<EntropyStats>> {
    let rows = rows_of(tokens.len(), len);
    check_order(len, rows, max_order, "max_order")?;
    let vocab = resolve_vocab(tokens, len, vocab)?;
    let mut c = count_checked(tokens, len, max_order + 1, vocab, max_dense, "max_order")?;
    let mut out = vec![EntropyStats::default(); max_order + 1];
    loop {
        out[c.n - 1] = entropy_from_counts(&c);
        if c.n == 1 {
            break;
        }
        c = marginalize(c, tokens, len);
        c = densify(c, max_dense)?;
    }
    Ok(out)
}

/// Sparse counts turned dense once V^n is small enough for a dense table
/// (so that lower orders of a profile marginalise cheaply).
fn densify(c: NgramCounts, max_dense: u64) -> Result<NgramCounts> {
    let entries = code_space(c.vocab, c.n, "max_order")?;
    match c.table {
        Table::Sparse { codes, counts } if use_dense(entries, c.n, max_dense) => {
            let mut t: Vec<u64> = zeros(entries as usize, "the dense n-gram table")?;
            for (k, w) in codes.iter().zip(&counts) {
                t[*k as usize] = *w;
            }
            Ok(NgramCounts { table: Table::Dense(t), ..c })
        }
        table => Ok(NgramCounts { table, ..c }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Xoshiro256pp;
    use std::collections::BTreeMap;

    fn random_tokens(rows: usize, len: usize, v: u64, seed: u64) -> Vec<u16> {
        let mut r = Xoshiro256pp::from_u64(seed);
        (0..rows * len).map(|_| (r.next_f64() * v as f64) as u16).collect()
    }

    fn naive(tokens: &[u16], len: usize, n: usize, v: u64) -> BTreeMap<u64, u64> {
        let mut m = BTreeMap::new();
        if len == 0 {
            return m;
        }
        for row in tokens.chunks(len) {
            for w in row.windows(n) {
                let code = w.iter().fold(0u64, |a, &x| a * v + x as u64);
                *m.entry(code).or_insert(0) += 1;
            }
        }
        m
    }

    fn as_map(c: &NgramCounts) -> BTreeMap<u64, u64> {
        match &c.table {
            Table::Dense(t) => t.iter().enumerate().filter(|(_, &x)| x > 0).map(|(i, &x)| (i as u64, x)).collect(),
            Table::Sparse { codes, counts } => {
                assert!(codes.windows(2).all(|w| w[0] < w[1]));
                assert!(counts.iter().all(|&x| x > 0));
                codes.iter().copied().zip(counts.iter().copied()).collect()
            }
        }
    }

    fn naive_entropy(tokens: &[u16], len: usize, k: usize, v: u64) -> (f64, f64) {
        let m = naive(tokens, len, k + 1, v);
        let mut ctx: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for (&code, &c) in &m {
            let e = ctx.entry(code / v).or_insert((0, 0));
            e.0 += c;
            e.1 += 1;
        }
        let n: u64 = m.values().sum();
        let mut h = 0.0;
        for (&code, &c) in &m {
            let ns = ctx[&(code / v)].0 as f64;
            h -= c as f64 / n as f64 * (c as f64 / ns).ln();
        }
        let mm: f64 = ctx.values().map(|&(_, ms)| (ms - 1) as f64).sum::<f64>() / (2.0 * n as f64);
        (h, mm)
    }

    #[test]
    fn counts_match_naive_dense_and_sparse() {
        for &(rows, len, v) in &[(1usize, 1000usize, 3u64), (7, 13, 5), (50, 3, 4), (3, 0, 2), (0, 5, 2), (200, 700, 6)]
        {
            let x = random_tokens(rows, len, v, 7 + rows as u64);
            for n in 1..=4 {
                let want = naive(&x, len, n, v);
                for max_dense in [0, DEFAULT_MAX_DENSE] {
                    let c = ngram_counts(&x, len, n, Some(v), max_dense).unwrap();
                    assert_eq!(as_map(&c), want, "rows {rows} len {len} n {n} dense {max_dense}");
                    assert_eq!(c.total, want.values().sum::<u64>());
                }
            }
        }
    }

    #[test]
    fn sparse_buckets_match_naive_on_every_path() {
        // (rows, len, V, n): low bits 0 / dense (<= 16 bits) / dense wide /
        // radix-sorted buckets / u64 low parts; skewed tokens give one huge
        // bucket next to tiny ones.
        let cases: &[(usize, usize, u64, usize)] = &[
            (3, 50, 7, 3),          // V^n = 343: one bucket per code
            (4, 40_000, 300, 3),    // 2^25: 13 low bits, dense
            (4, 40_000, 1000, 3),   // 2^30: 18 low bits, dense where busy, sorted elsewhere
            (4, 40_000, 3000, 3),   // 2^35: 23 low bits, radix-sorted buckets
            (2, 30_000, 60_000, 4), // 2^64: 52 low bits in u64
        ];
        for &(rows, len, v, n) in cases {
            for skew in [false, true] {
                let mut x = random_tokens(rows, len, v, v + n as u64);
                if skew {
                    for (i, t) in x.iter_mut().enumerate() {
                        if i % 5 != 0 {
                            *t = (i % 3) as u16; // 80% of tokens among three values
                        }
                    }
                }
                let want = naive(&x, len, n, v);
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let c = pool.install(|| ngram_counts(&x, len, n, Some(v), 0).unwrap());
                    assert!(matches!(c.table, Table::Sparse { .. }));
                    assert_eq!(as_map(&c), want, "V {v} n {n} skew {skew} threads {threads}");
                }
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let x = random_tokens(3, 200_000, 11, 1);
        let run = |threads: usize, max_dense: u64| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let c = ngram_counts(&x, 200_000, 3, None, max_dense).unwrap();
                let mut p = entropy_profile(&x, 200_000, 3, None, max_dense).unwrap();
                p.extend((0..4).map(|k| conditional_entropy(&x, 200_000, k, None, max_dense).unwrap()));
                (c, p)
            })
        };
        for max_dense in [0, DEFAULT_MAX_DENSE] {
            let (c1, p1) = run(1, max_dense);
            for t in [2, 3, 8] {
                let (c, p) = run(t, max_dense);
                assert_eq!(c, c1);
                assert_eq!(p, p1); // bit-identical floats
            }
        }
    }

    #[test]
    fn shared_atomic_table_path() {
        // V^n = 10^6 entries > 10^5 windows: counted into one atomic table.
        let (len, v) = (100_000, 100u64);
        let x = random_tokens(1, len, v, 5);
        let want = naive(&x, len, 3, v);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let c = pool.install(|| ngram_counts(&x, len, 3, Some(v), DEFAULT_MAX_DENSE).unwrap());
            assert!(matches!(c.table, Table::Dense(_)));
            assert_eq!(as_map(&c), want);
        }
    }

    #[test]
    fn narrow_counters_wrap_correctly() {
        // (V, n) = (100, 2): 10^4 entries, u16 counters; (40, 3): 64000
        // entries, u8 counters. 80% of the tokens are 0, so the all-zero
        // n-gram occurs ~10^5 times and its counter wraps.
        let mut r = Xoshiro256pp::from_u64(4);
        for (v, n) in [(100u64, 2usize), (40, 3)] {
            let mut x = random_tokens(4, 50_000, v, 9);
            for t in x.iter_mut() {
                if r.next_f64() < 0.8 {
                    *t = 0;
                }
            }
            let want = naive(&x, 50_000, n, v);
            assert!(want[&0] > 30_000);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (c, e) = pool.install(|| {
                    (
                        ngram_counts(&x, 50_000, n, Some(v), DEFAULT_MAX_DENSE).unwrap(),
                        conditional_entropy(&x, 50_000, n - 1, Some(v), DEFAULT_MAX_DENSE).unwrap(),
                    )
                });
                assert_eq!(as_map(&c), want);
                // The fused entropy (from the narrow tables) equals the one
                // from the merged table, bit for bit.
                assert_eq!(e, entropy_from_counts(&c));
                let (h, mm) = naive_entropy(&x, 50_000, n - 1, v);
                assert!((e.plugin - h).abs() < 1e-12 && (e.miller_madow - mm).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn entropy_matches_naive_and_profile_matches_direct() {
        let (rows, len, v) = (40, 57, 5u64);
        let x = random_tokens(rows, len, v, 3);
        for max_dense in [0, DEFAULT_MAX_DENSE] {
            let prof = entropy_profile(&x, len, 4, Some(v), max_dense).unwrap();
            for k in 0..=4 {
                let e = conditional_entropy(&x, len, k, Some(v), max_dense).unwrap();
                let (h, mm) = naive_entropy(&x, len, k, v);
                assert!((e.plugin - h).abs() < 1e-12, "order {k}: {} vs {h}", e.plugin);
                assert!((e.miller_madow - mm).abs() < 1e-15);
                assert_eq!(e.samples, (rows * (len - k)) as u64);
                let p = prof[k];
                assert_eq!((p.samples, p.contexts, p.distinct), (e.samples, e.contexts, e.distinct));
                assert!((p.plugin - e.plugin).abs() < 1e-13);
                assert!((p.variance - e.variance).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn variance_is_surprisal_variance() {
        // One context, counts 1 and 3: p̂ = (1/4, 3/4).
        let x: Vec<u8> = vec![0, 1, 1, 1];
        let e = conditional_entropy(&x, 4, 0, None, DEFAULT_MAX_DENSE).unwrap();
        let (p, q) = (0.25f64, 0.75f64);
        let h = -(p * p.ln() + q * q.ln());
        assert!((e.plugin - h).abs() < 1e-15);
        let var = p * p.ln().powi(2) + q * q.ln().powi(2) - h * h;
        assert!((e.variance - var).abs() < 1e-15);
        assert_eq!(e.miller_madow, 1.0 / 8.0);
    }

    #[test]
    fn bad_inputs() {
        let x: Vec<i32> = vec![0, 1, 2, -1, 0, 1];
        let e = ngram_counts(&x, 3, 1, None, DEFAULT_MAX_DENSE).unwrap_err();
        assert!(e.to_string().contains("value -1 at position [1, 0] is negative"), "{e}");
        let e = ngram_counts(&[0u8, 5, 1], 3, 2, Some(4), DEFAULT_MAX_DENSE).unwrap_err();
        assert!(e.to_string().contains("value 5 at position [0, 1] is outside the vocabulary [0, 4)"), "{e}");
        assert!(ngram_counts(&[0u8, 1], 2, 0, None, 0).is_err());
        let e = ngram_counts(&[0u8, 1], 2, 2, Some(1 << 40), 0).unwrap_err();
        assert!(e.to_string().starts_with("n: vocab_size^2"), "{e}");
        let e = conditional_entropy(&[0u8, 1, 1], 3, 3, None, 0).unwrap_err();
        assert!(e.to_string().starts_with("order = 3 is too large"), "{e}");
        let e = entropy_profile::<u8>(&[], 0, 0, None, 0).unwrap_err();
        assert!(e.to_string().starts_with("max_order = 0 is too large"), "{e}");
        assert!(ngram_counts::<u8>(&[], 0, 1, None, 0).is_err());
        assert_eq!(ngram_counts::<u8>(&[], 0, 1, Some(3), 10).unwrap().table, Table::Dense(vec![0; 3]));
        assert!(ngram_counts(&[u64::MAX], 1, 1, None, 10).is_err());
    }
}
