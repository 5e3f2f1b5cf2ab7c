//! Query answers handed to Python through the Arrow PyCapsule interface
//! (`__arrow_c_stream__`): pyarrow, Polars and DuckDB import the batches
//! without copying them and without this module knowing any of them.

use std::sync::Mutex;

use arrow::array::{RecordBatch, RecordBatchIterator};
use arrow::ffi_stream::FFI_ArrowArrayStream;
use chronolog_analyze::QueryResult;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// A query answer not yet imported. It can be imported once.
#[pyclass(module = "chronolog._native", frozen)]
pub(crate) struct ArrowStream {
    result: Mutex<Option<QueryResult>>,
}

impl ArrowStream {
    pub(crate) fn new(result: QueryResult) -> ArrowStream {
        ArrowStream {
            result: Mutex::new(Some(result)),
        }
    }
}

#[pymethods]
impl ArrowStream {
    /// The Arrow C stream capsule (PyCapsule interface). `requested_schema`
    /// is ignored: the answer has one schema.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let taken = self.result.lock().ok().and_then(|mut r| r.take());
        let Some(result) = taken else {
            return Err(PyRuntimeError::new_err(
                "this query answer was already imported",
            ));
        };
        let batches = result.batches.into_iter().map(Ok::<RecordBatch, _>);
        let reader = RecordBatchIterator::new(batches, result.schema);
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        // The importer moves the stream out (clearing its release callback);
        // if nobody does, dropping the capsule releases it.
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }
}

/// `result` as a `pyarrow.Table`.
pub(crate) fn to_pyarrow(py: Python<'_>, result: QueryResult) -> PyResult<Bound<'_, PyAny>> {
    let stream = Bound::new(py, ArrowStream::new(result))?;
    py.import("pyarrow")?.getattr("table")?.call1((stream,))
}
