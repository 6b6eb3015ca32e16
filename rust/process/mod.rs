//! Random processes whose law is known exactly. Pure Rust: no PyO3 types.

pub mod hmm;
pub mod incontext;
pub mod markov;
pub mod markov_simd;
pub mod transforms;

use crate::error::Result;
use crate::tokens::InToken;

/// What every process with an exact law computes over rows of `length`
/// tokens (`tokens.len() / length` rows): the Python bindings are written
/// once against this trait.
pub trait Scorer: Sync {
    fn vocab(&self) -> usize;
    /// log p(x) of each row into `out` [N].
    fn log_prob<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()>;
    /// log p(x_t | x_<t) into `out` [N, T].
    fn token_log_probs<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()>;
    /// p(x_t = · | x_<t) into `out` [N, T, V].
    fn predictive<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()>;
}

macro_rules! impl_scorer {
    ($($t:ty),*) => {$(
        impl Scorer for $t {
            fn vocab(&self) -> usize {
                <$t>::vocab(self)
            }
            fn log_prob<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
                <$t>::log_prob(self, tokens, length, out)
            }
            fn token_log_probs<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
                <$t>::token_log_probs(self, tokens, length, out)
            }
            fn predictive<T: InToken>(&self, tokens: &[T], length: usize, out: &mut [f64]) -> Result<()> {
                <$t>::predictive(self, tokens, length, out)
            }
        }
    )*};
}
impl_scorer!(markov::MarkovChain, incontext::InContextMarkov, hmm::Hmm);
