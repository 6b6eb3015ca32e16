//! The DSIR reference's tokeniser: `re.findall(r"\w+|[^\w\s]+", s.lower())`
//! (nltk's `WordPunctTokenizer` after `str.lower()`), in one pass over the
//! UTF-8 bytes without allocating per token.
//!
//! Lower-casing comes first and may change a character's class (U+0130 'İ'
//! becomes "i" + U+0307, a combining mark that is not `\w`), so tokens are cut
//! from the stream of lower-cased characters.

use super::unicode::{self, Lower, ASCII_CLASS, ASCII_LOWER, SPACE};

/// Calls `emit` with the bytes of each token of `text`, in order (the
/// tokens of `text.lower()` if `lowercase`); `buf` is scratch. Returns the
/// number of tokens.
#[inline]
pub fn for_each_token(text: &str, lowercase: bool, buf: &mut Vec<u8>, mut emit: impl FnMut(&[u8])) -> usize {
    let bytes = text.as_bytes();
    let mut cur = SPACE;
    let mut count = 0usize;
    buf.clear();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            let k = ASCII_CLASS[b as usize];
            if k != cur {
                if cur != SPACE {
                    emit(buf);
                    count += 1;
                    buf.clear();
                }
                cur = k;
            }
            if k != SPACE {
                buf.push(if lowercase { ASCII_LOWER[b as usize] } else { b });
            }
            i += 1;
            continue;
        }
        // `i` is at a character boundary: every step advances by whole characters.
        let Some(c) = text[i..].chars().next() else { break };
        let len = c.len_utf8();
        let mut push = |l: char| {
            let k = unicode::class(l);
            if k != cur {
                if cur != SPACE {
                    emit(buf);
                    count += 1;
                    buf.clear();
                }
                cur = k;
            }
            if k != SPACE {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(l.encode_utf8(&mut tmp).as_bytes());
            }
        };
        if !lowercase {
            push(c);
        } else if c == '\u{3A3}' {
            push(if unicode::final_sigma(text, i, i + len) { '\u{3C2}' } else { '\u{3C3}' });
        } else {
            match unicode::lower(c) {
                Lower::One(l) => push(l),
                Lower::Many(s) => s.chars().for_each(&mut push),
            }
        }
        i += len;
    }
    if cur != SPACE {
        emit(buf);
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let n = for_each_token(s, true, &mut buf, |t| out.push(String::from_utf8(t.to_vec()).unwrap()));
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn wordpunct() {
        assert_eq!(tokens("Alice went, to the  market!!"), ["alice", "went", ",", "to", "the", "market", "!!"]);
        assert_eq!(tokens("Good muffins cost $3.88\nin New_York."), [
            "good", "muffins", "cost", "$", "3", ".", "88", "in", "new_york", "."
        ]);
        assert_eq!(tokens("İstanbul"), ["i", "\u{307}", "stanbul"]);
        assert_eq!(tokens("ΟΔΟΣ ΟΔΟΣ."), ["οδο\u{3C2}", "οδο\u{3C2}", "."]);
        assert!(tokens(" \t\n").is_empty());
    }
}
