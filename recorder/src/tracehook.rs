//! The C trace-hook backend (CPython 3.11, which has no `sys.monitoring`).
//!
//! A C trace function (`PyEval_SetTrace`'s kind, as coverage.py's tracer
//! uses) is set in every thread: in the threads that exist when recording
//! starts, directly; in threads started later, through
//! `threading.settrace(recorder)`, whose first call puts the C function in
//! place. Out-of-scope frames get their line events turned off at their first
//! event; their calls and returns still reach the hook, which drops them
//! after one lookup.
//!
//! The trace hook reports `call`, `line`, `return` and `exception`; the
//! recorder's events follow from them:
//!
//! | trace hook                                   | event                              |
//! | -------------------------------------------- | ---------------------------------- |
//! | `call`, frame not suspended                  | `call`                             |
//! | `call`, a suspended generator's frame        | `resume` (also for `throw()`)      |
//! | `line`                                       | `line`, after `handled` if an exception is pending in the frame |
//! | `return` at a `YIELD_VALUE`                  | `yield`                            |
//! | `return` with a value                        | `return`                           |
//! | `return` without a value                     | `unwind`, after `reraise` if the pending exception had been handled |
//! | `exception`                                  | `raise` (at the raise and in each frame it propagates into, as on 3.12) |
//!
//! 3.11 reports neither handling nor re-raising: an exception counts as
//! handled when its frame runs a line after it, and as re-raised when that
//! frame then unwinds.

use std::ffi::c_int;

use chronolog_format::EventKind;
use pyo3::ffi;
use pyo3::prelude::*;

use crate::frames::{FRAME_OBJECT_TRACE_LINES_311, InterpreterFrame, interpreter_frame};
use crate::recording::{Backend, Hook, Recorder, Site, Verdict};

/// `co_flags` bits of generator-like code (generator, coroutine, async generator).
pub(crate) const CO_GENERATOR_LIKE: u32 = 0x20 | 0x80 | 0x200;
/// `YIELD_VALUE` on 3.11.
const YIELD_VALUE_311: u8 = 86;
/// `_PyInterpreterFrame.prev_instr` on 3.11.
const PREV_INSTR_311: usize = 56;

unsafe extern "C" {
    /// `sys.settrace` for another thread's state (exported by 3.11).
    fn _PyEval_SetTrace(
        tstate: *mut ffi::PyThreadState,
        func: Option<ffi::Py_tracefunc>,
        arg: *mut ffi::PyObject,
    ) -> c_int;
}

/// The trace-hook backend.
pub(crate) struct TraceHook;

/// Sets (or, with `None`, clears) the trace function of every thread.
fn set_everywhere(py: Python<'_>, recorder: Option<&Bound<'_, Recorder>>) -> PyResult<()> {
    let (func, arg): (Option<ffi::Py_tracefunc>, *mut ffi::PyObject) = match recorder {
        Some(recorder) => (Some(trace), recorder.as_ptr()),
        None => (None, std::ptr::null_mut()),
    };
    // SAFETY: GIL held; the thread list does not change while we hold it.
    unsafe {
        let mut tstate = ffi::PyInterpreterState_ThreadHead(ffi::PyInterpreterState_Get());
        while !tstate.is_null() {
            if _PyEval_SetTrace(tstate, func, arg) != 0 {
                return Err(PyErr::fetch(py));
            }
            tstate = ffi::PyThreadState_Next(tstate);
        }
    }
    let settrace = py.import("threading")?.getattr("settrace")?;
    match recorder {
        Some(recorder) => settrace.call1((recorder,))?,
        None => settrace.call1((py.None(),))?,
    };
    Ok(())
}

impl Backend for TraceHook {
    fn name(&self) -> &'static str {
        "trace hook"
    }

    fn install(&self, recorder: &Bound<'_, Recorder>) -> PyResult<()> {
        set_everywhere(recorder.py(), Some(recorder))
    }

    fn enable(&self, _code: &Bound<'_, PyAny>) -> PyResult<()> {
        Ok(())
    }

    fn remove(&self, py: Python<'_>, _enabled: &[Py<PyAny>]) -> PyResult<()> {
        set_everywhere(py, None)
    }
}

/// The recorder called as a Python trace function: takes over the calling
/// thread with the C hook and records the event that got it called.
pub(crate) fn adopt_thread(
    recorder: &Bound<'_, Recorder>,
    frame: &Bound<'_, PyAny>,
    event: &str,
    arg: &Bound<'_, PyAny>,
) {
    if !recorder.get().is_active(recorder.py())
        || frame.get_type().name().is_ok_and(|n| n != "frame")
    {
        return;
    }
    let what = match event {
        "call" => ffi::PyTrace_CALL,
        "line" => ffi::PyTrace_LINE,
        "return" => ffi::PyTrace_RETURN,
        "exception" => ffi::PyTrace_EXCEPTION,
        _ => return,
    };
    // SAFETY: GIL held; the frame and the argument are alive for the call.
    unsafe {
        ffi::PyEval_SetTrace(Some(trace), recorder.as_ptr());
        trace(
            recorder.as_ptr(),
            frame.as_ptr().cast(),
            what,
            if arg.is_none() {
                std::ptr::null_mut()
            } else {
                arg.as_ptr()
            },
        );
    }
}

/// The C trace function.
///
/// # Safety
/// Called by CPython with the GIL held, `obj` the recorder and `frame` live.
unsafe extern "C" fn trace(
    obj: *mut ffi::PyObject,
    frame_object: *mut ffi::PyFrameObject,
    what: c_int,
    arg: *mut ffi::PyObject,
) -> c_int {
    if crate::suspend::here() {
        return 0;
    }
    // SAFETY: see above.
    unsafe {
        let py = Python::assume_attached();
        let recorder = Bound::ref_from_ptr(py, &obj)
            .cast_unchecked::<Recorder>()
            .get();
        let layout = &recorder.layout;
        let frame = interpreter_frame(frame_object);
        if frame.is_null() {
            return 0;
        }
        let code = layout.code(frame);
        let offset = || Site::Offset(ffi::PyFrame_GetLasti(frame_object));
        let dispatch = |hook, arg, site| recorder.dispatch(py, hook, code, frame, arg, site);
        let verdict = match what {
            // A resumption too (told apart in `Recording::handle`).
            ffi::PyTrace_CALL => match recorder.enter_event(py, EventKind::Call, code, frame, 0) {
                Some(verdict) => verdict,
                None => dispatch(Hook::Start, std::ptr::null_mut(), offset()),
            },
            ffi::PyTrace_LINE => {
                let line = u32::try_from(ffi::PyFrame_GetLineNumber(frame_object)).unwrap_or(0);
                match recorder.line_event(py, code, frame, line) {
                    Some(verdict) => verdict,
                    None => dispatch(Hook::Line, std::ptr::null_mut(), Site::Line(line)),
                }
            }
            // Without a value: the frame is left by an exception.
            ffi::PyTrace_RETURN if arg.is_null() => {
                dispatch(Hook::Unwind, std::ptr::null_mut(), offset())
            }
            // A yield too (told apart in `Recording::handle`).
            ffi::PyTrace_RETURN => dispatch(Hook::Return, arg, offset()),
            ffi::PyTrace_EXCEPTION => {
                // `arg` is (type, value, traceback).
                let exception = if !arg.is_null()
                    && ffi::PyTuple_Check(arg) != 0
                    && ffi::PyTuple_Size(arg) >= 2
                {
                    ffi::PyTuple_GetItem(arg, 1)
                } else {
                    std::ptr::null_mut()
                };
                if exception.is_null() {
                    ffi::PyErr_Clear();
                    return 0;
                }
                dispatch(Hook::Raise, exception, offset())
            }
            _ => Verdict::Ignore,
        };
        // Out-of-scope frames, and every frame under `--no-lines`, get no
        // line events from here on (3.11 reports them per frame).
        if verdict == Verdict::Disable || (what == ffi::PyTrace_CALL && !recorder.lines) {
            stop_line_events(frame_object);
        }
        0
    }
}

/// True when a 3.11 frame reporting a return stopped at a `YIELD_VALUE`:
/// the "return" is a yield.
///
/// # Safety
/// GIL held; `frame` a live 3.11 interpreter frame.
pub(crate) unsafe fn at_yield(frame: InterpreterFrame) -> bool {
    // SAFETY: the checked 3.11 layout; the instruction is inside the code.
    unsafe {
        let instruction = *frame.add(PREV_INSTR_311).cast::<*const u16>();
        !instruction.is_null() && (*instruction & 0xff) as u8 == YIELD_VALUE_311
    }
}

/// Turns off line events for a frame object.
///
/// # Safety
/// GIL held; `frame` a live 3.11 frame object.
unsafe fn stop_line_events(frame: *mut ffi::PyFrameObject) {
    // SAFETY: checked offset of `f_trace_lines` (a char) on 3.11.
    unsafe { *frame.cast::<u8>().add(FRAME_OBJECT_TRACE_LINES_311) = 0 };
}
