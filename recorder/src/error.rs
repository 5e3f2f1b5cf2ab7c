//! The one place where Rust errors become Python exceptions.

use chronolog_analyze::AnalyzeError;
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

pyo3::create_exception!(
    chronolog,
    QueryError,
    pyo3::exceptions::PyValueError,
    "A query cannot run: invalid SQL, an unknown table, column or function, \
     or a statement that would change something (queries are read-only). \
     The message is one line."
);

/// Converts a format error into `chronolog.TraceError`.
pub(crate) fn trace_error(error: FormatError) -> PyErr {
    TraceError::new_err(error.to_string())
}

/// Converts an analysis error into `chronolog.QueryError`.
pub(crate) fn query_error(error: AnalyzeError) -> PyErr {
    QueryError::new_err(error.to_string())
}
