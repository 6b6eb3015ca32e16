//! Exact information-theoretic quantities of discrete distributions and chains.

pub mod entropy;
pub mod ngram;
pub mod stationary;
