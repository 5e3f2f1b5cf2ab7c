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

/// The last types looked up in a cache and what was found for each
/// (`N` of them, by address, one per slot): values of one type tend to
/// come in runs, or to alternate among a few. A type's `tp_version_tag` is
/// never given to another type (0: none yet, then not trusted), so the
/// same address and tag are the same type, alive or not in between: no
/// lookup, no weak reference to check.
#[derive(Debug)]
pub(crate) struct LastType<T, const N: usize = 1> {
    slots: [Option<(usize, u32, T)>; N],
}

impl<T, const N: usize> Default for LastType<T, N> {
    fn default() -> Self {
        LastType {
            slots: std::array::from_fn(|_| None),
        }
    }
}

impl<T, const N: usize> LastType<T, N> {
    /// The slot of type `t` and its tag.
    ///
    /// # Safety
    /// GIL held, `t` a live type.
    #[inline]
    unsafe fn place(t: *mut ffi::PyTypeObject) -> (usize, usize, u32) {
        let key = t as usize;
        // Types are hundreds of bytes apart: the address above the low bits.
        let slot = if N == 1 { 0 } else { (key >> 6) % N };
        // SAFETY: reading a live type's tag.
        (slot, key, unsafe { (*t).tp_version_tag })
    }

    /// What was remembered for `t`, if `t` is a type remembered last in
    /// its slot.
    ///
    /// # Safety
    /// GIL held, `t` a live type.
    #[inline]
    pub(crate) unsafe fn get(&self, t: *mut ffi::PyTypeObject) -> Option<&T> {
        // SAFETY: forwarded.
        let (slot, key, tag) = unsafe { Self::place(t) };
        match &self.slots[slot] {
            Some((k, last_tag, value)) if *k == key && *last_tag == tag && tag != 0 => Some(value),
            _ => None,
        }
    }

    /// What was remembered for `t`, or `make()`'s value, remembered.
    ///
    /// # Safety
    /// GIL held, `t` a live type.
    #[inline]
    pub(crate) unsafe fn get_or_insert_with(
        &mut self,
        t: *mut ffi::PyTypeObject,
        make: impl FnOnce() -> T,
    ) -> &T {
        // SAFETY: forwarded.
        let (slot, key, tag) = unsafe { Self::place(t) };
        let entry = &mut self.slots[slot];
        let hit = matches!(entry, Some((k, g, _)) if *k == key && *g == tag && tag != 0);
        if !hit {
            *entry = None;
        }
        &entry.get_or_insert_with(|| (key, tag, make())).2
    }

    /// Remembers `value` for `t`; returns it.
    ///
    /// # Safety
    /// GIL held, `t` a live type.
    pub(crate) unsafe fn set(&mut self, t: *mut ffi::PyTypeObject, value: T) -> &T {
        // SAFETY: forwarded.
        let (slot, key, tag) = unsafe { Self::place(t) };
        &self.slots[slot].insert((key, tag, value)).2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_type_is_recognised_by_address_and_a_nonzero_tag() {
        // SAFETY: all-zero type objects are valid for reading the tag,
        // which is all `LastType` reads.
        let (mut a, mut b): (ffi::PyTypeObject, ffi::PyTypeObject) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        a.tp_version_tag = 7;
        b.tp_version_tag = 7;
        let mut last: LastType<i32> = LastType::default();
        // SAFETY: as above.
        unsafe {
            assert!(last.get(&mut a).is_none());
            assert_eq!(*last.set(&mut a, 1), 1);
            assert_eq!(last.get(&mut a), Some(&1));
            assert!(last.get(&mut b).is_none(), "another address");
            a.tp_version_tag = 9; // the type was modified
            assert!(last.get(&mut a).is_none());
            a.tp_version_tag = 0; // no tag: never trusted
            assert_eq!(*last.set(&mut a, 2), 2);
            assert!(last.get(&mut a).is_none());
            b.tp_version_tag = 11;
            assert_eq!(*last.get_or_insert_with(&mut b, || 3), 3);
            assert_eq!(
                *last.get_or_insert_with(&mut b, || 4),
                3,
                "kept, not made again"
            );
        }
    }

    #[test]
    fn a_few_ways_keep_types_that_alternate() {
        // SAFETY: as above (all-zero type objects, only tags read).
        let mut types: Vec<ffi::PyTypeObject> =
            (0..16).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (n, t) in types.iter_mut().enumerate() {
            t.tp_version_tag = n as u32 + 1;
        }
        let mut recent: LastType<usize, 8> = LastType::default();
        // SAFETY: as above.
        unsafe {
            for (n, t) in types.iter_mut().enumerate() {
                recent.set(t, n);
            }
            // Each type is either still there, with its own value, or gone:
            // never another type's.
            let mut kept = 0;
            for (n, t) in types.iter_mut().enumerate() {
                if let Some(&value) = recent.get(t) {
                    assert_eq!(value, n);
                    kept += 1;
                }
            }
            assert!((1..=8).contains(&kept), "{kept}");
        }
    }
}
