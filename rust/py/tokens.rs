//! Integer token arrays of any common dtype, read without copying.

use crate::error::Error;
use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// A C-contiguous 2-D integer array borrowed from numpy.
pub enum Tokens<'py> {
    U8(PyReadonlyArray2<'py, u8>),
    U16(PyReadonlyArray2<'py, u16>),
    U32(PyReadonlyArray2<'py, u32>),
    U64(PyReadonlyArray2<'py, u64>),
    I8(PyReadonlyArray2<'py, i8>),
    I16(PyReadonlyArray2<'py, i16>),
    I32(PyReadonlyArray2<'py, i32>),
    I64(PyReadonlyArray2<'py, i64>),
}

impl<'py> Tokens<'py> {
    pub fn extract(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        macro_rules! try_as {
            ($variant:ident, $t:ty) => {
                if let Ok(a) = obj.extract::<PyReadonlyArray2<'py, $t>>() {
                    if !a.is_c_contiguous() {
                        return Err(Error::type_("tokens must be C-contiguous").into());
                    }
                    return Ok(Tokens::$variant(a));
                }
            };
        }
        try_as!(U8, u8);
        try_as!(U16, u16);
        try_as!(U32, u32);
        try_as!(I64, i64);
        try_as!(I32, i32);
        try_as!(U64, u64);
        try_as!(I16, i16);
        try_as!(I8, i8);
        Err(Error::type_("tokens must be a 2-D numpy array of integers (uint8/16/32/64 or int8/16/32/64)").into())
    }

    pub fn shape(&self) -> (usize, usize) {
        let s = match self {
            Tokens::U8(a) => a.shape(),
            Tokens::U16(a) => a.shape(),
            Tokens::U32(a) => a.shape(),
            Tokens::U64(a) => a.shape(),
            Tokens::I8(a) => a.shape(),
            Tokens::I16(a) => a.shape(),
            Tokens::I32(a) => a.shape(),
            Tokens::I64(a) => a.shape(),
        };
        (s[0], s[1])
    }
}

/// Runs `$body` with `$slice` bound to the token data as a typed slice.
macro_rules! with_tokens {
    ($tokens:expr, |$slice:ident| $body:expr) => {
        match &$tokens {
            $crate::py::tokens::Tokens::U8(a) => {
                let $slice = a.as_slice()?;
                $body
            }
            $crate::py::tokens::Tokens::U16(a) => {
                let $slice = a.as_slice()?;
                $body
            }
            $crate::py::tokens::Tokens::U32(a) => {
                let $slice = a.as_slice()?;
                $body
            }
            $crate::py::tokens::Tokens::U64(a) => {
                let $slice = a.as_slice()?;
                $body
            }
            $crate::py::tokens::Tokens::I8(a) => {
                let $slice = a.as_slice()?;
                $body
            }
            $crate::py::tokens::Tokens::I16(a) => {
                let $slice = a.as_slice()?;
                $body
            }
            $crate::py::tokens::Tokens::I32(a) => {
                let $slice = a.as_slice()?;
                $body
            }
            $crate::py::tokens::Tokens::I64(a) => {
                let $slice = a.as_slice()?;
                $body
            }
        }
    };
}
pub(crate) use with_tokens;
