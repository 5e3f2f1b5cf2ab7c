//! The recorder: interpreter events turned into events and variable changes
//! in a trace, whichever backend delivers them.
//!
//! A [`Backend`] — `sys.monitoring` on 3.12+ (`monitoring.rs`), the C trace
//! hook on 3.11 (`tracehook.rs`) — translates what CPython reports into
//! [`Hook`]s and hands each to [`Recorder::dispatch`] with the code object,
//! the interpreter frame it runs in, and the event's argument. Everything
//! after that is shared: scope decided once per code object, frame stacks
//! per thread, exception identities, variable diffs, the event batch.
//!
//! Every callback holds the GIL; the state sits behind one lock that is
//! never contended while the GIL is held (the flusher thread takes it only
//! when it is free, see `spinlock.rs`). Events go into a [`RowBatch`] (a
//! row per event; the writer turns rows into columns on its own thread)
//! handed to the format crate's background writer every 65,536 events or
//! 100 ms, whichever comes first. Nothing here keeps a reference to a frame, a local or an argument
//! after the callback returns: values are stored as safe reprs. Any failure
//! (a full disk, a bug) stops recording with one warning on stderr; the
//! program runs on and never sees an exception or a panic from here.

use std::path::PathBuf;
use std::sync::Arc;

use chronolog_format::{
    Checkpoint, CodeInfo, Event, EventKind, HeaderInfo, RowBatch, ThreadMeta, TraceWriter,
    WriterOptions,
};
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::clock::Clock;
use crate::frames::{InterpreterFrame, Layout, SlotKind};
use crate::locals::{NamespaceShadow, RecentValues, Shadow, VarSink, diff_namespace};
use crate::names::Names;
use crate::purity::{CallWindow, Compared, Opcodes, PureLines, PureStep};
use crate::repr::{MessageSource, ReprOptions, ReprScratch};
use crate::scope::Scope;
use crate::spinlock::{SpinGuard, SpinLock};
use crate::weak::Weak;

/// Events per batch handed to the writer.
const BATCH_EVENTS: usize = 1 << 16;
/// Suspended generators a checkpoint describes at most.
const MAX_CHECKPOINT_SUSPENDED: usize = 1024;
/// Finished frames' shadow vectors kept for reuse at most.
const MAX_SPARE_LOCALS: usize = 256;
/// Out-of-scope code objects remembered at most (see `register_code`).
const MAX_OUT_OF_SCOPE_CODES: usize = 1 << 16;
/// Exception identities remembered at most (see [`Recording::exception_id`]).
const MAX_TRACKED_EXCEPTIONS: usize = 1 << 16;
/// Longest time events wait in memory before reaching the writer.
const FLUSH_INTERVAL_NS: u64 = 100_000_000;

/// A way of getting events out of CPython.
pub(crate) trait Backend: Send + Sync {
    /// What the trace's header calls it.
    fn name(&self) -> &'static str;
    /// Starts delivering events to `recorder`, in every thread.
    fn install(&self, recorder: &Bound<'_, Recorder>) -> PyResult<()>;
    /// Turns on the per-code events of a code object found in scope.
    fn enable(&self, code: &Bound<'_, PyAny>) -> PyResult<()>;
    /// Stops delivering events; `enabled` are the codes [`Backend::enable`] saw.
    fn remove(&self, py: Python<'_>, enabled: &[Py<PyAny>]) -> PyResult<()>;
}

/// What to record, from `chronolog.record(...)` / `chronolog record`.
#[derive(Debug)]
struct Options {
    scope: Scope,
    vars: bool,
    lines: bool,
    repr: ReprOptions,
}

/// A code object in scope.
#[derive(Debug)]
struct CodeState {
    id: u32,
    first_line: u32,
    /// `co_flags`.
    flags: u32,
}

impl CodeState {
    /// A module or class body: its variables live in a namespace dict
    /// (functions have `CO_NEWLOCALS`).
    fn is_namespace(&self) -> bool {
        self.flags & 0x0002 == 0
    }
}

/// The recorder's view of one code object (by address; the weak reference
/// tells when the address means another code object).
#[derive(Debug)]
struct CodeEntry {
    object: Weak,
    state: Option<CodeState>,
    /// Its per-code events are on (or it needs none).
    enabled: bool,
}

#[derive(Debug)]
struct FrameState {
    frame_id: u64,
    /// Address of the interpreter frame (stable across a generator's yields).
    frame: usize,
    /// Address of its code object (alive while the frame is).
    code: usize,
    code_id: u32,
    /// Line of the last `line` event (the first line before any).
    line: u32,
    locals: Vec<Shadow>,
    /// The pure line this frame's last `line` event started, whose locals
    /// let it run alone (see `purity.rs`): at the next `line` or return,
    /// only the locals it stores or changes, or that may reach what it
    /// changes, are compared.
    pure_line: Option<PureStep>,
    /// For module and class bodies: their namespace's variables.
    namespace: Option<Box<NamespaceShadow>>,
    /// The calls of its pure line under way, when it makes any.
    calls: CallWindow,
    /// Called by a pure line of the frame below, which observes this
    /// frame's events (see `CallWindow`).
    #[cfg(Py_3_12)]
    observed_by_caller: bool,
    /// 3.11: the exception pending in the frame (see `tracehook.rs`).
    #[cfg(not(Py_3_12))]
    pub(crate) pending: Option<Pending>,
}

impl FrameState {
    /// Compares this frame's variables with their last recorded state and
    /// records what changed into `sink`.
    ///
    /// # Safety
    /// GIL held; `frame` the live interpreter frame this state describes.
    unsafe fn diff_vars(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        frame: InterpreterFrame,
        sink: &mut VarSink<'_>,
        code_slots: &[Box<[(u32, SlotKind)]>],
        only: Option<Compared<'_>>,
    ) {
        if let Some(namespace) = self.namespace.as_mut() {
            // SAFETY: GIL held; the mapping is borrowed from the live frame.
            unsafe { diff_namespace(py, sink, namespace, layout.locals(frame)) };
            return;
        }
        let slots = code_slots
            .get(self.code_id as usize)
            .map_or(&[][..], |slots| &slots[..]);
        if self.locals.len() < slots.len() {
            self.locals.resize_with(slots.len(), Shadow::default);
        }
        if let Some(only) = only {
            let mut observe = |slot: usize, shadow: &mut Shadow| {
                if let Some(&(name, kind)) = slots.get(slot) {
                    // SAFETY: as below.
                    unsafe { sink.observe(py, shadow, layout.slot(frame, slot, kind), name) };
                }
            };
            if only.changed == 0 {
                for &slot in only.slots {
                    if let Some(shadow) = self.locals.get_mut(usize::from(slot)) {
                        observe(usize::from(slot), shadow);
                    }
                }
            } else {
                // Also the values that may hold a changed list within what
                // they show; in slot order, as every local is compared.
                let mut listed = only.slots.iter().peekable();
                for (slot, shadow) in self.locals.iter_mut().enumerate() {
                    let is_listed = listed.next_if(|&&s| usize::from(s) == slot).is_some();
                    if is_listed || shadow.may_reach(only.changed) {
                        observe(slot, shadow);
                    }
                }
            }
            return;
        }
        // (Zipped: no bounds check per local.)
        let shadows = self.locals.iter_mut();
        for (slot, (&(name, kind), shadow)) in slots.iter().zip(shadows).enumerate() {
            // SAFETY: slot < the code's number of local slots; GIL held; the
            // value is borrowed from the live frame.
            unsafe { sink.observe(py, shadow, layout.slot(frame, slot, kind), name) };
        }
    }
}

/// What the event `seq` after `step` (a pure line of code `code_id`)
/// compares; `None`: every local.
#[inline(always)]
fn compared_after(
    pure_lines: &[Option<PureLines>],
    code_id: u32,
    step: Option<PureStep>,
    (calls, seq): (CallWindow, u64),
) -> Option<Compared<'_>> {
    let lines = pure_lines.get(code_id as usize)?.as_ref()?;
    lines.compared(step?, calls, seq)
}

/// An exception seen in a frame and not yet unwound (3.11, which reports
/// neither handling nor re-raising: both are inferred from it).
#[cfg(not(Py_3_12))]
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    exc_id: u64,
    type_name: u32,
    message: String,
    /// A line of the frame ran after the exception.
    pub(crate) handled: bool,
}

#[derive(Debug)]
struct ThreadState {
    id: u32,
    stack: Vec<FrameState>,
    /// Identity of the exception that last left a frame of this thread: a
    /// `raise` of it in the caller is its propagation, not a new raise.
    unwound_exception: u64,
}

impl ThreadState {
    /// An event of the top frame, called by a pure line of the frame below
    /// (see `CallWindow`), observed: a pure line changing the lists
    /// `changed`, or a plain return.
    #[cfg(Py_3_12)]
    #[inline(never)]
    fn observe_callee(&mut self, changed: u64) {
        if let [.., caller, _] = &mut self.stack[..]
            && let Some(waiting) = caller.pure_line.as_mut()
        {
            waiting.join(changed);
            caller.calls.observe(false);
        }
    }
}

/// The recorded threads by key (see `thread_key.rs`), with the last one
/// looked up remembered: consecutive events nearly always come from the same
/// thread, and an event looks its thread up several times.
#[derive(Debug, Default)]
struct Threads {
    states: Vec<ThreadState>,
    index: FxHashMap<u64, usize>,
    last: std::cell::Cell<Option<(u64, usize)>>,
    /// Slots of `states` whose thread ended, for the next new thread.
    free: Vec<usize>,
}

impl Threads {
    fn slot(&self, ident: u64) -> Option<usize> {
        if let Some((last, slot)) = self.last.get()
            && last == ident
        {
            return Some(slot);
        }
        let slot = *self.index.get(&ident)?;
        self.last.set(Some((ident, slot)));
        Some(slot)
    }

    /// The slot of the thread of the last lookup, while it is recorded.
    #[inline]
    fn last_slot(&self) -> Option<usize> {
        self.last.get().map(|(_, slot)| slot)
    }

    fn get(&self, ident: &u64) -> Option<&ThreadState> {
        self.slot(*ident).map(|slot| &self.states[slot])
    }

    fn get_mut(&mut self, ident: &u64) -> Option<&mut ThreadState> {
        self.slot(*ident).map(|slot| &mut self.states[slot])
    }

    fn contains_key(&self, ident: &u64) -> bool {
        self.slot(*ident).is_some()
    }

    fn insert(&mut self, ident: u64, state: ThreadState) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.states[slot] = state;
                slot
            }
            None => {
                self.states.push(state);
                self.states.len() - 1
            }
        };
        self.index.insert(ident, slot);
    }

    /// Forgets an ended thread (its slot is reused by the next new one).
    fn remove(&mut self, ident: u64) {
        if let Some(slot) = self.index.remove(&ident) {
            self.last.set(None);
            self.states[slot].stack = Vec::new();
            self.free.push(slot);
        }
    }
}

/// Everything a recording holds while it runs.
#[derive(Debug)]
struct Recording {
    writer: TraceWriter,
    options: Options,
    /// The events since the last hand-over, with their variable changes.
    rows: RowBatch,
    clock: Clock,
    last_flush_ns: u64,
    seq: u64,
    next_frame: u64,
    next_exception: u64,
    names: Names,
    codes: FxHashMap<usize, CodeEntry>,
    /// Entries of `codes` out of scope.
    out_of_scope_codes: usize,
    /// Local slots (name string id, how to read it) of each code in scope,
    /// by code id.
    code_slots: Vec<Box<[(u32, SlotKind)]>>,
    /// The pure lines of each code in scope, by code id (see `purity.rs`).
    pure_lines: Vec<Option<PureLines>>,
    /// The instruction set pure lines are found with; `None` when variables
    /// or lines are not recorded (or `dis` could not tell).
    opcodes: Option<Opcodes>,
    threads: Threads,
    /// Generator and coroutine frames between a yield and their resumption.
    suspended: FxHashMap<usize, FrameState>,
    /// Exception object address -> its identity, while it propagates.
    exceptions: FxHashMap<usize, u64>,
    sources: FxHashSet<u32>,
    /// (code id, bytecode offset) -> line, for events that carry an offset.
    lines: FxHashMap<(u32, i32), u32>,
    scratch: ReprScratch,
    /// Value refs of the batch's fixed values (see `locals.rs`).
    recent_values: RecentValues,
    /// Shadows of finished frames, for new ones (see [`Recording::recycle`]).
    spare_locals: Vec<Vec<Shadow>>,
}

/// What an event of the top frame carries (see [`Recording::top_event`]):
/// a value (its value ref and type name) and, for an exception, its
/// identity and that of the exception it was raised handling.
#[derive(Clone, Copy, Debug, Default)]
struct Carried {
    value: (u32, u32),
    exception: (u64, u64),
}

/// Where in the code a callback fired: `LINE` gives the line, the other
/// events a bytecode offset (in bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Site {
    Line(u32),
    Offset(i32),
    /// A jump backwards (3.12+ `JUMP`), between these bytecode offsets.
    #[cfg_attr(
        not(Py_3_12),
        allow(dead_code, reason = "3.11 reports such lines itself")
    )]
    Backward {
        from: i32,
        to: i32,
    },
}

/// Which event a backend reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    /// A jump backwards: a line event when it stays on its line (see `handle`).
    #[cfg_attr(
        not(Py_3_12),
        allow(dead_code, reason = "3.11 reports such lines itself")
    )]
    Jump,
    Start,
    Resume,
    #[cfg_attr(
        not(Py_3_12),
        allow(dead_code, reason = "3.11 reports throw() as a resume")
    )]
    Throw,
    Line,
    Return,
    Yield,
    Raise,
    #[cfg_attr(
        not(Py_3_12),
        allow(dead_code, reason = "3.11 infers re-raises in `handle`")
    )]
    Reraise,
    Handled,
    Unwind,
}

/// What a callback tells the backend, or what `dispatch` must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ignore,
    /// Out-of-scope code: the backend stops reporting its per-code events.
    Disable,
    /// A code object just found in scope: enable its per-code events.
    Enable,
    /// The event came from a thread not seen yet: name it, then retry.
    NeedThread(u64),
}

/// The recorder behind one recording. See the module documentation.
#[pyclass(module = "chronolog._native", frozen)]
pub(crate) struct Recorder {
    state: Arc<SpinLock<Option<Recording>>>,
    pub(crate) layout: Layout,
    pub(crate) backend: Box<dyn Backend>,
    /// Line events are recorded (not `--no-lines`).
    #[cfg_attr(Py_3_12, allow(dead_code, reason = "3.12+ never asks for them then"))]
    pub(crate) lines: bool,
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
    /// (key, value) facts; `on_failure(message)` is called once if
    /// recording has to stop. Nothing is recorded before [`Recorder::install`].
    #[new]
    #[pyo3(signature = (path, header, *, include, exclude, stdlib, library_dirs, own_paths, vars, lines, max_repr, unsafe_repr, redact, on_failure, thread_info))]
    #[allow(
        clippy::too_many_arguments,
        reason = "mirrors the keyword arguments of the Python API"
    )]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        mut header: Vec<(String, String)>,
        include: Vec<String>,
        exclude: Vec<String>,
        stdlib: bool,
        library_dirs: Vec<String>,
        own_paths: Vec<String>,
        vars: bool,
        lines: bool,
        max_repr: usize,
        unsafe_repr: bool,
        redact: Vec<String>,
        on_failure: Py<PyAny>,
        thread_info: Py<PyAny>,
    ) -> PyResult<Recorder> {
        let layout = Layout::detect().map_err(runtime)?;
        // SAFETY: GIL held (a method called from Python).
        unsafe { crate::repr::check_int_layout() }.map_err(runtime)?;
        #[cfg(Py_3_12)]
        let backend: Box<dyn Backend> = Box::new(crate::monitoring::Monitoring::new(py, lines)?);
        #[cfg(not(Py_3_12))]
        let backend: Box<dyn Backend> = Box::new(crate::tracehook::TraceHook);
        header.push(("backend".into(), backend.name().into()));
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
        // Pure lines only matter when variables are compared at lines.
        let opcodes = if vars && lines {
            crate::purity::watch_gc(py)?;
            Some(Opcodes::load(py)?)
        } else {
            None
        };
        let recording = Recording {
            writer,
            options: Options {
                scope: Scope {
                    include,
                    exclude,
                    stdlib,
                    library_dirs,
                    own_paths,
                },
                vars,
                lines,
                repr: ReprOptions {
                    max_len: max_repr,
                    user_code: unsafe_repr,
                },
            },
            rows: RowBatch::with_capacity(BATCH_EVENTS, BATCH_EVENTS / 2),
            clock: Clock::new(),
            last_flush_ns: 0,
            seq: 0,
            next_frame: 1,
            next_exception: 1,
            names: Names::redacting(&redact),
            codes: FxHashMap::default(),
            out_of_scope_codes: 0,
            code_slots: Vec::new(),
            pure_lines: Vec::new(),
            opcodes,
            threads: Threads::default(),
            suspended: FxHashMap::default(),
            exceptions: FxHashMap::default(),
            sources: FxHashSet::default(),
            lines: FxHashMap::default(),
            scratch: ReprScratch::new(),
            recent_values: RecentValues::default(),
            spare_locals: Vec::new(),
        };
        Ok(Recorder {
            state: start_flusher(Arc::new(SpinLock::new(Some(recording)))),
            layout,
            backend,
            lines,
            on_failure,
            thread_info,
            path,
        })
    }

    /// Starts recording: events flow from now on, in every thread,
    /// including the rest of the functions already running in this one
    /// (the block of `with chronolog.record():`).
    fn install(slf: &Bound<'_, Recorder>) -> PyResult<()> {
        let recorder = slf.get();
        recorder.backend.install(slf)?;
        #[cfg(Py_3_12)]
        recorder.enable_running_code(slf.py())?;
        Ok(())
    }

    /// As a trace function (3.11): puts the recorder's C trace hook back in
    /// the calling thread. New threads get it this way (`threading.settrace`),
    /// and so does code that saved `sys.gettrace()` and sets it again.
    fn __call__(
        slf: &Bound<'_, Recorder>,
        frame: &Bound<'_, PyAny>,
        event: &str,
        arg: &Bound<'_, PyAny>,
    ) -> Option<Py<PyAny>> {
        #[cfg(not(Py_3_12))]
        crate::tracehook::adopt_thread(slf, frame, event, arg);
        #[cfg(Py_3_12)]
        let _ = (slf, frame, event, arg);
        None
    }

    /// Adds a key/value fact to the trace (exit status, ...).
    fn add_meta(&self, py: Python<'_>, key: &str, value: &str) -> PyResult<()> {
        if let Some(recording) = self.lock_state(py)?.as_mut() {
            recording.writer.add_meta(key, value);
        }
        Ok(())
    }

    /// Forgets the recording without touching its file: for a child process
    /// after `fork()` (and only there), where the writer and flusher threads
    /// do not exist any more (the parent completes the file). The child may
    /// record on in a new file.
    fn abandon(&self, py: Python<'_>) -> PyResult<()> {
        // SAFETY: called in the child right after fork(): no other thread,
        // and the forking thread holds no guard (it runs Python code here).
        unsafe { self.state.reset_after_fork() };
        let recording = self.lock_state(py)?.take();
        if let Some(recording) = recording {
            let result = self.backend.remove(py, &recording.enabled_codes(py));
            // Dropping it would wait for a writer thread that fork() did not copy.
            std::mem::forget(recording);
            result?;
        }
        Ok(())
    }

    /// True while the recorder still records (false after stop or failure).
    #[getter]
    fn active(&self, py: Python<'_>) -> bool {
        self.is_active(py)
    }

    /// Stops the events, writes what is buffered, the footer, and closes
    /// the trace. Returns the numbers written; None if recording had
    /// already stopped.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let recording = self.lock_state(py)?.take();
        let Some(mut recording) = recording else {
            // Stopped by a failure: the garbage collections still counted.
            crate::purity::unwatch_gc(py)?;
            return Ok(None);
        };
        let removed = self.backend.remove(py, &recording.enabled_codes(py));
        let unwatched = crate::purity::unwatch_gc(py);
        let rows = std::mem::take(&mut recording.rows);
        let summary = py
            .detach(move || {
                recording.writer.write_rows(rows)?;
                recording.writer.finish()
            })
            .map_err(runtime)?;
        removed?;
        unwatched?;
        let d = PyDict::new(py);
        d.set_item("path", &self.path)?;
        d.set_item("bytes", summary.bytes)?;
        d.set_item("events", summary.events)?;
        d.set_item("var_changes", summary.vars)?;
        Ok(Some(d))
    }
}

impl Recorder {
    /// Runs one event: never raises, never panics into Python.
    ///
    /// No Python code runs while the state is locked: a Python call can let
    /// another thread take the GIL, and that thread's callback would then
    /// wait for the lock while holding the GIL. Calls into Python (a new
    /// thread's name, enabling a code object's events) happen between locks.
    ///
    /// # Safety
    /// GIL held; `code` a live code object, `frame` null or the live
    /// interpreter frame running it, `arg` null or a live object.
    pub(crate) unsafe fn dispatch(
        &self,
        py: Python<'_>,
        hook: Hook,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        arg: *mut ffi::PyObject,
        site: Site,
    ) -> Verdict {
        let report = Report {
            hook,
            code,
            frame,
            arg,
            site,
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let layout = &self.layout;
            // SAFETY: forwarded from the caller.
            let mut verdict =
                self.with_recording(py, |r| unsafe { r.handle(py, layout, &report) })?;
            if let Verdict::NeedThread(ident) = verdict {
                let (name, native_id) = self
                    .thread_info
                    .bind(py)
                    .call0()
                    .and_then(|info| info.extract::<(String, u64)>())
                    .unwrap_or_else(|_| (format!("thread-{ident}"), 0));
                verdict = self.with_recording(py, |r| {
                    r.add_thread(ident, name, native_id);
                    // SAFETY: as above.
                    unsafe { r.handle(py, layout, &report) }
                })?;
            }
            if let Verdict::Enable = verdict {
                // SAFETY: GIL held; `code` is alive for the call.
                let code = unsafe { Bound::from_borrowed_ptr(py, code) };
                self.backend.enable(&code).map_err(|e| e.to_string())?;
                verdict = Verdict::Ignore;
            }
            Ok::<Verdict, String>(verdict)
        }));
        self.settle(py, outcome)
    }

    /// The verdict of a step run under `catch_unwind`: an error or a panic
    /// stops recording (see [`Recorder::fail`]).
    #[inline]
    fn settle(
        &self,
        py: Python<'_>,
        outcome: std::thread::Result<Result<Verdict, String>>,
    ) -> Verdict {
        match outcome {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(message)) => self.fail(py, &message),
            Err(_) => self.fail(py, "internal error (a bug in chronolog)"),
        }
    }

    /// A `line` event of the frame on top of its thread's stack, recorded
    /// without the general path's steps (see `Recording::line_of_top_frame`);
    /// `None` when [`Recorder::dispatch`] must take it.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`], `frame` not null.
    #[inline]
    pub(crate) unsafe fn line_event(
        &self,
        py: Python<'_>,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        line: u32,
    ) -> Option<Verdict> {
        // SAFETY: forwarded from the caller.
        self.quick(py, |r, layout| unsafe {
            r.line_of_top_frame(py, layout, code, frame, line)
        })
    }

    /// A backward jump (`from` and `to`, offsets) in the frame on top of
    /// its thread's stack: a `line` event when it stays on its line (see
    /// `Recording::handle`); `None` when [`Recorder::dispatch`] must take
    /// it.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`], `frame` not null.
    #[cfg(Py_3_12)]
    #[inline]
    pub(crate) unsafe fn jump_event(
        &self,
        py: Python<'_>,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        from: i32,
        to: i32,
    ) -> Option<Verdict> {
        // SAFETY: forwarded from the caller.
        self.quick(py, |r, layout| unsafe {
            let slot = r.top_slot(code, frame)?;
            let code_id = r.threads.states[slot].stack.last()?.code_id;
            match r.line_jumped_within(code, code_id, from, to) {
                Some(line) => r.line_of_top_frame(py, layout, code, frame, line),
                None => Some(Ok(Verdict::Disable)),
            }
        })
    }

    /// A `raise` in the frame on top of its thread's stack, recorded
    /// without the general path's steps (see
    /// `Recording::raise_in_top_frame`); `None` when [`Recorder::dispatch`]
    /// must take it.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`], `frame` not null, `exception` alive.
    #[cfg(Py_3_12)]
    #[inline]
    pub(crate) unsafe fn raise_event(
        &self,
        py: Python<'_>,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        exception: *mut ffi::PyObject,
        offset: i32,
    ) -> Option<Verdict> {
        // SAFETY: forwarded from the caller.
        self.quick(py, |r, layout| unsafe {
            r.raise_in_top_frame(py, layout, code, frame, (exception, offset))
        })
    }

    /// A call or (3.12+) resumption (`kind`) of a code object already in
    /// scope, recorded without the general path's steps (see
    /// `Recording::enter_known_code`); `None` when [`Recorder::dispatch`]
    /// must take it.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`], `frame` not null.
    #[inline]
    pub(crate) unsafe fn enter_event(
        &self,
        py: Python<'_>,
        kind: EventKind,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        offset: i32,
    ) -> Option<Verdict> {
        // SAFETY: forwarded from the caller.
        self.quick(py, |r, layout| unsafe {
            r.enter_known_code(py, layout, kind, code, frame, offset)
        })
    }

    /// A return or yield (`kind`) of the frame on top of its thread's
    /// stack, recorded without the general path's steps (see
    /// `Recording::leave_top_frame`); `None` when [`Recorder::dispatch`]
    /// must take it.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`], `frame` not null, `value` alive.
    #[cfg(Py_3_12)]
    #[inline]
    pub(crate) unsafe fn leave_event(
        &self,
        py: Python<'_>,
        kind: EventKind,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        value: *mut ffi::PyObject,
        offset: i32,
    ) -> Option<Verdict> {
        // SAFETY: forwarded from the caller.
        self.quick(py, |r, layout| unsafe {
            r.leave_top_frame(py, layout, kind, code, frame, (value, offset))
        })
    }

    /// Runs one of the recording's fast paths: never raises, never panics
    /// into Python; `None` (nothing done) when it declines or the state is
    /// busy (the flusher hands a batch over: the general path waits).
    #[inline]
    fn quick(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Recording, &Layout) -> Option<Result<Verdict, String>>,
    ) -> Option<Verdict> {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: events hold the GIL, which serialises them.
            let mut state = unsafe { self.state.try_lock_serialised() }?;
            f(state.as_mut()?, &self.layout)
        }));
        match outcome {
            Ok(None) => None,
            Ok(Some(Ok(verdict))) => Some(verdict),
            Ok(Some(Err(message))) => Some(self.settle(py, Ok(Err(message)))),
            Err(panic) => Some(self.settle(py, Err(panic))),
        }
    }

    /// The recording's state, locked. Waiting for it (another thread
    /// renders a value with `--unsafe-repr`, whose Python code may release
    /// the GIL, or the flusher hands a batch over) happens with the GIL
    /// released, so that the holder can go on. Refused inside a user
    /// `__repr__` (the state is locked by this very thread).
    fn lock_state(&self, py: Python<'_>) -> PyResult<SpinGuard<'_, Option<Recording>>> {
        if crate::suspend::here() {
            return Err(PyRuntimeError::new_err(
                "chronolog: the recording cannot be used from inside a __repr__ it called",
            ));
        }
        loop {
            // SAFETY: `py`: the GIL is held, which serialises the callers.
            if let Some(guard) = unsafe { self.state.try_lock_serialised() } {
                return Ok(guard);
            }
            py.detach(|| self.state.wait_until_free());
        }
    }

    /// True while recording.
    pub(crate) fn is_active(&self, py: Python<'_>) -> bool {
        self.lock_state(py).map_or(true, |state| state.is_some())
    }

    /// Turns on the per-code events of the in-scope code running in the
    /// calling thread (the trace hook of 3.11 reports its lines anyway).
    #[cfg(Py_3_12)]
    fn enable_running_code(&self, py: Python<'_>) -> PyResult<()> {
        let mut running = Vec::new();
        // SAFETY: GIL held; walks the calling thread's live frames, which
        // outlive this call.
        unsafe {
            let mut frame = self.layout.current();
            while !frame.is_null() {
                let code = self.layout.code(frame);
                if self.layout.is_python_frame(frame)
                    && !code.is_null()
                    && ffi::PyCode_Check(code) != 0
                {
                    running.push((code, frame));
                }
                frame = self.layout.previous(frame);
            }
        }
        for (code, frame) in running {
            let layout = &self.layout;
            // SAFETY: as above.
            let verdict = self
                .with_recording(py, |r| unsafe { r.adopt_code(py, layout, code, frame) })
                .map_err(runtime)?;
            if verdict == Verdict::Enable {
                // SAFETY: as above.
                let code = unsafe { Bound::from_borrowed_ptr(py, code) };
                self.backend.enable(&code)?;
            }
        }
        Ok(())
    }

    /// Runs `f` on the recording, if it is still active.
    fn with_recording(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Recording) -> Result<Verdict, String>,
    ) -> Result<Verdict, String> {
        // A panic in `f` releases the lock as it unwinds; `dispatch` then
        // stops the recording (no half-updated state is used again).
        let mut state = self.lock_state(py).map_err(|e| e.to_string())?;
        match state.as_mut() {
            Some(recording) => f(recording),
            None => Ok(Verdict::Ignore),
        }
    }

    /// Stops recording after an error: removes the hooks, finishes the file
    /// with what it has, warns once through `on_failure`, and lets the
    /// program run on.
    fn fail(&self, py: Python<'_>, message: &str) -> Verdict {
        let recording = self.lock_state(py).ok().and_then(|mut state| state.take());
        if let Some(mut recording) = recording {
            let removed = self.backend.remove(py, &recording.enabled_codes(py));
            let rows = std::mem::take(&mut recording.rows);
            let _ = recording.writer.write_rows(rows);
            let _ = recording.writer.finish();
            let text = format!(
                "chronolog: recording to {} stopped: {message}",
                self.path.display()
            );
            if let Err(e) = removed.and_then(|()| self.on_failure.bind(py).call1((text,))) {
                e.restore(py);
                // SAFETY: GIL held; drops the error raised by the hook.
                unsafe { ffi::PyErr_Clear() };
            }
        }
        Verdict::Ignore
    }
}

/// One event as a backend reports it.
#[derive(Clone, Copy)]
struct Report {
    hook: Hook,
    code: *mut ffi::PyObject,
    frame: InterpreterFrame,
    arg: *mut ffi::PyObject,
    site: Site,
}

/// Starts the thread that hands buffered events to the writer when the
/// program is idle, so that nothing waits in memory longer than ~100 ms
/// (a killed process loses at most that). It needs the state lock, never the
/// GIL, and ends when the recording does.
fn start_flusher(state: Arc<SpinLock<Option<Recording>>>) -> Arc<SpinLock<Option<Recording>>> {
    let weak = Arc::downgrade(&state);
    let spawned = std::thread::Builder::new()
        .name("chronolog-flush".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(50));
                let Some(state) = weak.upgrade() else { return };
                // Busy means events are flowing: they flush on their own.
                let Some(mut guard) = state.try_lock_unattached() else {
                    continue;
                };
                let Some(recording) = guard.as_mut() else {
                    return;
                };
                let now = recording.clock.exact_ns();
                if !recording.rows.is_empty()
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

/// The [`VarSink`] of a recording for event `index`: a macro, not a
/// method, so that it borrows the recording's fields one by one and the
/// frame being compared (in `threads`) stays borrowed beside it.
macro_rules! sink {
    ($recording:expr, $index:expr, $is_start:expr) => {
        VarSink {
            vars: &mut $recording.rows.vars,
            values: &mut $recording.rows.batch.values,
            scratch: &mut $recording.scratch,
            names: &mut $recording.names,
            writer: &mut $recording.writer,
            repr: $recording.options.repr,
            recent: &mut $recording.recent_values,
            index: $index,
            is_start: $is_start,
        }
    };
}

impl Recording {
    /// # Safety
    /// As [`Recorder::dispatch`].
    unsafe fn handle(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        report: &Report,
    ) -> Result<Verdict, String> {
        let Report {
            hook,
            code,
            frame,
            arg,
            site,
        } = *report;
        let code_key = code as usize;
        let ident = crate::thread_key::current();
        // The events of a frame already on top of the thread's stack (3.12+:
        // only code in scope, already enabled, is pushed there) need no
        // lookup of their code: its lines, returns and yields, and the
        // exceptions raised, handled or unwinding in it.
        #[cfg(Py_3_12)]
        let on_stack = matches!(
            hook,
            Hook::Line
                | Hook::Jump
                | Hook::Return
                | Hook::Yield
                | Hook::Raise
                | Hook::Reraise
                | Hook::Handled
                | Hook::Unwind
        )
        .then(|| self.top_code_id(ident, frame as usize, code_key))
        .flatten();
        #[cfg(not(Py_3_12))]
        let on_stack: Option<u32> = None;
        let (code_state, needs_enable) = match on_stack {
            Some(id) => (Some((id, 0)), false),
            // SAFETY: forwarded.
            None => unsafe { self.code_state(py, layout, code, frame)? },
        };
        let Some((id, flags)) = code_state else {
            // Only per-code events can be disabled; exception events are global.
            return Ok(match hook {
                Hook::Start
                | Hook::Resume
                | Hook::Line
                | Hook::Jump
                | Hook::Return
                | Hook::Yield => Verdict::Disable,
                _ => Verdict::Ignore,
            });
        };
        // A loop that jumps back to the start of the line it is on (a
        // one-line loop or comprehension) runs that line again: a `line`
        // event, as settrace (and so PySnooper) reports it. Other jumps are
        // left to `LINE` and switched off where they are.
        let (hook, site) = match (hook, site) {
            (Hook::Jump, Site::Backward { from, to }) => {
                // SAFETY: forwarded.
                match unsafe { self.line_jumped_within(code, id, from, to) } {
                    Some(line) => (Hook::Line, Site::Line(line)),
                    None => return Ok(Verdict::Disable),
                }
            }
            other => other,
        };
        if frame.is_null() {
            return Ok(Verdict::Ignore);
        }
        if ident == 0 {
            return Ok(Verdict::Ignore);
        }
        if !self.threads.contains_key(&ident) {
            return Ok(Verdict::NeedThread(ident));
        }
        let frame_key = frame as usize;
        // 3.11's trace hook reports a resumption as a call and a yield as a
        // return.
        #[cfg(not(Py_3_12))]
        let hook = match hook {
            Hook::Start if self.suspended.contains_key(&frame_key) => Hook::Resume,
            // SAFETY: forwarded (a live 3.11 frame).
            Hook::Return
                if flags & crate::tracehook::CO_GENERATOR_LIKE != 0
                    && unsafe { crate::tracehook::at_yield(frame) } =>
            {
                Hook::Yield
            }
            other => other,
        };
        #[cfg(Py_3_12)]
        let _ = flags;
        let arg = (!arg.is_null()).then_some(arg);
        let ts = self.clock.now_ns();
        let event = |kind, value, exc_id, is_start| EventSite {
            kind,
            ts,
            code,
            frame,
            value,
            exc_id,
            exc_context: 0,
            is_start,
            site,
        };
        match hook {
            Hook::Start => {
                let state = self.new_frame(frame_key, code_key);
                self.push_frame(ident, state);
                // SAFETY: forwarded.
                unsafe { self.event(py, layout, ident, event(EventKind::Call, None, 0, true)) };
            }
            Hook::Resume | Hook::Throw => {
                let state = match self.suspended.remove(&frame_key) {
                    Some(state) => state,
                    None => self.new_frame(frame_key, code_key),
                };
                self.push_frame(ident, state);
                let (kind, value, exc_id) = if hook == Hook::Resume {
                    (EventKind::Resume, None, 0)
                } else {
                    // SAFETY: forwarded.
                    (EventKind::Throw, arg.map(Value::Object), unsafe {
                        self.exception_id(py, self.unwound_exception(ident), arg, false)
                    })
                };
                // SAFETY: forwarded.
                unsafe { self.event(py, layout, ident, event(kind, value, exc_id, false)) };
            }
            // (A jump reaching here was turned into a line above.)
            Hook::Line | Hook::Jump => {
                self.ensure_top(ident, frame_key, code_key);
                // 3.11: a line of the frame after an exception in it means
                // the exception was handled.
                #[cfg(not(Py_3_12))]
                if self.pending_handled(ident) == Some(false) {
                    let (exc_id, value) = self.pending_exception(ident);
                    let handled = event(EventKind::Handled, value, exc_id, false);
                    // SAFETY: forwarded.
                    unsafe { self.event(py, layout, ident, handled) };
                    self.note_pending(ident, Hook::Handled, exc_id, (0, 0));
                }
                // SAFETY: forwarded.
                unsafe { self.event(py, layout, ident, event(EventKind::Line, None, 0, false)) };
            }
            Hook::Return | Hook::Yield => {
                self.ensure_top(ident, frame_key, code_key);
                let kind = if hook == Hook::Return {
                    EventKind::Return
                } else {
                    EventKind::Yield
                };
                // SAFETY: forwarded.
                let value = arg.map(Value::Object);
                unsafe { self.event(py, layout, ident, event(kind, value, 0, false)) };
                let popped = self.threads.get_mut(&ident).and_then(|t| t.stack.pop());
                match (hook, popped) {
                    (Hook::Yield, Some(state)) => {
                        #[cfg(not(Py_3_12))]
                        let state = FrameState {
                            pending: None,
                            ..state
                        };
                        self.suspended.insert(state.frame, state);
                    }
                    (_, Some(state)) => self.recycle(state),
                    _ => {}
                }
            }
            Hook::Raise | Hook::Reraise | Hook::Handled | Hook::Unwind => {
                self.ensure_top(ident, frame_key, code_key);
                // 3.11: leaving the frame by the exception it had handled
                // means the exception was re-raised.
                #[cfg(not(Py_3_12))]
                if hook == Hook::Unwind
                    && arg.is_none()
                    && self.pending_handled(ident) == Some(true)
                {
                    let (exc_id, value) = self.pending_exception(ident);
                    let reraise = event(EventKind::Reraise, value, exc_id, false);
                    // SAFETY: forwarded.
                    unsafe { self.event(py, layout, ident, reraise) };
                }
                let kind = match hook {
                    Hook::Raise => EventKind::Raise,
                    Hook::Reraise => EventKind::Reraise,
                    Hook::Handled => EventKind::Handled,
                    _ => EventKind::Unwind,
                };
                let (exc_id, value) = match arg {
                    Some(exception) => (
                        // SAFETY: forwarded.
                        unsafe {
                            let unwound = self.unwound_exception(ident);
                            self.exception_id(py, unwound, arg, hook == Hook::Raise)
                        },
                        Some(Value::Object(exception)),
                    ),
                    None => self.pending_exception(ident),
                };
                let exc_context = match arg {
                    // SAFETY: forwarded.
                    Some(exception) if hook == Hook::Raise => unsafe {
                        self.exception_context(py, exception)
                    },
                    _ => 0,
                };
                if hook == Hook::Unwind
                    && let Some(thread) = self.threads.get_mut(&ident)
                {
                    thread.unwound_exception = exc_id;
                }
                let site = EventSite {
                    exc_context,
                    ..event(kind, value, exc_id, false)
                };
                #[cfg_attr(Py_3_12, allow(unused_variables, reason = "3.11 keeps it"))]
                // SAFETY: forwarded.
                let recorded = unsafe { self.event(py, layout, ident, site) };
                #[cfg(not(Py_3_12))]
                self.note_pending(ident, hook, exc_id, recorded);
                if hook == Hook::Unwind
                    && let Some(state) = self.threads.get_mut(&ident).and_then(|t| t.stack.pop())
                {
                    self.suspended.remove(&state.frame);
                    self.recycle(state);
                }
            }
        }
        self.maybe_flush(ts)?;
        Ok(if needs_enable {
            self.mark_enabled(code_key);
            Verdict::Enable
        } else {
            Verdict::Ignore
        })
    }

    /// Registers the code of a frame that was running before recording
    /// started; `Enable` if its per-code events must be turned on.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`].
    #[cfg(Py_3_12)]
    unsafe fn adopt_code(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
    ) -> Result<Verdict, String> {
        // SAFETY: forwarded.
        let (_, needs_enable) = unsafe { self.code_state(py, layout, code, frame)? };
        Ok(if needs_enable {
            self.mark_enabled(code as usize);
            Verdict::Enable
        } else {
            Verdict::Ignore
        })
    }

    /// Whether the exception pending in the thread's top frame (3.11) was
    /// handled; `None` without one.
    #[cfg(not(Py_3_12))]
    fn pending_handled(&self, ident: u64) -> Option<bool> {
        self.threads
            .get(&ident)
            .and_then(|t| t.stack.last())
            .and_then(|top| top.pending.as_ref())
            .map(|pending| pending.handled)
    }

    /// Identity and rendering of the exception pending in the thread's top
    /// frame, for events reported without the exception (3.11).
    fn pending_exception(&self, ident: u64) -> (u64, Option<Value>) {
        #[cfg(not(Py_3_12))]
        if let Some(pending) = self
            .threads
            .get(&ident)
            .and_then(|t| t.stack.last())
            .and_then(|top| top.pending.as_ref())
        {
            return (
                pending.exc_id,
                Some(Value::Rendered {
                    type_name: pending.type_name,
                    text: pending.message.clone(),
                }),
            );
        }
        let _ = ident;
        (0, None)
    }

    /// Keeps what 3.11's inferred events need of the exception an event is
    /// about: its identity and rendering, never the object (it may be freed
    /// before the inference, by a handler that runs no line of its own).
    #[cfg(not(Py_3_12))]
    fn note_pending(
        &mut self,
        ident: u64,
        hook: Hook,
        exc_id: u64,
        (message_ref, type_name): (u32, u32),
    ) {
        let pending = match hook {
            // The message and type the raise event recorded.
            Hook::Raise if message_ref != 0 => Some(Pending {
                exc_id,
                type_name,
                message: self
                    .rows
                    .batch
                    .values
                    .rendered(message_ref)
                    .unwrap_or_default()
                    .into_owned(),
                handled: false,
            }),
            Hook::Handled => self
                .top_mut(ident)
                .and_then(|top| top.pending.take())
                .map(|p| Pending { handled: true, ..p }),
            _ => return,
        };
        if let Some(top) = self.top_mut(ident) {
            top.pending = pending;
        }
    }

    /// The innermost recorded frame of thread `ident`.
    fn top_mut(&mut self, ident: u64) -> Option<&mut FrameState> {
        self.threads
            .get_mut(&ident)
            .and_then(|t| t.stack.last_mut())
    }

    /// The code objects whose per-code events are on.
    fn enabled_codes(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        self.codes
            .values()
            .filter(|entry| entry.state.is_some() && entry.enabled)
            .filter_map(|entry| entry.object.get())
            // SAFETY: GIL held; the code object is alive (its weak reference says so).
            .map(|code| unsafe { Bound::from_borrowed_ptr(py, code) }.unbind())
            .collect()
    }

    /// What the recorder knows of `code` — `(id, co_flags)` when in scope,
    /// and whether its per-code events still need turning on — registering
    /// it at its first sight (or when its address now means another code
    /// object). One hash lookup when already known (every event).
    ///
    /// # Safety
    /// As [`Recorder::dispatch`].
    unsafe fn code_state(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
    ) -> Result<(Option<(u32, u32)>, bool), String> {
        let key = code as usize;
        let seen = |entry: &CodeEntry| {
            (
                entry.state.as_ref().map(|s| (s.id, s.flags)),
                !entry.enabled,
            )
        };
        if let Some(entry) = self.codes.get(&key)
            && entry.object.is(key)
        {
            return Ok(seen(entry));
        }
        // SAFETY: forwarded.
        unsafe { self.register_code(py, layout, code, frame)? };
        Ok(self.codes.get(&key).map_or((None, false), seen))
    }

    /// Notes that `code`'s per-code events are on.
    fn mark_enabled(&mut self, code: usize) {
        if let Some(entry) = self.codes.get_mut(&code) {
            entry.enabled = true;
        }
    }

    /// Decides a new code object's scope; for code in scope, defines it in
    /// the trace and stores its file's source once.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`].
    unsafe fn register_code(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        code_ptr: *mut ffi::PyObject,
        frame: InterpreterFrame,
    ) -> Result<(), String> {
        // SAFETY: GIL held; the code object is alive for the call.
        let code = unsafe { Bound::from_borrowed_ptr(py, code_ptr) };
        let attr = |name: &str| -> Result<Bound<'_, PyAny>, String> {
            code.getattr(name).map_err(|e| e.to_string())
        };
        let file: String = attr("co_filename")?
            .extract()
            .map_err(|e: PyErr| e.to_string())?;
        let module = (!frame.is_null())
            .then(|| {
                // SAFETY: GIL held; the globals dict and its item are borrowed.
                unsafe {
                    let globals = layout.globals(frame);
                    if globals.is_null() || ffi::PyDict_Check(globals) == 0 {
                        return None;
                    }
                    let name = ffi::PyDict_GetItemString(globals, c"__name__".as_ptr());
                    (!name.is_null() && ffi::PyUnicode_Check(name) != 0)
                        .then(|| Bound::from_borrowed_ptr(py, name).extract::<String>().ok())
                        .flatten()
                }
            })
            .flatten();
        let state = if self.options.scope.contains(&file, module.as_deref()) {
            Some(self.define_code(&code, &file)?)
        } else {
            None
        };
        if state.is_none() {
            self.out_of_scope_codes += 1;
            if self.out_of_scope_codes > MAX_OUT_OF_SCOPE_CODES {
                // Bounded memory for programs that compile code as they go:
                // forgetting an out-of-scope code object is always safe (if
                // it runs again it is looked at again).
                self.codes.retain(|_, entry| entry.state.is_some());
                self.out_of_scope_codes = 1;
            }
        }
        self.codes.insert(
            code_ptr as usize,
            CodeEntry {
                object: Weak::new(&code),
                enabled: state.is_none(),
                state,
            },
        );
        Ok(())
    }

    /// Defines an in-scope code object in the trace (its file's source once).
    fn define_code(&mut self, code: &Bound<'_, PyAny>, file: &str) -> Result<CodeState, String> {
        fn get<'py, T: for<'a> FromPyObject<'a, 'py>>(
            code: &Bound<'py, PyAny>,
            name: &str,
        ) -> Result<T, String> {
            code.getattr(name)
                .and_then(|v| v.extract::<T>().map_err(Into::into))
                .map_err(|e: PyErr| e.to_string())
        }
        let file_id = self.intern(file);
        let first_line: u32 = get(code, "co_firstlineno")?;
        let code_info = CodeInfo {
            file: file_id,
            qualname: self.intern(&get::<String>(code, "co_qualname")?),
            name: self.intern(&get::<String>(code, "co_name")?),
            first_line,
        };
        let id = self.writer.define_code(code_info);
        let varnames: Vec<String> = get(code, "co_varnames")?;
        let cellvars: Vec<String> = get(code, "co_cellvars")?;
        let freevars: Vec<String> = get(code, "co_freevars")?;
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
        // Code ids count from 0: the slots of code `id` are at index `id`.
        let pure_lines = match &self.opcodes {
            Some(opcodes) => {
                PureLines::of(code, opcodes, slots.len()).map_err(|e| e.to_string())?
            }
            None => None,
        };
        self.pure_lines.push(pure_lines);
        self.code_slots.push(slots.into());
        if self.sources.insert(file_id)
            && let Ok(text) = std::fs::read_to_string(file)
        {
            self.writer.add_source(file_id, &text);
        }
        Ok(CodeState {
            id,
            first_line,
            flags: get(code, "co_flags")?,
        })
    }

    /// Starts recording the calling thread (key `ident`, see
    /// `thread_key.rs`), first forgetting the threads that ended.
    fn add_thread(&mut self, ident: u64, name: String, native_id: u64) {
        for ended in crate::thread_key::take_ended() {
            self.threads.remove(ended);
        }
        // SAFETY: a plain number (pthread_self), as `threading` shows it.
        #[allow(
            clippy::useless_conversion,
            reason = "c_ulong is 32 bits on some platforms"
        )]
        let python_ident = u64::from(unsafe { ffi::PyThread_get_thread_ident() });
        let id = self.writer.define_thread(ThreadMeta {
            name,
            native_id,
            ident: python_ident,
        });
        crate::thread_key::mark_known();
        self.threads.insert(
            ident,
            ThreadState {
                id,
                stack: Vec::new(),
                unwound_exception: 0,
            },
        );
    }

    fn intern(&mut self, text: &str) -> u32 {
        self.names.string(&mut self.writer, text)
    }

    /// String id + 1 of the name of `value`'s type.
    fn type_name(&mut self, value: &Bound<'_, PyAny>) -> u32 {
        self.names.type_of(&mut self.writer, value)
    }

    /// The line of bytecode `offset` in `code` (trace code id `code_id`),
    /// from a cache (the line table is scanned once per code location).
    ///
    /// # Safety
    /// GIL held; `code` a live code object.
    unsafe fn line_at(&mut self, code: *mut ffi::PyObject, code_id: u32, offset: i32) -> u32 {
        let key = (code_id, offset);
        if let Some(&line) = self.lines.get(&key) {
            return line;
        }
        // SAFETY: forwarded.
        let line = unsafe { ffi::PyCode_Addr2Line(code.cast(), offset) }.max(0) as u32;
        self.lines.insert(key, line);
        line
    }

    /// The line a backward jump from `from` to `to` stays on, which runs
    /// again (a `line` event, as settrace reports it); `None` for a jump to
    /// another line, whose `LINE` event follows (the jump is turned off).
    ///
    /// # Safety
    /// As [`Recording::line_at`].
    unsafe fn line_jumped_within(
        &mut self,
        code: *mut ffi::PyObject,
        code_id: u32,
        from: i32,
        to: i32,
    ) -> Option<u32> {
        // SAFETY: forwarded.
        let (from_line, to_line) = unsafe {
            (
                self.line_at(code, code_id, from),
                self.line_at(code, code_id, to),
            )
        };
        (from_line == to_line).then_some(to_line)
    }

    fn new_frame(&mut self, frame: usize, code: usize) -> FrameState {
        let frame_id = self.next_frame;
        self.next_frame += 1;
        let state = self.codes.get(&code).and_then(|c| c.state.as_ref());
        FrameState {
            frame_id,
            frame,
            code,
            code_id: state.map_or(0, |s| s.id),
            line: state.map_or(0, |s| s.first_line),
            locals: self.spare_locals.pop().unwrap_or_default(),
            pure_line: None,
            calls: CallWindow::default(),
            namespace: state.filter(|s| s.is_namespace()).map(|_| Box::default()),
            #[cfg(Py_3_12)]
            observed_by_caller: false,
            #[cfg(not(Py_3_12))]
            pending: None,
        }
    }

    /// Keeps a finished frame's shadows (and their text buffers) for the
    /// next frames.
    fn recycle(&mut self, state: FrameState) {
        let mut locals = state.locals;
        if self.spare_locals.len() < MAX_SPARE_LOCALS && locals.capacity() > 0 {
            locals.iter_mut().for_each(Shadow::unbind);
            self.spare_locals.push(locals);
        }
    }

    fn push_frame(&mut self, ident: u64, state: FrameState) {
        if let Some(thread) = self.threads.get_mut(&ident) {
            thread.stack.push(state);
        }
    }

    /// The code id of the thread's top frame, if that frame is `frame`
    /// running `code`.
    #[cfg(Py_3_12)]
    fn top_code_id(&self, ident: u64, frame: usize, code: usize) -> Option<u32> {
        let top = self.threads.get(&ident)?.stack.last()?;
        (top.frame == frame && top.code == code).then_some(top.code_id)
    }

    /// Makes sure the thread's top frame is `frame` (it may have started
    /// before recording, or its callers may have unwound without events).
    fn ensure_top(&mut self, ident: u64, frame: usize, code: usize) {
        let Some(thread) = self.threads.get_mut(&ident) else {
            return;
        };
        if thread.stack.last().is_some_and(|top| top.frame == frame) {
            return;
        }
        if let Some(position) = thread.stack.iter().rposition(|f| f.frame == frame) {
            thread.stack.truncate(position + 1);
            return;
        }
        let state = match self.suspended.remove(&frame) {
            Some(state) => state,
            None => self.new_frame(frame, code),
        };
        self.push_frame(ident, state);
    }

    /// Identity of the recorded exception that `exception` was raised while
    /// handling (its `__context__`, else its `__cause__`); 0 when there is
    /// none or it was never recorded.
    ///
    /// # Safety
    /// GIL held; `exception` alive.
    unsafe fn exception_context(&self, py: Python<'_>, exception: *mut ffi::PyObject) -> u64 {
        // SAFETY: GIL held; both calls return a new reference or null and
        // read the exception's fields without running any Python code.
        let linked = unsafe {
            let context = ffi::PyException_GetContext(exception);
            if context.is_null() {
                ffi::PyException_GetCause(exception)
            } else {
                context
            }
        };
        if linked.is_null() {
            return 0;
        }
        // SAFETY: a new reference, released when dropped.
        let linked = unsafe { Bound::from_owned_ptr(py, linked) };
        self.exceptions
            .get(&(linked.as_ptr() as usize))
            .copied()
            .unwrap_or(0)
    }

    /// The identity of the exception that last left a frame of the thread
    /// `ident` (0: none).
    fn unwound_exception(&self, ident: u64) -> u64 {
        self.threads.get(&ident).map_or(0, |t| t.unwound_exception)
    }

    /// The value ref and type name of an exception: its message.
    ///
    /// # Safety
    /// GIL held; `exception` alive.
    unsafe fn exception_value_ref(
        &mut self,
        py: Python<'_>,
        exception: *mut ffi::PyObject,
    ) -> (u32, u32) {
        // SAFETY: forwarded.
        let value = unsafe { Bound::from_borrowed_ptr(py, exception) };
        let type_name = self.type_name(&value);
        let source = crate::repr::message_source(&value);
        if let MessageSource::Repr(shown) = &source
            && !self.options.repr.user_code
        {
            // The safe repr of a value, as values are recorded: a
            // generator's `StopIteration(value)` carries what the frame
            // above just returned, whose text is reused.
            // SAFETY: GIL held; the exception keeps `shown` alive.
            let (value_ref, _) = unsafe { sink!(self, 0, false).value_ref(py, shown.as_ptr()) };
            return (value_ref, type_name);
        }
        self.scratch.text.clear();
        source.render(self.options.repr.max_len, &mut self.scratch.text);
        (self.rows.batch.values.push(&self.scratch.text), type_name)
    }

    /// Identity of the exception `arg`: a new one at its first raise (when
    /// its traceback holds only the raising frame), the same one as it
    /// propagates, is re-raised or handled. `unwound`: the identity of the
    /// exception that last left a frame of the thread (0: none).
    ///
    /// # Safety
    /// GIL held; `arg` alive.
    unsafe fn exception_id(
        &mut self,
        py: Python<'_>,
        unwound: u64,
        arg: Option<*mut ffi::PyObject>,
        raise: bool,
    ) -> u64 {
        let Some(exc) = arg else { return 0 };
        let key = exc as usize;
        let known = self.exceptions.get(&key).copied();
        // 3.11 attaches the traceback to the exception only when a handler
        // catches it, so a propagating exception can look freshly raised:
        // the thread's last unwound exception tells it apart.
        let propagating = known.is_some_and(|id| id == unwound);
        // SAFETY: forwarded.
        let exception = unsafe { Bound::from_borrowed_ptr(py, exc) };
        let fresh = raise && !propagating && traceback_len(&exception) <= 1;
        if !fresh && let Some(id) = known {
            return id;
        }
        let id = self.next_exception;
        self.next_exception += 1;
        if self.exceptions.len() >= MAX_TRACKED_EXCEPTIONS {
            // Bounded memory: ids of old exceptions are forgotten (a fresh
            // raise never needs them).
            self.exceptions.clear();
        }
        self.exceptions.insert(key, id);
        id
    }

    /// Appends one event of the thread's top frame, with the variable
    /// changes observed at it; the value ref and type name it carries
    /// (`(0, 0)`: none, or no event).
    ///
    /// # Safety
    /// As [`Recorder::dispatch`].
    unsafe fn event(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        ident: u64,
        at: EventSite,
    ) -> (u32, u32) {
        if at.kind == EventKind::Line && !self.options.lines {
            return (0, 0);
        }
        let Some(thread) = self.threads.get_mut(&ident) else {
            return (0, 0);
        };
        // The exception leaving a frame is propagating only into the very
        // next event of the thread (the caller's raise).
        if at.kind != EventKind::Unwind {
            thread.unwound_exception = 0;
        }
        let thread_id = thread.id;
        let depth = thread.stack.len().saturating_sub(1) as u32;
        let Some(top) = thread.stack.last() else {
            return (0, 0);
        };
        let (frame_id, code_id, last_line) = (top.frame_id, top.code_id, top.line);
        let line = match at.site {
            Site::Line(line) => line,
            // The last line event of the frame: where it returns, raises or yields.
            _ if at.kind == EventKind::Call || self.options.lines => last_line,
            // SAFETY: forwarded.
            Site::Offset(offset) | Site::Backward { to: offset, .. } => unsafe {
                self.line_at(at.code, code_id, offset)
            },
        };
        // A pure line's next event: only its stores are to be compared at
        // a return (see `purity.rs`); any other event compares them all.
        let mut pure_line = None;
        if let Some(top) = self.top_mut(ident) {
            top.line = line;
            pure_line = top
                .pure_line
                .take()
                .filter(|_| at.kind == EventKind::Return);
        }
        let (arg_ref, arg_type) = match &at.value {
            // SAFETY: GIL held; `value` is alive for this call.
            Some(Value::Object(value)) if at.exc_id != 0 => unsafe {
                self.exception_value_ref(py, *value)
            },
            // SAFETY: GIL held; `value` is alive for this call.
            Some(Value::Object(value)) => unsafe { sink!(self, 0, false).value_ref(py, *value) },
            Some(Value::Rendered { type_name, text }) => {
                (self.rows.batch.values.push(text), *type_name)
            }
            None => (0, 0),
        };
        let index = self.rows.push_event(Event {
            seq: self.seq,
            ts_ns: at.ts,
            thread: thread_id,
            kind: at.kind as u8,
            frame: frame_id,
            depth,
            code: code_id,
            line,
            arg: arg_ref,
            arg_type,
            exc_id: at.exc_id,
            exc_context: at.exc_context,
        });
        let seq = self.seq;
        self.seq += 1;
        // Locals are compared at every event PySnooper compares them at
        // (settrace's call, line, return and exception): an assignment
        // followed by a raise is seen at the raise, one in a `finally` that
        // re-raises at the unwind. Between a raise and its `handled` no code
        // of the frame runs.
        if self.options.vars && at.kind != EventKind::Handled {
            // SAFETY: forwarded.
            unsafe { self.diff_locals(py, layout, ident, &at, (index, seq), pure_line) };
        }
        (arg_ref, arg_type)
    }

    /// Compares the frame's locals with their last recorded state and
    /// records what changed, attached to event `index` of the batch.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`].
    unsafe fn diff_locals(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        ident: u64,
        at: &EventSite,
        (index, seq): (u32, u64),
        pure_line: Option<PureStep>,
    ) {
        let Some(top) = self
            .threads
            .get_mut(&ident)
            .and_then(|t| t.stack.last_mut())
        else {
            return;
        };
        let only = compared_after(&self.pure_lines, top.code_id, pure_line, (top.calls, seq));
        let mut sink = sink!(self, index, at.is_start);
        // SAFETY: forwarded.
        unsafe { top.diff_vars(py, layout, at.frame, &mut sink, &self.code_slots, only) };
    }

    /// A `line` event of the frame on top of its thread's stack — nearly
    /// every event of a run — recorded in one pass: one thread lookup, no
    /// code lookup, no step the general path needs for other events. `None`
    /// when that path must run (an unseen thread, another frame, 3.11's
    /// exception pending in the frame, `--no-lines` on 3.11).
    ///
    /// # Safety
    /// As [`Recorder::dispatch`]. (Inlined into each of its two callers,
    /// `LINE`'s and `JUMP`'s: the line path is the hottest there is.)
    #[inline(always)]
    unsafe fn line_of_top_frame(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        line: u32,
    ) -> Option<Result<Verdict, String>> {
        if !self.options.lines {
            return None;
        }
        let slot = self.top_slot(code, frame)?;
        let top = self.threads.states[slot].stack.last_mut()?;
        #[cfg(not(Py_3_12))]
        if top.pending.as_ref().is_some_and(|p| !p.handled) {
            return None;
        }
        top.line = line;
        let pure_line = top.pure_line.take();
        let code_id = top.code_id as usize;
        #[cfg(Py_3_12)]
        let observed = top.observed_by_caller;
        // SAFETY: forwarded.
        let ts = unsafe {
            self.top_event(
                py,
                layout,
                slot,
                EventKind::Line,
                Carried::default(),
                pure_line,
            )
        };
        // The line starting now: if it is pure, its next event compares
        // only what it stores.
        if self.options.vars
            && let Some(lines) = self.pure_lines.get(code_id).and_then(Option::as_ref)
            && let Some(pure) = lines.line(line)
            // SAFETY: forwarded.
            && let Some(step) = unsafe { lines.start(pure, layout, frame, code) }
        {
            // A pure line of a function a pure line below called: observed
            // (see `CallWindow`) — unless it calls functions itself, which
            // that line's window does not see.
            #[cfg(Py_3_12)]
            if observed && !step.calls() {
                self.threads.states[slot].observe_callee(step.changed());
            }
            if let Some(top) = self.threads.states[slot].stack.last_mut() {
                top.pure_line = Some(step);
                if step.calls() {
                    top.calls = CallWindow::open(self.seq);
                }
            }
        }
        Some(self.maybe_flush(ts).map(|()| Verdict::Ignore))
    }

    /// A call (`kind` `Call`) or, 3.12+, a resumption (`Resume`) of a code
    /// object already found in scope and enabled, in a known thread: the
    /// frame pushed (a resumed one taken back from the suspended ones) and
    /// its locals recorded, in one pass. `None` when the general path must
    /// run (code not seen yet or out of scope, a new thread, 3.11's
    /// resumption reported as a call). `offset`: where a resumption resumes.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`].
    #[inline]
    unsafe fn enter_known_code(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        kind: EventKind,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        offset: i32,
    ) -> Option<Result<Verdict, String>> {
        let resumed = kind == EventKind::Resume;
        #[cfg(not(Py_3_12))]
        if self.suspended.contains_key(&(frame as usize)) {
            return None;
        }
        let code_key = code as usize;
        let entry = self.codes.get(&code_key)?;
        if entry.state.is_none() || !entry.enabled || !entry.object.is(code_key) {
            return None;
        }
        // The caller on top of the last event's thread's stack: that thread
        // is the calling one (as in `top_slot`).
        #[cfg(Py_3_12)]
        // SAFETY: forwarded (a live frame).
        let caller = unsafe { layout.previous(frame) } as usize;
        #[cfg(Py_3_12)]
        let known = self.threads.last_slot().filter(|&slot| {
            let top = self.threads.states[slot].stack.last();
            top.is_some_and(|top| top.frame == caller)
        });
        #[cfg(not(Py_3_12))]
        let known = None;
        let slot = match known {
            Some(slot) => slot,
            None => self.threads.slot(crate::thread_key::current())?,
        };
        // A call from a pure line of the caller on top: observed (see
        // `CallWindow`).
        #[cfg(Py_3_12)]
        let observed = kind == EventKind::Call
            && known.is_some()
            && self.threads.states[slot]
                .stack
                .last_mut()
                .is_some_and(|caller| {
                    let watched = caller.pure_line.is_some_and(|step| step.calls());
                    if watched {
                        caller.calls.observe(true);
                    }
                    watched
                });
        let state = match resumed
            .then(|| self.suspended.remove(&(frame as usize)))
            .flatten()
        {
            Some(state) => state,
            None => self.new_frame(frame as usize, code_key),
        };
        let stack = &mut self.threads.states[slot].stack;
        stack.push(state);
        #[cfg(Py_3_12)]
        if observed && let Some(top) = stack.last_mut() {
            top.observed_by_caller = true;
        }
        if resumed {
            // SAFETY: forwarded.
            unsafe { self.place_top(slot, code, offset)? };
        }
        // SAFETY: forwarded.
        let ts = unsafe { self.top_event(py, layout, slot, kind, Carried::default(), None) };
        Some(self.maybe_flush(ts).map(|()| Verdict::Ignore))
    }

    /// A return or a yield (`kind`, at bytecode `offset`) of the frame on
    /// top of its thread's stack: the value rendered, the locals compared,
    /// the frame popped (and, at a yield, kept until it resumes), in one
    /// pass. `None` when the general path must run.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`]; `value` alive.
    #[cfg(Py_3_12)]
    #[inline]
    unsafe fn leave_top_frame(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        kind: EventKind,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        (value, offset): (*mut ffi::PyObject, i32),
    ) -> Option<Result<Verdict, String>> {
        if value.is_null() {
            return None;
        }
        let slot = self.top_slot(code, frame)?;
        // SAFETY: forwarded.
        unsafe { self.place_top(slot, code, offset)? };
        let top = self.threads.states[slot].stack.last_mut()?;
        // A pure line's stores are all that can have changed at a return
        // (see `purity.rs`), not at a yield.
        let pure_line = top.pure_line.take().filter(|_| kind == EventKind::Return);
        let code_id = top.code_id;
        // The return of a function a pure line below called, after a pure
        // line of its own: observed when it returns a plain value and
        // releases nothing that could run code (see `CallWindow`).
        if top.observed_by_caller
            && pure_line.is_some_and(|step| !step.calls())
            && let Some(slots) = self.code_slots.get(code_id as usize)
            // SAFETY: GIL held; `frame` is live, `value` alive.
            && unsafe { crate::purity::returns_safely(layout, frame, slots, value) }
        {
            self.threads.states[slot].observe_callee(0);
        }
        // SAFETY: GIL held; `value` is alive for the call.
        let (arg, arg_type) = unsafe { sink!(self, 0, false).value_ref(py, value) };
        // SAFETY: forwarded.
        let carried = Carried {
            value: (arg, arg_type),
            ..Carried::default()
        };
        let ts = unsafe { self.top_event(py, layout, slot, kind, carried, pure_line) };
        match self.threads.states[slot].stack.pop() {
            Some(state) if kind == EventKind::Yield => {
                self.suspended.insert(state.frame, state);
            }
            Some(state) => self.recycle(state),
            None => {}
        }
        Some(self.maybe_flush(ts).map(|()| Verdict::Ignore))
    }

    /// A `raise` in the frame on top of its thread's stack (3.12+), as the
    /// general path records it (the exception's identity, the one it was
    /// raised handling, its message; every local compared) in one pass.
    /// `None` when that path must run.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`]; `exception` alive.
    #[cfg(Py_3_12)]
    #[inline]
    unsafe fn raise_in_top_frame(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        code: *mut ffi::PyObject,
        frame: InterpreterFrame,
        (exception, offset): (*mut ffi::PyObject, i32),
    ) -> Option<Result<Verdict, String>> {
        if exception.is_null() {
            return None;
        }
        let slot = self.top_slot(code, frame)?;
        // SAFETY: forwarded.
        unsafe { self.place_top(slot, code, offset)? };
        let thread = &mut self.threads.states[slot];
        let unwound = thread.unwound_exception;
        // Any pure line under way ends here: every local is compared.
        thread.stack.last_mut()?.pure_line = None;
        // SAFETY: forwarded.
        let carried = unsafe {
            Carried {
                exception: (
                    self.exception_id(py, unwound, Some(exception), true),
                    self.exception_context(py, exception),
                ),
                value: self.exception_value_ref(py, exception),
            }
        };
        // SAFETY: forwarded.
        let ts = unsafe { self.top_event(py, layout, slot, EventKind::Raise, carried, None) };
        Some(self.maybe_flush(ts).map(|()| Verdict::Ignore))
    }

    /// Without line events, the line of the top frame of the thread in
    /// `slot` is that of bytecode `offset` (with them, the last line
    /// event's).
    ///
    /// # Safety
    /// GIL held; `code` the live code object of that frame.
    #[inline]
    unsafe fn place_top(
        &mut self,
        slot: usize,
        code: *mut ffi::PyObject,
        offset: i32,
    ) -> Option<()> {
        if !self.options.lines {
            let code_id = self.threads.states[slot].stack.last()?.code_id;
            // SAFETY: forwarded.
            let line = unsafe { self.line_at(code, code_id, offset) };
            self.threads.states[slot].stack.last_mut()?.line = line;
        }
        Some(())
    }

    /// The slot of the calling thread, if it is known and its top frame is
    /// `frame` running `code`. A running frame is on top of the stack of
    /// the thread that runs it only (a generator that moves to another
    /// thread leaves the first one's stack when it yields): when it tops
    /// the stack of the thread of the last event, that thread is the
    /// calling one, known without the thread-local key.
    #[inline]
    fn top_slot(&self, code: *mut ffi::PyObject, frame: InterpreterFrame) -> Option<usize> {
        let runs = |slot: usize| {
            self.threads.states[slot]
                .stack
                .last()
                .is_some_and(|top| top.frame == frame as usize && top.code == code as usize)
        };
        if let Some(slot) = self.threads.last_slot()
            && runs(slot)
        {
            return Some(slot);
        }
        let slot = self.threads.slot(crate::thread_key::current())?;
        runs(slot).then_some(slot)
    }

    /// Appends an event of the top frame of the thread in `slot` (`arg`:
    /// its value ref and type) and compares the frame's locals — all of
    /// them, or after `pure_line` only those it stores; the event's time.
    ///
    /// # Safety
    /// As [`Recorder::dispatch`]; the top frame is running.
    #[inline]
    unsafe fn top_event(
        &mut self,
        py: Python<'_>,
        layout: &Layout,
        slot: usize,
        kind: EventKind,
        carried: Carried,
        pure_line: Option<PureStep>,
    ) -> u64 {
        let thread = &mut self.threads.states[slot];
        thread.unwound_exception = 0;
        let depth = thread.stack.len().saturating_sub(1) as u32;
        let Some(top) = thread.stack.last_mut() else {
            return self.clock.now_ns();
        };
        let ts = self.clock.now_ns();
        let seq = self.seq;
        let index = self.rows.push_event(Event {
            seq,
            ts_ns: ts,
            thread: thread.id,
            kind: kind as u8,
            frame: top.frame_id,
            depth,
            code: top.code_id,
            line: top.line,
            arg: carried.value.0,
            arg_type: carried.value.1,
            exc_id: carried.exception.0,
            exc_context: carried.exception.1,
        });
        self.seq += 1;
        if self.options.vars {
            let mut sink = sink!(self, index, kind == EventKind::Call);
            let only = compared_after(&self.pure_lines, top.code_id, pure_line, (top.calls, seq));
            let frame = top.frame as InterpreterFrame;
            // SAFETY: forwarded.
            unsafe { top.diff_vars(py, layout, frame, &mut sink, &self.code_slots, only) };
        }
        ts
    }

    /// Hands the batch to the writer when it is full or 100 ms old. The GIL
    /// stays held (releasing it with the state locked could deadlock); the
    /// hand-over is a queue push, which waits only when the writer is
    /// behind.
    #[inline]
    fn maybe_flush(&mut self, ts: u64) -> Result<(), String> {
        if self.rows.len() < BATCH_EVENTS
            && ts.saturating_sub(self.last_flush_ns) < FLUSH_INTERVAL_NS
        {
            return Ok(());
        }
        self.flush_batch(ts)
    }

    /// Hands the batch over (see [`Recording::maybe_flush`]).
    #[inline(never)]
    fn flush_batch(&mut self, ts: u64) -> Result<(), String> {
        self.last_flush_ns = ts;
        self.clock.reanchor();
        let next = self.writer.spare_rows();
        let next = next.unwrap_or_else(|| RowBatch::with_capacity(BATCH_EVENTS, BATCH_EVENTS / 2));
        let rows = std::mem::replace(&mut self.rows, next);
        self.recent_values.new_batch();
        self.checkpoint();
        self.writer.write_rows(rows).map_err(|e| e.to_string())
    }

    /// Puts into the (new, empty) batch the state its first event starts
    /// from: every recorded frame of every thread and every suspended
    /// generator, with the last recorded value of each local. A reader
    /// rebuilds any moment from the nearest checkpoint (`replay --at`).
    fn checkpoint(&mut self) {
        let mut checkpoint = Checkpoint::default();
        let values = &mut self.rows.batch.values;
        let code_slots = &self.code_slots;
        let mut add = |thread: u32, depth: usize, frame: &FrameState| {
            let index = checkpoint.push_frame(
                thread,
                frame.frame_id,
                depth as u32,
                frame.code_id,
                frame.line,
            );
            let slots = code_slots.get(frame.code_id as usize);
            for (slot, shadow) in frame.locals.iter().enumerate() {
                let name = slots.and_then(|s| s.get(slot)).map(|&(name, _)| name);
                if let (Some(name), Some(recorded)) = (name, shadow.recorded()) {
                    checkpoint.push_var(index, name, recorded.push_into(values));
                }
            }
            if let Some(namespace) = &frame.namespace {
                for (name, recorded) in namespace.recorded() {
                    checkpoint.push_var(index, name, recorded.push_into(values));
                }
            }
        };
        for thread in &self.threads.states {
            for (depth, frame) in thread.stack.iter().enumerate() {
                add(thread.id, depth, frame);
            }
        }
        // The most recently started generators only: a program holding
        // millions of them open must not write them all every 100 ms (a
        // reader replays a resume it has no checkpoint for as a frame whose
        // earlier locals are unknown).
        let mut suspended: Vec<&FrameState> = self.suspended.values().collect();
        suspended.sort_unstable_by_key(|frame| std::cmp::Reverse(frame.frame_id));
        suspended.truncate(MAX_CHECKPOINT_SUSPENDED);
        suspended.reverse();
        for frame in suspended {
            add(Checkpoint::SUSPENDED, 0, frame);
        }
        self.rows.batch.checkpoint = Some(checkpoint);
    }
}

/// The value an event carries.
enum Value {
    Object(*mut ffi::PyObject),
    /// An exception rendered when it was raised (3.11's inferred events).
    #[cfg_attr(Py_3_12, allow(dead_code, reason = "only 3.11 infers events"))]
    Rendered {
        type_name: u32,
        text: String,
    },
}

/// One event to append, as [`Recording::handle`] prepared it.
struct EventSite {
    kind: EventKind,
    ts: u64,
    code: *mut ffi::PyObject,
    frame: InterpreterFrame,
    /// The return or yielded value, or the exception.
    value: Option<Value>,
    exc_id: u64,
    /// At a raise: identity of the exception it was raised while handling.
    exc_context: u64,
    is_start: bool,
    site: Site,
}

/// Number of frames in an exception's traceback, counted up to 2 (1 at
/// its first raise). Read from the C structures: looking the attributes up
/// by name cost ~1,400 instructions per raise.
fn traceback_len(exc: &Bound<'_, PyAny>) -> usize {
    // SAFETY: GIL held (a Bound); the traceback is checked to be a
    // traceback object before its C fields are read, and the new reference
    // from PyException_GetTraceback is released.
    unsafe {
        if ffi::PyExceptionInstance_Check(exc.as_ptr()) == 0 {
            return 0;
        }
        let tb = ffi::PyException_GetTraceback(exc.as_ptr());
        if tb.is_null() {
            return 0;
        }
        let n = if ffi::PyTraceBack_Check(tb) == 0 {
            0
        } else if (*tb.cast::<ffi::PyTracebackObject>()).tb_next.is_null() {
            1
        } else {
            2
        };
        ffi::Py_DecRef(tb);
        n
    }
}
