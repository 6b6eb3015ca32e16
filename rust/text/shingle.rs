//! Shingles of MinHash near-duplicate detection (docs/math.md, "Near-duplicates
//! (MinHash LSH)").
//!
//! An item's shingles are its windows of `n` consecutive units:
//!
//! * `Word`: tokens of `re.findall(r"\w+|[^\w\s]+", text.lower())` (Python's
//!   `re` classes, `rust/text/tokenize.rs`; no lower-casing if asked); a
//!   shingle's bytes are its tokens joined by single spaces.
//! * `Char`: Unicode characters of `text.lower()` (or `text`); a shingle's
//!   bytes are the UTF-8 of its characters.
//! * token ids: a shingle's bytes are its ids in decimal joined by single spaces.
//!
//! An item with `0 < w < n` units has one shingle (all of them); an empty item
//! has none. The fast hash of a shingle of words or ids is [`window_hash`] of
//! its unit hashes (`mix64(FNV-1a-64(token))`, `hash::fast_id(id)`), rolled
//! in O(1) per shingle; of characters, `hash::fast_token` of its bytes.

use super::hash::{extend_left, fast_id, fast_token};
use super::tokenize::{scan, token_states};
use super::unicode::{self, Lower, PythonRe};
use crate::rng::mix64;
use crate::tokens::InToken;

/// What a shingle is made of (texts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Word,
    Char,
}

/// Per-thread scratch.
#[derive(Default)]
pub struct Scratch {
    states: Vec<u64>,
    hashes: Vec<u64>,
    buf: Vec<u8>,
    arena: Vec<u8>,
    ends: Vec<usize>,
    joined: Vec<u8>,
}

/// The windows `[i, i + len)` of `w` units: `max(w − n + 1, 1)` of them
/// (one of all `w` units when `w < n`), none when `w = 0`.
#[inline]
fn windows(w: usize, n: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = if w == 0 { 0 } else { (w + 1).saturating_sub(n).max(1) };
    let len = n.min(w);
    (0..count).map(move |i| (i, i + len))
}

/// Longest window hashed by the rolling hash ([`grams`]).
pub const ROLL_MAX: usize = 64;
const LEN_KEY: u64 = 0xA076_1D64_78BD_642F;

/// The hash of a window of `m` unit hashes `u_0 … u_{m−1}`: for `m ≤ 64`,
/// `mix64(x ⊕ m·LEN_KEY)` with `x = ⊕_j rotl(u_j, m − 1 − j)` (a cyclic
/// polynomial, rolled in O(1) per window by [`grams`]); beyond, DSIR's
/// k-gram hash (`hash::extend_left` from the last unit back).
#[inline]
pub fn window_hash(u: &[u64]) -> u64 {
    let m = u.len();
    if m <= ROLL_MAX {
        finish(u.iter().fold(0u64, |x, &v| x.rotate_left(1) ^ v), m)
    } else {
        let mut g = u[m - 1];
        for &p in u[..m - 1].iter().rev() {
            g = extend_left(g, p);
        }
        g
    }
}

#[inline(always)]
fn finish(x: u64, m: usize) -> u64 {
    mix64(x ^ (m as u64).wrapping_mul(LEN_KEY))
}

/// Calls `sink` with [`window_hash`] of every window of [`windows`]`(len(t), n)`.
#[inline]
fn grams(t: &[u64], n: usize, sink: &mut impl FnMut(u64)) {
    let w = t.len();
    if w == 0 {
        return;
    }
    if w <= n || n > ROLL_MAX {
        for (lo, hi) in windows(w, n) {
            sink(window_hash(&t[lo..hi]));
        }
        return;
    }
    let mut x = t[..n].iter().fold(0u64, |x, &v| x.rotate_left(1) ^ v);
    sink(finish(x, n));
    let r = (n - 1) as u32;
    for i in 0..w - n {
        x = (x ^ t[i].rotate_left(r)).rotate_left(1) ^ t[i + n];
        sink(finish(x, n));
    }
}

/// Calls `sink(h)` with the fast 64-bit hash of every shingle of `text`.
pub fn text_fast(text: &str, unit: Unit, n: usize, lowercase: bool, s: &mut Scratch, mut sink: impl FnMut(u64)) {
    match unit {
        Unit::Word => {
            let w = token_states::<PythonRe>(text, lowercase, &mut s.states);
            s.hashes.clear();
            s.hashes.extend(s.states[..w].iter().map(|&h| mix64(h)));
            grams(&s.hashes, n, &mut sink);
        }
        Unit::Char => {
            chars(text, lowercase, s);
            let w = s.ends.len() - 1;
            for (lo, hi) in windows(w, n) {
                sink(fast_token(&s.buf[s.ends[lo]..s.ends[hi]]));
            }
        }
    }
}

/// Calls `sink(bytes)` with the bytes of every shingle of `text`.
pub fn text_bytes(text: &str, unit: Unit, n: usize, lowercase: bool, s: &mut Scratch, mut sink: impl FnMut(&[u8])) {
    match unit {
        Unit::Word => {
            let Scratch { buf, arena, ends, joined, .. } = s;
            arena.clear();
            ends.clear();
            ends.push(0);
            scan::<true, PythonRe>(text, lowercase, buf, |_, tok| {
                arena.extend_from_slice(tok);
                ends.push(arena.len());
            });
            joined_windows(arena, ends, n, joined, &mut sink);
        }
        Unit::Char => {
            chars(text, lowercase, s);
            let w = s.ends.len() - 1;
            for (lo, hi) in windows(w, n) {
                sink(&s.buf[s.ends[lo]..s.ends[hi]]);
            }
        }
    }
}

/// The shingles of the units `arena[ends[i]..ends[i+1]]`, joined by spaces.
fn joined_windows(arena: &[u8], ends: &[usize], n: usize, joined: &mut Vec<u8>, sink: &mut impl FnMut(&[u8])) {
    let w = ends.len() - 1;
    for (lo, hi) in windows(w, n) {
        joined.clear();
        for j in lo..hi {
            if j > lo {
                joined.push(b' ');
            }
            joined.extend_from_slice(&arena[ends[j]..ends[j + 1]]);
        }
        sink(joined);
    }
}

/// Writes the (lower-cased) characters of `text` to `s.buf` and their end
/// offsets to `s.ends` (`ends[0] = 0`): Python's `str.lower()`, final sigma
/// included.
fn chars(text: &str, lowercase: bool, s: &mut Scratch) {
    s.buf.clear();
    s.ends.clear();
    s.ends.push(0);
    let mut tmp = [0u8; 4];
    let mut push = |c: char, s: &mut Scratch| {
        s.buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        s.ends.push(s.buf.len());
    };
    for (i, c) in text.char_indices() {
        if !lowercase {
            push(c, s);
        } else if c.is_ascii() {
            push(c.to_ascii_lowercase(), s);
        } else if c == '\u{3A3}' {
            let l = if unicode::final_sigma(text, i, i + c.len_utf8()) { '\u{3C2}' } else { '\u{3C3}' };
            push(l, s);
        } else {
            match unicode::lower(c) {
                Lower::One(l) => push(l, s),
                Lower::Many(m) => m.chars().for_each(|l| push(l, s)),
            }
        }
    }
}

/// Calls `sink(h)` with the fast hash of every shingle of the token ids `row`.
pub fn ids_fast<T: InToken>(row: &[T], n: usize, s: &mut Scratch, mut sink: impl FnMut(u64)) {
    s.hashes.clear();
    s.hashes.extend(row.iter().map(|&x| fast_id(x.index())));
    grams(&s.hashes, n, &mut sink);
}

/// Calls `sink(bytes)` with every shingle of the token ids `row` in decimal,
/// joined by single spaces.
pub fn ids_bytes<T: InToken>(row: &[T], n: usize, s: &mut Scratch, mut sink: impl FnMut(&[u8])) {
    use std::io::Write;
    let Scratch { arena, ends, joined, .. } = s;
    arena.clear();
    ends.clear();
    ends.push(0);
    for &x in row {
        // Writing to a Vec cannot fail.
        let _ = write!(arena, "{x}");
        ends.push(arena.len());
    }
    joined_windows(arena, ends, n, joined, &mut sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word_bytes(text: &str, n: usize) -> Vec<String> {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        text_bytes(text, Unit::Word, n, true, &mut s, |b| out.push(String::from_utf8(b.to_vec()).unwrap()));
        out
    }

    #[test]
    fn word_shingles() {
        assert_eq!(word_bytes("The cat, sat on", 2), ["the cat", "cat ,", ", sat", "sat on"]);
        assert_eq!(word_bytes("The cat", 5), ["the cat"]);
        assert!(word_bytes("  ", 3).is_empty());
    }

    #[test]
    fn char_and_id_shingles() {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        text_bytes("ΑΣ b", Unit::Char, 2, true, &mut s, |b| out.push(String::from_utf8(b.to_vec()).unwrap()));
        assert_eq!(out, ["ας", "ς ", " b"]);
        out.clear();
        ids_bytes(&[3u16, 14, 159], 2, &mut s, |b| out.push(String::from_utf8(b.to_vec()).unwrap()));
        assert_eq!(out, ["3 14", "14 159"]);
    }

    #[test]
    fn rolled_hashes_equal_direct_ones() {
        let t: Vec<u64> = (0..200u64).map(|i| mix64(i % 37)).collect();
        for n in [1usize, 2, 5, 13, 63, 64, 65, 100, 250] {
            let mut got = Vec::new();
            grams(&t, n, &mut |h| got.push(h));
            let want: Vec<u64> = windows(t.len(), n).map(|(lo, hi)| window_hash(&t[lo..hi])).collect();
            assert_eq!(got, want, "n = {n}");
        }
        // a window's hash depends on the order of its units
        assert_ne!(window_hash(&t[0..3]), window_hash(&[t[1], t[0], t[2]]));
    }

    #[test]
    fn fast_hashes_follow_the_shingle_bytes() {
        // equal shingles hash equally, wherever they occur
        let mut s = Scratch::default();
        let mut a = Vec::new();
        text_fast("a b c a b c", Unit::Word, 3, true, &mut s, |h| a.push(h));
        assert_eq!(a.len(), 4);
        assert_eq!(a[0], a[3]);
        assert_ne!(a[0], a[1]);
        let mut b = Vec::new();
        ids_fast(&[1u8, 2, 3, 1, 2, 3], 3, &mut s, |h| b.push(h));
        assert_eq!(b[0], b[3]);
    }
}
