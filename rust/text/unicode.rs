//! Python's character classes and lower-case mapping, from the generated
//! tables in `unicode_tables.rs` (Python's Unicode version; regenerate with
//! `gen_unicode_tables.py`).
//!
//! Python's `re` `\w` is `str.isalnum() or '_'`, which differs from Rust's
//! `char::is_alphanumeric` (Rust counts combining marks with the Alphabetic
//! property, Python does not); `\s` is `str.isspace()`.
//!
//! nltk >= 3.10 compiles `WordPunctTokenizer` with the third-party `regex`
//! engine, whose `\w` is `Alphabetic | Mark | Decimal_Number |
//! Connector_Punctuation | Join_Control` (so combining marks are word
//! characters and superscript digits are not) and whose `\s` leaves out
//! U+001C..U+001F: the two sets of classes are [`WordClasses`].

use super::unicode_tables as t;
use std::cmp::Ordering;

/// Class of a character: white space (`\s`), word (`\w`), or neither.
pub const SPACE: u8 = 0;
pub const WORD: u8 = 1;
pub const PUNCT: u8 = 2;

/// ASCII classes: word = `[0-9A-Za-z_]`; space = `\t\n\v\f\r`, `\x1c`-`\x1f`
/// and ' ' (all of `str.isspace()` below 128); the rest is punctuation.
pub static ASCII_CLASS: [u8; 128] = {
    let mut c = [PUNCT; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            c[i] = WORD;
        } else if (b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x20) {
            c[i] = SPACE;
        }
        i += 1;
    }
    c
};

/// Class of a byte >= 0x80 (part of a non-ASCII character) in [`Classes::byte`].
pub const HIGH: u8 = 3;

/// Which engine's `\w` and `\s` the tokeniser follows (docs/math.md, "DSIR").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WordClasses {
    /// Python's `re` (nltk < 3.10): [`PythonRe`].
    PythonRe,
    /// The `regex` engine with nltk's flags (nltk >= 3.10): [`NltkRegex`].
    NltkRegex,
}

impl WordClasses {
    /// Parses `"python-re"` / `"nltk-regex"`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "python-re" => Some(WordClasses::PythonRe),
            "nltk-regex" => Some(WordClasses::NltkRegex),
            _ => None,
        }
    }
}

/// One engine's classes as a type, so that the tokeniser is compiled once per
/// engine with its tables at constant addresses (a run-time table cost about
/// a fifth of the fast mode's throughput).
pub trait ClassTable {
    /// ASCII classes, [`HIGH`] from 0x80.
    const BYTE: &'static [u8; 256];
    /// The class (`SPACE`, `WORD`, `PUNCT`) of `c`.
    fn class(c: char) -> u8;
}

/// Python's `re` classes.
pub struct PythonRe;
/// The `regex` engine's classes (nltk >= 3.10).
pub struct NltkRegex;

const fn byte_table(ascii_1c_1f_space: bool) -> [u8; 256] {
    let mut c = [HIGH; 256];
    let mut i = 0;
    while i < 128 {
        c[i] = ASCII_CLASS[i];
        if !ascii_1c_1f_space && i >= 0x1C && i <= 0x1F {
            c[i] = PUNCT;
        }
        i += 1;
    }
    c
}

static PYTHON_RE_BYTES: [u8; 256] = byte_table(true);
static NLTK_REGEX_BYTES: [u8; 256] = byte_table(false);

/// The class of the non-ASCII code point `u` given fixed-size tables.
#[inline(always)]
fn classify<const W: usize, const S: usize>(word: &[(u32, u32); W], space: &[(u32, u32); S], u: u32) -> u8 {
    if in_ranges(word, u) {
        WORD
    } else if in_ranges(space, u) {
        SPACE
    } else {
        PUNCT
    }
}

impl ClassTable for PythonRe {
    const BYTE: &'static [u8; 256] = &PYTHON_RE_BYTES;
    #[inline]
    fn class(c: char) -> u8 {
        let u = c as u32;
        if u < 128 {
            ASCII_CLASS[u as usize]
        } else {
            classify(&t::WORD, &t::SPACE, u)
        }
    }
}

impl ClassTable for NltkRegex {
    const BYTE: &'static [u8; 256] = &NLTK_REGEX_BYTES;
    #[inline]
    fn class(c: char) -> u8 {
        let u = c as u32;
        if u < 128 {
            NLTK_REGEX_BYTES[u as usize]
        } else {
            classify(&t::REGEX_WORD, &t::REGEX_SPACE, u)
        }
    }
}

/// ASCII lower case (`A`-`Z` to `a`-`z`, the rest unchanged).
pub static ASCII_LOWER: [u8; 128] = {
    let mut c = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        c[i] = (i as u8).to_ascii_lowercase();
        i += 1;
    }
    c
};

#[inline]
fn in_ranges(r: &[(u32, u32)], c: u32) -> bool {
    r.binary_search_by(|&(a, b)| {
        if b < c {
            Ordering::Less
        } else if a > c {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    })
    .is_ok()
}

/// The class (`SPACE`, `WORD`, `PUNCT`) of `c` under Python's `re`.
#[inline]
pub fn class(c: char) -> u8 {
    PythonRe::class(c)
}

/// Python's `Cased` (and not `Case_Ignorable`) and `Case_Ignorable`, as
/// `str.lower()` uses them for the final sigma.
pub fn is_cased(c: char) -> bool {
    in_ranges(&t::CASED, c as u32)
}
pub fn is_case_ignorable(c: char) -> bool {
    in_ranges(&t::CASE_IGNORABLE, c as u32)
}

/// `str.lower()` of one non-ASCII character other than U+03A3.
pub enum Lower {
    One(char),
    Many(&'static str),
}

#[inline]
pub fn lower(c: char) -> Lower {
    let u = c as u32;
    if let Ok(i) = t::LOWER.binary_search_by_key(&u, |&(a, _)| a) {
        // The table holds valid scalar values only (generated from `chr`).
        return Lower::One(char::from_u32(t::LOWER[i].1).unwrap_or(c));
    }
    if let Ok(i) = t::LOWER_MULTI.binary_search_by_key(&u, |&(a, _)| a) {
        return Lower::Many(t::LOWER_MULTI[i].1);
    }
    Lower::One(c)
}

/// Whether the capital sigma occupying bytes `start..end` of `text` is in
/// the Final_Sigma context (`str.lower()` then gives 'ς', else 'σ'):
/// `\p{cased} \p{case-ignorable}* Σ !(\p{case-ignorable}* \p{cased})`.
pub fn final_sigma(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().rev().find(|&c| !is_case_ignorable(c));
    if !before.is_some_and(is_cased) {
        return false;
    }
    match text[end..].chars().find(|&c| !is_case_ignorable(c)) {
        None => true,
        Some(c) => !is_cased(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_tables_agree_with_the_generated_ones() {
        for u in 0u32..128 {
            let c = char::from_u32(u).unwrap();
            let want = if in_ranges(&t::WORD, u) {
                WORD
            } else if in_ranges(&t::SPACE, u) {
                SPACE
            } else {
                PUNCT
            };
            assert_eq!(ASCII_CLASS[u as usize], want, "U+{u:04X}");
            let l = match lower(c) {
                Lower::One(l) => l,
                Lower::Many(_) => panic!("ASCII maps to one character"),
            };
            assert_eq!(ASCII_LOWER[u as usize] as u32, l as u32);
        }
    }

    #[test]
    fn python_word_class_differs_from_rust_on_marks() {
        // U+0345 COMBINING GREEK YPOGEGRAMMENI: Alphabetic in Rust, not `\w` in Python.
        assert!('\u{345}'.is_alphabetic());
        assert_eq!(class('\u{345}'), PUNCT);
        assert_eq!(class('é'), WORD);
        assert_eq!(class('\u{3000}'), SPACE);
        assert_eq!(class('٣'), WORD);
    }

    #[test]
    fn regex_classes_differ_on_marks_superscripts_and_separators() {
        let r = NltkRegex::class;
        assert_eq!(r('\u{301}'), WORD); // combining acute: Mark
        assert_eq!(class('\u{301}'), PUNCT);
        assert_eq!(r('²'), PUNCT); // No, not Nd
        assert_eq!(class('²'), WORD);
        for u in 0x1Cu32..=0x1F {
            let c = char::from_u32(u).unwrap();
            assert_eq!((class(c), r(c)), (SPACE, PUNCT));
        }
        for u in 0u32..128 {
            let c = char::from_u32(u).unwrap();
            let want = if in_ranges(&t::REGEX_WORD, u) {
                WORD
            } else if in_ranges(&t::REGEX_SPACE, u) {
                SPACE
            } else {
                PUNCT
            };
            assert_eq!(NltkRegex::BYTE[u as usize], want, "U+{u:04X}");
            assert_eq!(r(c), want);
        }
        assert!(NltkRegex::BYTE[0x80..].iter().all(|&b| b == HIGH));
        assert_eq!(PythonRe::BYTE[..128], ASCII_CLASS[..]);
        assert_eq!(WordClasses::parse("python-re"), Some(WordClasses::PythonRe));
        assert_eq!(WordClasses::parse("re"), None);
    }

    #[test]
    fn sigma_context() {
        assert!(final_sigma("ΑΣ", 2, 4));
        assert!(!final_sigma("ΑΣΑ", 2, 4));
        assert!(!final_sigma("Σ", 0, 2));
        assert!(final_sigma("ΑΣ.", 2, 4));
    }
}
