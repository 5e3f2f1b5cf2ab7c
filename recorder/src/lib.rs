//! # chronolog-recorder
//!
//! The CPython extension module `chronolog._native`: the only crate that
//! touches Python objects. It will hold the recorder (the `sys.monitoring`
//! and trace-hook backends, variable diffs, safe repr); today it exposes the
//! format and analysis crates to the Python package (`chronolog.Trace` with
//! `info`, `check`, `dump`) and a synthetic trace writer for the demo and the tests.
//!
//! Every function here is a thin wrapper: it converts arguments, releases the
//! GIL around the Rust work, and maps [`chronolog_format::FormatError`] to
//! `chronolog.TraceError` (see `error.rs`).

mod error;
mod reading;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("TraceError", py.get_type::<error::TraceError>())?;
    m.add(
        "FORMAT_VERSION",
        format!(
            "{}.{}",
            chronolog_format::FORMAT_MAJOR,
            chronolog_format::FORMAT_MINOR
        ),
    )?;
    m.add_class::<reading::PyTrace>()?;
    m.add_class::<reading::DumpPieces>()?;
    m.add_function(wrap_pyfunction!(reading::write_synthetic, m)?)?;
    Ok(())
}
