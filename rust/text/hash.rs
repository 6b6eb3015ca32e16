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
use sha2::{Digest, Sha256};

/// Which hash maps n-grams to buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    Fast,
    Sha256,
}

/// The version of the `Fast` hash (recorded with saved artefacts).
pub const FAST_VERSION: u32 = 1;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const PHI: u64 = 0x9E37_79B9_7F4A_7C15;
/// Key xor-ed into token ids before mixing.
pub const ID_KEY: u64 = 0xD1B5_4A32_D192_ED03;

/// Fast hash of a token's bytes.
#[inline(always)]
pub fn fast_token(bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix64(h)
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

/// The reference bucket of the n-gram whose tokens are `parts` (joined by
/// single spaces): sha256 of the string modulo `m`.
#[inline]
pub fn sha256_bucket<'a>(parts: impl Iterator<Item = &'a [u8]>, m: u64) -> usize {
    let mut h = Sha256::new();
    for (i, p) in parts.enumerate() {
        if i > 0 {
            h.update(b" ");
        }
        h.update(p);
    }
    digest_mod(&h.finalize(), m) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

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
