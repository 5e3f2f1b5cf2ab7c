//! Python bindings of the reader side: `chronolog.Trace` (`info`, `check`,
//! `dump`) over one memory-mapped, indexed trace.

use std::path::PathBuf;
use std::sync::Arc;

use chronolog_format::synth::{SynthOptions, write_trace};
use chronolog_format::{TraceReader, WriterOptions, dump as text};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::error::trace_error;

/// An open trace (`chronolog.open(path)`).
#[pyclass(name = "Trace", module = "chronolog", frozen)]
pub(crate) struct PyTrace {
    reader: Arc<TraceReader>,
}

#[pymethods]
impl PyTrace {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<PyTrace> {
        let reader = py
            .detach(|| TraceReader::open(&path))
            .map_err(trace_error)?;
        Ok(PyTrace {
            reader: Arc::new(reader),
        })
    }

    /// The path the trace was opened from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.reader.path().to_path_buf()
    }

    fn __repr__(&self) -> String {
        format!(
            "<chronolog.Trace {:?}: {} events>",
            self.reader.path(),
            self.reader.event_count()
        )
    }

    /// What the trace holds: counts, threads, files, sizes and metadata.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        summary_dict(py, &self.reader)
    }

    /// Decodes every chunk; with `repair`, writes the intact part there.
    #[pyo3(signature = (repair=None))]
    fn check<'py>(&self, py: Python<'py>, repair: Option<PathBuf>) -> PyResult<Bound<'py, PyDict>> {
        check_dict(py, &self.reader, repair)
    }

    /// The stable text dump, as an iterator of pieces (see [`DumpPieces`]).
    fn dump(&self) -> DumpPieces {
        DumpPieces {
            reader: Arc::clone(&self.reader),
            next: 0,
        }
    }
}

fn summary_dict<'py>(py: Python<'py>, reader: &TraceReader) -> PyResult<Bound<'py, PyDict>> {
    let s = py.detach(|| chronolog_analyze::summarize(reader));
    let d = PyDict::new(py);
    d.set_item("path", reader.path())?;
    d.set_item("format_version", s.format_version)?;
    d.set_item("writer", s.writer)?;
    d.set_item("start_unix_ns", s.start_unix_ns)?;
    d.set_item("duration_ns", s.duration_ns)?;
    d.set_item("events", s.events)?;
    let kinds = PyDict::new(py);
    for (kind, n) in s.events_by_kind {
        kinds.set_item(kind, n)?;
    }
    d.set_item("events_by_kind", kinds)?;
    d.set_item("var_changes", s.var_changes)?;
    let threads = PyList::empty(py);
    for (id, name, native_id) in s.threads {
        let t = PyDict::new(py);
        t.set_item("thread_id", id)?;
        t.set_item("name", name)?;
        t.set_item("native_id", native_id)?;
        threads.append(t)?;
    }
    d.set_item("threads", threads)?;
    d.set_item("files", s.files)?;
    d.set_item("sources", s.sources)?;
    d.set_item("code_objects", s.code_objects)?;
    d.set_item("chunks", s.chunks)?;
    d.set_item("file_bytes", s.file_bytes)?;
    d.set_item("encoded_bytes", s.encoded_bytes)?;
    d.set_item("naive_bytes", s.naive_bytes)?;
    d.set_item("compression_ratio", s.compression_ratio)?;
    d.set_item("bytes_per_event", s.bytes_per_event)?;
    d.set_item("footer", s.footer)?;
    d.set_item("damage", s.damage)?;
    let meta = PyDict::new(py);
    for (key, value) in s.meta {
        meta.set_item(key, value)?;
    }
    d.set_item("meta", meta)?;
    Ok(d)
}

fn check_dict<'py>(
    py: Python<'py>,
    reader: &TraceReader,
    repair: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let report = py
        .detach(|| match &repair {
            Some(out) => chronolog_format::repair(reader, out),
            None => Ok(chronolog_format::check(reader)),
        })
        .map_err(trace_error)?;
    let d = PyDict::new(py);
    d.set_item("path", reader.path())?;
    d.set_item("clean", report.is_clean())?;
    d.set_item("footer", report.footer.to_string())?;
    d.set_item("chunks", reader.chunks().len())?;
    d.set_item("good_chunks", report.good_chunks)?;
    d.set_item("events", report.events)?;
    d.set_item("var_changes", report.vars)?;
    let damage: Vec<String> = report.damage.iter().map(ToString::to_string).collect();
    d.set_item("damage", damage)?;
    d.set_item("repaired", repair)?;
    Ok(d)
}

/// The stable text dump of a trace, produced piece by piece (summary, then
/// one piece per chunk) so a large trace never sits in memory as text.
#[pyclass(module = "chronolog._native")]
pub(crate) struct DumpPieces {
    reader: Arc<TraceReader>,
    next: usize,
}

#[pymethods]
impl DumpPieces {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        let chunks = self.reader.chunks().len();
        let index = self.next;
        if index > chunks + 1 {
            return Ok(None);
        }
        self.next += 1;
        let reader = Arc::clone(&self.reader);
        let piece = py.detach(move || {
            let mut out = Vec::new();
            let written = match index {
                0 => text::write_summary(&reader, &mut out),
                i if i <= chunks => text::write_chunk(&reader, i - 1, &mut out),
                _ => text::write_damage(&reader, &mut out),
            };
            written.map(|()| String::from_utf8_lossy(&out).into_owned())
        });
        piece
            .map(Some)
            .map_err(|e| PyErr::new::<pyo3::exceptions::PyOSError, _>(e.to_string()))
    }
}

/// Writes a deterministic synthetic trace (see `chronolog_format::synth`).
#[pyfunction]
#[pyo3(signature = (path, events=10_000, seed=1, threads=2))]
pub(crate) fn write_synthetic(
    py: Python<'_>,
    path: PathBuf,
    events: u64,
    seed: u64,
    threads: u32,
) -> PyResult<Bound<'_, PyDict>> {
    let options = SynthOptions {
        events,
        seed,
        threads,
        ..SynthOptions::default()
    };
    let summary = py
        .detach(|| write_trace(&path, &options, WriterOptions::default()))
        .map_err(trace_error)?;
    let d = PyDict::new(py);
    d.set_item("bytes", summary.bytes)?;
    d.set_item("chunks", summary.chunks)?;
    d.set_item("events", summary.events)?;
    d.set_item("var_changes", summary.vars)?;
    Ok(d)
}
