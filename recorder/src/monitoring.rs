//! The `sys.monitoring` backend (CPython 3.12+).
//!
//! `PY_START`, `PY_THROW` and the exception events are global; `LINE`,
//! `PY_RETURN`, `PY_YIELD` and `PY_RESUME` are turned on per code object,
//! only for code in scope (decided once, at its first `PY_START`); out-of-scope
//! code gets `DISABLE` and costs nothing afterwards.
//!
//! The callbacks are plain C functions (`METH_FASTCALL`) bound to the
//! recorder object: no argument parsing, no Python object created per event.
//! Each finds its frame through the thread state (`Layout::frame_running`),
//! so no frame object is ever created.

use std::ffi::CStr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyCFunction;

use chronolog_format::EventKind;

use crate::frames::InterpreterFrame;
use crate::recording::{Backend, Hook, Recorder, Site, Verdict};

const TOOL_NAME: &str = "chronolog";

/// `sys.monitoring.DISABLE` (one object for the interpreter's life, kept
/// alive by every [`Monitoring`]).
static DISABLE: std::sync::atomic::AtomicPtr<ffi::PyObject> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// The `sys.monitoring` tool of one recording.
pub(crate) struct Monitoring {
    monitoring: Py<PyAny>,
    /// Keeps [`DISABLE`] alive.
    _disable: Py<PyAny>,
    tool: u8,
    /// Bit of each of [`CALLBACKS`]' events, in order.
    event_bits: Vec<i64>,
    global_events: i64,
    local_events: i64,
}

impl Monitoring {
    pub(crate) fn new(py: Python<'_>, lines: bool) -> PyResult<Monitoring> {
        let monitoring = py.import("sys")?.getattr("monitoring")?;
        let mut tool = None;
        for candidate in [2u8, 3, 4, 0] {
            if monitoring.call_method1("get_tool", (candidate,))?.is_none() {
                tool = Some(candidate);
                break;
            }
        }
        let Some(tool) = tool else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "every sys.monitoring tool id is taken",
            ));
        };
        let events = monitoring.getattr("events")?;
        let bit = |name: &str| -> PyResult<i64> { events.getattr(name)?.extract() };
        let event_bits = CALLBACKS
            .iter()
            .map(|(name, _)| bit(name))
            .collect::<PyResult<Vec<i64>>>()?;
        let mut global_events = 0;
        for name in GLOBAL_EVENTS {
            global_events |= bit(name)?;
        }
        let mut local_events = 0;
        for name in LOCAL_EVENTS {
            if lines || !matches!(*name, "LINE" | "JUMP") {
                local_events |= bit(name)?;
            }
        }
        let disable = monitoring.getattr("DISABLE")?.unbind();
        DISABLE.store(disable.as_ptr(), std::sync::atomic::Ordering::Relaxed);
        Ok(Monitoring {
            _disable: disable,
            monitoring: monitoring.unbind(),
            tool,
            event_bits,
            global_events,
            local_events,
        })
    }
}

impl Backend for Monitoring {
    fn name(&self) -> &'static str {
        "sys.monitoring"
    }

    fn install(&self, recorder: &Bound<'_, Recorder>) -> PyResult<()> {
        let py = recorder.py();
        let monitoring = self.monitoring.bind(py);
        monitoring.call_method1("use_tool_id", (self.tool, TOOL_NAME))?;
        for ((_, def), event) in CALLBACKS.iter().zip(&self.event_bits) {
            // SAFETY: the definitions are static; the function keeps the
            // recorder alive as its `self`.
            let function = unsafe {
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyCFunction_NewEx(def.get(), recorder.as_ptr(), std::ptr::null_mut()),
                )?
            }
            .cast_into::<PyCFunction>()?;
            monitoring.call_method1("register_callback", (self.tool, event, function))?;
        }
        monitoring.call_method1("set_events", (self.tool, self.global_events))?;
        Ok(())
    }

    fn enable(&self, code: &Bound<'_, PyAny>) -> PyResult<()> {
        self.monitoring
            .bind(code.py())
            .call_method1("set_local_events", (self.tool, code, self.local_events))?;
        Ok(())
    }

    fn remove(&self, py: Python<'_>, enabled: &[Py<PyAny>]) -> PyResult<()> {
        let monitoring = self.monitoring.bind(py);
        if monitoring
            .call_method1("get_tool", (self.tool,))?
            .extract::<Option<String>>()?
            .as_deref()
            != Some(TOOL_NAME)
        {
            return Ok(());
        }
        monitoring.call_method1("set_events", (self.tool, 0))?;
        for code in enabled {
            monitoring.call_method1("set_local_events", (self.tool, code, 0))?;
        }
        for event in &self.event_bits {
            monitoring.call_method1("register_callback", (self.tool, event, py.None()))?;
        }
        monitoring.call_method1("free_tool_id", (self.tool,))?;
        Ok(())
    }
}

/// A `PyMethodDef` in a static (CPython keeps a pointer to it).
struct MethodDef(std::cell::UnsafeCell<ffi::PyMethodDef>);

// SAFETY: never mutated after construction; CPython only reads it.
unsafe impl Sync for MethodDef {}

impl MethodDef {
    const fn new(name: &'static CStr, function: ffi::PyCFunctionFast) -> MethodDef {
        MethodDef(std::cell::UnsafeCell::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer {
                PyCFunctionFast: function,
            },
            ml_flags: ffi::METH_FASTCALL,
            ml_doc: std::ptr::null(),
        }))
    }

    fn get(&self) -> *mut ffi::PyMethodDef {
        self.0.get()
    }
}

/// The C function of each hook but those of frames coming and going (see
/// [`on_line`]): forwards to [`callback`].
macro_rules! forward {
    ($($hook:ident as $name:ident),* $(,)?) => {
        $(
            unsafe extern "C" fn $name(
                slf: *mut ffi::PyObject,
                args: *mut *mut ffi::PyObject,
                nargs: ffi::Py_ssize_t,
            ) -> *mut ffi::PyObject {
                // SAFETY: called by CPython with the GIL held, `self` the
                // recorder and `nargs` arguments.
                unsafe { callback(slf, args, nargs, Hook::$hook) }
            }
        )*
    };
}

/// The `sys.monitoring` event each C function is registered for.
macro_rules! callbacks {
    ($($event:ident => $name:ident),* $(,)?) => {
        static CALLBACKS: [(&str, MethodDef); 11] = [
            $((stringify!($event), MethodDef::new(
                // The callback's name, as Python shows it.
                match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                    Ok(name) => name,
                    Err(_) => panic!("callback name"),
                },
                $name,
            ))),*
        ];
    };
}

/// Events on for all code.
const GLOBAL_EVENTS: &[&str] = &[
    "PY_START",
    "PY_THROW",
    "RAISE",
    "RERAISE",
    "EXCEPTION_HANDLED",
    "PY_UNWIND",
];
/// Events on for code in scope only.
/// (`JUMP` only with `LINE`: it completes line events, see `Recording::handle`.)
const LOCAL_EVENTS: &[&str] = &["LINE", "JUMP", "PY_RETURN", "PY_YIELD", "PY_RESUME"];

forward! {
    Throw as on_throw,
    Reraise as on_reraise,
    Handled as on_handled,
    Unwind as on_unwind,
}

callbacks! {
    JUMP => on_jump,
    PY_START => on_start,
    PY_RESUME => on_resume,
    PY_THROW => on_throw,
    LINE => on_line,
    PY_RETURN => on_return,
    PY_YIELD => on_yield,
    RAISE => on_raise,
    RERAISE => on_reraise,
    EXCEPTION_HANDLED => on_handled,
    PY_UNWIND => on_unwind,
}

/// `LINE`: `(code, line)`. Nearly every event is one, of the frame on top of
/// its thread's recorded stack: taken by `Recorder::line_event` without the
/// general path's argument handling, and by `callback` when that declines.
/// `PY_START`, `PY_RESUME`, `PY_RETURN` and `PY_YIELD` of code already in
/// scope likewise (`Recorder::enter_event`, `Recorder::leave_event`).
///
/// # Safety
/// As [`callback`].
unsafe extern "C" fn on_line(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded.
    unsafe {
        quick(
            slf,
            args,
            nargs,
            2,
            Hook::Line,
            |recorder, py, code, frame| recorder.line_event(py, code, frame, small_arg(args, 1)?),
        )
    }
}

/// `JUMP`: `(code, from, to)`. Only backward jumps stay on (a forward one
/// is turned off where it is, in [`callback`]); one within a line (a loop
/// on one line, a comprehension's) runs the line again: a `line` event,
/// taken like [`on_line`]'s.
///
/// # Safety
/// As [`callback`].
unsafe extern "C" fn on_jump(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded.
    unsafe {
        quick(
            slf,
            args,
            nargs,
            3,
            Hook::Jump,
            |recorder, py, code, frame| {
                let (from, to): (i32, i32) = (small_arg(args, 1)?, small_arg(args, 2)?);
                (to <= from).then_some(())?;
                recorder.jump_event(py, code, frame, from, to)
            },
        )
    }
}

/// Argument `k` of a callback (a line or an offset), when it is an int
/// that fits `T`.
///
/// # Safety
/// `args` holds more than `k` arguments, each alive.
#[inline(always)]
unsafe fn small_arg<T: TryFrom<i64>>(args: *mut *mut ffi::PyObject, k: usize) -> Option<T> {
    // SAFETY: forwarded.
    unsafe { crate::repr::int_value(*args.add(k)) }.and_then(|n| T::try_from(n).ok())
}

/// `RAISE`: `(code, offset, exception)`. A raise in the frame on top of
/// its thread's recorded stack — most are — is taken by
/// `Recorder::raise_event`, else by [`callback`].
///
/// # Safety
/// As [`callback`].
unsafe extern "C" fn on_raise(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded.
    unsafe {
        quick(
            slf,
            args,
            nargs,
            3,
            Hook::Raise,
            |recorder, py, code, frame| {
                recorder.raise_event(py, code, frame, *args.add(2), small_arg(args, 1)?)
            },
        )
    }
}

/// The C functions of the events of frames coming and going (see
/// [`on_line`]): `(code, offset)` for calls and resumptions, `(code, offset,
/// value)` for returns and yields.
macro_rules! frame_callbacks {
    ($($name:ident: $hook:ident, $kind:ident, $nargs:literal;)*) => {
        $(
            /// # Safety
            /// As [`callback`].
            unsafe extern "C" fn $name(
                slf: *mut ffi::PyObject,
                args: *mut *mut ffi::PyObject,
                nargs: ffi::Py_ssize_t,
            ) -> *mut ffi::PyObject {
                // SAFETY: forwarded.
                unsafe {
                    quick(slf, args, nargs, $nargs, Hook::$hook, |recorder, py, code, frame| {
                        let offset = small_arg(args, 1)?;
                        match $nargs {
                            2 => recorder.enter_event(py, EventKind::$kind, code, frame, offset),
                            _ => recorder.leave_event(
                                py,
                                EventKind::$kind,
                                code,
                                frame,
                                *args.add(2),
                                offset,
                            ),
                        }
                    })
                }
            }
        )*
    };
}

frame_callbacks! {
    on_start: Start, Call, 2;
    on_resume: Resume, Resume, 2;
    on_return: Return, Return, 3;
    on_yield: Yield, Yield, 3;
}

/// Offers an event of `expected` arguments to `fast` (given the recorder,
/// the code object and its running frame); what it declines goes to
/// [`callback`].
///
/// # Safety
/// As [`callback`].
#[inline(always)]
unsafe fn quick(
    slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    expected: ffi::Py_ssize_t,
    hook: Hook,
    fast: impl FnOnce(&Recorder, Python<'_>, *mut ffi::PyObject, InterpreterFrame) -> Option<Verdict>,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with the GIL held, `self` the recorder and
    // `nargs` arguments.
    unsafe {
        if nargs == expected && !crate::suspend::here() {
            let py = Python::assume_attached();
            let recorder = Bound::ref_from_ptr(py, &slf)
                .cast_unchecked::<Recorder>()
                .get();
            let code = *args;
            let frame = recorder.layout.frame_running(code);
            if !frame.is_null()
                && let Some(verdict) = fast(recorder, py, code, frame)
            {
                return verdict_object(verdict);
            }
        }
        callback(slf, args, nargs, hook)
    }
}

/// What a callback returns for `verdict`, as a new reference.
fn verdict_object(verdict: Verdict) -> *mut ffi::PyObject {
    let result = match verdict {
        Verdict::Disable => DISABLE.load(std::sync::atomic::Ordering::Relaxed),
        // SAFETY: the None singleton.
        _ => unsafe { ffi::Py_None() },
    };
    // SAFETY: returning a new reference.
    unsafe { ffi::Py_IncRef(result) };
    result
}

/// Every callback: `(code, offset_or_line[, value_or_exception])`, and
/// `JUMP`'s `(code, from, to)`.
///
/// # Safety
/// GIL held; `slf` the recorder; `args` holds `nargs` live objects.
unsafe fn callback(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    hook: Hook,
) -> *mut ffi::PyObject {
    if crate::suspend::here() {
        // The recorder's own call into Python code (`--unsafe-repr`).
        // SAFETY: the None singleton, returned as a new reference.
        return unsafe { ffi::Py_NewRef(ffi::Py_None()) };
    }
    // SAFETY: CPython calls callbacks with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `slf` is the recorder this function was bound to.
    let recorder = unsafe { Bound::ref_from_ptr(py, &slf).cast_unchecked::<Recorder>() }.get();
    let mut verdict = Verdict::Ignore;
    if nargs >= 2 {
        // SAFETY: `nargs` arguments are readable.
        let (code, number, arg) = unsafe {
            (
                *args,
                crate::repr::int_value(*args.add(1))
                    .unwrap_or_else(|| ffi::PyLong_AsLong(*args.add(1))),
                if nargs >= 3 {
                    *args.add(2)
                } else {
                    std::ptr::null_mut()
                },
            )
        };
        let exception_hook = matches!(
            hook,
            Hook::Throw | Hook::Raise | Hook::Reraise | Hook::Handled | Hook::Unwind
        );
        // SAFETY: a type check of a live object.
        if exception_hook && (arg.is_null() || unsafe { ffi::PyExceptionInstance_Check(arg) } == 0)
        {
            // Not what this event carries: nothing to record.
            // SAFETY: the None singleton, returned as a new reference.
            return unsafe { ffi::Py_NewRef(ffi::Py_None()) };
        }
        if number == -1 {
            // SAFETY: GIL held; a line or offset out of range is dropped.
            unsafe { ffi::PyErr_Clear() };
        }
        let site = match hook {
            Hook::Line => Site::Line(u32::try_from(number).unwrap_or(0)),
            Hook::Jump => {
                // SAFETY: a live int argument.
                let to = unsafe { ffi::PyLong_AsLong(arg) };
                let from = i32::try_from(number).unwrap_or(0);
                let to = i32::try_from(to).unwrap_or(i32::MAX);
                if to > from {
                    // Forward: never a line of its own; off for good here.
                    let disable = DISABLE.load(std::sync::atomic::Ordering::Relaxed);
                    // SAFETY: returning a new reference.
                    unsafe { ffi::Py_IncRef(disable) };
                    return disable;
                }
                Site::Backward { from, to }
            }
            _ => Site::Offset(i32::try_from(number).unwrap_or(0)),
        };
        let arg = if hook == Hook::Jump {
            std::ptr::null_mut()
        } else {
            arg
        };
        // SAFETY: GIL held; objects alive for the call.
        verdict = unsafe {
            let frame = recorder.layout.frame_running(code);
            recorder.dispatch(py, hook, code, frame, arg, site)
        };
    }
    verdict_object(verdict)
}
