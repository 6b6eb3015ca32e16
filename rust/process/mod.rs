//! Random processes whose law is known exactly. Pure Rust: no PyO3 types.

pub mod hmm;
pub mod icl;
pub mod markov;
pub mod tokens;
pub mod transforms;
