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

mod arrow_stream;
mod clock;
mod error;
mod frames;
mod locals;
#[cfg(Py_3_12)]
mod monitoring;
mod names;
mod purity;
mod reading;
mod recording;
mod repr;
mod scope;
mod spinlock;
mod stepping;
mod suspend;
mod thread_key;
#[cfg(not(Py_3_12))]
mod tracehook;
mod weak;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // While the importing process most likely has one thread (see there).
    spinlock::process_barrier::available();
    repr::check_range_layout(py)?;
    purity::check_iterator_layout(py)?;
    m.add("TraceError", py.get_type::<error::TraceError>())?;
    m.add("QueryError", py.get_type::<error::QueryError>())?;
    // The package's version has one source, the workspace's Cargo.toml
    // (pyproject.toml declares it dynamic): reading it here spares every
    // `import chronolog` the ~60 ms import of importlib.metadata.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
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
    m.add_class::<stepping::ReplayLines>()?;
    m.add_class::<arrow_stream::ArrowStream>()?;
    m.add_class::<recording::Recorder>()?;
    m.add_function(wrap_pyfunction!(reading::write_synthetic, m)?)?;
    m.add_function(wrap_pyfunction!(safe_repr, m)?)?;
    m.add_function(wrap_pyfunction!(purity::describe, m)?)?;
    Ok(())
}

/// The sanitized repr the recorder stores for `value`, cut to `max_repr`
/// characters (0 = no limit). Runs no user code.
#[pyfunction]
#[pyo3(signature = (value, max_repr=100))]
fn safe_repr(value: &Bound<'_, PyAny>, max_repr: usize) -> String {
    let mut out = String::new();
    // SAFETY: the GIL is held (we have a Bound) and the object is alive.
    unsafe { repr::short_repr(value.as_ptr(), repr::ReprOptions::safe(max_repr), &mut out) };
    out
}
