//! The recorder: CPython's `sys.monitoring` events (3.12+) turned into
//! events and variable changes in a trace.
//!
//! `chronolog/_record.py` registers the methods of [`Recorder`] as
//! `sys.monitoring` callbacks: `PY_START` and the exception events globally,
//! and — for code in scope only, decided once per code object — `LINE`,
//! `PY_RETURN`, `PY_YIELD` and `PY_RESUME` as local events. Out-of-scope code
//! gets `DISABLE` from its first `PY_START` and costs nothing afterwards.
//!
//! Every callback holds the GIL; the state sits behind one mutex that is
//! never contended while the GIL is held. Events go into an [`EventBatch`]
//! handed to the format crate's background writer every 65,536 events or
//! 100 ms, whichever comes first. Nothing here keeps a reference to a frame,
//! a local or an argument after the callback returns: values are stored as
//! safe reprs. Any failure (a full disk, a bug) stops recording with one
//! warning on stderr; the program runs on and never sees an exception or a
//! panic from here.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chronolog_format::{
    CodeInfo, Event, EventBatch, EventKind, HeaderInfo, ThreadMeta, TraceWriter, VarChange,
    VarRecord, WriterOptions,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use rustc_hash::FxHashMap;

use crate::frames::{SlotKind, localsplus, slot_value};
use crate::repr::short_repr;
use crate::scope::Scope;

/// Events per batch handed to the writer.
const BATCH_EVENTS: usize = 1 << 16;
/// Longest time events wait in memory before reaching the writer.
const FLUSH_INTERVAL_NS: u64 = 100_000_000;

/// What to record, from `chronolog.record(...)` / `chronolog record`.
#[derive(Debug)]
struct Options {
    scope: Scope,
    vars: bool,
    lines: bool,
    max_repr: usize,
}

/// A code object in scope.
#[derive(Debug)]
struct CodeState {
    id: u32,
    first_line: u32,
    /// A module or class body: variables live in a namespace dict.
    namespace: bool,
    /// Local slots: name string id and how to read the slot.
    slots: Arc<[(u32, SlotKind)]>,
}

/// The recorder's view of one code object (kept alive so its address is
/// never reused by another).
#[derive(Debug)]
struct CodeEntry {
    _keep: Py<PyAny>,
    state: Option<CodeState>,
    /// Its local events are on (or it needs none).
    enabled: bool,
}

/// Last recorded value of one local.
#[derive(Debug, Clone)]
struct Shadow {
    object: usize,
    repr: String,
    /// For lists and tuples: what their cut repr depends on (see [`fingerprint`]).
    fingerprint: Option<u64>,
}

#[derive(Debug)]
struct FrameState {
    frame_id: u64,
    /// Identity of the frame object (stable across a generator's yields).
    frame: usize,
    code_id: u32,
    slots: Arc<[(u32, SlotKind)]>,
    /// Line of the last `line` event (the first line before any).
    line: u32,
    locals: Vec<Option<Shadow>>,
    /// For module and class bodies: their namespace's variables.
    namespace: Option<Box<NamespaceShadow>>,
}

/// Last recorded state of a namespace's variables, by name id, with the
/// generation of the diff that last saw each (to find deleted ones).
#[derive(Debug, Default)]
struct NamespaceShadow {
    vars: FxHashMap<u32, (Option<Shadow>, u64)>,
    generation: u64,
}

#[derive(Debug)]
struct ThreadState {
    id: u32,
    stack: Vec<FrameState>,
}

/// Everything a recording holds while it runs.
#[derive(Debug)]
struct Recording {
    writer: TraceWriter,
    options: Options,
    batch: EventBatch,
    started: Instant,
    last_flush_ns: u64,
    seq: u64,
    next_frame: u64,
    next_exception: u64,
    strings: FxHashMap<String, u32>,
    /// Type object address -> string id + 1 of its name (types kept alive).
    types: FxHashMap<usize, (u32, Py<PyAny>)>,
    codes: FxHashMap<usize, CodeEntry>,
    threads: FxHashMap<u64, ThreadState>,
    /// Generator and coroutine frames between a yield and their resumption.
    suspended: FxHashMap<usize, FrameState>,
    /// Exception object address -> its identity, while it propagates.
    exceptions: FxHashMap<usize, u64>,
    sources: rustc_hash::FxHashSet<u32>,
    /// (code, bytecode offset) -> line, for events that carry an offset.
    lines: FxHashMap<(usize, i32), u32>,
    scratch: String,
    vars_readable: bool,
}

/// Where in the code a callback fired: `LINE` gives the line, the other
/// events a bytecode offset.
#[derive(Clone, Copy, Debug)]
enum Site {
    Line(u32),
    Offset(i32),
}

impl Site {
    fn line(line: i64) -> Site {
        Site::Line(u32::try_from(line).unwrap_or(0))
    }

    fn offset(offset: i64) -> Site {
        Site::Offset(i32::try_from(offset).unwrap_or(0))
    }
}

/// Which `sys.monitoring` callback ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Start,
    Resume,
    Throw,
    Line,
    Return,
    Yield,
    Raise,
    Reraise,
    Handled,
    Unwind,
}

/// The recorder behind one recording. See the module documentation.
#[pyclass(module = "chronolog._native", frozen)]
pub(crate) struct Recorder {
    state: Arc<Mutex<Option<Recording>>>,
    disable: Py<PyAny>,
    /// `sys.monitoring.set_local_events`, bound to the tool id and events.
    enable_code: Py<PyAny>,
    /// Called once when recording must stop after a failure.
    on_failure: Py<PyAny>,
    /// `() -> (name, native_id)` of the current thread.
    thread_info: Py<PyAny>,
    /// Path of the trace, for messages.
    path: PathBuf,
}

fn runtime(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

#[pymethods]
impl Recorder {
    /// Creates the trace and prepares to record. `header` is a list of
    /// (key, value) facts; `enable_code(code)` turns on the local events of
    /// an in-scope code object; `on_failure(message)` is called once if
    /// recording has to stop.
    #[new]
    #[pyo3(signature = (path, header, *, include, exclude, stdlib, library_dirs, own_dirs, vars, lines, max_repr, disable, enable_code, on_failure, thread_info))]
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the keyword arguments of the Python API"
    )]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        header: Vec<(String, String)>,
        include: Vec<String>,
        exclude: Vec<String>,
        stdlib: bool,
        library_dirs: Vec<String>,
        own_dirs: Vec<String>,
        vars: bool,
        lines: bool,
        max_repr: usize,
        disable: Py<PyAny>,
        enable_code: Py<PyAny>,
        on_failure: Py<PyAny>,
        thread_info: Py<PyAny>,
    ) -> PyResult<Recorder> {
        let start_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let info = HeaderInfo {
            writer: format!("chronolog {}", env!("CARGO_PKG_VERSION")),
            start_unix_ns,
            meta: header,
        };
        let writer = py
            .detach(|| TraceWriter::create(&path, &info, WriterOptions::default()))
            .map_err(runtime)?;
        let recording = Recording {
            writer,
            options: Options {
                scope: Scope {
                    include,
                    exclude,
                    stdlib,
                    library_dirs,
                    own_dirs,
                },
                vars,
                lines,
                max_repr,
            },
            batch: EventBatch::default(),
            started: Instant::now(),
            last_flush_ns: 0,
            seq: 0,
            next_frame: 1,
            next_exception: 1,
            strings: FxHashMap::default(),
            types: FxHashMap::default(),
            codes: FxHashMap::default(),
            threads: FxHashMap::default(),
            suspended: FxHashMap::default(),
            exceptions: FxHashMap::default(),
            sources: Default::default(),
            lines: FxHashMap::default(),
            scratch: String::new(),
            vars_readable: true,
        };
        Ok(Recorder {
            state: start_flusher(Arc::new(Mutex::new(Some(recording)))),
            disable,
            enable_code,
            on_failure,
            thread_info,
            path,
        })
    }

    fn on_start(&self, py: Python<'_>, code: &Bound<'_, PyAny>, offset: i64) -> Py<PyAny> {
        self.dispatch(py, Hook::Start, code, None, Site::offset(offset))
    }

    fn on_resume(&self, py: Python<'_>, code: &Bound<'_, PyAny>, offset: i64) -> Py<PyAny> {
        self.dispatch(py, Hook::Resume, code, None, Site::offset(offset))
    }

    fn on_throw(
        &self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        offset: i64,
        exc: &Bound<'_, PyAny>,
    ) -> Py<PyAny> {
        self.dispatch(py, Hook::Throw, code, Some(exc), Site::offset(offset))
    }

    fn on_line(&self, py: Python<'_>, code: &Bound<'_, PyAny>, line: i64) -> Py<PyAny> {
        self.dispatch(py, Hook::Line, code, None, Site::line(line))
    }

    fn on_return(
        &self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        offset: i64,
        value: &Bound<'_, PyAny>,
    ) -> Py<PyAny> {
        self.dispatch(py, Hook::Return, code, Some(value), Site::offset(offset))
    }

    fn on_yield(
        &self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        offset: i64,
        value: &Bound<'_, PyAny>,
    ) -> Py<PyAny> {
        self.dispatch(py, Hook::Yield, code, Some(value), Site::offset(offset))
    }

    fn on_raise(
        &self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        offset: i64,
        exc: &Bound<'_, PyAny>,
    ) -> Py<PyAny> {
        self.dispatch(py, Hook::Raise, code, Some(exc), Site::offset(offset))
    }

    fn on_reraise(
        &self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        offset: i64,
        exc: &Bound<'_, PyAny>,
    ) -> Py<PyAny> {
        self.dispatch(py, Hook::Reraise, code, Some(exc), Site::offset(offset))
    }

    fn on_handled(
        &self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        offset: i64,
        exc: &Bound<'_, PyAny>,
    ) -> Py<PyAny> {
        self.dispatch(py, Hook::Handled, code, Some(exc), Site::offset(offset))
    }

    fn on_unwind(
        &self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
        offset: i64,
        exc: &Bound<'_, PyAny>,
    ) -> Py<PyAny> {
        self.dispatch(py, Hook::Unwind, code, Some(exc), Site::offset(offset))
    }

    /// Adds a key/value fact to the trace (exit status, ...).
    fn add_meta(&self, key: &str, value: &str) {
        if let Ok(mut guard) = self.state.lock()
            && let Some(recording) = guard.as_mut()
        {
            recording.writer.add_meta(key, value);
        }
    }

    /// Forgets the recording without touching its file: for a child process
    /// after `fork()`, where the writer thread does not exist any more (the
    /// parent completes the file). Recording goes on in a new file.
    fn abandon(&self) {
        if let Ok(mut guard) = self.state.lock()
            && let Some(recording) = guard.take()
        {
            // Dropping it would wait for a writer thread that fork() did not copy.
            std::mem::forget(recording);
        }
    }

    /// True while the recorder still records (false after stop or failure).
    #[getter]
    fn active(&self) -> bool {
        self.state.lock().is_ok_and(|g| g.is_some())
    }

    /// Writes what is buffered, the footer, and closes the trace. Returns
    /// the numbers written; None if recording had already stopped.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let recording = self.state.lock().map_err(runtime)?.take();
        let Some(mut recording) = recording else {
            return Ok(None);
        };
        let batch = std::mem::take(&mut recording.batch);
        let summary = py
            .detach(move || {
                recording.writer.write_batch(batch)?;
                recording.writer.finish()
            })
            .map_err(runtime)?;
        let d = PyDict::new(py);
        d.set_item("path", &self.path)?;
        d.set_item("bytes", summary.bytes)?;
        d.set_item("events", summary.events)?;
        d.set_item("var_changes", summary.vars)?;
        Ok(Some(d))
    }
}

impl Recorder {
    /// Runs one callback: never raises, never panics into Python.
    ///
    /// No Python code runs while the state is locked: a Python call can let
    /// another thread take the GIL, and that thread's callback would then
    /// wait for the lock while holding the GIL. Calls into Python (a new
    /// thread's name, enabling a code object's events) happen between locks.
    fn dispatch(
        &self,
        py: Python<'_>,
        hook: Hook,
        code: &Bound<'_, PyAny>,
        arg: Option<&Bound<'_, PyAny>>,
        site: Site,
    ) -> Py<PyAny> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut verdict = self.with_recording(|r| r.handle(py, hook, code, arg, site))?;
            if let Verdict::NeedThread(ident) = verdict {
                let (name, native_id) = self
                    .thread_info
                    .call0(py)
                    .and_then(|info| info.extract::<(String, u64)>(py))
                    .unwrap_or_else(|_| (format!("thread-{ident}"), 0));
                verdict = self.with_recording(|r| {
                    r.add_thread(ident, name, native_id);
                    r.handle(py, hook, code, arg, site)
                })?;
            }
            if let Verdict::Enable = verdict {
                self.enable_code
                    .call1(py, (code,))
                    .map_err(|e| e.to_string())?;
                verdict = Verdict::Ignore;
            }
            Ok::<Verdict, String>(verdict)
        }));
        let verdict = match outcome {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(message)) => self.fail(py, &message),
            Err(_) => self.fail(py, "internal error (a bug in chronolog)"),
        };
        match verdict {
            Verdict::Disable => self.disable.clone_ref(py),
            _ => py.None(),
        }
    }

    /// Runs `f` on the recording, if it is still active.
    fn with_recording(
        &self,
        f: impl FnOnce(&mut Recording) -> Result<Verdict, String>,
    ) -> Result<Verdict, String> {
        let mut guard = self
            .state
            .lock()
            .map_err(|_| "recorder state poisoned".to_string())?;
        match guard.as_mut() {
            Some(recording) => f(recording),
            None => Ok(Verdict::Ignore),
        }
    }

    /// Stops recording after an error: finishes the file with what it has,
    /// warns once through `on_failure`, and lets the program run on.
    fn fail(&self, py: Python<'_>, message: &str) -> Verdict {
        let recording = self.state.lock().ok().and_then(|mut g| g.take());
        if let Some(mut recording) = recording {
            let batch = std::mem::take(&mut recording.batch);
            let _ = recording.writer.write_batch(batch);
            let _ = recording.writer.finish();
            let text = format!(
                "chronolog: recording to {} stopped: {message}",
                self.path.display()
            );
            if let Err(e) = self.on_failure.call1(py, (text,)) {
                e.restore(py);
                // SAFETY: GIL held; drops the error raised by the hook.
                unsafe { ffi::PyErr_Clear() };
            }
        }
        Verdict::Ignore
    }
}

/// Starts the thread that hands buffered events to the writer when the
/// program is idle, so that nothing waits in memory longer than ~100 ms
/// (a killed process loses at most that). It needs the state lock, never the
/// GIL, and ends when the recording does.
fn start_flusher(state: Arc<Mutex<Option<Recording>>>) -> Arc<Mutex<Option<Recording>>> {
    let weak = Arc::downgrade(&state);
    let spawned = std::thread::Builder::new()
        .name("chronolog-flush".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let Some(state) = weak.upgrade() else { return };
                let Ok(mut guard) = state.lock() else { return };
                let Some(recording) = guard.as_mut() else {
                    return;
                };
                let now = recording.started.elapsed().as_nanos() as u64;
                if !recording.batch.is_empty()
                    && now.saturating_sub(recording.last_flush_ns) >= FLUSH_INTERVAL_NS
                {
                    // A failure shows at the next event, which stops recording.
                    let _ = recording.maybe_flush(now);
                }
            }
        });
    // Without the thread, events still reach the writer every 100 ms of activity.
    drop(spawned);
    state
}

/// What a callback tells `sys.monitoring`, or what `dispatch` must do next.
enum Verdict {
    Ignore,
    /// Return `sys.monitoring.DISABLE`: out-of-scope code.
    Disable,
    /// A code object just found in scope: enable its local events.
    Enable,
    /// The event came from a thread not seen yet: name it, then retry.
    NeedThread(u64),
}

/// The frame running the callback (borrowed; owned by the thread state).
fn current_frame() -> Option<*mut ffi::PyFrameObject> {
    // SAFETY: GIL held by every caller (callbacks).
    let frame = unsafe { ffi::PyEval_GetFrame() };
    (!frame.is_null()).then_some(frame)
}

impl Recording {
    fn handle(
        &mut self,
        py: Python<'_>,
        hook: Hook,
        code: &Bound<'_, PyAny>,
        arg: Option<&Bound<'_, PyAny>>,
        site: Site,
    ) -> Result<Verdict, String> {
        let code_key = code.as_ptr() as usize;
        let code_id = match self.codes.get(&code_key) {
            Some(entry) => entry.state.as_ref().map(|s| s.id),
            None => {
                self.register_code(py, code)?;
                self.codes
                    .get(&code_key)
                    .and_then(|e| e.state.as_ref())
                    .map(|s| s.id)
            }
        };
        let Some(code_id) = code_id else {
            // Only local events can be disabled; exception events are global.
            return Ok(match hook {
                Hook::Start | Hook::Resume | Hook::Line | Hook::Return | Hook::Yield => {
                    Verdict::Disable
                }
                _ => Verdict::Ignore,
            });
        };
        // SAFETY: GIL held; the thread ident is a plain number.
        #[allow(
            clippy::useless_conversion,
            reason = "c_ulong is 32 bits on some platforms"
        )]
        let ident = u64::from(unsafe { ffi::PyThread_get_thread_ident() });
        let Some(thread) = self.threads.get(&ident) else {
            return Ok(Verdict::NeedThread(ident));
        };
        // A line event runs in the thread's innermost recorded frame: when
        // that frame runs this code and no locals are read, the frame object
        // is not needed (getting it costs as much as the rest of the event).
        let frame_known = hook == Hook::Line
            && !(self.options.vars && self.vars_readable)
            && thread
                .stack
                .last()
                .is_some_and(|top| top.code_id == code_id);
        let frame = if frame_known {
            std::ptr::null_mut()
        } else {
            match current_frame() {
                Some(frame) => frame,
                None => return Ok(Verdict::Ignore),
            }
        };
        let ts = self.started.elapsed().as_nanos() as u64;
        match hook {
            Hook::Start => {
                let state = self.new_frame(frame as usize, code_key);
                self.push_frame(ident, state);
                self.event(py, ident, EventKind::Call, ts, frame, None, 0, true, site);
            }
            Hook::Resume | Hook::Throw => {
                let state = match self.suspended.remove(&(frame as usize)) {
                    Some(state) => state,
                    None => self.new_frame(frame as usize, code_key),
                };
                self.push_frame(ident, state);
                let kind = if hook == Hook::Resume {
                    EventKind::Resume
                } else {
                    EventKind::Throw
                };
                let exc_id = if hook == Hook::Throw {
                    self.exception_id(arg, false)
                } else {
                    0
                };
                self.event(
                    py,
                    ident,
                    kind,
                    ts,
                    frame,
                    arg.filter(|_| hook == Hook::Throw),
                    exc_id,
                    false,
                    site,
                );
            }
            Hook::Line => {
                if !frame_known {
                    self.ensure_top(ident, frame as usize, code_key);
                }
                self.event(py, ident, EventKind::Line, ts, frame, None, 0, false, site);
            }
            Hook::Return | Hook::Yield => {
                self.ensure_top(ident, frame as usize, code_key);
                let kind = if hook == Hook::Return {
                    EventKind::Return
                } else {
                    EventKind::Yield
                };
                self.event(py, ident, kind, ts, frame, arg, 0, false, site);
                let popped = self.threads.get_mut(&ident).and_then(|t| t.stack.pop());
                if let (Hook::Yield, Some(state)) = (hook, popped) {
                    self.suspended.insert(state.frame, state);
                }
            }
            Hook::Raise | Hook::Reraise | Hook::Handled | Hook::Unwind => {
                self.ensure_top(ident, frame as usize, code_key);
                let kind = match hook {
                    Hook::Raise => EventKind::Raise,
                    Hook::Reraise => EventKind::Reraise,
                    Hook::Handled => EventKind::Handled,
                    _ => EventKind::Unwind,
                };
                let exc_id = self.exception_id(arg, hook == Hook::Raise);
                self.event(py, ident, kind, ts, frame, arg, exc_id, false, site);
                if hook == Hook::Unwind {
                    if let Some(state) = self.threads.get_mut(&ident).and_then(|t| t.stack.pop()) {
                        self.suspended.remove(&state.frame);
                    }
                } else if hook == Hook::Handled {
                    self.exceptions
                        .remove(&arg.map_or(0, |a| a.as_ptr() as usize));
                }
            }
        }
        self.maybe_flush(ts)?;
        let entry = self.codes.get_mut(&code_key);
        Ok(match entry {
            Some(entry) if !entry.enabled => {
                entry.enabled = true;
                Verdict::Enable
            }
            _ => Verdict::Ignore,
        })
    }

    /// Decides a new code object's scope; for code in scope, defines it in
    /// the trace, stores its file's source once and enables its local events.
    fn register_code(&mut self, py: Python<'_>, code: &Bound<'_, PyAny>) -> Result<bool, String> {
        let attr = |name: &str| -> Result<Bound<'_, PyAny>, String> {
            code.getattr(name).map_err(|e| e.to_string())
        };
        let file: String = attr("co_filename")?
            .extract()
            .map_err(|e: PyErr| e.to_string())?;
        let module = current_frame().and_then(|frame| {
            // SAFETY: GIL held; the globals dict and its item are borrowed.
            unsafe {
                let globals = ffi::PyFrame_GetGlobals(frame);
                if globals.is_null() {
                    return None;
                }
                let name = ffi::PyDict_GetItemString(globals, c"__name__".as_ptr());
                let result = (!name.is_null() && ffi::PyUnicode_Check(name) != 0)
                    .then(|| Bound::from_borrowed_ptr(py, name).extract::<String>().ok())
                    .flatten();
                ffi::Py_DecRef(globals);
                result
            }
        });
        let in_scope = self.options.scope.contains(&file, module.as_deref());
        let state = if in_scope {
            let file_id = self.intern(&file);
            let qualname: String = attr("co_qualname")?
                .extract()
                .map_err(|e: PyErr| e.to_string())?;
            let name: String = attr("co_name")?
                .extract()
                .map_err(|e: PyErr| e.to_string())?;
            let first_line: u32 = attr("co_firstlineno")?
                .extract()
                .map_err(|e: PyErr| e.to_string())?;
            let code_info = CodeInfo {
                file: file_id,
                qualname: self.intern(&qualname),
                name: self.intern(&name),
                first_line,
            };
            let id = self.writer.define_code(code_info);
            let names = |attribute: &str| -> Result<Vec<String>, String> {
                attr(attribute)?.extract().map_err(|e: PyErr| e.to_string())
            };
            let (varnames, cellvars, freevars) = (
                names("co_varnames")?,
                names("co_cellvars")?,
                names("co_freevars")?,
            );
            let mut slots: Vec<(u32, SlotKind)> = Vec::new();
            for v in &varnames {
                let kind = if cellvars.contains(v) {
                    SlotKind::Cell
                } else {
                    SlotKind::Plain
                };
                slots.push((self.intern(v), kind));
            }
            for c in cellvars.iter().filter(|c| !varnames.contains(c)) {
                slots.push((self.intern(c), SlotKind::Cell));
            }
            for f in &freevars {
                slots.push((self.intern(f), SlotKind::Cell));
            }
            if self.sources.insert(file_id)
                && let Ok(text) = std::fs::read_to_string(&file)
            {
                self.writer.add_source(file_id, &text);
            }
            // CO_NEWLOCALS: functions get fresh fast locals; module and class
            // bodies run in a namespace dict.
            let flags: u32 = attr("co_flags")?
                .extract()
                .map_err(|e: PyErr| e.to_string())?;
            Some(CodeState {
                id,
                first_line,
                namespace: flags & 0x0002 == 0,
                slots: slots.into(),
            })
        } else {
            None
        };
        self.codes.insert(
            code.as_ptr() as usize,
            CodeEntry {
                _keep: code.clone().unbind(),
                enabled: state.is_none(),
                state,
            },
        );
        Ok(in_scope)
    }

    fn add_thread(&mut self, ident: u64, name: String, native_id: u64) {
        let id = self.writer.define_thread(ThreadMeta {
            name,
            native_id,
            ident,
        });
        self.threads.insert(
            ident,
            ThreadState {
                id,
                stack: Vec::new(),
            },
        );
    }

    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.strings.get(text) {
            return id;
        }
        let id = self.writer.define_string(text);
        self.strings.insert(text.to_string(), id);
        id
    }

    /// String id + 1 of the name of `value`'s type.
    fn type_name(&mut self, value: &Bound<'_, PyAny>) -> u32 {
        let t = value.get_type();
        let key = t.as_ptr() as usize;
        if let Some(&(id, _)) = self.types.get(&key) {
            return id;
        }
        let name = t
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        let id = self.intern(&name) + 1;
        self.types.insert(key, (id, t.into_any().unbind()));
        id
    }

    /// The line of bytecode `offset` in the frame's code, from a cache (the
    /// line table is scanned once per code location).
    fn line_at(&mut self, frame: *mut ffi::PyFrameObject, offset: i32) -> u32 {
        // SAFETY: GIL held; the frame is live; the code reference is released.
        unsafe {
            let code = ffi::PyFrame_GetCode(frame);
            let key = (code as usize, offset);
            let line = match self.lines.get(&key) {
                Some(&line) => line,
                None => {
                    let line = ffi::PyCode_Addr2Line(code, offset).max(0) as u32;
                    self.lines.insert(key, line);
                    line
                }
            };
            ffi::Py_DecRef(code.cast());
            line
        }
    }

    fn new_frame(&mut self, frame: usize, code: usize) -> FrameState {
        let frame_id = self.next_frame;
        self.next_frame += 1;
        let state = self.codes.get(&code).and_then(|c| c.state.as_ref());
        FrameState {
            frame_id,
            frame,
            code_id: state.map_or(0, |s| s.id),
            slots: state.map_or_else(|| Arc::from([]), |s| Arc::clone(&s.slots)),
            line: state.map_or(0, |s| s.first_line),
            locals: Vec::new(),
            namespace: state.filter(|s| s.namespace).map(|_| Box::default()),
        }
    }

    fn push_frame(&mut self, ident: u64, state: FrameState) {
        if let Some(thread) = self.threads.get_mut(&ident) {
            thread.stack.push(state);
        }
    }

    /// Makes sure the thread's top frame is `frame` (it may have started
    /// before recording, or its callers may have unwound without events).
    fn ensure_top(&mut self, ident: u64, frame: usize, code: usize) {
        let on_top = self
            .threads
            .get(&ident)
            .and_then(|t| t.stack.last())
            .is_some_and(|top| top.frame == frame);
        if on_top {
            return;
        }
        if let Some(thread) = self.threads.get_mut(&ident)
            && let Some(position) = thread.stack.iter().rposition(|f| f.frame == frame)
        {
            thread.stack.truncate(position + 1);
            return;
        }
        let state = match self.suspended.remove(&frame) {
            Some(state) => state,
            None => self.new_frame(frame, code),
        };
        self.push_frame(ident, state);
    }

    /// Identity of the exception `arg`: a new one at its first raise (when
    /// its traceback holds only the raising frame), the same one as it
    /// propagates, is re-raised or handled.
    fn exception_id(&mut self, arg: Option<&Bound<'_, PyAny>>, raise: bool) -> u64 {
        let Some(exc) = arg else { return 0 };
        let key = exc.as_ptr() as usize;
        let fresh = raise && traceback_len(exc) <= 1;
        if !fresh && let Some(&id) = self.exceptions.get(&key) {
            return id;
        }
        let id = self.next_exception;
        self.next_exception += 1;
        self.exceptions.insert(key, id);
        id
    }

    /// Appends one event of the thread's top frame, with the variable
    /// changes observed at it.
    #[allow(clippy::too_many_arguments, reason = "one call site per event family")]
    fn event(
        &mut self,
        py: Python<'_>,
        ident: u64,
        kind: EventKind,
        ts: u64,
        frame: *mut ffi::PyFrameObject,
        arg: Option<&Bound<'_, PyAny>>,
        exc_id: u64,
        is_start: bool,
        site: Site,
    ) {
        let Some(thread) = self.threads.get(&ident) else {
            return;
        };
        let thread_id = thread.id;
        let depth = thread.stack.len().saturating_sub(1) as u32;
        let Some(top) = thread.stack.last() else {
            return;
        };
        let (frame_id, code_id) = (top.frame_id, top.code_id);
        if kind == EventKind::Line && !self.options.lines {
            return;
        }
        let line = match site {
            Site::Line(line) => line,
            // The last line event of the frame: where it returns, raises or yields.
            _ if kind == EventKind::Call || self.options.lines => top.line,
            Site::Offset(offset) => self.line_at(frame, offset),
        };
        if let Some(top) = self
            .threads
            .get_mut(&ident)
            .and_then(|t| t.stack.last_mut())
        {
            top.line = line;
        }
        let (arg_ref, arg_type) = match arg {
            Some(value) => {
                self.scratch.clear();
                let is_exception = exc_id != 0;
                if is_exception {
                    exception_message(value, self.options.max_repr, &mut self.scratch);
                } else {
                    // SAFETY: GIL held; `value` is alive for this call.
                    unsafe { short_repr(value.as_ptr(), self.options.max_repr, &mut self.scratch) };
                }
                let value_ref = self.batch.values.push(&self.scratch);
                (value_ref, self.type_name(value))
            }
            None => (0, 0),
        };
        let index = self.batch.push_event(&Event {
            seq: self.seq,
            ts_ns: ts,
            thread: thread_id,
            kind: kind as u8,
            frame: frame_id,
            depth,
            code: code_id,
            line,
            arg: arg_ref,
            arg_type,
            exc_id,
        });
        self.seq += 1;
        if self.options.vars
            && self.vars_readable
            && matches!(
                kind,
                EventKind::Call
                    | EventKind::Line
                    | EventKind::Return
                    | EventKind::Yield
                    | EventKind::Resume
            )
        {
            self.diff_locals(py, ident, frame, index, is_start);
        }
    }

    /// Compares the frame's locals with their last recorded state and
    /// records what changed, attached to event `index` of the batch.
    fn diff_locals(
        &mut self,
        py: Python<'_>,
        ident: u64,
        frame: *mut ffi::PyFrameObject,
        index: u32,
        is_start: bool,
    ) {
        let Some(top) = self
            .threads
            .get_mut(&ident)
            .and_then(|t| t.stack.last_mut())
        else {
            return;
        };
        let mut sink = VarSink {
            batch: &mut self.batch,
            scratch: &mut self.scratch,
            types: &mut self.types,
            strings: &mut self.strings,
            writer: &mut self.writer,
            max_repr: self.options.max_repr,
            index,
            is_start,
        };
        if top.namespace.is_some() {
            // SAFETY: GIL held; `frame` is live for this callback.
            unsafe { diff_namespace(py, &mut sink, top, frame) };
            return;
        }
        // SAFETY: GIL held; `frame` is live for this callback.
        let Some(slots) = (unsafe { localsplus(frame) }) else {
            self.vars_readable = false;
            return;
        };
        let slot_kinds = Arc::clone(&top.slots);
        if top.locals.len() < slot_kinds.len() {
            top.locals.resize(slot_kinds.len(), None);
        }
        for (slot, &(name, kind)) in slot_kinds.iter().enumerate() {
            // SAFETY: slot < the code's number of local slots; GIL held; the
            // value is borrowed from the live frame.
            unsafe {
                sink.observe(
                    py,
                    &mut top.locals[slot],
                    slot_value(slots, slot, kind),
                    name,
                )
            };
        }
    }

    /// Hands the batch to the writer when it is full or 100 ms old. The GIL
    /// stays held (releasing it with the state locked could deadlock); the
    /// hand-over is a queue push, which waits only when the writer is
    /// behind.
    fn maybe_flush(&mut self, ts: u64) -> Result<(), String> {
        if self.batch.len() < BATCH_EVENTS
            && ts.saturating_sub(self.last_flush_ns) < FLUSH_INTERVAL_NS
        {
            return Ok(());
        }
        self.last_flush_ns = ts;
        let batch = std::mem::take(&mut self.batch);
        self.writer.write_batch(batch).map_err(|e| e.to_string())
    }
}

/// Everything needed to record variable changes at one event.
struct VarSink<'a> {
    batch: &'a mut EventBatch,
    scratch: &'a mut String,
    types: &'a mut FxHashMap<usize, (u32, Py<PyAny>)>,
    strings: &'a mut FxHashMap<String, u32>,
    writer: &'a mut TraceWriter,
    max_repr: usize,
    index: u32,
    is_start: bool,
}

impl VarSink<'_> {
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.strings.get(text) {
            return id;
        }
        let id = self.writer.define_string(text);
        self.strings.insert(text.to_string(), id);
        id
    }

    /// Compares `value` (null: unbound) with its last recorded state and
    /// records the change, if any.
    ///
    /// # Safety
    /// GIL held; `value` null or alive for the call.
    unsafe fn observe(
        &mut self,
        py: Python<'_>,
        previous: &mut Option<Shadow>,
        value: *mut ffi::PyObject,
        name: u32,
    ) {
        if value.is_null() {
            if previous.take().is_some() {
                self.batch.push_var(&VarRecord {
                    event: self.index,
                    name,
                    change: VarChange::Deleted as u8,
                    value: 0,
                    type_name: 0,
                });
            }
            return;
        }
        // SAFETY: forwarded from the caller.
        let fingerprint = unsafe { fingerprint(value, self.max_repr) };
        if let Some(shadow) = previous.as_ref()
            && shadow.object == value as usize
            // SAFETY: as above.
            && (!unsafe { may_change_in_place(value) } || (fingerprint.is_some() && shadow.fingerprint == fingerprint))
        {
            return;
        }
        self.scratch.clear();
        // SAFETY: as above.
        unsafe { short_repr(value, self.max_repr, self.scratch) };
        let change = match previous {
            Some(shadow) if shadow.repr == *self.scratch => {
                shadow.object = value as usize;
                shadow.fingerprint = fingerprint;
                return;
            }
            Some(_) => VarChange::Modified,
            None if self.is_start => VarChange::Start,
            None => VarChange::New,
        };
        match previous {
            Some(shadow) => {
                shadow.object = value as usize;
                shadow.fingerprint = fingerprint;
                shadow.repr.clear();
                shadow.repr.push_str(self.scratch);
            }
            None => {
                *previous = Some(Shadow {
                    object: value as usize,
                    repr: self.scratch.clone(),
                    fingerprint,
                });
            }
        }
        let value_ref = self.batch.values.push(self.scratch);
        // SAFETY: GIL held; borrowed value.
        let bound = unsafe { Bound::from_borrowed_ptr(py, value) };
        let t = bound.get_type();
        let type_key = t.as_ptr() as usize;
        let type_name = match self.types.get(&type_key) {
            Some(&(id, _)) => id,
            None => {
                let name = t
                    .qualname()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "?".into());
                let id = self.intern(&name) + 1;
                self.types.insert(type_key, (id, t.into_any().unbind()));
                id
            }
        };
        self.batch.push_var(&VarRecord {
            event: self.index,
            name,
            change: change as u8,
            value: value_ref,
            type_name,
        });
    }
}

/// Module and class bodies keep their variables in a dict (`f_locals` is
/// the namespace itself, no copy): every entry is a variable, as PySnooper
/// shows them.
///
/// # Safety
/// GIL held; `frame` live.
unsafe fn diff_namespace(
    py: Python<'_>,
    sink: &mut VarSink<'_>,
    top: &mut FrameState,
    frame: *mut ffi::PyFrameObject,
) {
    // SAFETY: forwarded; entries are borrowed from the dict while no code runs.
    unsafe {
        let namespace = ffi::PyFrame_GetLocals(frame);
        if namespace.is_null() {
            ffi::PyErr_Clear();
            return;
        }
        let Some(shadows) = top.namespace.as_mut() else {
            ffi::Py_DecRef(namespace);
            return;
        };
        if ffi::PyDict_Check(namespace) != 0 {
            shadows.generation += 1;
            let generation = shadows.generation;
            let mut pos: ffi::Py_ssize_t = 0;
            let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
            while ffi::PyDict_Next(namespace, &mut pos, &mut key, &mut value) != 0 {
                if ffi::PyUnicode_Check(key) == 0 {
                    continue;
                }
                let name = match Bound::from_borrowed_ptr(py, key)
                    .extract::<std::borrow::Cow<'_, str>>()
                {
                    Ok(text) => sink.intern(&text),
                    Err(_) => continue,
                };
                let entry = shadows.vars.entry(name).or_insert((None, generation));
                entry.1 = generation;
                sink.observe(py, &mut entry.0, value, name);
            }
            for (&name, (shadow, seen)) in shadows.vars.iter_mut() {
                if *seen != generation {
                    sink.observe(py, shadow, std::ptr::null_mut(), name);
                }
            }
        }
        ffi::Py_DecRef(namespace);
    }
}

/// True for values whose repr can change while the object stays the same:
/// mutable containers, and containers that may hold them.
///
/// # Safety
/// GIL held, `value` valid.
unsafe fn may_change_in_place(value: *mut ffi::PyObject) -> bool {
    // SAFETY: comparing type pointers.
    unsafe {
        let t = ffi::Py_TYPE(value);
        t == &raw mut ffi::PyList_Type
            || t == &raw mut ffi::PyDict_Type
            || t == &raw mut ffi::PySet_Type
            || t == &raw mut ffi::PyByteArray_Type
            || t == &raw mut ffi::PyTuple_Type
            || t == &raw mut ffi::PyFrozenSet_Type
    }
}

/// A hash of everything a container's repr is made of — the identities of
/// its items, recursively through nested lists, tuples, dicts and sets, and
/// their lengths — when that is at most `2 * max_repr + 16` objects (a repr
/// cut to `max_repr` characters cannot show more). Immutable scalars and
/// objects shown as `<Type object at 0x…>` have reprs fixed by their
/// identity, so equal fingerprints of the same object mean an equal repr and
/// the repr is not rendered again. `None` for anything else (a bytearray,
/// an exception, a container too large to summarise): it is rendered.
///
/// # Safety
/// GIL held, `value` valid.
unsafe fn fingerprint(value: *mut ffi::PyObject, max_repr: usize) -> Option<u64> {
    let mut budget = if max_repr == 0 {
        1024
    } else {
        2 * max_repr + 16
    };
    let mut hash = 0x9e37_79b9_7f4a_7c15u64;
    // SAFETY: forwarded.
    let complete = unsafe { fingerprint_into(value, &mut budget, &mut hash, 0) };
    // Only containers need it: scalars are compared by identity alone.
    // SAFETY: as above.
    (complete && unsafe { may_change_in_place(value) }).then_some(hash)
}

fn mix(hash: &mut u64, word: u64) {
    *hash = (hash.rotate_left(5) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
}

/// # Safety
/// GIL held, `value` valid.
unsafe fn fingerprint_into(
    value: *mut ffi::PyObject,
    budget: &mut usize,
    hash: &mut u64,
    depth: usize,
) -> bool {
    if *budget == 0 || depth > 32 {
        return false;
    }
    *budget -= 1;
    mix(hash, value as u64);
    // SAFETY: items are borrowed from their containers while no code runs.
    unsafe {
        let t = ffi::Py_TYPE(value);
        if t == &raw mut ffi::PyList_Type || t == &raw mut ffi::PyTuple_Type {
            let tuple = t == &raw mut ffi::PyTuple_Type;
            let len = if tuple {
                ffi::PyTuple_Size(value)
            } else {
                ffi::PyList_Size(value)
            }
            .max(0);
            mix(hash, len as u64);
            for i in 0..len {
                let item = if tuple {
                    ffi::PyTuple_GetItem(value, i)
                } else {
                    ffi::PyList_GetItem(value, i)
                };
                if item.is_null() || !fingerprint_into(item, budget, hash, depth + 1) {
                    return false;
                }
            }
            true
        } else if t == &raw mut ffi::PyDict_Type {
            mix(hash, ffi::PyDict_Size(value) as u64);
            let mut pos: ffi::Py_ssize_t = 0;
            let (mut key, mut item) = (std::ptr::null_mut(), std::ptr::null_mut());
            while ffi::PyDict_Next(value, &mut pos, &mut key, &mut item) != 0 {
                if !fingerprint_into(key, budget, hash, depth + 1)
                    || !fingerprint_into(item, budget, hash, depth + 1)
                {
                    return false;
                }
            }
            true
        } else if t == &raw mut ffi::PySet_Type || t == &raw mut ffi::PyFrozenSet_Type {
            let len = ffi::PySet_Size(value).max(0) as usize;
            if len > *budget {
                return false;
            }
            mix(hash, len as u64);
            let iter = ffi::PyObject_GetIter(value);
            if iter.is_null() {
                ffi::PyErr_Clear();
                return false;
            }
            let mut complete = true;
            loop {
                let item = ffi::PyIter_Next(iter);
                if item.is_null() {
                    break;
                }
                complete = complete && fingerprint_into(item, budget, hash, depth + 1);
                ffi::Py_DecRef(item);
            }
            ffi::Py_DecRef(iter);
            ffi::PyErr_Clear();
            complete
        } else {
            crate::repr::repr_fixed_by_identity(value)
        }
    }
}

/// Number of frames in an exception's traceback (1 at its first raise).
fn traceback_len(exc: &Bound<'_, PyAny>) -> usize {
    let mut n = 0;
    let mut tb = exc.getattr("__traceback__").ok();
    while let Some(t) = tb.filter(|t| !t.is_none()) {
        n += 1;
        if n > 1 {
            break;
        }
        tb = t.getattr("tb_next").ok();
    }
    n
}

/// The message of an exception as `str(exc)` gives it for built-in
/// exceptions, computed from its args without running user code.
fn exception_message(exc: &Bound<'_, PyAny>, max_repr: usize, out: &mut String) {
    // SAFETY: the C field of every exception object; GIL held.
    let args = unsafe { (*exc.as_ptr().cast::<ffi::PyBaseExceptionObject>()).args };
    if args.is_null() {
        return;
    }
    // SAFETY: GIL held; the exception keeps its args alive.
    let args = unsafe { Bound::from_borrowed_ptr(exc.py(), args) };
    let Ok(args) = args.cast::<PyTuple>() else {
        return;
    };
    match args.len() {
        0 => {}
        1 => {
            let Ok(only) = args.get_item(0) else { return };
            let key_error = exc.is_instance_of::<pyo3::exceptions::PyKeyError>();
            if let Ok(text) = only.cast_exact::<PyString>()
                && !key_error
            {
                crate::repr::truncate_into(&text.to_string_lossy(), max_repr, out);
            } else {
                // SAFETY: GIL held; borrowed from args.
                unsafe { short_repr(only.as_ptr(), max_repr, out) };
            }
        }
        // SAFETY: as above.
        _ => unsafe { short_repr(args.as_ptr(), max_repr, out) },
    }
}
