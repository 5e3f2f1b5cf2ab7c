//! Python bindings of stepping through one trace: the replay as lines, the
//! stack at a moment, and the event lookups `chronolog debug` is built on.
//! Rows become plain dicts: they are few (one per step), unlike query
//! answers, which travel as Arrow.

use std::sync::{Arc, Mutex};

use chronolog_analyze::replay::Replay;
use chronolog_analyze::timeline::{FrameState, Step, Timeline};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The replay of a trace, one line per `next()`.
#[pyclass(module = "chronolog._native")]
pub(crate) struct ReplayLines {
    replay: Arc<Mutex<Replay>>,
}

impl ReplayLines {
    pub(crate) fn new(replay: Replay) -> ReplayLines {
        ReplayLines {
            replay: Arc::new(Mutex::new(replay)),
        }
    }
}

#[pymethods]
impl ReplayLines {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> Option<String> {
        let replay = Arc::clone(&self.replay);
        py.detach(move || replay.lock().ok()?.next())
    }
}

/// An event as a dict, names resolved.
pub(crate) fn step_dict<'py>(
    py: Python<'py>,
    timeline: &Timeline,
    step: &Step,
) -> PyResult<Bound<'py, PyDict>> {
    let tables = timeline.trace().reader.tables();
    let code = tables.code(step.code);
    let d = PyDict::new(py);
    d.set_item("seq", step.seq)?;
    d.set_item("ts_ns", step.ts_ns)?;
    d.set_item("thread_id", step.thread)?;
    d.set_item("kind", step.kind.name())?;
    d.set_item("frame_id", step.frame)?;
    d.set_item("depth", step.depth)?;
    d.set_item("code_id", step.code)?;
    d.set_item("file", code.and_then(|c| tables.string(c.file)))?;
    d.set_item("function", code.and_then(|c| tables.string(c.qualname)))?;
    d.set_item("line", step.line)?;
    d.set_item("arg", step.arg.as_deref())?;
    d.set_item("arg_type", step.arg_type.as_deref())?;
    d.set_item("exc_id", (step.exc_id != 0).then_some(step.exc_id))?;
    Ok(d)
}

/// A stack (outermost first) as a list of dicts with a `locals` dict each.
pub(crate) fn stack_list<'py>(
    py: Python<'py>,
    timeline: &Timeline,
    thread: u32,
    frames: &[FrameState],
) -> PyResult<Bound<'py, PyList>> {
    let tables = timeline.trace().reader.tables();
    let list = PyList::empty(py);
    for frame in frames {
        let code = tables.code(frame.code);
        let d = PyDict::new(py);
        d.set_item("frame_id", frame.frame)?;
        d.set_item("thread_id", thread)?;
        d.set_item("depth", frame.depth)?;
        d.set_item("code_id", frame.code)?;
        d.set_item("file", code.and_then(|c| tables.string(c.file)))?;
        d.set_item("function", code.and_then(|c| tables.string(c.qualname)))?;
        d.set_item("line", frame.line)?;
        d.set_item("seq", frame.seq)?;
        d.set_item("complete", frame.complete)?;
        let locals = PyDict::new(py);
        for local in &frame.locals {
            locals.set_item(&local.name, &local.repr)?;
        }
        d.set_item("locals", locals)?;
        list.append(d)?;
    }
    Ok(list)
}
