//! dataprobes core: samplers and exact statistics of known random processes.
//!
//! The pure modules (`rng`, `alias`, `process`, `stats`) never see a PyO3
//! type; `py` holds the thin bindings and is compiled only with the `python`
//! feature, which maturin turns on.

pub mod alias;
pub mod alloc;
pub mod dist;
pub mod error;
pub mod pool;
pub mod process;
pub mod rng;
pub mod stats;
pub mod text;
pub mod tokens;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::register(m)
}
