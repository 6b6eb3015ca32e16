//! The one error type of the core and its single conversion to Python.
//!
//! Every message names the offending argument and, where there is one, the fix.

use std::fmt;

/// Errors raised by the pure core. `Value` becomes `ValueError`, `Type` becomes
/// `TypeError`, `Memory` becomes `MemoryError` (see `rust/py/mod.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A value is out of its domain (probabilities, sizes, tokens, ...).
    Value(String),
    /// An argument has the wrong kind (dtype, dimensionality).
    Type(String),
    /// An allocation failed (`crate::alloc`): the request did not fit in
    /// the memory available.
    Memory(String),
}

impl Error {
    pub fn value(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }
    pub fn type_(msg: impl Into<String>) -> Self {
        Error::Type(msg.into())
    }
    pub fn memory(msg: impl Into<String>) -> Self {
        Error::Memory(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Value(m) | Error::Type(m) | Error::Memory(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
