//! Token element types: what samplers write and scorers read.

/// An unsigned output token type (u8, u16, u32): the smallest one that holds
/// the vocabulary is chosen by the caller.
pub trait OutToken: Copy + Send + Sync + 'static {
    fn from_u32(x: u32) -> Self;
}

impl OutToken for u8 {
    #[inline(always)]
    fn from_u32(x: u32) -> Self {
        x as u8
    }
}
impl OutToken for u16 {
    #[inline(always)]
    fn from_u32(x: u32) -> Self {
        x as u16
    }
}
impl OutToken for u32 {
    #[inline(always)]
    fn from_u32(x: u32) -> Self {
        x
    }
}

/// An integer token read from user data; negative values map to `u64::MAX`
/// so that a single `< vocab` check rejects them.
pub trait InToken: Copy + Send + Sync + std::fmt::Display + 'static {
    fn index(self) -> u64;
}

macro_rules! in_token_unsigned {
    ($($t:ty),*) => {$(
        impl InToken for $t {
            #[inline(always)]
            fn index(self) -> u64 { self as u64 }
        }
    )*};
}
macro_rules! in_token_signed {
    ($($t:ty),*) => {$(
        impl InToken for $t {
            #[inline(always)]
            fn index(self) -> u64 { if self < 0 { u64::MAX } else { self as u64 } }
        }
    )*};
}
/// The token `x` at position [`i`, `t`] of the input as an index below
/// `vocab`, or a `ValueError` naming the value and its position.
#[inline]
pub fn checked_index<T: InToken>(x: T, vocab: usize, i: usize, t: usize) -> crate::error::Result<usize> {
    let v = x.index();
    if v >= vocab as u64 {
        return Err(crate::error::Error::value(format!(
            "tokens: value {x} at position [{i}, {t}] is outside the vocabulary [0, {vocab})"
        )));
    }
    Ok(v as usize)
}

in_token_unsigned!(u8, u16, u32, u64);
in_token_signed!(i8, i16, i32, i64);
