//! Reading a frame's local variables without building `f_locals`.
//!
//! `frame.f_locals` copies every local into a dict (3.12) or builds a proxy
//! (3.13) on each access; per line that alone costs several times CPython's
//! own dispatch. The recorder instead reads the frame's `localsplus` array —
//! the slots CPython itself uses — directly, at fixed offsets of CPython's
//! internal frame layout on 3.12 and 3.13 (64-bit):
//!
//! ```text
//! PyFrameObject        { ob_refcnt, ob_type, f_back, f_frame: *_PyInterpreterFrame, ... }   f_frame at 24
//! _PyInterpreterFrame  { f_code|f_executable, previous, f_funcobj, f_globals, f_builtins,
//!                        f_locals, frame_obj, instr_ptr, stacktop: i32, return_offset: u16,
//!                        owner: i8, localsplus[] }                                          localsplus at 72
//! ```
//!
//! Those offsets are checked at run time against `PyFrame_GetCode` on every
//! frame the recorder reads (the code pointer sits at offset 0 of the
//! interpreter frame on both versions); if a build of CPython disagrees,
//! variable recording turns itself off with a warning instead of reading
//! garbage. Slot order is `co_varnames`, then the cell variables that are not
//! arguments, then `co_freevars`; a cell slot holds a cell object whose
//! contents are the variable's value.

use pyo3::ffi;

const FRAME_INTERPRETER_FRAME_OFFSET: usize = 24;
const INTERPRETER_FRAME_LOCALSPLUS_OFFSET: usize = 72;

/// How to read one local slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlotKind {
    Plain,
    /// A cell or free variable: the slot holds a cell.
    Cell,
}

/// The localsplus array of `frame`, if the layout checks out.
///
/// # Safety
/// GIL held; `frame` a live frame object.
pub(crate) unsafe fn localsplus(
    frame: *mut ffi::PyFrameObject,
) -> Option<*const *mut ffi::PyObject> {
    // SAFETY: reads at the documented offsets of live CPython structures;
    // the code check below rejects any layout we do not know.
    unsafe {
        let interpreter_frame = *frame
            .cast::<u8>()
            .add(FRAME_INTERPRETER_FRAME_OFFSET)
            .cast::<*const u8>();
        if interpreter_frame.is_null() {
            return None;
        }
        let code = ffi::PyFrame_GetCode(frame);
        let stored = *interpreter_frame.cast::<*mut ffi::PyObject>();
        ffi::Py_DecRef(code.cast());
        (stored == code.cast()).then(|| {
            interpreter_frame
                .add(INTERPRETER_FRAME_LOCALSPLUS_OFFSET)
                .cast::<*mut ffi::PyObject>()
        })
    }
}

/// The value in slot `index` (borrowed), or null when the variable is unbound.
///
/// # Safety
/// GIL held; `slots` from [`localsplus`] of a live frame; `index` below the
/// code's number of local slots.
pub(crate) unsafe fn slot_value(
    slots: *const *mut ffi::PyObject,
    index: usize,
    kind: SlotKind,
) -> *mut ffi::PyObject {
    // SAFETY: forwarded; a cell's contents are borrowed from the cell.
    unsafe {
        let value = *slots.add(index);
        if kind == SlotKind::Cell
            && !value.is_null()
            && ffi::Py_TYPE(value) == &raw mut ffi::PyCell_Type
        {
            return (*value.cast::<ffi::PyCellObject>()).ob_ref;
        }
        value
    }
}
