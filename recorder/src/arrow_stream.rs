//! Query answers handed to Python through the Arrow PyCapsule interface
//! (`__arrow_c_stream__`): pyarrow, Polars and DuckDB import the batches
//! without copying them and without this module knowing any of them.

use arrow::array::{RecordBatch, RecordBatchIterator};
use arrow::ffi_stream::FFI_ArrowArrayStream;
use chronolog_analyze::QueryResult;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// A query answer to import. Each import gets its own stream over the same
/// buffers (DuckDB imports twice: once for the schema, once for the rows).
#[pyclass(module = "chronolog._native", frozen)]
pub(crate) struct ArrowStream {
    result: QueryResult,
}

impl ArrowStream {
    pub(crate) fn new(result: QueryResult) -> ArrowStream {
        ArrowStream { result }
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
        // Cloning a batch shares its arrays' buffers.
        let batches = self
            .result
            .batches
            .clone()
            .into_iter()
            .map(Ok::<RecordBatch, _>);
        let reader = RecordBatchIterator::new(batches, self.result.schema.clone());
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
