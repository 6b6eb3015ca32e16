//! Text features for data selection (docs/math.md, "Data selection").
//!
//! `unicode` and `tokenize` split text exactly as Python's
//! `re.findall(r"\w+|[^\w\s]+", s.lower())` (nltk's `WordPunctTokenizer`, as
//! the DSIR reference does); `hash` maps tokens and n-grams to buckets;
//! `ngram` drives the hashed bag-of-n-grams features, fitted bucket counts and
//! DSIR log importance weights over many examples on the process pool.

pub mod hash;
pub mod ngram;
pub mod resample;
pub mod tokenize;
pub mod unicode;
#[rustfmt::skip]
pub mod unicode_tables;
// Fast diversity measures (docs/math.md, "Fast diversity measures"): distinct
// n-grams, self-repetition, self-BLEU and pairwise ROUGE-L over many items.
pub mod overlap;

// MinHash near-duplicates (docs/math.md, "Near-duplicates (MinHash LSH)").
pub mod minhash;
pub mod shingle;
