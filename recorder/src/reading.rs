//! Python bindings of the reader side: `chronolog.Trace` over one or more
//! memory-mapped, indexed traces — `info`, `check`, `dump` of the first, SQL
//! and exports over all of them as one set of tables.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronolog_analyze::replay::{Replay, ReplayOptions, Style};
use chronolog_analyze::timeline::{Filter, Timeline};
use chronolog_analyze::{AnalyzeError, OutputFormat, TraceSet, TraceSource, export};
use chronolog_format::EventKind;
use chronolog_format::synth::{SynthOptions, write_trace};
use chronolog_format::{TraceReader, WriterOptions, dump as text};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrow_stream::{ArrowStream, to_pyarrow};
use crate::error::{query_error, trace_error};
use crate::stepping::{ReplayLines, stack_list, step_dict};

/// One or more open traces (`chronolog.open(path, ...)`).
#[pyclass(name = "Trace", module = "chronolog", frozen, subclass)]
pub(crate) struct PyTrace {
    /// The first trace: what `info`, `check` and `dump` describe.
    reader: Arc<TraceReader>,
    /// Every trace, as given.
    paths: Vec<PathBuf>,
    /// The SQL session, made at the first query.
    set: Mutex<Option<Arc<TraceSet>>>,
    /// Random access to the first trace, made at the first step.
    timeline: Mutex<Option<Arc<Timeline>>>,
}

impl PyTrace {
    fn set(&self, py: Python<'_>) -> PyResult<Arc<TraceSet>> {
        let mut slot = self
            .set
            .lock()
            .map_err(|_| query_error(chronolog_analyze::AnalyzeError::new("a query panicked")))?;
        if let Some(set) = slot.as_ref() {
            return Ok(Arc::clone(set));
        }
        let paths = self.paths.clone();
        let sources = py.detach(|| {
            paths
                .iter()
                .map(|p| TraceReader::open(p).map(|r| TraceSource::new(p.display().to_string(), r)))
                .collect::<Result<Vec<_>, _>>()
        });
        let sources = sources.map_err(trace_error)?;
        let set = Arc::new(py.detach(|| TraceSet::new(sources)).map_err(query_error)?);
        *slot = Some(Arc::clone(&set));
        Ok(set)
    }

    fn timeline(&self, py: Python<'_>) -> PyResult<Arc<Timeline>> {
        let mut slot = self
            .timeline
            .lock()
            .map_err(|_| query_error(AnalyzeError::new("a step panicked")))?;
        if let Some(timeline) = slot.as_ref() {
            return Ok(Arc::clone(timeline));
        }
        let path = self.reader.path().to_path_buf();
        let source = py
            .detach(|| TraceSource::open(&path))
            .map_err(query_error)?;
        let timeline = Arc::new(Timeline::new(Arc::new(source)));
        *slot = Some(Arc::clone(&timeline));
        Ok(timeline)
    }

    fn run(&self, py: Python<'_>, query: &str) -> PyResult<chronolog_analyze::QueryResult> {
        let set = self.set(py)?;
        py.detach(|| set.query(query)).map_err(query_error)
    }
}

#[pymethods]
impl PyTrace {
    #[new]
    #[pyo3(signature = (*paths))]
    fn new(py: Python<'_>, paths: Vec<PathBuf>) -> PyResult<PyTrace> {
        let Some(first) = paths.first().cloned() else {
            return Err(PyValueError::new_err(
                "chronolog.open() needs at least one trace",
            ));
        };
        let reader = py
            .detach(|| TraceReader::open(&first))
            .map_err(trace_error)?;
        for other in &paths[1..] {
            py.detach(|| TraceReader::open(other))
                .map_err(trace_error)?;
        }
        Ok(PyTrace {
            reader: Arc::new(reader),
            paths,
            set: Mutex::new(None),
            timeline: Mutex::new(None),
        })
    }

    /// Every trace opened, in order.
    #[getter]
    fn paths(&self) -> Vec<PathBuf> {
        self.paths.clone()
    }

    /// Runs a SQL query; the answer as a `pyarrow.Table`.
    fn sql<'py>(&self, py: Python<'py>, query: &str) -> PyResult<Bound<'py, PyAny>> {
        let result = self.run(py, query)?;
        to_pyarrow(py, result)
    }

    /// Runs a SQL query; the answer as an Arrow stream (PyCapsule interface),
    /// for Polars, DuckDB or any other Arrow consumer.
    fn sql_arrow(&self, py: Python<'_>, query: &str) -> PyResult<ArrowStream> {
        Ok(ArrowStream::new(self.run(py, query)?))
    }

    /// Table `name` as a `pyarrow.Table`.
    fn table<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let set = self.set(py)?;
        let result = py.detach(|| set.table(name)).map_err(query_error)?;
        to_pyarrow(py, result)
    }

    /// Runs a SQL query; the answer rendered as `table`, `csv` or `json` text.
    #[pyo3(signature = (query, format="table"))]
    fn sql_text(&self, py: Python<'_>, query: &str, format: &str) -> PyResult<String> {
        let format = OutputFormat::parse(format).ok_or_else(|| {
            PyValueError::new_err(format!("unknown format '{format}' (table, csv, json)"))
        })?;
        let result = self.run(py, query)?;
        py.detach(|| {
            let mut out = Vec::new();
            chronolog_analyze::render(&result, format, &mut out)?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        })
        .map_err(query_error)
    }

    /// Damage met so far (opening, then queries), one line each.
    fn damage(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(self.set(py)?.damage())
    }

    /// Writes every table to `dir/<table>/part-N.parquet`.
    #[pyo3(signature = (dir, progress=false))]
    fn export_parquet(&self, py: Python<'_>, dir: PathBuf, progress: bool) -> PyResult<()> {
        let set = self.set(py)?;
        py.detach(|| export::parquet(&set, &dir, &ProgressLine::new(progress).report()))
            .map_err(query_error)
    }

    /// Writes table `table` to the Arrow IPC file `path`.
    #[pyo3(signature = (path, table="events", progress=false))]
    fn export_arrow(
        &self,
        py: Python<'_>,
        path: PathBuf,
        table: &str,
        progress: bool,
    ) -> PyResult<()> {
        let set = self.set(py)?;
        py.detach(|| export::arrow_ipc(&set, table, &path, &ProgressLine::new(progress).report()))
            .map_err(query_error)
    }

    /// Writes a Perfetto (Chrome JSON) trace to `path`.
    #[pyo3(signature = (path, progress=false))]
    fn export_perfetto(&self, py: Python<'_>, path: PathBuf, progress: bool) -> PyResult<()> {
        let set = self.set(py)?;
        py.detach(|| export::perfetto(&set, &path, &ProgressLine::new(progress).report()))
            .map_err(query_error)
    }

    /// The replay of the first trace, as an iterator of lines (see
    /// `chronolog.Trace.replay`). `codes` are the code ids of the replayed
    /// function (empty: every frame).
    #[pyo3(signature = (codes, depth, thread, from_seq, to_seq, style))]
    #[allow(clippy::too_many_arguments, reason = "mirrors the keyword API")]
    fn _replay(
        &self,
        py: Python<'_>,
        codes: Vec<u32>,
        depth: u32,
        thread: Option<u32>,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
        style: &str,
    ) -> PyResult<ReplayLines> {
        let style = Style::parse(style).map_err(query_error)?;
        let timeline = self.timeline(py)?;
        let options = ReplayOptions {
            style,
            functions: codes,
            depth: depth.max(1),
            thread,
            from_seq,
            to_seq,
            max_len: 100,
        };
        let trace = timeline.trace_arc();
        Ok(ReplayLines::new(py.detach(|| Replay::new(trace, options))))
    }

    /// The stack of the thread of event `seq` at that event, outermost
    /// first, with every frame's locals.
    fn _state_at<'py>(&self, py: Python<'py>, seq: u64) -> PyResult<Bound<'py, PyList>> {
        let timeline = self.timeline(py)?;
        let at = py.detach(|| timeline.event(seq)).ok_or_else(|| {
            query_error(AnalyzeError::new(format!("no event {seq} in the trace")))
        })?;
        let frames = py.detach(|| timeline.stack_at(seq)).map_err(query_error)?;
        stack_list(py, &timeline, at.thread, &frames)
    }

    /// The event numbered `seq`, as a dict; None if there is none.
    fn _event<'py>(&self, py: Python<'py>, seq: u64) -> PyResult<Option<Bound<'py, PyDict>>> {
        let timeline = self.timeline(py)?;
        match py.detach(|| timeline.event(seq)) {
            Some(step) => Ok(Some(step_dict(py, &timeline, &step)?)),
            None => Ok(None),
        }
    }

    /// The first event after `seq` (`forward`) or before it matching every
    /// condition given; None if there is none.
    #[pyo3(signature = (seq, forward, thread=None, kinds=None, max_depth=None, frame=None, codes=None, lines=None))]
    #[allow(clippy::too_many_arguments, reason = "mirrors the keyword API")]
    fn _seek<'py>(
        &self,
        py: Python<'py>,
        seq: u64,
        forward: bool,
        thread: Option<u32>,
        kinds: Option<Vec<String>>,
        max_depth: Option<u32>,
        frame: Option<u64>,
        codes: Option<Vec<u32>>,
        lines: Option<Vec<(u32, u32)>>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let kinds = kinds
            .unwrap_or_default()
            .iter()
            .map(|name| {
                EventKind::ALL
                    .into_iter()
                    .find(|k| k.name() == name)
                    .ok_or_else(|| PyValueError::new_err(format!("unknown event kind '{name}'")))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let filter = Filter {
            thread,
            kinds,
            max_depth,
            frame,
            codes: codes.unwrap_or_default(),
            lines: lines.unwrap_or_default(),
        };
        let timeline = self.timeline(py)?;
        match py.detach(|| timeline.seek(seq, forward, &filter)) {
            Some(step) => Ok(Some(step_dict(py, &timeline, &step)?)),
            None => Ok(None),
        }
    }

    /// Code ids of the functions whose qualified or bare name is `name`.
    fn _codes_named(&self, py: Python<'_>, name: &str) -> PyResult<Vec<u32>> {
        Ok(self.timeline(py)?.codes_named(name))
    }

    /// Code ids defined in `file` (a path or its trailing part).
    fn _codes_in_file(&self, py: Python<'_>, file: &str) -> PyResult<Vec<u32>> {
        Ok(self.timeline(py)?.codes_in_file(file))
    }

    /// First and last sequence numbers, None for an empty trace.
    fn _bounds(&self, py: Python<'_>) -> PyResult<Option<(u64, u64)>> {
        Ok(self.timeline(py)?.bounds())
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

/// A progress line on stderr (only when asked, and only on a terminal),
/// redrawn at most ten times a second.
struct ProgressLine {
    shown: bool,
    last: Mutex<(Instant, String)>,
}

impl ProgressLine {
    fn new(wanted: bool) -> ProgressLine {
        ProgressLine {
            shown: wanted && std::io::stderr().is_terminal(),
            last: Mutex::new((Instant::now(), String::new())),
        }
    }

    fn report(&self) -> impl Fn(&str, u64, u64) + Sync + '_ {
        move |table, done, expected| {
            if !self.shown {
                return;
            }
            let Ok(mut last) = self.last.lock() else {
                return;
            };
            let finished = expected > 0 && done >= expected;
            if last.1 == table && !finished && last.0.elapsed() < Duration::from_millis(100) {
                return;
            }
            let mut err = std::io::stderr().lock();
            if !last.1.is_empty() && last.1 != table {
                let _ = writeln!(err);
            }
            let _ = match expected {
                0 => write!(err, "\r  {table}: {done} rows"),
                _ => write!(
                    err,
                    "\r  {table}: {done} / {expected} rows ({}%)",
                    done.saturating_mul(100) / expected
                ),
            };
            *last = (Instant::now(), table.to_string());
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        if self.shown {
            let _ = writeln!(std::io::stderr());
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
