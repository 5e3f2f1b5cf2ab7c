//! Reading CPython's interpreter frames directly, without frame objects.
//!
//! `PyEval_GetFrame` creates a `PyFrameObject` for every frame it is asked
//! about (an allocation per call), and `frame.f_locals` copies every local
//! into a dict (3.12) or builds a proxy (3.13) on each access: per event that
//! costs several times CPython's own dispatch. The recorder instead reads the
//! structures CPython itself runs on — the thread's current
//! `_PyInterpreterFrame` and its `localsplus` slots — at fixed offsets of
//! each supported version's layout (64-bit):
//!
//! ```text
//!                      code  previous  globals  builtins  locals  localsplus   current frame
//! 3.11 (trace hook)     32      48        8        16       24        72       given as a PyFrameObject (f_frame at 24)
//! 3.12                   0       8       24        32       40        72       *(*(tstate + 56))   (tstate->cframe->current_frame)
//! 3.13                   0       8       24        32       40        72       *(tstate + 72)      (tstate->current_frame)
//! ```
//!
//! The thread state the current frame is read from is the interpreter's
//! only one when it has a single thread (`next` of the first at 8, read
//! with the GIL), found without CPython's thread-local lookup; else
//! `PyThreadState_Get`'s.
//!
//! [`Layout::detect`] checks every offset against the public API on a live
//! frame before recording starts, and every event checks that the frame it
//! reads runs the code object the event is about; a build that disagrees
//! (a debug or free-threaded build, a future version) is refused with a
//! clear message instead of read as garbage. Slot order is `co_varnames`,
//! then the cell variables that are not arguments, then `co_freevars`; a
//! cell slot holds a cell whose contents are the variable's value.
//!
//! The pure-line analysis (`purity.rs`) also reads, at a `line` event, the
//! instruction the frame is at (`prev_instr`, 3.13 `instr_ptr`, at 56: a
//! pointer into the code object's bytecode, which starts at an offset
//! found by [`Layout::detect`]) and the values on its stack (`stacktop` at
//! 64: the stack's end, counted in slots from `localsplus`). CPython saves
//! both before it reports a line, on every supported version.

use pyo3::ffi;

/// A `_PyInterpreterFrame` (opaque; read through a [`Layout`]).
pub(crate) type InterpreterFrame = *const u8;

/// `_PyInterpreterFrame.owner` on 3.12 and 3.13, and its value for the
/// C-stack entry frames CPython puts between Python frames (their other
/// fields are not all set).
#[cfg(Py_3_12)]
const OWNER_OFFSET: usize = 70;
#[cfg(Py_3_12)]
const FRAME_OWNED_BY_CSTACK: u8 = 3;
/// `_PyInterpreterFrame.prev_instr` (3.13: `instr_ptr`) on 3.11–3.13.
const INSTRUCTION_OFFSET: usize = 56;
/// `_PyInterpreterFrame.stacktop` on 3.11–3.13.
const STACKTOP_OFFSET: usize = 64;
/// `PyThreadState.next` on 3.11–3.13 (after `prev`).
const THREAD_STATE_NEXT: usize = 8;
/// `PyFrameObject.f_frame` on 3.11–3.13.
const FRAME_OBJECT_INTERPRETER_FRAME: usize = 24;
/// `PyFrameObject.f_trace_lines` on 3.11.
pub(crate) const FRAME_OBJECT_TRACE_LINES_311: usize = 44;

/// Where the thread state keeps the current frame.
#[derive(Clone, Copy, Debug)]
enum CurrentFrame {
    /// 3.11: frames come with each trace-hook call.
    FromHook,
    /// 3.12: `tstate->cframe->current_frame`.
    ThroughCFrame(usize),
    /// 3.13: `tstate->current_frame`.
    Direct(usize),
}

/// Offsets of one CPython version's frame layout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    code: usize,
    #[cfg_attr(not(Py_3_12), allow(dead_code, reason = "read by the 3.12+ backend"))]
    previous: usize,
    globals: usize,
    builtins: usize,
    locals: usize,
    localsplus: usize,
    current: CurrentFrame,
    /// Where a code object's bytecode (`co_code_adaptive`) starts in it.
    bytecode: usize,
    /// The interpreter recorded (`PyInterpreterState *`): its list of
    /// thread states tells whether the calling thread is the only one.
    interpreter: usize,
}

/// How to read one local slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotKind {
    Plain,
    /// A cell or free variable: the slot holds a cell.
    Cell,
}

impl Layout {
    /// The layout of the running interpreter, checked against the calling
    /// Python frame. `Err` names what did not match.
    pub(crate) fn detect() -> Result<Layout, String> {
        // SAFETY: GIL held by the caller (a method called from Python);
        // reads stay inside live CPython structures of the calling frame.
        unsafe {
            let version = ffi::Py_Version;
            let version = ((version >> 24) as u8, ((version >> 16) & 0xff) as u8);
            let layout = match version {
                (3, 11) => Layout {
                    code: 32,
                    previous: 48,
                    globals: 8,
                    builtins: 16,
                    locals: 24,
                    localsplus: 72,
                    current: CurrentFrame::FromHook,
                    bytecode: 0,
                    interpreter: 0,
                },
                (3, 12) | (3, 13) => Layout {
                    code: 0,
                    previous: 8,
                    globals: 24,
                    builtins: 32,
                    locals: 40,
                    localsplus: 72,
                    current: if version == (3, 12) {
                        CurrentFrame::ThroughCFrame(56)
                    } else {
                        CurrentFrame::Direct(72)
                    },
                    bytecode: 0,
                    interpreter: 0,
                },
                (major, minor) => return Err(format!("CPython {major}.{minor} is not supported")),
            };
            let frame = ffi::PyEval_GetFrame();
            if frame.is_null() {
                return Err("no Python frame to check the frame layout against".into());
            }
            let mut layout = layout;
            layout.interpreter = ffi::PyInterpreterState_Get() as usize;
            let interpreter = interpreter_frame(frame);
            let code = ffi::PyFrame_GetCode(frame);
            // The frame's instruction pointer, less its offset in the
            // bytecode, less the code object's address: where the bytecode
            // starts, a few hundred bytes in (a multiple of 8).
            if !interpreter.is_null() {
                let at = *interpreter.add(INSTRUCTION_OFFSET).cast::<usize>();
                let lasti = usize::try_from(ffi::PyFrame_GetLasti(frame)).unwrap_or(usize::MAX);
                layout.bytecode = at.wrapping_sub(code as usize).wrapping_sub(lasti);
            }
            let globals = ffi::PyFrame_GetGlobals(frame);
            let builtins = ffi::PyFrame_GetBuiltins(frame);
            let matches = !interpreter.is_null()
                && (64..=1024).contains(&layout.bytecode)
                && layout.bytecode % 8 == 0
                && layout.code(interpreter) == code.cast()
                && layout.sole_thread().is_none_or(|only| {
                    only == ffi::PyThreadState_Get().cast()
                        && ffi::PyThreadState_Next(only.cast()).is_null()
                })
                && layout.globals(interpreter) == globals
                && *interpreter
                    .add(layout.builtins)
                    .cast::<*mut ffi::PyObject>()
                    == builtins
                && match layout.current {
                    CurrentFrame::FromHook => {
                        *frame.cast::<u8>().add(FRAME_OBJECT_TRACE_LINES_311) == 1
                    }
                    _ => {
                        #[cfg(Py_3_12)]
                        let owned_by_thread = *interpreter.add(OWNER_OFFSET) == 0;
                        #[cfg(not(Py_3_12))]
                        let owned_by_thread = true;
                        owned_by_thread && layout.current() == interpreter
                    }
                };
            ffi::Py_DecRef(code.cast());
            ffi::Py_DecRef(globals);
            ffi::Py_DecRef(builtins);
            if !matches {
                return Err(format!(
                    "this build of CPython {}.{} has a frame layout chronolog does not know",
                    version.0, version.1
                ));
            }
            Ok(layout)
        }
    }

    /// The interpreter's only thread state, if it has one thread: then the
    /// calling thread's, found without CPython's thread-local lookup (a
    /// call into the shared library's thread-local storage, ~20
    /// instructions an event).
    ///
    /// # Safety
    /// GIL held, in the interpreter the layout was detected in.
    #[inline]
    pub(crate) unsafe fn sole_thread(&self) -> Option<*mut u8> {
        // SAFETY: the interpreter's list of thread states, read with the
        // GIL; `next` of its first one.
        unsafe {
            let first = ffi::PyInterpreterState_ThreadHead(self.interpreter as *mut _).cast::<u8>();
            (!first.is_null() && (*first.add(THREAD_STATE_NEXT).cast::<*const u8>()).is_null())
                .then_some(first)
        }
    }

    /// The thread's innermost Python frame (3.12+), or null.
    #[cfg_attr(not(Py_3_12), allow(dead_code, reason = "used by the 3.12+ backend"))]
    ///
    /// # Safety
    /// GIL held; only on 3.12+ layouts.
    pub(crate) unsafe fn current(&self) -> InterpreterFrame {
        // SAFETY: checked offsets into the live thread state.
        unsafe {
            let tstate = self
                .sole_thread()
                .unwrap_or_else(|| ffi::PyThreadState_Get().cast());
            match self.current {
                CurrentFrame::ThroughCFrame(offset) => {
                    let cframe = *tstate.add(offset).cast::<*const InterpreterFrame>();
                    if cframe.is_null() {
                        std::ptr::null()
                    } else {
                        *cframe
                    }
                }
                CurrentFrame::Direct(offset) => *tstate.add(offset).cast::<InterpreterFrame>(),
                CurrentFrame::FromHook => std::ptr::null(),
            }
        }
    }

    /// The innermost frame running `code`: the current one, or (after C
    /// code pushed frames of its own) one of its callers. Null if none of
    /// the few innermost frames runs it.
    ///
    /// # Safety
    /// GIL held; only on 3.12+ layouts.
    #[cfg(Py_3_12)]
    pub(crate) unsafe fn frame_running(&self, code: *mut ffi::PyObject) -> InterpreterFrame {
        // SAFETY: walks the live chain of interpreter frames.
        unsafe {
            let mut frame = self.current();
            for _ in 0..4 {
                if frame.is_null() || self.code(frame) == code {
                    return frame;
                }
                frame = self.previous(frame);
            }
            std::ptr::null()
        }
    }

    /// The frame that called `frame` (null for the outermost).
    ///
    /// # Safety
    /// GIL held; `frame` live; only on 3.12+ layouts.
    #[cfg(Py_3_12)]
    pub(crate) unsafe fn previous(&self, frame: InterpreterFrame) -> InterpreterFrame {
        // SAFETY: checked offset.
        unsafe { *frame.add(self.previous).cast::<InterpreterFrame>() }
    }

    /// False for the entry frames CPython keeps on the C stack.
    ///
    /// # Safety
    /// GIL held; `frame` live; only on 3.12+ layouts.
    #[cfg(Py_3_12)]
    pub(crate) unsafe fn is_python_frame(&self, frame: InterpreterFrame) -> bool {
        // SAFETY: checked offset.
        unsafe { *frame.add(OWNER_OFFSET) != FRAME_OWNED_BY_CSTACK }
    }

    /// The code object (3.13: the executable) a frame runs, borrowed.
    ///
    /// # Safety
    /// GIL held; `frame` live.
    pub(crate) unsafe fn code(&self, frame: InterpreterFrame) -> *mut ffi::PyObject {
        // SAFETY: checked offset.
        unsafe { *frame.add(self.code).cast::<*mut ffi::PyObject>() }
    }

    /// The frame's globals dict, borrowed.
    ///
    /// # Safety
    /// GIL held; `frame` live.
    pub(crate) unsafe fn globals(&self, frame: InterpreterFrame) -> *mut ffi::PyObject {
        // SAFETY: checked offset.
        unsafe { *frame.add(self.globals).cast::<*mut ffi::PyObject>() }
    }

    /// The frame's globals and builtins are exact dicts: `LOAD_GLOBAL` then
    /// looks names up without running code of the program (a subclass's
    /// `__missing__` could run any).
    ///
    /// # Safety
    /// GIL held; `frame` live.
    pub(crate) unsafe fn names_are_plain_dicts(&self, frame: InterpreterFrame) -> bool {
        // SAFETY: checked offsets; both point to live objects.
        unsafe {
            [self.globals, self.builtins].into_iter().all(|offset| {
                let dict = *frame.add(offset).cast::<*mut ffi::PyObject>();
                !dict.is_null() && ffi::PyDict_CheckExact(dict) != 0
            })
        }
    }

    /// The frame's locals mapping (module and class bodies: their
    /// namespace; null for functions), borrowed.
    ///
    /// # Safety
    /// GIL held; `frame` live.
    pub(crate) unsafe fn locals(&self, frame: InterpreterFrame) -> *mut ffi::PyObject {
        // SAFETY: checked offset.
        unsafe { *frame.add(self.locals).cast::<*mut ffi::PyObject>() }
    }

    /// The offset in `code`'s bytecode (as `dis` counts, in bytes) of the
    /// instruction `frame` is at: at a `line` event, the line's first.
    ///
    /// # Safety
    /// GIL held; `frame` live and running `code`.
    #[inline]
    pub(crate) unsafe fn instruction(
        &self,
        frame: InterpreterFrame,
        code: *mut ffi::PyObject,
    ) -> usize {
        // SAFETY: checked offset.
        let at = unsafe { *frame.add(INSTRUCTION_OFFSET).cast::<usize>() };
        at.wrapping_sub(code as usize + self.bytecode)
    }

    /// The value `down` places below the top of `frame`'s stack (borrowed;
    /// it may be null), given the code's number of local slots and its
    /// stack's size; null when the stack is not that deep.
    ///
    /// # Safety
    /// GIL held; `frame` live, at a `line` event (where CPython has saved
    /// its stack's end), running a code object of that many slots.
    #[inline]
    pub(crate) unsafe fn stack_value(
        &self,
        frame: InterpreterFrame,
        slots: usize,
        stack_size: usize,
        down: usize,
    ) -> *mut ffi::PyObject {
        // SAFETY: checked offsets; the index is checked against the
        // frame's extent before it is read.
        unsafe {
            let end = *frame.add(STACKTOP_OFFSET).cast::<i32>();
            let Ok(end) = usize::try_from(end) else {
                return std::ptr::null_mut();
            };
            if end > slots + stack_size || end < slots + down + 1 {
                return std::ptr::null_mut();
            }
            *frame
                .add(self.localsplus)
                .cast::<*mut ffi::PyObject>()
                .add(end - 1 - down)
        }
    }

    /// The value in local slot `index` (borrowed), or null when the
    /// variable is unbound.
    ///
    /// # Safety
    /// GIL held; `frame` live; `index` below its code's number of local slots.
    pub(crate) unsafe fn slot(
        &self,
        frame: InterpreterFrame,
        index: usize,
        kind: SlotKind,
    ) -> *mut ffi::PyObject {
        // SAFETY: forwarded; a cell's contents are borrowed from the cell.
        unsafe {
            let value = *frame
                .add(self.localsplus)
                .cast::<*mut ffi::PyObject>()
                .add(index);
            if kind == SlotKind::Cell
                && !value.is_null()
                && ffi::Py_TYPE(value) == &raw mut ffi::PyCell_Type
            {
                return (*value.cast::<ffi::PyCellObject>()).ob_ref;
            }
            value
        }
    }
}

/// The interpreter frame behind a frame object.
///
/// # Safety
/// GIL held; `frame` a live frame object.
pub(crate) unsafe fn interpreter_frame(frame: *mut ffi::PyFrameObject) -> InterpreterFrame {
    // SAFETY: the same offset on every supported version (checked by detect).
    unsafe {
        *frame
            .cast::<u8>()
            .add(FRAME_OBJECT_INTERPRETER_FRAME)
            .cast::<InterpreterFrame>()
    }
}
