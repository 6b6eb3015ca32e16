//! Token and n-gram hashes of DSIR's hashed features (docs/math.md, "DSIR").
//!
//! * `Sha256` (the reference, `data-selection`): the n-gram string
//!   "w1 w2 … wk" (UTF-8, single spaces) → sha256 → the 256-bit digest read
//!   as a big-endian integer, modulo the number of buckets.
//! * `Fast` (version 1, seed 0): a token hashes to
//!   `t = mix64(FNV-1a-64(bytes))` (text; FNV offset basis
//!   0xcbf29ce484222325, prime 0x100000001b3) or `t = mix64(id ^ ID_KEY)`
//!   (token ids); the k-gram (w1 … wk) hashes to `g_k`, where `g_1 = t(wk)`
//!   and `g_i = mix64(g_{i-1}·φ ⊕ t(w_{k-i+1}))` (φ = 0x9E3779B97F4A7C15,
//!   wrapping); the bucket is the high word of `g · num_buckets` (128-bit
//!   product). `mix64` is SplitMix64's finaliser (`crate::rng::mix64`).

use crate::rng::mix64;
use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// Which hash maps n-grams to buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    Fast,
    Sha256,
}

/// The version of the `Fast` hash (recorded with saved artefacts).
pub const FAST_VERSION: u32 = 1;
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const PHI: u64 = 0x9E37_79B9_7F4A_7C15;
/// Key xor-ed into token ids before mixing.
pub const ID_KEY: u64 = 0xD1B5_4A32_D192_ED03;

/// One byte of FNV-1a-64.
#[inline(always)]
pub fn fnv_step(h: u64, b: u8) -> u64 {
    (h ^ b as u64).wrapping_mul(FNV_PRIME)
}

/// Fast hash of a token's bytes.
#[inline(always)]
pub fn fast_token(bytes: &[u8]) -> u64 {
    mix64(bytes.iter().fold(FNV_OFFSET, |h, &b| fnv_step(h, b)))
}

/// Fast hash of a token id.
#[inline(always)]
pub fn fast_id(id: u64) -> u64 {
    mix64(id ^ ID_KEY)
}

/// Extends the hash `g` of an n-gram by the token hash `t` of the token
/// before it.
#[inline(always)]
pub fn extend_left(g: u64, t: u64) -> u64 {
    mix64(g.wrapping_mul(PHI) ^ t)
}

/// The bucket of a fast hash: the high word of `h · m`.
#[inline(always)]
pub fn fast_bucket(h: u64, m: u64) -> usize {
    ((h as u128 * m as u128) >> 64) as usize
}

/// A 256-bit big-endian integer modulo `m` (> 0).
#[inline]
pub fn digest_mod(d: &[u8], m: u64) -> u64 {
    if m <= u32::MAX as u64 {
        // Four 64-bit words, each folded in as r·2^64 + w (mod m) with
        // r, 2^64 mod m < 2^32 so that the product fits in 64 bits.
        let p = ((1u128 << 64) % m as u128) as u64;
        let mut r = 0u64;
        for w in d.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            let w = u64::from_be_bytes(b) % m;
            r = ((r * p) % m + w) % m;
        }
        r
    } else {
        let mut r = 0u128;
        for w in d.chunks_exact(8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            r = ((r << 64) | u64::from_be_bytes(b) as u128) % m as u128;
        }
        r as u64
    }
}

/// SHA-256's initial state.
const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// The reference bucket of the n-gram whose tokens are `parts` (joined by
/// single spaces): sha256 of the string modulo `m`. Strings of at most 55
/// bytes (one padded block) go straight to the compression function
/// (SHA-NI where the CPU has it).
#[inline]
pub fn sha256_bucket<'a>(parts: impl Iterator<Item = &'a [u8]> + Clone, m: u64) -> usize {
    let mut block = [0u8; 64];
    let mut len = 0usize;
    let mut fits = true;
    for (i, p) in parts.clone().enumerate() {
        let need = len + (i > 0) as usize + p.len();
        if need > 55 {
            fits = false;
            break;
        }
        if i > 0 {
            block[len] = b' ';
            len += 1;
        }
        block[len..need].copy_from_slice(p);
        len = need;
    }
    if fits {
        block[len] = 0x80;
        block[56..].copy_from_slice(&((len as u64) * 8).to_be_bytes());
        let mut state = SHA256_IV;
        sha2::compress256(&mut state, &[GenericArray::from(block)]);
        let mut d = [0u8; 32];
        for (o, w) in d.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        return digest_mod(&d, m) as usize;
    }
    let mut h = Sha256::new();
    for (i, p) in parts.enumerate() {
        if i > 0 {
            h.update(b" ");
        }
        h.update(p);
    }
    digest_mod(&h.finalize(), m) as usize
}

/// A per-thread cache of unigram sha256 buckets: token bytes → bucket under
/// `m` buckets, open addressing on the token's fast hash. Exact (the bytes
/// are compared), so it never changes a result; it is emptied when full.
pub struct Sha256Cache {
    m: u64,
    /// (fast hash, arena offset, length, bucket + 1; 0 = empty slot).
    slots: Vec<(u64, u32, u32, u32)>,
    arena: Vec<u8>,
    used: usize,
}

/// Slots of the cache (a power of two) and the largest arena in bytes.
const CACHE_SLOTS: usize = 1 << 16;
const CACHE_ARENA: usize = 1 << 20;

impl Default for Sha256Cache {
    fn default() -> Self {
        Sha256Cache { m: 0, slots: Vec::new(), arena: Vec::new(), used: 0 }
    }
}

impl Sha256Cache {
    fn clear(&mut self, m: u64) {
        self.m = m;
        self.slots.clear();
        self.slots.resize(CACHE_SLOTS, (0, 0, 0, 0));
        self.arena.clear();
        self.used = 0;
    }

    /// The sha256 bucket of the token `tok` (whose fast hash is `t`) under `m`.
    #[inline]
    pub fn unigram(&mut self, t: u64, tok: &[u8], m: u64) -> usize {
        if m != self.m || self.slots.is_empty() {
            self.clear(m);
        }
        let mask = CACHE_SLOTS - 1;
        let mut i = t as usize & mask;
        loop {
            let (h, off, len, b) = self.slots[i];
            if b == 0 {
                break;
            }
            if h == t && self.arena.get(off as usize..off as usize + len as usize) == Some(tok) {
                return (b - 1) as usize;
            }
            i = (i + 1) & mask;
        }
        let b = sha256_bucket(std::iter::once(tok), m);
        // Buckets fit u32 (num_buckets ≤ 2^32); keep the load factor ≤ 1/2.
        if b < u32::MAX as usize && tok.len() <= 255 && self.arena.len() + tok.len() <= CACHE_ARENA {
            if self.used >= CACHE_SLOTS / 2 {
                self.clear(m);
                return b;
            }
            self.slots[i] = (t, self.arena.len() as u32, tok.len() as u32, b as u32 + 1);
            self.arena.extend_from_slice(tok);
            self.used += 1;
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_block_path_equals_the_digest() {
        let long = "x".repeat(70);
        for s in ["", "a", "alice went", &"y".repeat(55), &"z".repeat(56), &long] {
            let mut h = Sha256::new();
            h.update(s.as_bytes());
            let want = digest_mod(&h.finalize(), 1_000_003) as usize;
            assert_eq!(sha256_bucket(std::iter::once(s.as_bytes()), 1_000_003), want, "{s:?}");
        }
        let parts = [b"ab".as_slice(), b"".as_slice(), &[b'q'; 30]];
        let mut h = Sha256::new();
        h.update(b"ab  ");
        h.update([b'q'; 30]);
        assert_eq!(sha256_bucket(parts.iter().copied(), 97), digest_mod(&h.finalize(), 97) as usize);
    }

    #[test]
    fn cache_is_exact() {
        let mut c = Sha256Cache::default();
        for m in [10_000u64, 97] {
            // deliberately colliding fast hashes: only the bytes decide
            for i in 0..6_000 {
                let tok = format!("w{}", i % 3_000);
                let t = (tok.len() as u64) << 3;
                assert_eq!(c.unigram(t, tok.as_bytes(), m), sha256_bucket(std::iter::once(tok.as_bytes()), m));
            }
            // more tokens than the cache holds: emptied and refilled
            for i in 0..80_000 {
                let tok = format!("v{}", i % 40_000);
                let t = fast_token(tok.as_bytes());
                assert_eq!(c.unigram(t, tok.as_bytes(), m), sha256_bucket(std::iter::once(tok.as_bytes()), m));
            }
        }
    }

    #[test]
    fn reference_buckets() {
        // The DSIR reference's documented values at 10,000 buckets.
        assert_eq!(sha256_bucket([b"alice".as_slice()].into_iter(), 10_000), 6720);
        assert_eq!(sha256_bucket([b"alice".as_slice(), b"went".as_slice()].into_iter(), 10_000), 114);
    }

    #[test]
    fn digest_mod_matches_bytewise_reduction() {
        let d: Vec<u8> = (0..32u32).map(|i| (i * 37 + 11) as u8).collect();
        for m in [1u64, 2, 7, 10_000, 65_537, u32::MAX as u64, u32::MAX as u64 + 2, u64::MAX] {
            let mut r = 0u128;
            for &b in &d {
                r = ((r << 8) | b as u128) % m as u128;
            }
            assert_eq!(digest_mod(&d, m), r as u64, "m = {m}");
        }
    }

    #[test]
    fn fast_bucket_in_range() {
        for h in [0u64, 1, u64::MAX, 1 << 63] {
            assert!(fast_bucket(h, 10) < 10);
        }
        assert_eq!(fast_bucket(u64::MAX, 10_000), 9_999);
    }
}
