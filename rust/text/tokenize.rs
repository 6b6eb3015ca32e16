//! The DSIR reference's tokeniser: `re.findall(r"\w+|[^\w\s]+", s.lower())`
//! (nltk's `WordPunctTokenizer` after `str.lower()`), in one pass over the
//! UTF-8 bytes without allocating per token.
//!
//! Lower-casing comes first and may change a character's class (U+0130 'İ'
//! becomes "i" + U+0307, a combining mark that is not `\w`), so tokens are cut
//! from the stream of lower-cased characters.
//!
//! ASCII bytes are classified and lower-cased through 256-entry tables; only
//! bytes ≥ 0x80 take the Unicode tables. The fast token hash (FNV-1a-64 of the
//! lower-cased bytes, `hash::fast_token`) is computed on the fly: the fast
//! mode ([`token_states`]) never copies a token and has no data-dependent
//! branch on ASCII; the sha256 mode ([`scan`]) also collects the bytes.

use super::hash::{fnv_step, FNV_OFFSET};
use super::unicode::{self, ClassTable, Lower, ASCII_LOWER, HIGH, SPACE};
use crate::rng::mix64;

/// `ASCII_LOWER` extended to all bytes (identity from 0x80), and the identity.
static BYTE_LOWER: [u8; 256] = {
    let mut c = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        c[i] = if i < 128 { ASCII_LOWER[i] } else { i as u8 };
        i += 1;
    }
    c
};
static BYTE_SAME: [u8; 256] = {
    let mut c = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        c[i] = i as u8;
        i += 1;
    }
    c
};

/// The token being read: its class, FNV-1a state and (if `BYTES`) bytes.
struct Cur<'b, const BYTES: bool> {
    class: u8,
    h: u64,
    count: usize,
    buf: &'b mut Vec<u8>,
}

impl<const BYTES: bool> Cur<'_, BYTES> {
    /// Ends the current token (if any) and starts one of class `k`.
    #[inline(always)]
    fn switch(&mut self, k: u8, emit: &mut impl FnMut(u64, &[u8])) {
        if self.class != SPACE {
            emit(mix64(self.h), self.buf);
            self.count += 1;
            if BYTES {
                self.buf.clear();
            }
            self.h = FNV_OFFSET;
        }
        self.class = k;
    }

    /// Appends one (lower-cased) non-ASCII character.
    #[inline]
    fn push_char<C: ClassTable>(&mut self, l: char, emit: &mut impl FnMut(u64, &[u8])) {
        let k = C::class(l);
        if k != self.class {
            self.switch(k, emit);
        }
        if k != SPACE {
            let mut tmp = [0u8; 4];
            for &b in l.encode_utf8(&mut tmp).as_bytes() {
                self.h = fnv_step(self.h, b);
            }
            if BYTES {
                self.buf.extend_from_slice(l.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
}

/// Calls `emit(t, bytes)` for each token of `text` in order (the tokens of
/// `text.lower()` if `lowercase`), with `t = hash::fast_token(bytes)`;
/// `bytes` is the token's UTF-8 if `BYTES`, else empty. `buf` is scratch.
/// `C` are the `\w` / `\s` classes. Returns the number of tokens.
#[inline(always)]
pub fn scan<const BYTES: bool, C: ClassTable>(
    text: &str,
    lowercase: bool,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(u64, &[u8]),
) -> usize {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let lower: &[u8; 256] = if lowercase { &BYTE_LOWER } else { &BYTE_SAME };
    buf.clear();
    let byte_class = C::BYTE;
    let mut cur = Cur::<BYTES> { class: SPACE, h: FNV_OFFSET, count: 0, buf };
    let mut i = 0;
    while i < n {
        let k = byte_class[bytes[i] as usize];
        if k == HIGH {
            // `i` is at a character boundary: every step advances by whole characters.
            let Some(c) = text[i..].chars().next() else { break };
            let len = c.len_utf8();
            if !lowercase {
                cur.push_char::<C>(c, &mut emit);
            } else if c == '\u{3A3}' {
                let l = if unicode::final_sigma(text, i, i + len) { '\u{3C2}' } else { '\u{3C3}' };
                cur.push_char::<C>(l, &mut emit);
            } else {
                match unicode::lower(c) {
                    Lower::One(l) => cur.push_char::<C>(l, &mut emit),
                    Lower::Many(s) => s.chars().for_each(|l| cur.push_char::<C>(l, &mut emit)),
                }
            }
            i += len;
            continue;
        }
        if k != cur.class {
            cur.switch(k, &mut emit);
        }
        let start = i;
        if k == SPACE {
            i += 1;
            while i < n && byte_class[bytes[i] as usize] == SPACE {
                i += 1;
            }
            continue;
        }
        // A run of ASCII bytes of class `k`.
        let mut h = cur.h;
        while i < n {
            let b = bytes[i];
            if byte_class[b as usize] != k {
                break;
            }
            h = fnv_step(h, lower[b as usize]);
            i += 1;
        }
        cur.h = h;
        if BYTES {
            cur.buf.extend(bytes[start..i].iter().map(|&b| lower[b as usize]));
        }
    }
    cur.switch(SPACE, &mut emit);
    cur.count
}

/// The raw FNV-1a-64 states of the tokens of `text` (the tokens of
/// `text.lower()` if `lowercase`; a token's fast hash is `mix64` of its
/// state), written to `out[..count]`; returns `count`. `out` is scratch that
/// only grows.
///
/// The ASCII loop has no data-dependent branch: every byte stores the state
/// so far at `out[count]` and advances `count` only where a token ends, and
/// restarts the state where a token starts.
pub fn token_states<C: ClassTable>(text: &str, lowercase: bool, out: &mut Vec<u64>) -> usize {
    let bytes = text.as_bytes();
    let n = bytes.len();
    if out.len() < n + 1 {
        out.resize(n + 1, 0);
    }
    let lower: &[u8; 256] = if lowercase { &BYTE_LOWER } else { &BYTE_SAME };
    let byte_class = C::BYTE;
    let (mut cur, mut h, mut count) = (SPACE, FNV_OFFSET, 0usize);
    // Appends one (lower-cased) non-ASCII character.
    let push_char = |l: char, cur: &mut u8, h: &mut u64, count: &mut usize, out: &mut Vec<u64>| {
        let k = C::class(l);
        if k != *cur {
            if *cur != SPACE {
                out[*count] = *h;
                *count += 1;
            }
            *h = FNV_OFFSET;
            *cur = k;
        }
        if k != SPACE {
            let mut tmp = [0u8; 4];
            for &b in l.encode_utf8(&mut tmp).as_bytes() {
                *h = fnv_step(*h, b);
            }
        }
    };
    let mut i = 0;
    while i < n {
        let b = bytes[i];
        let k = byte_class[b as usize];
        if k != HIGH {
            let diff = k != cur;
            out[count] = h;
            count += (diff & (cur != SPACE)) as usize;
            // After a space the state is never read: the next token restarts it.
            h = fnv_step(if diff { FNV_OFFSET } else { h }, lower[b as usize]);
            cur = k;
            i += 1;
            continue;
        }
        // `i` is at a character boundary: every step advances by whole characters.
        let Some(c) = text[i..].chars().next() else { break };
        let len = c.len_utf8();
        if !lowercase {
            push_char(c, &mut cur, &mut h, &mut count, out);
        } else if c == '\u{3A3}' {
            let l = if unicode::final_sigma(text, i, i + len) { '\u{3C2}' } else { '\u{3C3}' };
            push_char(l, &mut cur, &mut h, &mut count, out);
        } else {
            match unicode::lower(c) {
                Lower::One(l) => push_char(l, &mut cur, &mut h, &mut count, out),
                Lower::Many(s) => s.chars().for_each(|l| push_char(l, &mut cur, &mut h, &mut count, out)),
            }
        }
        i += len;
    }
    if cur != SPACE {
        out[count] = h;
        count += 1;
    }
    count
}

/// Calls `emit` with the bytes of each token of `text`, in order (the
/// tokens of `text.lower()` if `lowercase`); `buf` is scratch. Returns the
/// number of tokens.
pub fn for_each_token<C: ClassTable>(
    text: &str,
    lowercase: bool,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> usize {
    scan::<true, C>(text, lowercase, buf, |_, tok| emit(tok))
}

#[cfg(test)]
mod tests {
    use super::super::hash::fast_token;
    use super::super::unicode::{NltkRegex, PythonRe};
    use super::*;

    fn tokens(s: &str) -> Vec<String> {
        tokens_in::<PythonRe>(s)
    }

    fn tokens_in<C: ClassTable>(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let n = for_each_token::<C>(s, true, &mut buf, |t| out.push(String::from_utf8(t.to_vec()).unwrap()));
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn wordpunct() {
        assert_eq!(tokens("Alice went, to the  market!!"), ["alice", "went", ",", "to", "the", "market", "!!"]);
        assert_eq!(
            tokens("Good muffins cost $3.88\nin New_York."),
            ["good", "muffins", "cost", "$", "3", ".", "88", "in", "new_york", "."]
        );
        assert_eq!(tokens("İstanbul"), ["i", "\u{307}", "stanbul"]);
        assert_eq!(tokens("ΟΔΟΣ ΟΔΟΣ."), ["οδο\u{3C2}", "οδο\u{3C2}", "."]);
        assert!(tokens(" \t\n").is_empty());
    }

    #[test]
    fn nltk_regex_classes() {
        assert_eq!(tokens("cafe\u{301} x²"), ["cafe", "\u{301}", "x²"]);
        assert_eq!(tokens_in::<NltkRegex>("cafe\u{301} x²"), ["cafe\u{301}", "x", "²"]);
        assert_eq!(tokens_in::<NltkRegex>("a\u{1c}b"), ["a", "\u{1c}", "b"]);
        assert_eq!(tokens("a\u{1c}b"), ["a", "b"]);
    }

    #[test]
    fn on_the_fly_hashes_equal_hashes_of_the_bytes() {
        let texts = [
            "Alice went, to the  market!!",
            "İstanbul ΟΔΟΣ café—naïve  日本語 x_y 3.14",
            "",
            "ÀB\u{2028}c",
            " a",
            "b ",
            "..é,,\té!Σ",
            "x",
            "\u{0085}y\u{00A0}Z",
            "cafe\u{301} x² \u{1c}\u{1f}Ⅻ\u{200d}",
        ];
        for s in texts {
            for low in [true, false] {
                check::<PythonRe>(s, low);
                check::<NltkRegex>(s, low);
            }
        }
    }

    fn check<C: ClassTable>(s: &str, low: bool) {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut buf = Vec::new();
        let na = scan::<true, C>(s, low, &mut buf, |t, tok| a.push((t, fast_token(tok))));
        let nb = scan::<false, C>(s, low, &mut buf, |t, tok| {
            assert!(tok.is_empty());
            b.push(t)
        });
        assert_eq!(na, nb);
        assert!(a.iter().all(|(x, y)| x == y));
        assert_eq!(a.iter().map(|x| x.0).collect::<Vec<_>>(), b);
        let mut states = Vec::new();
        let nc = token_states::<C>(s, low, &mut states);
        assert_eq!(states[..nc].iter().map(|&h| mix64(h)).collect::<Vec<_>>(), b);
    }
}
