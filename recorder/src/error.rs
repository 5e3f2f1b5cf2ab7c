//! The one place where Rust errors become Python exceptions.

use chronolog_format::FormatError;
use pyo3::PyErr;
use pyo3::exceptions::PyException;

pyo3::create_exception!(
    chronolog,
    TraceError,
    PyException,
    "A trace is missing, unreadable, damaged beyond use, or of a newer format. \
     The message is one line naming the file and the problem."
);

/// Converts a format error into `chronolog.TraceError`.
pub(crate) fn trace_error(error: FormatError) -> PyErr {
    TraceError::new_err(error.to_string())
}
