//! Caches keyed by object address without keeping the objects alive.
//!
//! The recorder remembers things about code objects and types by their
//! address. Holding a strong reference would keep every class and code
//! object the program ever made alive — a program creating classes in a loop
//! would see them outlive their last use, and its weak references and
//! finalizers behave differently under recording. A weak reference instead
//! says whether the address still means the same object: CPython sets the
//! referent of a dead object's weak references to None, so the check is one
//! read, no call into Python.

use pyo3::ffi;
use pyo3::prelude::*;

/// What became of the object an entry was made for.
#[derive(Debug)]
pub(crate) struct Weak {
    /// A weak reference, or the object itself for the rare kinds that
    /// cannot be weakly referenced.
    handle: Py<PyAny>,
    strong: bool,
}

impl Weak {
    pub(crate) fn new(object: &Bound<'_, PyAny>) -> Weak {
        // SAFETY: GIL held (we have a Bound); a new reference or an error.
        let weak = unsafe { ffi::PyWeakref_NewRef(object.as_ptr(), std::ptr::null_mut()) };
        if weak.is_null() {
            // SAFETY: GIL held; the object cannot be weakly referenced.
            unsafe { ffi::PyErr_Clear() };
            return Weak {
                handle: object.clone().unbind(),
                strong: true,
            };
        }
        Weak {
            // SAFETY: a new reference, owned from here on.
            handle: unsafe { Bound::from_owned_ptr(object.py(), weak) }.unbind(),
            strong: false,
        }
    }

    /// The object, while it lives (borrowed; GIL held by the caller).
    pub(crate) fn get(&self) -> Option<*mut ffi::PyObject> {
        if self.strong {
            return Some(self.handle.as_ptr());
        }
        // SAFETY: a live weak reference object; reading its referent field.
        let referent = unsafe { (*self.handle.as_ptr().cast::<ffi::_PyWeakReference>()).wr_object };
        // SAFETY: comparing against the None singleton.
        (referent != unsafe { ffi::Py_None() }).then_some(referent)
    }

    /// True while the object made at `address` is still the one there.
    pub(crate) fn is(&self, address: usize) -> bool {
        self.get().is_some_and(|object| object as usize == address)
    }
}
