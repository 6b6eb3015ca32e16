//! MinHash signatures and banded LSH near-duplicate clustering (Broder 1997;
//! Indyk & Motwani 1998; docs/math.md, "Near-duplicates (MinHash LSH)").
//!
//! Signature column `k` of an item is `min over its shingles x of π_k(h(x))`:
//!
//! * `Fast` (the default): `h` = the high 32 bits of the shingle's fast 64-bit
//!   hash (`text::shingle`), `π_k(h) = a_k·h + b_k mod 2^32` with `a_k` odd
//!   (a bijection); `a_k, b_k` from [`fast_perms`]; uint32.
//! * `Affine32` (datasketch ≥ 2.0's default): `h` = the first 4 bytes of
//!   sha1(shingle), little-endian, pre-mixed by MurmurHash3's 32-bit
//!   finaliser, then `a_k·h + b_k mod 2^32`; uint32.
//! * `Affine64`: the first 8 bytes of sha1, the 64-bit finaliser, mod 2^64; uint64.
//! * `Legacy` (datasketch < 2.0, `scheme="legacy"`): `h` = the first 4 bytes of
//!   sha1, `π_k(h) = ((a_k·h + b_k) mod 2^64 mod (2^61 − 1)) & (2^32 − 1)`
//!   (numpy's wrapping uint64 arithmetic); uint64.
//!
//! The datasketch schemes take `a, b` from the caller (numpy's `RandomState`
//! draws them). An item without shingles has the all-maximum signature (the
//! empty MinHash). Each row is computed by one thread from its item alone, so
//! signatures do not depend on the thread count or the chunking.
//!
//! Clustering ([`cluster`]): items with identical signatures are collapsed
//! first (they collide in every band and have estimated Jaccard 1); the
//! distinct signatures are bucketed band by band (`b` bands of `r` rows) by a
//! hash of the band's values, equal band values (compared exactly) make a
//! candidate pair, which is checked once (in the first band where it
//! collides) and kept if its estimated Jaccard (the fraction of all `K`
//! columns that agree) reaches the threshold; connected components of the
//! kept pairs (union–find) are the clusters, labelled by their smallest item.

pub use super::ngram::Ids;
use super::shingle::{self, Scratch, Unit};
use crate::alloc::{with_capacity, zeros};
use crate::error::{Error, Result};
use crate::rng::mix64;
use crate::tokens::InToken;
use rayon::prelude::*;
use rdst::RadixSort;
use sha1::digest::generic_array::GenericArray;
use sha1::{Digest, Sha1};

/// How shingles become signature values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Fast,
    Affine32,
    Affine64,
    Legacy,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "fast" => Scheme::Fast,
            "affine32" => Scheme::Affine32,
            "affine64" => Scheme::Affine64,
            "legacy" => Scheme::Legacy,
            _ => return None,
        })
    }

    /// Whether signature values are uint32 (else uint64).
    pub fn is_u32(self) -> bool {
        matches!(self, Scheme::Fast | Scheme::Affine32)
    }

    /// The signature value of an item without shingles.
    pub fn empty(self) -> u64 {
        match self {
            Scheme::Fast | Scheme::Affine32 | Scheme::Legacy => u32::MAX as u64,
            Scheme::Affine64 => u64::MAX,
        }
    }
}

/// The version of the `Fast` scheme (shingle hash and permutations).
pub const FAST_VERSION: u32 = 1;
/// Key of the `Fast` permutations' seed.
const PERM_KEY: u64 = 0x6D69_6E68_6173_6831;
/// The Mersenne prime 2^61 − 1 of the legacy scheme.
pub const MERSENNE_61: u64 = (1 << 61) - 1;
/// The most permutations one signature may have.
pub const MAX_PERM: usize = 1 << 16;

/// The `Fast` scheme's permutations for `seed`: with
/// `z = mix64(seed ⊕ PERM_KEY)`, `a_k = (mix64(z + 2k + 1) mod 2^32) | 1`
/// and `b_k = mix64(z + 2k + 2) mod 2^32` (wrapping sums).
pub fn fast_perms(seed: u64, k: usize) -> (Vec<u32>, Vec<u32>) {
    let z = mix64(seed ^ PERM_KEY);
    let a = (0..k).map(|i| (mix64(z.wrapping_add(2 * i as u64 + 1)) as u32) | 1).collect();
    let b = (0..k).map(|i| mix64(z.wrapping_add(2 * i as u64 + 2)) as u32).collect();
    (a, b)
}

/// MurmurHash3's 32-bit finaliser.
#[inline(always)]
pub fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// MurmurHash3's 64-bit finaliser.
#[inline(always)]
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// SHA-1's initial state.
const SHA1_IV: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];

/// The first 8 bytes of sha1(`bytes`) read little-endian (datasketch's
/// `sha1_hash64`; its `sha1_hash32` is the low 32 bits). Inputs of at most 55
/// bytes go straight to the compression function (SHA-NI where present).
#[inline]
pub fn sha1_prefix(bytes: &[u8]) -> u64 {
    let mut d = [0u8; 8];
    if bytes.len() <= 55 {
        let mut block = [0u8; 64];
        block[..bytes.len()].copy_from_slice(bytes);
        block[bytes.len()] = 0x80;
        block[56..].copy_from_slice(&((bytes.len() as u64) * 8).to_be_bytes());
        let mut state = SHA1_IV;
        sha1::compress(&mut state, &[GenericArray::from(block)]);
        d[..4].copy_from_slice(&state[0].to_be_bytes());
        d[4..].copy_from_slice(&state[1].to_be_bytes());
    } else {
        d.copy_from_slice(&Sha1::digest(bytes)[..8]);
    }
    u64::from_le_bytes(d)
}

/// Items whose shingles are hashed.
pub trait Items: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `sink` with the fast hash of each shingle of item `i`.
    fn fast(&self, i: usize, n: usize, s: &mut Scratch, sink: impl FnMut(u64));
    /// Calls `sink` with the bytes of each shingle of item `i`.
    fn bytes(&self, i: usize, n: usize, s: &mut Scratch, sink: impl FnMut(&[u8]));
}

/// Texts split into word or character shingles.
pub struct Texts<'a> {
    pub texts: &'a [&'a str],
    pub unit: Unit,
    pub lowercase: bool,
}

impl Items for Texts<'_> {
    fn len(&self) -> usize {
        self.texts.len()
    }
    fn fast(&self, i: usize, n: usize, s: &mut Scratch, sink: impl FnMut(u64)) {
        shingle::text_fast(self.texts[i], self.unit, n, self.lowercase, s, sink)
    }
    fn bytes(&self, i: usize, n: usize, s: &mut Scratch, sink: impl FnMut(&[u8])) {
        shingle::text_bytes(self.texts[i], self.unit, n, self.lowercase, s, sink)
    }
}

/// Rows of token ids ([`Ids`], shared with the n-gram featuriser).
impl<T: InToken> Items for Ids<'_, T> {
    fn len(&self) -> usize {
        Ids::len(self)
    }
    fn fast(&self, i: usize, n: usize, s: &mut Scratch, sink: impl FnMut(u64)) {
        shingle::ids_fast(self.row(i), n, s, sink)
    }
    fn bytes(&self, i: usize, n: usize, s: &mut Scratch, sink: impl FnMut(&[u8])) {
        shingle::ids_bytes(self.row(i), n, s, sink)
    }
}

/// Permutations per register block of [`affine32_body`] (4 AVX2 registers).
const BLOCK: usize = 32;

/// `sig[k] = min(sig[k], a[k]·h + b[k] mod 2^32)` for every `h` of `hs`:
/// `BLOCK` permutations at a time with their minima in registers, over all
/// of `hs`.
#[inline(always)]
fn affine32_body(sig: &mut [u32], a: &[u32], b: &[u32], hs: &[u32]) {
    let k = sig.len();
    let (a, b) = (&a[..k], &b[..k]);
    let mut j = 0;
    while j + BLOCK <= k {
        let mut acc = [u32::MAX; BLOCK];
        let mut aa = [0u32; BLOCK];
        let mut bb = [0u32; BLOCK];
        aa.copy_from_slice(&a[j..j + BLOCK]);
        bb.copy_from_slice(&b[j..j + BLOCK]);
        for &h in hs {
            for l in 0..BLOCK {
                acc[l] = acc[l].min(aa[l].wrapping_mul(h).wrapping_add(bb[l]));
            }
        }
        for l in 0..BLOCK {
            sig[j + l] = sig[j + l].min(acc[l]);
        }
        j += BLOCK;
    }
    for &h in hs {
        for l in j..k {
            sig[l] = sig[l].min(a[l].wrapping_mul(h).wrapping_add(b[l]));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn affine32_avx2(sig: &mut [u32], a: &[u32], b: &[u32], hs: &[u32]) {
    affine32_body(sig, a, b, hs)
}

/// [`affine32_body`], with AVX2 where the CPU has it.
fn affine32(sig: &mut [u32], a: &[u32], b: &[u32], hs: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { affine32_avx2(sig, a, b, hs) };
        return;
    }
    affine32_body(sig, a, b, hs)
}

/// Per-thread working memory of [`signatures`].
#[derive(Default)]
struct Work {
    s: Scratch,
    h64: Vec<u64>,
    h32: Vec<u32>,
}

/// Items per parallel task.
const TASK: usize = 64;

/// The signatures of `items` under a uint32 scheme (`Fast` or `Affine32`)
/// into `out` (`len(items) × k`, `k = a.len()`), `n`-shingles.
pub fn signatures_u32<I: Items>(items: &I, n: usize, scheme: Scheme, a: &[u32], b: &[u32], out: &mut [u32]) {
    let k = a.len();
    if k == 0 {
        return;
    }
    out.par_chunks_mut(k * TASK).enumerate().for_each_init(Work::default, |w, (t, rows)| {
        for (r, sig) in rows.chunks_mut(k).enumerate() {
            let i = t * TASK + r;
            w.h32.clear();
            match scheme {
                Scheme::Fast => {
                    let h32 = &mut w.h32;
                    items.fast(i, n, &mut w.s, |h| h32.push((h >> 32) as u32));
                }
                _ => {
                    let h32 = &mut w.h32;
                    items.bytes(i, n, &mut w.s, |x| h32.push(fmix32(sha1_prefix(x) as u32)));
                }
            }
            sig.fill(u32::MAX);
            affine32(sig, a, b, &w.h32);
        }
    });
}

/// The signatures of `items` under a uint64 scheme (`Affine64` or `Legacy`).
pub fn signatures_u64<I: Items>(items: &I, n: usize, scheme: Scheme, a: &[u64], b: &[u64], out: &mut [u64]) {
    let k = a.len();
    if k == 0 {
        return;
    }
    out.par_chunks_mut(k * TASK).enumerate().for_each_init(Work::default, |w, (t, rows)| {
        for (r, sig) in rows.chunks_mut(k).enumerate() {
            let i = t * TASK + r;
            w.h64.clear();
            let h64 = &mut w.h64;
            items.bytes(i, n, &mut w.s, |x| h64.push(sha1_prefix(x)));
            sig.fill(scheme.empty());
            if scheme == Scheme::Legacy {
                for &h in w.h64.iter() {
                    let h = h & 0xFFFF_FFFF;
                    for j in 0..k {
                        let v = (a[j].wrapping_mul(h).wrapping_add(b[j]) % MERSENNE_61) & 0xFFFF_FFFF;
                        sig[j] = sig[j].min(v);
                    }
                }
            } else {
                for &h in w.h64.iter() {
                    let h = fmix64(h);
                    for j in 0..k {
                        sig[j] = sig[j].min(a[j].wrapping_mul(h).wrapping_add(b[j]));
                    }
                }
            }
        }
    });
}

/// Signature values.
pub trait Value: Copy + Eq + Ord + Send + Sync + 'static {
    fn bits(self) -> u64;
}
impl Value for u32 {
    #[inline(always)]
    fn bits(self) -> u64 {
        self as u64
    }
}
impl Value for u64 {
    #[inline(always)]
    fn bits(self) -> u64 {
        self
    }
}

/// Banded LSH settings.
#[derive(Clone, Copy, Debug)]
pub struct Lsh {
    pub bands: usize,
    pub rows: usize,
    /// Keep a candidate pair only if its estimated Jaccard is ≥ this.
    pub threshold: Option<f64>,
    /// Also return every kept pair (items with identical signatures included).
    pub pairs: bool,
}

/// What [`cluster`] returns.
pub struct Clusters {
    /// Per item: the smallest item of its component.
    pub labels: Vec<i64>,
    /// Kept pairs `(i, j)`, `i < j`, ascending (only if asked).
    pub pairs: Vec<[i64; 2]>,
    /// Candidate pairs of distinct signatures checked.
    pub candidates: u64,
    /// Of these, the pairs kept.
    pub kept: u64,
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let p = parent[x as usize];
        parent[x as usize] = parent[p as usize];
        x = p;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[hi as usize] = lo;
    }
}

/// The hash of a slice of values seeded by `salt` (a bucketing key only:
/// equal keys are confirmed by comparing the values). Four independent
/// chains, so that the mixes overlap.
#[inline]
fn key<T: Value>(vals: &[T], salt: u64) -> u64 {
    let s = mix64(salt ^ 0x9E37_79B9_7F4A_7C15);
    let mut h = [s, s ^ 1, s ^ 2, s ^ 3];
    let mut chunks = vals.chunks_exact(4);
    for c in &mut chunks {
        for l in 0..4 {
            h[l] = mix64(h[l] ^ c[l].bits());
        }
    }
    for (l, &v) in chunks.remainder().iter().enumerate() {
        h[l] = mix64(h[l] ^ v.bits());
    }
    mix64(h[0] ^ h[1].rotate_left(16) ^ h[2].rotate_left(32) ^ h[3].rotate_left(48) ^ vals.len() as u64)
}

/// Clusters the `n` signatures `sig` (`n × k`) by banded LSH (module notes).
pub fn cluster<T: Value>(sig: &[T], n: usize, k: usize, lsh: &Lsh) -> Result<Clusters> {
    let Lsh { bands, rows, threshold, pairs: want_pairs } = *lsh;
    if bands == 0 || rows == 0 || bands.checked_mul(rows).is_none_or(|p| p > k) {
        return Err(Error::value(format!("bands * rows must lie in [1, num_perm = {k}], got {bands} * {rows}")));
    }
    if n > u32::MAX as usize - 1 {
        return Err(Error::value(format!("at most {} items can be clustered at once, got {n}", u32::MAX - 1)));
    }
    if sig.len() != n * k {
        return Err(Error::value("signatures must hold num_items * num_perm values"));
    }
    let row = |i: u32| &sig[i as usize * k..(i as usize + 1) * k];
    // 1. identical signatures: rep[i] = the first item with the same row.
    // (32-bit key, item) packed in a u64 and radix-sorted: equal keys are
    // only candidates, confirmed by comparing the values.
    let pack = |h: u64, i: u32| (h & !0xFFFF_FFFF) | i as u64;
    let mut order: Vec<u64> = with_capacity(n, "the signature order")?;
    order.par_extend((0..n as u32).into_par_iter().map(|i| pack(key(row(i), u64::MAX), i)));
    order.radix_sort_unstable();
    let mut rep: Vec<u32> = zeros(n, "the duplicate table")?;
    let mut lo = 0;
    while lo < n {
        let mut hi = lo + 1;
        while hi < n && order[hi] >> 32 == order[lo] >> 32 {
            hi += 1;
        }
        // Within a run (ascending item), each item joins the first earlier
        // leader with an equal row (almost always the run's first).
        let mut leaders: Vec<u32> = Vec::new();
        for i in order[lo..hi].iter().map(|&p| p as u32) {
            match leaders.iter().find(|&&l| row(l) == row(i)) {
                Some(&l) => rep[i as usize] = l,
                None => {
                    leaders.push(i);
                    rep[i as usize] = i;
                }
            }
        }
        lo = hi;
    }
    let reps: Vec<u32> = (0..n as u32).filter(|&i| rep[i as usize] == i).collect();
    // 2. bands over the distinct signatures.
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let mut edges: Vec<[u32; 2]> = Vec::new();
    let (mut candidates, mut kept) = (0u64, 0u64);
    let band = |i: u32, j: usize| &row(i)[j * rows..(j + 1) * rows];
    let keep = |x: u32, y: u32| match threshold {
        None => true,
        Some(t) => {
            let eq = row(x).iter().zip(row(y)).filter(|(p, q)| p == q).count();
            eq as f64 / k as f64 >= t
        }
    };
    // Every band key of a signature in one pass over its row (8 bytes per
    // band and distinct signature), then one band at a time.
    let m = reps.len();
    let all_keys: Vec<u64> = {
        let mut v: Vec<u64> = zeros(m * bands, "the band keys")?;
        v.par_chunks_mut(bands).zip(reps.par_iter()).for_each(|(out, &i)| {
            for (j, o) in out.iter_mut().enumerate() {
                *o = key(band(i, j), j as u64);
            }
        });
        v
    };
    let mut keys: Vec<u64> = with_capacity(m, "the band keys")?;
    for j in 0..bands {
        keys.clear();
        keys.par_extend((0..m).into_par_iter().map(|g| pack(all_keys[g * bands + j], reps[g])));
        keys.radix_sort_unstable();
        let mut starts = Vec::new();
        let mut s = 0;
        while s < keys.len() {
            let mut e = s + 1;
            while e < keys.len() && keys[e] >> 32 == keys[s] >> 32 {
                e += 1;
            }
            if e - s > 1 {
                starts.push((s, e));
            }
            s = e;
        }
        let found: Vec<(u64, Vec<[u32; 2]>)> = starts
            .par_iter()
            .map(|&(s, e)| {
                let mut out = Vec::new();
                let mut checked = 0u64;
                let run = &keys[s..e];
                for (p, &x) in run.iter().enumerate() {
                    for &y in &run[p + 1..] {
                        let (x, y) = (x as u32, y as u32);
                        let (x, y) = if x < y { (x, y) } else { (y, x) };
                        // equal band values, and no earlier band equal
                        if band(x, j) != band(y, j) || (0..j).any(|jj| band(x, jj) == band(y, jj)) {
                            continue;
                        }
                        checked += 1;
                        if keep(x, y) {
                            out.push([x, y]);
                        }
                    }
                }
                (checked, out)
            })
            .collect();
        for (c, es) in found {
            candidates += c;
            kept += es.len() as u64;
            for &[x, y] in &es {
                union(&mut parent, x, y);
            }
            if want_pairs {
                edges.try_reserve(es.len()).map_err(|_| Error::memory("not enough memory for the pairs"))?;
                edges.extend(es);
            }
        }
    }
    // 3. labels: the smallest item of each component.
    for i in 0..n as u32 {
        union(&mut parent, i, rep[i as usize]);
    }
    let mut label: Vec<i64> = with_capacity(n, "the labels")?;
    let mut first: Vec<i64> = with_capacity(n, "the labels")?;
    first.resize(n, -1);
    for i in 0..n as u32 {
        let r = find(&mut parent, i) as usize;
        if first[r] < 0 {
            first[r] = i as i64;
        }
        label.push(first[r]);
    }
    // 4. pairs of items: each kept pair of distinct signatures stands for all
    // pairs of their groups, and every two items of one group are a pair.
    let mut pairs = Vec::new();
    if want_pairs {
        let mut members: Vec<Vec<u32>> = with_capacity(reps.len(), "the duplicate groups")?;
        let mut slot: Vec<u32> = zeros(n, "the duplicate groups")?;
        for (g, &r) in reps.iter().enumerate() {
            slot[r as usize] = g as u32;
        }
        members.resize(reps.len(), Vec::new());
        for i in 0..n {
            members[slot[rep[i] as usize] as usize].push(i as u32);
        }
        let push = |pairs: &mut Vec<[i64; 2]>, a: u32, b: u32| -> Result<()> {
            pairs.try_reserve(1).map_err(|_| Error::memory("not enough memory for the pairs"))?;
            pairs.push(if a < b { [a as i64, b as i64] } else { [b as i64, a as i64] });
            Ok(())
        };
        for m in &members {
            for (p, &a) in m.iter().enumerate() {
                for &b in &m[p + 1..] {
                    push(&mut pairs, a, b)?;
                }
            }
        }
        for &[x, y] in &edges {
            for &a in &members[slot[x as usize] as usize] {
                for &b in &members[slot[y as usize] as usize] {
                    push(&mut pairs, a, b)?;
                }
            }
        }
        pairs.par_sort_unstable();
    }
    Ok(Clusters { labels: label, pairs, candidates, kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_prefix_matches_known_digests() {
        // sha1("abc") = a9993e36 4706816a ...
        assert_eq!(sha1_prefix(b"abc"), u64::from_le_bytes([0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a]));
        let long = vec![b'x'; 100];
        let d = Sha1::digest(&long);
        let mut w = [0u8; 8];
        w.copy_from_slice(&d[..8]);
        assert_eq!(sha1_prefix(&long), u64::from_le_bytes(w));
        for len in [0usize, 1, 55, 56, 63, 64, 65] {
            let x = vec![b'q'; len];
            let d = Sha1::digest(&x);
            w.copy_from_slice(&d[..8]);
            assert_eq!(sha1_prefix(&x), u64::from_le_bytes(w), "len {len}");
        }
    }

    #[test]
    fn identical_texts_share_signatures_and_cluster() {
        let texts = ["a b c d e f g", "x y z", "a b c d e f g", "a b c d e f h"];
        let items = Texts { texts: &texts, unit: Unit::Word, lowercase: true };
        let (a, b) = fast_perms(1, 64);
        let mut out = vec![0u32; 4 * 64];
        signatures_u32(&items, 3, Scheme::Fast, &a, &b, &mut out);
        assert_eq!(out[..64], out[128..192]);
        let c = cluster(&out, 4, 64, &Lsh { bands: 16, rows: 4, threshold: Some(0.99), pairs: true }).unwrap();
        assert_eq!(c.labels, [0, 1, 0, 3]);
        assert_eq!(c.pairs, [[0, 2]]);
        assert!(cluster(&out, 4, 64, &Lsh { bands: 17, rows: 4, threshold: None, pairs: false }).is_err());
    }

    #[test]
    fn empty_items_have_the_empty_signature() {
        let texts = ["", "  "];
        let items = Texts { texts: &texts, unit: Unit::Word, lowercase: true };
        let (a, b) = fast_perms(7, 8);
        let mut out = vec![0u32; 16];
        signatures_u32(&items, 3, Scheme::Fast, &a, &b, &mut out);
        assert!(out.iter().all(|&v| v == u32::MAX));
    }
}
