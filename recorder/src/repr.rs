//! Safe repr: how a recorded value becomes text.
//!
//! Built-in values (None, bool, int, float, complex, str, bytes, bytearray,
//! list, tuple, dict, set, frozenset, range, and containers of these) render
//! exactly as Python's `repr` does, computed here without running any user
//! code: `__repr__`, `__hash__` and `__eq__` of user objects are never called.
//! Any other object renders as `<module.QualName object at 0x…>`, as
//! `object.__repr__` does. A few built-in kinds whose C `repr` runs no user
//! code (functions, classes, builtin functions, floats, big ints) are asked
//! for it directly.
//!
//! Long reprs are cut the way PySnooper cuts them: the first
//! `(max - 3) / 2` characters, `...`, and the last `max - 3 - left`. The cost
//! is bounded by `max`, not by the value: the head is rendered until it is
//! long enough, then the tail is rendered backwards from the end of the
//! value (sets, which have no backwards iteration, walk their item pointers
//! once). A million-element list or a 10,000-deep nesting costs about what a
//! short one does.

use std::ffi::CStr;
use std::ptr;
use std::sync::Arc;

use chronolog_format::push_float_repr;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

/// How values are rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReprOptions {
    /// Cut to this many characters (0 = no limit).
    pub(crate) max_len: usize,
    /// `--unsafe-repr`: objects the safe repr shows as `<Type object at
    /// 0x…>` are asked for their own `repr()` (see [`user_repr`]).
    pub(crate) user_code: bool,
}

impl ReprOptions {
    /// The safe repr cut to `max_len` characters.
    pub(crate) fn safe(max_len: usize) -> ReprOptions {
        ReprOptions {
            max_len,
            user_code: false,
        }
    }
}

/// Renders `obj` into `out`, cut as `options` say.
///
/// # Safety
/// The GIL must be held and `obj` must be a valid object.
pub(crate) unsafe fn short_repr(obj: *mut ffi::PyObject, options: ReprOptions, out: &mut String) {
    // SAFETY: forwarded; this thread's scratch.
    unsafe { short_repr_in(obj, options, out, Scratch::here()) }
}

/// [`short_repr`] with the float cache and buffers of `scratch`.
///
/// # Safety
/// As [`short_repr`]; `scratch` is this thread's or, locked with what owns
/// it, a [`ReprScratch`]'s.
pub(crate) unsafe fn short_repr_in(
    obj: *mut ffi::PyObject,
    options: ReprOptions,
    out: &mut String,
    scratch: Scratch,
) {
    let max_len = options.max_len;
    let limit = if max_len == 0 {
        usize::MAX
    } else {
        max_len + 1
    };
    let t = type_of(obj);
    // SAFETY: forwarded from the caller.
    if unsafe { put_simple(obj, t, options, out, scratch.floats()) } {
        return;
    }
    // The head is rendered straight after what `out` holds (no buffer of
    // its own to allocate and copy).
    let start = out.len();
    // Only containers use the stack: scalars and objects, most values,
    // leave the buffers where they are.
    let container = t == &raw mut ffi::PyList_Type
        || t == &raw mut ffi::PyTuple_Type
        || t == &raw mut ffi::PyDict_Type
        || t == &raw mut ffi::PySet_Type
        || t == &raw mut ffi::PyFrozenSet_Type;
    let mut buffers = if container {
        scratch.take_buffers()
    } else {
        Buffers::default()
    };
    let floats = scratch.floats();
    let mut head = Head::new(limit, options.user_code, floats);
    head.text = std::mem::take(out);
    head.stack = std::mem::take(&mut buffers.stack);
    head.stack.clear();
    // SAFETY: forwarded from the caller.
    unsafe { head.render(obj) };
    let chars = head.chars;
    *out = std::mem::take(&mut head.text);
    buffers.stack = std::mem::take(&mut head.stack);
    if max_len == 0 || chars <= max_len {
        if container {
            scratch.put_buffers(buffers);
        }
        return;
    }
    if !container {
        buffers = scratch.take_buffers();
    }
    let left = max_len.saturating_sub(3) / 2;
    let right = max_len.saturating_sub(3) - left;
    let head_end = out[start..]
        .char_indices()
        .nth(left)
        .map_or(out.len(), |(i, _)| start + i);
    out.truncate(head_end);
    out.push_str("...");
    let mut tail = Tail::new(right, options.user_code, floats);
    tail.reuse(&mut buffers);
    // SAFETY: forwarded from the caller.
    unsafe { tail.render(obj) };
    tail.finish_into(out, &mut buffers);
    scratch.put_buffers(buffers);
}

/// The longest repr of a float (`-2.2250738585072014e-308`).
const MAX_FLOAT_REPR: usize = 24;

/// The number of an exact `float` that can be recorded as a number, its
/// repr rendered by the writer (see `Values::push_float`): one the cut
/// never shortens.
///
/// # Safety
/// GIL held, `obj` valid.
#[inline(always)]
pub(crate) unsafe fn deferred_float(obj: *mut ffi::PyObject, options: ReprOptions) -> Option<f64> {
    // SAFETY: reading the type of a valid object, and a float's value.
    unsafe {
        (ffi::Py_TYPE(obj) == &raw mut ffi::PyFloat_Type
            && (options.max_len == 0 || options.max_len >= MAX_FLOAT_REPR))
            .then(|| ffi::PyFloat_AS_DOUBLE(obj))
    }
}

/// Writes the repr of an `int` that fits 64 bits, a `float`, `None`,
/// `True`, `False` or an object of the program's classes (`<Type object at
/// 0x…>`) straight into `out` — the commonest values, for which the general
/// renderer's bookkeeping costs more than the text — when it surely fits
/// the cut. False (nothing written) for any other value.
///
/// # Safety
/// GIL held, `obj` valid, `t` its type.
unsafe fn put_simple(
    obj: *mut ffi::PyObject,
    t: *mut ffi::PyTypeObject,
    options: ReprOptions,
    out: &mut String,
    floats: FloatReprs,
) -> bool {
    let max_len = options.max_len;
    // SAFETY: addresses of static types and singletons; `obj` is of type `t`;
    // the prefix cache as in `object_form`.
    unsafe {
        if (*t).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE != 0 {
            if options.user_code || ffi::PyExceptionInstance_Check(obj) != 0 || is_plain_class(t) {
                return false;
            }
            return object_parts(obj, |prefix, closing| {
                // Bytes count at least the characters.
                let fits = max_len == 0 || prefix.len() + closing.len() <= max_len;
                if fits {
                    out.push_str(prefix);
                    out.push_str(closing);
                }
                fits
            });
        }
        if max_len != 0 && max_len < MAX_FLOAT_REPR {
            return false;
        }
        if t == &raw mut ffi::PyLong_Type {
            let Some(value) = small_int(obj) else {
                return false;
            };
            push_int(out, value);
        } else if t == &raw mut ffi::PyFloat_Type {
            floats.push(out, ffi::PyFloat_AS_DOUBLE(obj));
        } else if obj == ffi::Py_None() {
            out.push_str("None");
        } else if t == &raw mut ffi::PyBool_Type {
            out.push_str(if obj == ffi::Py_True() {
                "True"
            } else {
                "False"
            });
        } else {
            return false;
        }
    }
    true
}

/// Buffers one cut repr's rendering leaves for the next (emptied): rendering
/// a value allocates nothing once warm. A repr rendered while another is
/// (user code with `--unsafe-repr`) finds them taken and starts empty ones.
#[derive(Default)]
struct Buffers {
    /// Containers being rendered (the head's, then the tail's).
    stack: Vec<*mut ffi::PyObject>,
    /// The tail's reversed bytes.
    reversed: Vec<u8>,
    /// The tail's scratch piece.
    piece: String,
}

/// Cuts an arbitrary text the same way (for texts computed elsewhere).
pub(crate) fn truncate_into(text: &str, max_len: usize, out: &mut String) {
    let chars = text.chars().count();
    if max_len == 0 || chars <= max_len {
        out.push_str(text);
        return;
    }
    let left = max_len.saturating_sub(3) / 2;
    let right = max_len.saturating_sub(3) - left;
    out.extend(text.chars().take(left));
    out.push_str("...");
    out.extend(text.chars().skip(chars - right));
}

fn type_of(obj: *mut ffi::PyObject) -> *mut ffi::PyTypeObject {
    // SAFETY: every valid object has a type.
    unsafe { ffi::Py_TYPE(obj) }
}

/// Which rendering an object gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    True,
    False,
    Int,
    Float,
    Str,
    Bytes,
    ByteArray,
    List,
    Tuple,
    Dict,
    Set,
    FrozenSet,
    /// Built-in types whose C `repr` runs no user code.
    CRepr,
    /// An exception whose class keeps `BaseException.__repr__`.
    Exception,
    /// A module: its repr is computed by importlib's Python code, so it is
    /// composed here from the module's dict.
    Module,
    Other,
}

/// # Safety
/// GIL held, `obj` valid.
unsafe fn kind_of(obj: *mut ffi::PyObject) -> Kind {
    // SAFETY: taking the addresses of static type objects and singletons.
    unsafe {
        let t = type_of(obj);
        if (*t).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE != 0 {
            // A class of the program's (every other kind below is an exact
            // built-in type): most objects take this way.
            return if is_plain_exception(obj, t) {
                Kind::Exception
            } else if is_plain_class(t) {
                Kind::CRepr
            } else {
                Kind::Other
            };
        }
        if obj == ffi::Py_None() {
            Kind::None
        } else if obj == ffi::Py_True() {
            Kind::True
        } else if obj == ffi::Py_False() {
            Kind::False
        } else if t == &raw mut ffi::PyLong_Type {
            Kind::Int
        } else if t == &raw mut ffi::PyFloat_Type {
            Kind::Float
        } else if t == &raw mut ffi::PyUnicode_Type {
            Kind::Str
        } else if t == &raw mut ffi::PyBytes_Type {
            Kind::Bytes
        } else if t == &raw mut ffi::PyByteArray_Type {
            Kind::ByteArray
        } else if t == &raw mut ffi::PyList_Type {
            Kind::List
        } else if t == &raw mut ffi::PyTuple_Type {
            Kind::Tuple
        } else if t == &raw mut ffi::PyDict_Type {
            Kind::Dict
        } else if t == &raw mut ffi::PySet_Type {
            Kind::Set
        } else if t == &raw mut ffi::PyFrozenSet_Type {
            Kind::FrozenSet
        } else if t == &raw mut ffi::PyModule_Type {
            Kind::Module
        } else if t == &raw mut ffi::PyComplex_Type
            || t == &raw mut ffi::PyRange_Type
            || t == &raw mut ffi::PyFunction_Type
            || t == &raw mut ffi::PyCFunction_Type
            || t == &raw mut ffi::PyType_Type
            || t == &raw mut ffi::PyGen_Type
            || t == &raw mut ffi::PyCoro_Type
            || t == &raw mut ffi::PyAsyncGen_Type
            || t == &raw mut ffi::PyMethodDescr_Type
            || obj == ffi::Py_Ellipsis()
            || obj == ffi::Py_NotImplemented()
        {
            Kind::CRepr
        } else if is_plain_exception(obj, t) {
            Kind::Exception
        } else {
            Kind::Other
        }
    }
}

/// The type of a class whose metaclass is one of the program's
/// (`abc.ABCMeta`, any `class Meta(type)`) but keeps `type.__repr__`: the
/// class shows as `<class 'm.Name'>`, written by C code, as `repr()` shows
/// it — not as an object of the metaclass.
///
/// # Safety
/// GIL held, `t` the type of the object in question.
#[inline]
pub(crate) unsafe fn is_plain_class(t: *mut ffi::PyTypeObject) -> bool {
    // SAFETY: reading flags and slots of valid types.
    unsafe {
        (*t).tp_flags & ffi::Py_TPFLAGS_TYPE_SUBCLASS != 0
            && (*t).tp_repr.map(|f| f as usize) == ffi::PyType_Type.tp_repr.map(|f| f as usize)
    }
}

/// An exception whose class keeps `BaseException.__repr__`.
///
/// # Safety
/// GIL held, `obj` valid, `t` its type.
unsafe fn is_plain_exception(obj: *mut ffi::PyObject, t: *mut ffi::PyTypeObject) -> bool {
    // SAFETY: reading flags and slots of valid types.
    unsafe {
        ffi::PyExceptionInstance_Check(obj) != 0
            && (*t).tp_repr.map(|f| f as usize)
                == (*ffi::PyExc_BaseException.cast::<ffi::PyTypeObject>())
                    .tp_repr
                    .map(|f| f as usize)
    }
}

/// True when `obj`'s repr depends only on its identity: immutable scalars,
/// and objects shown as `<Type object at 0x…>` (unless `user_code` asks
/// their own `__repr__`, which may show anything about them). Containers,
/// bytearrays and exceptions can change in place. On every variable of
/// every event: the common answers come from a few type comparisons.
///
/// # Safety
/// GIL held, `obj` valid.
pub(crate) unsafe fn repr_fixed_by_identity(obj: *mut ffi::PyObject, user_code: bool) -> bool {
    // SAFETY: comparing type pointers and flags of a valid object.
    unsafe {
        let t = type_of(obj);
        if t == &raw mut ffi::PyList_Type
            || t == &raw mut ffi::PyTuple_Type
            || t == &raw mut ffi::PyDict_Type
            || t == &raw mut ffi::PySet_Type
            || t == &raw mut ffi::PyFrozenSet_Type
            || t == &raw mut ffi::PyByteArray_Type
            || ffi::PyExceptionInstance_Check(obj) != 0
        {
            return false;
        }
        !user_code || kind_of(obj) != Kind::Other
    }
}

/// A word standing for the value of an object whose repr is fixed by its
/// identity (see [`repr_fixed_by_identity`]), to tell it from another
/// object allocated later at the same address. The recorder keeps no
/// reference to what it recorded (that would change the program's
/// reference counts and finalization), so the freed float of `x += 1.0;
/// x += 1.0` can come back at the same address holding another value: the
/// address alone does not prove that nothing changed.
///
/// Equal stamps of objects at the same address mean equal reprs — exactly
/// for ints of one or two digits (|n| < 2^60), floats, complex numbers,
/// `None` and booleans; up to a 64-bit hash for longer ints, and for strings
/// and bytes, whose stamp covers their length and the characters a repr
/// cut to `max_len` can show (a str's cached hash, when it has one).
/// Objects shown as `<Type object at 0x…>` are told apart by their type;
/// built-ins whose repr shows more than type and address by what it shows
/// (see [`shown_stamp`]). Different stamps only cost a rendering and a
/// comparison of text.
///
/// # Safety
/// GIL held, `obj` valid.
#[inline]
pub(crate) unsafe fn identity_stamp(obj: *mut ffi::PyObject, max_len: usize) -> u64 {
    // SAFETY: forwarded.
    unsafe {
        let t = type_of(obj);
        let flags = (*t).tp_flags;
        if flags & ffi::Py_TPFLAGS_HEAPTYPE != 0 && flags & ffi::Py_TPFLAGS_TYPE_SUBCLASS == 0 {
            // An object of the program's classes (`<Type object at 0x…>`),
            // not a class: the commonest case, one flag test.
            return t as u64;
        }
        if t == &raw mut ffi::PyLong_Type {
            return int_stamp(obj);
        }
        if flags & ffi::Py_TPFLAGS_HEAPTYPE != 0 && !is_plain_class(t) {
            // A class whose metaclass shows it as an object.
            return t as u64;
        }
        summarize(obj, t, max_len).map_or_else(|| shown_stamp(obj, t, max_len), |(_, stamp)| stamp)
    }
}

/// The [`identity_stamp`] of a float of value `value`: its bits.
#[inline(always)]
pub(crate) fn float_stamp(value: f64) -> u64 {
    value.to_bits()
}

/// The stamp of a built-in object that is neither a scalar nor shown as
/// `<Type object at 0x…>`: its type, and what its C repr shows of it — a
/// range's bounds, a function's or generator's qualified name, a builtin
/// method's definition and `self`, a method descriptor's definition and
/// class, a class's version tag and name. Without it, a range or function
/// made at the address of a freed one would keep the freed one's repr.
///
/// # Safety
/// GIL held, `obj` valid, `t` its type.
#[inline(never)]
unsafe fn shown_stamp(obj: *mut ffi::PyObject, t: *mut ffi::PyTypeObject, max_len: usize) -> u64 {
    let mut stamp = t as u64;
    // SAFETY: each object's own fields, of its exact type (3.11–3.13).
    unsafe {
        if t == &raw mut ffi::PyRange_Type {
            if RANGE_LAYOUT.load(std::sync::atomic::Ordering::Relaxed) {
                let fields = &*obj.cast::<RangeObject>();
                for bound in [fields.start, fields.stop, fields.step] {
                    if !bound.is_null() && type_of(bound) == &raw mut ffi::PyLong_Type {
                        mix(&mut stamp, int_stamp(bound));
                    }
                }
            } else {
                mix(&mut stamp, ffi::PyObject_Hash(obj) as u64);
                ffi::PyErr_Clear();
            }
        } else if t == &raw mut ffi::PyFunction_Type {
            let name = (*obj.cast::<ffi::PyFunctionObject>()).func_qualname;
            mix(&mut stamp, name_stamp(name, max_len));
        } else if t == &raw mut ffi::PyGen_Type
            || t == &raw mut ffi::PyCoro_Type
            || t == &raw mut ffi::PyAsyncGen_Type
        {
            let name = (*obj.cast::<ffi::PyGenObject>()).gi_qualname;
            mix(&mut stamp, name_stamp(name, max_len));
        } else if t == &raw mut ffi::PyCFunction_Type {
            let function = &*obj.cast::<ffi::PyCFunctionObject>();
            mix(&mut stamp, function.m_ml as u64);
            mix(&mut stamp, function.m_self as u64);
            if !function.m_self.is_null() {
                mix(&mut stamp, type_of(function.m_self) as u64);
            }
        } else if t == &raw mut ffi::PyMethodDescr_Type {
            let descriptor = &*obj.cast::<ffi::PyMethodDescrObject>();
            mix(&mut stamp, descriptor.d_method as u64);
            mix(&mut stamp, descriptor.d_common.d_type as u64);
        } else if (*t).tp_flags & ffi::Py_TPFLAGS_TYPE_SUBCLASS != 0 {
            let class = obj.cast::<ffi::PyTypeObject>();
            mix(&mut stamp, u64::from((*class).tp_version_tag));
            if !(*class).tp_name.is_null() {
                let name = CStr::from_ptr((*class).tp_name).to_bytes();
                mix_bytes(&mut stamp, &name[..name.len().min(64)]);
            }
        }
    }
    stamp
}

/// The stamp of a qualified name (a str, or null).
///
/// # Safety
/// GIL held, `name` null or valid.
unsafe fn name_stamp(name: *mut ffi::PyObject, max_len: usize) -> u64 {
    // SAFETY: forwarded.
    unsafe {
        if name.is_null() || type_of(name) != &raw mut ffi::PyUnicode_Type {
            return 0;
        }
        text_stamp(name, &raw mut ffi::PyUnicode_Type, max_len)
    }
}

/// For a value whose repr is fixed by its value — int, float, complex,
/// str, bytes, bool, None — the fewest characters its repr takes (exact
/// for floats rendered lately, whose reprs are long: the closer the count,
/// the sooner a fingerprint walk stops) and its [`identity_stamp`].
/// `None` for anything else.
///
/// # Safety
/// GIL held, `obj` valid.
#[inline(always)]
pub(crate) unsafe fn scalar_summary(
    obj: *mut ffi::PyObject,
    max_len: usize,
    floats: FloatReprs,
) -> Option<(usize, u64)> {
    // SAFETY: forwarded.
    unsafe {
        let t = type_of(obj);
        // Ints and floats, the commonest items, inline; the other kinds in
        // a call.
        if t == &raw mut ffi::PyLong_Type {
            return Some((1, int_stamp(obj)));
        }
        if t == &raw mut ffi::PyFloat_Type {
            let value = ffi::PyFloat_AS_DOUBLE(obj);
            // Its exact width, for a walk that stops where the cut does.
            return Some((floats.width(value), value.to_bits()));
        }
        summarize(obj, t, max_len)
    }
}

/// [`scalar_summary`] of anything but an int, with a float's width
/// counted as 3 (callers take ints, and floats' exact widths, inline).
///
/// # Safety
/// GIL held, `obj` valid, `t` its type.
unsafe fn summarize(
    obj: *mut ffi::PyObject,
    t: *mut ffi::PyTypeObject,
    max_len: usize,
) -> Option<(usize, u64)> {
    // SAFETY: fields read are those of `obj`'s exact type.
    unsafe {
        Some(if t == &raw mut ffi::PyFloat_Type {
            (3, float_stamp(ffi::PyFloat_AS_DOUBLE(obj))) // at least `0.0`, `inf`
        } else if t == &raw mut ffi::PyUnicode_Type {
            (2, text_stamp(obj, t, max_len)) // the quotes
        } else if t == &raw mut ffi::PyBytes_Type {
            (3, text_stamp(obj, t, max_len)) // `b''`
        } else if t == &raw mut ffi::PyBool_Type || obj == ffi::Py_None() {
            (4, obj as u64) // singletons: `True`, `None`
        } else if t == &raw mut ffi::PyComplex_Type {
            let value = ffi::PyComplex_AsCComplex(obj);
            (
                2,
                value.real.to_bits() ^ value.imag.to_bits().rotate_left(32),
            ) // `0j`
        } else {
            return None;
        })
    }
}

/// An `int`'s stamp from its fields: the word after the object header —
/// `ob_size` (3.11) or `lv_tag` (3.12+), both holding sign and number of
/// digits — and the first two 30-bit digits (every int has room for at
/// least one; the second is read only when there is one), with a hash of
/// longer values. (Its width is counted as 1: an exact count would stop a
/// walk over a long list of ints a few items sooner, and costs more than
/// those items on the short lists most ints are in.)
///
/// # Safety
/// GIL held, `obj` an exact int.
#[inline(always)]
unsafe fn int_stamp(obj: *mut ffi::PyObject) -> u64 {
    // SAFETY: forwarded.
    unsafe {
        let (size, digits, _) = int_shape(obj);
        let mut stamp = size ^ (u64::from(int_digit(obj, 0)) << 8);
        if digits >= 2 {
            stamp ^= u64::from(int_digit(obj, 1)) << 38;
        }
        if digits > 2 {
            stamp ^= ffi::PyObject_Hash(obj) as u64;
        }
        stamp
    }
}

/// An exact int's size word — `ob_size` (3.11) or `lv_tag` (3.12+), right
/// after the object header — with the number of 30-bit digits and the
/// sign it holds.
///
/// # Safety
/// GIL held, `obj` an exact int.
#[inline(always)]
unsafe fn int_shape(obj: *mut ffi::PyObject) -> (u64, u64, bool) {
    // SAFETY: the int's own field, at the offset of 3.11–3.13 (64-bit).
    let size = unsafe { obj.cast::<u8>().add(16).cast::<u64>().read_unaligned() };
    #[cfg(Py_3_12)]
    let (digits, negative) = (size >> 3, size & 3 == 2);
    #[cfg(not(Py_3_12))]
    let (digits, negative) = ((size as i64).unsigned_abs(), (size as i64) < 0);
    (size, digits, negative)
}

/// Digit `i` of an exact int (digit 0 exists in every int, even 0).
///
/// # Safety
/// GIL held, `obj` an exact int with more than `i` digits (or `i` = 0).
#[inline(always)]
unsafe fn int_digit(obj: *mut ffi::PyObject, i: usize) -> u32 {
    // SAFETY: forwarded; digits follow the size word.
    unsafe {
        obj.cast::<u8>()
            .add(24 + 4 * i)
            .cast::<u32>()
            .read_unaligned()
    }
}

/// The value of an `int` (exact type) that fits 64 bits: what
/// `sys.monitoring` passes as offsets and line numbers.
///
/// # Safety
/// GIL held, `obj` valid.
#[cfg(Py_3_12)]
#[inline]
pub(crate) unsafe fn int_value(obj: *mut ffi::PyObject) -> Option<i64> {
    // SAFETY: forwarded; the type is checked.
    unsafe {
        (type_of(obj) == &raw mut ffi::PyLong_Type)
            .then(|| small_int(obj))
            .flatten()
    }
}

/// Mixes `word` into `hash` (fingerprints and stamps: fast, not
/// cryptographic).
#[inline]
pub(crate) fn mix(hash: &mut u64, word: u64) {
    *hash = (hash.rotate_left(5) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
}

/// Mixes `bytes` into `hash`, eight at a time.
pub(crate) fn mix_bytes(hash: &mut u64, bytes: &[u8]) {
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        mix(hash, u64::from_le_bytes(word));
    }
}

/// `str` and `bytes`: length, kind and a hash of the bytes at both ends
/// that a repr cut to `max_len` can show (all of them without a cut) — or,
/// for a str whose hash CPython has cached, that hash.
///
/// # Safety
/// GIL held, `obj` an exact str or bytes (`t`).
unsafe fn text_stamp(obj: *mut ffi::PyObject, t: *mut ffi::PyTypeObject, max_len: usize) -> u64 {
    // SAFETY: the data of a ready str or of a bytes object, in bounds.
    unsafe {
        let (data, len, width) = if t == &raw mut ffi::PyBytes_Type {
            let bytes = byte_contents(obj, false);
            (bytes.as_ptr(), bytes.len(), 1)
        } else {
            #[cfg(not(Py_3_12))]
            if ffi::PyUnicode_IS_READY(obj) == 0 {
                return ffi::PyUnicode_GetLength(obj) as u64;
            }
            let width = ffi::PyUnicode_KIND(obj) as usize;
            let len = ffi::PyUnicode_GET_LENGTH(obj).max(0) as usize;
            (
                ffi::PyUnicode_DATA(obj).cast::<u8>().cast_const(),
                len,
                width,
            )
        };
        let mut hash = (len as u64) << 3 ^ width as u64;
        if t == &raw mut ffi::PyUnicode_Type {
            // A str whose hash CPython has cached (every dict key, every
            // interned name) is stamped by it, not by reading its text: a
            // 64-bit hash of the whole text, as for long ints.
            let cached = (*obj.cast::<ffi::PyASCIIObject>()).hash;
            if cached != -1 {
                mix(&mut hash, cached as u64);
                return hash;
            }
        }
        let bytes = std::slice::from_raw_parts(data, len * width);
        let window = if max_len == 0 {
            bytes.len()
        } else {
            // Characters a cut repr shows at each end, and some to spare.
            (max_len + 8) * width
        };
        if bytes.len() <= 2 * window {
            mix_bytes(&mut hash, bytes);
        } else {
            mix_bytes(&mut hash, &bytes[..window]);
            mix_bytes(&mut hash, &bytes[bytes.len() - window..]);
        }
        hash
    }
}

/// `reversed(d.items())` of an exact dict (a new reference; null, the
/// error cleared, if it could not be made): C code over the dict, running
/// no code of the program, whose pair tuple is reused while no one else
/// holds it.
///
/// # Safety
/// GIL held, `dict` an exact dict.
pub(crate) unsafe fn reversed_items(dict: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: forwarded; the method names are interned once.
    unsafe {
        let py = Python::assume_attached();
        let items = ffi::PyObject_CallMethodNoArgs(dict, pyo3::intern!(py, "items").as_ptr());
        if items.is_null() {
            ffi::PyErr_Clear();
            return ptr::null_mut();
        }
        let reversed =
            ffi::PyObject_CallMethodNoArgs(items, pyo3::intern!(py, "__reversed__").as_ptr());
        ffi::Py_DecRef(items);
        if reversed.is_null() {
            ffi::PyErr_Clear();
        }
        reversed
    }
}

/// Python's own `repr` of a built-in object, for the kinds where it runs no
/// user code. `None` if it failed (the error is cleared).
///
/// # Safety
/// GIL held, `obj` valid.
unsafe fn c_repr(obj: *mut ffi::PyObject) -> Option<String> {
    // SAFETY: GIL held; the new reference is released before returning.
    unsafe {
        if let Some(text) = range_repr(obj) {
            return Some(text);
        }
        let text = ffi::PyObject_Repr(obj);
        if text.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let result = str_contents(text).map(str::to_string);
        ffi::Py_DecRef(text);
        result
    }
}

/// CPython's `rangeobject` (the same in 3.11–3.13): its bounds follow the
/// object header. Read only once [`check_range_layout`] found them there.
#[repr(C)]
struct RangeObject {
    header: ffi::PyObject,
    start: *mut ffi::PyObject,
    stop: *mut ffi::PyObject,
    step: *mut ffi::PyObject,
}

/// [`RangeObject`] matches the running CPython.
static RANGE_LAYOUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Checks [`RangeObject`] against a range made here (at import, where
/// Python code may run): `range(3, 17, 2)`.
pub(crate) fn check_range_layout(py: Python<'_>) -> PyResult<()> {
    let range = py.eval(c"range(3, 17, 2)", None, None)?;
    // SAFETY: a live range object, read within its size (four pointers
    // after the header); each bound checked to be an int before its value.
    let matches = unsafe {
        let fields = &*range.as_ptr().cast::<RangeObject>();
        [(fields.start, 3), (fields.stop, 17), (fields.step, 2)]
            .iter()
            .all(|&(bound, value)| {
                !bound.is_null()
                    && type_of(bound) == &raw mut ffi::PyLong_Type
                    && small_int(bound) == Some(value)
            })
    };
    RANGE_LAYOUT.store(matches, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// `range(start, stop[, step])` from the object's fields, as `range.__repr__`
/// writes it, without making Python strings (`PyObject_Repr` formats it
/// through `PyUnicode_FromFormat`, ~3,000 instructions). `None`: not a range,
/// or bounds beyond 64 bits.
///
/// # Safety
/// GIL held, `obj` valid.
unsafe fn range_repr(obj: *mut ffi::PyObject) -> Option<String> {
    // SAFETY: the layout was checked; bounds are ints (range() makes them so).
    unsafe {
        if type_of(obj) != &raw mut ffi::PyRange_Type
            || !RANGE_LAYOUT.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let fields = &*obj.cast::<RangeObject>();
        let bounds = [fields.start, fields.stop, fields.step];
        if bounds
            .iter()
            .any(|&b| b.is_null() || type_of(b) != &raw mut ffi::PyLong_Type)
        {
            return None;
        }
        let [start, stop, step] = [
            small_int(bounds[0])?,
            small_int(bounds[1])?,
            small_int(bounds[2])?,
        ];
        let mut text = String::with_capacity(48);
        text.push_str("range(");
        push_int(&mut text, start);
        text.push_str(", ");
        push_int(&mut text, stop);
        if step != 1 {
            text.push_str(", ");
            push_int(&mut text, step);
        }
        text.push(')');
        Some(text)
    }
}

/// The UTF-8 contents of a `str`, borrowed from it. `None` for strings with
/// lone surrogates (the error is cleared).
///
/// # Safety
/// GIL held, `text` a valid `str` that outlives the result.
pub(crate) unsafe fn str_contents<'a>(text: *mut ffi::PyObject) -> Option<&'a str> {
    // SAFETY: CPython keeps the UTF-8 buffer alive as long as the string.
    unsafe {
        let mut size: ffi::Py_ssize_t = 0;
        let data = ffi::PyUnicode_AsUTF8AndSize(text, &mut size);
        if data.is_null() {
            ffi::PyErr_Clear();
            return None;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), size as usize);
        std::str::from_utf8(bytes).ok()
    }
}

/// The message of an exception as `str(exc)` gives it for built-in
/// exceptions, computed from its args without running user code.
pub(crate) fn exception_message(exc: &Bound<'_, PyAny>, max_repr: usize, out: &mut String) {
    message_source(exc).render(max_repr, out);
}

/// What an exception's message (`str(exc)` of a built-in exception) shows.
pub(crate) enum MessageSource<'py> {
    Nothing,
    /// An `OSError`'s `str()`, shown as it is (cut).
    Os(String),
    /// The one argument, a str, shown as it is (cut).
    Text(Bound<'py, PyString>),
    /// A value whose repr is the message: the one argument (not a str, or
    /// a `KeyError`'s), or the tuple of several.
    Repr(Bound<'py, PyAny>),
}

/// Where the message of `exc` comes from (see [`exception_message`]).
pub(crate) fn message_source<'py>(exc: &Bound<'py, PyAny>) -> MessageSource<'py> {
    if let Some(text) = os_error_message(exc) {
        return MessageSource::Os(text);
    }
    // SAFETY: the C field of every exception object; GIL held.
    let args = unsafe { (*exc.as_ptr().cast::<ffi::PyBaseExceptionObject>()).args };
    if args.is_null() {
        return MessageSource::Nothing;
    }
    // SAFETY: GIL held; the exception keeps its args alive.
    let args = unsafe { Bound::from_borrowed_ptr(exc.py(), args) };
    let Ok(tuple) = args.cast::<PyTuple>() else {
        return MessageSource::Nothing;
    };
    match tuple.len() {
        0 => MessageSource::Nothing,
        1 => {
            let Ok(only) = tuple.get_item(0) else {
                return MessageSource::Nothing;
            };
            match only.cast_exact::<PyString>() {
                Ok(text) if !exc.is_instance_of::<pyo3::exceptions::PyKeyError>() => {
                    MessageSource::Text(text.clone())
                }
                _ => MessageSource::Repr(only),
            }
        }
        _ => MessageSource::Repr(args),
    }
}

impl MessageSource<'_> {
    /// Appends the message, cut to `max_repr` characters.
    pub(crate) fn render(&self, max_repr: usize, out: &mut String) {
        match self {
            MessageSource::Nothing => {}
            MessageSource::Os(text) => truncate_into(text, max_repr, out),
            MessageSource::Text(text) => truncate_into(&text.to_string_lossy(), max_repr, out),
            // SAFETY: GIL held (the value is bound); the exception keeps
            // it alive.
            MessageSource::Repr(value) => unsafe {
                short_repr(value.as_ptr(), ReprOptions::safe(max_repr), out);
            },
        }
    }
}

/// `str(exc)` of an `OSError` (`[Errno 2] No such file or directory:
/// 'x'`), when that runs no user code: `OSError`'s own `__str__`, over
/// arguments and file names of built-in types only.
fn os_error_message(exc: &Bound<'_, PyAny>) -> Option<String> {
    let py = exc.py();
    // A subtype test on the object's type: `isinstance` would also ask a
    // `__class__` the program may define (user code), and costs ~330
    // instructions a raise.
    if !exc.is_instance_of::<pyo3::exceptions::PyOSError>() {
        return None;
    }
    let os_error = py.get_type::<pyo3::exceptions::PyOSError>();
    // SAFETY: type objects are valid while the exception lives; GIL held.
    let own_str = unsafe {
        // C functions of libpython: one address each.
        (*ffi::Py_TYPE(exc.as_ptr())).tp_str.map(|f| f as usize)
            == (*os_error.as_type_ptr()).tp_str.map(|f| f as usize)
    };
    if !own_str {
        return None;
    }
    let plain = |value: &Bound<'_, PyAny>| {
        value.is_none()
            || value.is_exact_instance_of::<PyString>()
            || value.is_exact_instance_of::<pyo3::types::PyInt>()
            || value.is_exact_instance_of::<pyo3::types::PyBytes>()
    };
    // SAFETY: the C fields of every exception object; GIL held.
    let args = unsafe { (*exc.as_ptr().cast::<ffi::PyBaseExceptionObject>()).args };
    if args.is_null() {
        return None;
    }
    // SAFETY: GIL held; the exception keeps its args alive.
    let args = unsafe { Bound::from_borrowed_ptr(py, args) };
    let args = args.cast::<PyTuple>().ok()?;
    if !args.iter().all(|a| plain(&a)) {
        return None;
    }
    for name in ["filename", "filename2"] {
        // Members of the C type (its own `__str__` means its own layout).
        let value = exc.getattr(name).ok()?;
        if !plain(&value) {
            return None;
        }
    }
    exc.str().ok().map(|s| s.to_string_lossy().into_owned())
}

/// `repr(obj)` by the object's own `__repr__` (`--unsafe-repr`), with this
/// thread's events ignored while it runs (no recording of the recorder's
/// own calls, no re-entrance). If it raises, `<repr failed: ExcType:
/// message>` (the message computed without running user code); an
/// interrupt (Ctrl-C arriving meanwhile) is raised again for the program,
/// at its next instruction.
///
/// # Safety
/// GIL held, `obj` valid.
unsafe fn user_repr(obj: *mut ffi::PyObject) -> String {
    let _suspended = crate::suspend::Suspended::enter();
    // SAFETY: GIL held; the result is released before returning.
    unsafe {
        let py = pyo3::Python::assume_attached();
        let text = ffi::PyObject_Repr(obj);
        if text.is_null() {
            let mut failed = String::from("<repr failed: ");
            if let Some(error) = pyo3::PyErr::take(py) {
                if error.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                    ffi::PyErr_SetInterrupt();
                }
                let value = error.value(py);
                let name = CStr::from_ptr((*type_of(value.as_ptr())).tp_name).to_string_lossy();
                failed.push_str(name.rsplit('.').next().unwrap_or(&name));
                let mut message = String::new();
                exception_message(value.as_any(), 0, &mut message);
                if !message.is_empty() {
                    failed.push_str(": ");
                    failed.push_str(&message);
                }
            }
            failed.push('>');
            return failed;
        }
        let result = if ffi::PyUnicode_Check(text) != 0 {
            str_contents(text).map(str::to_string)
        } else {
            None
        };
        ffi::Py_DecRef(text);
        result.unwrap_or_else(|| "<repr failed: TypeError: __repr__ returned non-string>".into())
    }
}

/// `<module.QualName object at 0x…>`, as `object.__repr__` renders it,
/// handed to `out` in two pieces.
///
/// The part before the address is composed once per type and kept (with a
/// weak reference to the type, telling when its address means another):
/// objects of user classes are the most common values of all, and looking
/// their names up in the type's dict each time cost more than everything
/// else about recording them.
///
/// # Safety
/// GIL held, `obj` valid.
unsafe fn object_form(obj: *mut ffi::PyObject, out: &mut impl FnMut(&str)) {
    // SAFETY: forwarded.
    unsafe {
        object_parts(obj, |prefix, closing| {
            out(prefix);
            out(closing);
        })
    }
}

/// Calls `with` on the two parts of `obj`'s object form: `<module.QualName
/// object at ` and `0x…>`.
///
/// # Safety
/// GIL held, `obj` valid.
unsafe fn object_parts<R>(obj: *mut ffi::PyObject, with: impl FnOnce(&str, &str) -> R) -> R {
    let (text, len) = address_closing(obj as usize);
    // SAFETY: the GIL is held, so this is the only access to the cache (no
    // Python code runs while it is borrowed); `address_closing` writes
    // ASCII only.
    unsafe {
        let cache = (*OBJECT_PREFIXES.0.get()).get_or_insert_with(Default::default);
        with(
            cache.prefix(type_of(obj)),
            std::str::from_utf8_unchecked(&text[..len]),
        )
    }
}

/// `object_form` prefixes by type address (see `weak.rs`), and the last
/// type's.
#[derive(Default)]
struct PrefixCache {
    by_type: PrefixesByType,
    last: crate::weak::LastType<Arc<str>>,
}

type PrefixesByType = rustc_hash::FxHashMap<usize, (Arc<str>, crate::weak::Weak)>;

impl PrefixCache {
    /// # Safety
    /// GIL held, `t` a live type.
    unsafe fn prefix(&mut self, t: *mut ffi::PyTypeObject) -> &str {
        let by_type = &mut self.by_type;
        // SAFETY: forwarded.
        unsafe { self.last.get_or_insert_with(t, || prefix_of(by_type, t)) }
    }
}

/// The prefix for instances of `t`, from the cache or composed.
///
/// # Safety
/// GIL held, `t` a live type.
unsafe fn prefix_of(by_type: &mut PrefixesByType, t: *mut ffi::PyTypeObject) -> Arc<str> {
    let key = t as usize;
    if let Some((prefix, weak)) = by_type.get(&key)
        && weak.is(key)
    {
        return prefix.clone();
    }
    if by_type.len() >= MAX_OBJECT_PREFIXES {
        by_type.clear();
    }
    // SAFETY: forwarded.
    let prefix: Arc<str> = unsafe { object_prefix(t) }.into();
    // SAFETY: GIL held; `t` is alive.
    let type_object =
        unsafe { pyo3::Bound::from_borrowed_ptr(pyo3::Python::assume_attached(), t.cast()) };
    by_type.insert(key, (prefix.clone(), crate::weak::Weak::new(&type_object)));
    prefix
}

static OBJECT_PREFIXES: GilProtected<Option<PrefixCache>> =
    GilProtected(std::cell::UnsafeCell::new(None));

/// A value only ever used with the GIL held, which serialises every access
/// (no lock needed; rendering happens only under the GIL).
struct GilProtected<T>(std::cell::UnsafeCell<T>);

// SAFETY: see above: every access holds the GIL.
unsafe impl<T: Send> Sync for GilProtected<T> {}
/// Types whose prefixes are kept at most (then the cache starts over).
const MAX_OBJECT_PREFIXES: usize = 4096;

/// `<module.QualName object at ` for instances of `t`.
///
/// # Safety
/// GIL held, `t` valid.
unsafe fn object_prefix(t: *mut ffi::PyTypeObject) -> String {
    // SAFETY: reading the type's name and dict runs no user code.
    unsafe {
        let mut name = String::from("<");
        let module = type_module(t);
        if let Some(module) = module.as_deref()
            && module != "builtins"
        {
            name.push_str(module);
            name.push('.');
        }
        let qualname = ffi::PyType_GetQualName(t);
        match (!qualname.is_null())
            .then(|| str_contents(qualname))
            .flatten()
        {
            Some(q) => name.push_str(q),
            None => {
                ffi::PyErr_Clear();
                name.push_str(&CStr::from_ptr((*t).tp_name).to_string_lossy());
            }
        }
        if !qualname.is_null() {
            ffi::Py_DecRef(qualname);
        }
        name.push_str(" object at ");
        name
    }
}

/// `0x…>`: the address in lowercase hex, as `%p` prints it, and the `>`
/// closing an object's repr; ASCII bytes and their length.
fn address_closing(address: usize) -> ([u8; 19], usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = *b"0x0000000000000000>";
    let width = (usize::BITS - address.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in text[2..2 + width].iter_mut().rev().enumerate() {
        *digit = DIGITS[(address >> (4 * i)) & 0xf];
    }
    text[2 + width] = b'>';
    (text, 3 + width)
}

/// `<module 'name' from 'file'>`, `<module 'name' (built-in)>` or
/// `<module 'name' (frozen)>`, as importlib renders them, from the module's
/// dict and its spec's dict (no attribute hooks run).
///
/// # Safety
/// GIL held, `obj` an exact module.
unsafe fn module_repr(obj: *mut ffi::PyObject) -> String {
    // SAFETY: borrowed dict entries; no user code.
    unsafe {
        let dict = ffi::PyModule_GetDict(obj);
        let text = |d: *mut ffi::PyObject, key: &std::ffi::CStr| -> Option<String> {
            if d.is_null() || ffi::PyDict_Check(d) == 0 {
                return None;
            }
            let value = ffi::PyDict_GetItemString(d, key.as_ptr());
            (!value.is_null() && type_of(value) == &raw mut ffi::PyUnicode_Type)
                .then(|| str_contents(value).map(str::to_string))
                .flatten()
        };
        let name = text(dict, c"__name__").unwrap_or_else(|| "?".into());
        let quoted = |s: &str| {
            let mut out = String::new();
            let quote = quote_for(s.contains('\''), s.contains('"'));
            out.push(quote);
            for c in s.chars() {
                escape_char(c, quote, &mut out);
            }
            out.push(quote);
            out
        };
        let spec = if dict.is_null() {
            ptr::null_mut()
        } else {
            ffi::PyDict_GetItemString(dict, c"__spec__".as_ptr())
        };
        let spec_dict = if spec.is_null() || spec == ffi::Py_None() {
            ptr::null_mut()
        } else {
            ffi::PyObject_GenericGetDict(spec, ptr::null_mut())
        };
        if spec_dict.is_null() {
            ffi::PyErr_Clear();
        }
        // importlib: a spec with a location shows `from ORIGIN`, one without
        // shows `(ORIGIN)` (built-in, frozen); without a spec, `__file__`.
        let origin = text(spec_dict, c"origin");
        let has_location = !spec_dict.is_null() && {
            let flag = ffi::PyDict_GetItemString(spec_dict, c"_set_fileattr".as_ptr());
            flag == ffi::Py_True()
        };
        if !spec_dict.is_null() {
            ffi::Py_DecRef(spec_dict);
        }
        match (origin, has_location) {
            (Some(origin), true) => format!("<module {} from {}>", quoted(&name), quoted(&origin)),
            (Some(origin), false) => format!("<module {} ({origin})>", quoted(&name)),
            (None, _) => match text(dict, c"__file__") {
                Some(file) => format!("<module {} from {}>", quoted(&name), quoted(&file)),
                None => format!("<module {}>", quoted(&name)),
            },
        }
    }
}

/// The `__module__` of a type, read from its dict (no descriptor, no
/// metaclass code runs).
///
/// # Safety
/// GIL held, `t` valid.
unsafe fn type_module(t: *mut ffi::PyTypeObject) -> Option<String> {
    // SAFETY: a heap type's tp_dict is its (borrowed) dict.
    unsafe {
        if (*t).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE == 0 {
            let name = CStr::from_ptr((*t).tp_name).to_string_lossy();
            return Some(
                name.rsplit_once('.')
                    .map_or("builtins".to_string(), |(m, _)| m.to_string()),
            );
        }
        let dict = (*t).tp_dict;
        if dict.is_null() {
            return None;
        }
        let module = ffi::PyDict_GetItemString(dict, c"__module__".as_ptr());
        if !module.is_null() && type_of(module) == &raw mut ffi::PyUnicode_Type {
            str_contents(module).map(str::to_string)
        } else {
            None
        }
    }
}

/// Python's quote choice for a str or bytes repr: `"` when the text holds
/// `'` and no `"`, else `'`.
fn quote_for(has_single: bool, has_double: bool) -> char {
    if has_single && !has_double { '"' } else { '\'' }
}

unsafe extern "C" {
    /// `str.isprintable()` for one code point (exported by libpython).
    fn _PyUnicode_IsPrintable(ch: ffi::Py_UCS4) -> std::os::raw::c_int;
}

/// Appends `ch` as it appears inside a str repr quoted with `quote`.
fn escape_char(ch: char, quote: char, out: &mut String) {
    match ch {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x7f => out.push(c),
        // SAFETY: a pure function of the code point.
        c if unsafe { _PyUnicode_IsPrintable(c as u32) } != 0 => out.push(c),
        c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Appends byte `b` as it appears inside a bytes repr quoted with `quote`.
/// `bytearray` reprs escape `'` whatever the quote character (a CPython
/// quirk: `bytearray(b"ab\'c")`).
fn escape_byte(b: u8, quote: char, bytearray: bool, out: &mut String) {
    match b {
        b'\'' if bytearray => out.push_str("\\'"),
        b'\\' => out.push_str("\\\\"),
        b'\t' => out.push_str("\\t"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        b if b as char == quote => {
            out.push('\\');
            out.push(b as char);
        }
        b if !(0x20..0x7f).contains(&b) => out.push_str(&format!("\\x{b:02x}")),
        b => out.push(b as char),
    }
}

/// The characters of a str, read one code point at a time (works for lone
/// surrogates too, which have no UTF-8 form).
struct StrView {
    obj: *mut ffi::PyObject,
    len: usize,
}

impl StrView {
    /// # Safety
    /// GIL held, `obj` an exact `str`.
    unsafe fn new(obj: *mut ffi::PyObject) -> StrView {
        // SAFETY: forwarded.
        let len = unsafe { ffi::PyUnicode_GetLength(obj) }.max(0) as usize;
        StrView { obj, len }
    }

    fn contains(&self, ch: char) -> bool {
        // SAFETY: see `new`; FindChar scans without allocating.
        unsafe {
            ffi::PyUnicode_FindChar(self.obj, ch as u32, 0, self.len as ffi::Py_ssize_t, 1) >= 0
        }
    }

    fn quote(&self) -> char {
        quote_for(self.contains('\''), self.contains('"'))
    }

    /// A lone surrogate (which `char` cannot hold) is escaped as Python does.
    fn escape_at(&self, i: usize, quote: char, out: &mut String) {
        // SAFETY: i < len, see `new`.
        let code = unsafe { ffi::PyUnicode_ReadChar(self.obj, i as ffi::Py_ssize_t) };
        match char::from_u32(code) {
            Some(c) => escape_char(c, quote, out),
            None => out.push_str(&format!("\\u{code:04x}")),
        }
    }
}

/// The bytes of a bytes or bytearray object.
///
/// # Safety
/// GIL held, `obj` an exact bytes or bytearray, not resized while in use.
pub(crate) unsafe fn byte_contents<'a>(obj: *mut ffi::PyObject, bytearray: bool) -> &'a [u8] {
    // SAFETY: forwarded.
    unsafe {
        let (data, len) = if bytearray {
            (ffi::PyByteArray_AsString(obj), ffi::PyByteArray_Size(obj))
        } else {
            (ffi::PyBytes_AsString(obj), ffi::PyBytes_Size(obj))
        };
        if data.is_null() || len <= 0 {
            ffi::PyErr_Clear();
            return &[];
        }
        std::slice::from_raw_parts(data.cast::<u8>(), len as usize)
    }
}

/// The quote character of a bytes repr: `'`, or `"` when the bytes hold a
/// `'` and no `"`.
///
/// Python looks at every byte; past [`QUOTE_SCAN`] bytes only the first and
/// last `QUOTE_SCAN / 2` are looked at, so a huge buffer costs the same at
/// every event (its repr is cut to its head and tail anyway). The two differ
/// only when a quote character sits nowhere but in the hidden middle.
pub(crate) fn bytes_quote(bytes: &[u8]) -> char {
    let has = |byte: u8| {
        if bytes.len() <= QUOTE_SCAN {
            memchr::memchr(byte, bytes).is_some()
        } else {
            let half = QUOTE_SCAN / 2;
            memchr::memchr(byte, &bytes[..half]).is_some()
                || memchr::memchr(byte, &bytes[bytes.len() - half..]).is_some()
        }
    };
    quote_for(has(b'\''), has(b'"'))
}

/// Bytes of a bytes or bytearray value searched for quote characters.
const QUOTE_SCAN: usize = 8192;

/// Renders the beginning of a repr, up to `limit` characters.
struct Head {
    text: String,
    chars: usize,
    limit: usize,
    /// Containers being rendered, for cycles (`[...]`).
    stack: Vec<*mut ffi::PyObject>,
    /// See [`ReprOptions::user_code`].
    user_code: bool,
    floats: FloatReprs,
}

impl Head {
    fn new(limit: usize, user_code: bool, floats: FloatReprs) -> Head {
        Head {
            user_code,
            floats,
            text: String::new(),
            chars: 0,
            limit,
            stack: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        self.chars >= self.limit
    }

    #[inline]
    fn put(&mut self, s: &str) {
        if self.full() {
            return;
        }
        let room = self.limit - self.chars;
        if s.is_ascii() && s.len() <= room {
            self.chars += s.len();
            self.text.push_str(s);
        } else {
            for c in s.chars().take(room) {
                self.text.push(c);
                self.chars += 1;
            }
        }
    }

    /// Appends what `write` writes, at most `most` characters: straight
    /// into the text when all of them fit (no buffer to allocate), else
    /// through a piece cut to the room left.
    fn put_written(&mut self, most: usize, write: impl FnOnce(&mut String)) {
        if self.full() {
            return;
        }
        if self.limit - self.chars >= most {
            let before = self.text.len();
            write(&mut self.text);
            let added = &self.text[before..];
            self.chars += if added.is_ascii() {
                added.len()
            } else {
                added.chars().count()
            };
        } else {
            let mut piece = String::new();
            write(&mut piece);
            self.put(&piece);
        }
    }

    /// # Safety
    /// GIL held, `obj` valid.
    unsafe fn render(&mut self, obj: *mut ffi::PyObject) {
        if self.full() {
            return;
        }
        // SAFETY: forwarded from the caller for `obj` and every item reached.
        unsafe {
            match kind_of(obj) {
                Kind::None => self.put("None"),
                Kind::True => self.put("True"),
                Kind::False => self.put("False"),
                Kind::Int => match small_int(obj) {
                    // Digits are ASCII: counted as written, no scan.
                    Some(value) if self.limit - self.chars >= 20 => {
                        self.chars += push_int(&mut self.text, value);
                    }
                    Some(value) => self.put_written(20, |text| {
                        push_int(text, value);
                    }),
                    None => self.put(&big_int_repr(obj)),
                },
                Kind::Float => {
                    let value = ffi::PyFloat_AS_DOUBLE(obj);
                    let floats = self.floats;
                    self.put_written(24, |text| floats.push(text, value));
                }
                Kind::Str => {
                    let view = StrView::new(obj);
                    let quote = view.quote();
                    self.put_written(1, |text| text.push(quote));
                    for i in 0..view.len {
                        if self.full() {
                            return;
                        }
                        // The longest escape: `\U0001f600`.
                        self.put_written(10, |text| view.escape_at(i, quote, text));
                    }
                    self.put_written(1, |text| text.push(quote));
                }
                Kind::Bytes | Kind::ByteArray => {
                    let bytearray = kind_of(obj) == Kind::ByteArray;
                    let bytes = byte_contents(obj, bytearray);
                    let quote = bytes_quote(bytes);
                    if bytearray {
                        self.put("bytearray(");
                    }
                    self.put_written(2, |text| {
                        text.push('b');
                        text.push(quote);
                    });
                    for &b in bytes {
                        if self.full() {
                            return;
                        }
                        self.put_written(4, |text| escape_byte(b, quote, bytearray, text));
                    }
                    self.put_written(1, |text| text.push(quote));
                    if bytearray {
                        self.put(")");
                    }
                }
                Kind::List | Kind::Tuple => self.sequence(obj),
                Kind::Dict => self.dict(obj),
                Kind::Set | Kind::FrozenSet => self.set(obj),
                Kind::CRepr => match c_repr(obj) {
                    Some(text) => self.put(&text),
                    None => object_form(obj, &mut |text| self.put(text)),
                },
                Kind::Exception => self.exception(obj),
                Kind::Module => self.put(&module_repr(obj)),
                Kind::Other if self.user_code => self.put(&user_repr(obj)),
                Kind::Other => object_form(obj, &mut |text| self.put(text)),
            }
        }
    }

    /// # Safety
    /// GIL held, `obj` an exact list or tuple.
    unsafe fn sequence(&mut self, obj: *mut ffi::PyObject) {
        // SAFETY: forwarded; items are borrowed while no user code runs.
        unsafe {
            let tuple = kind_of(obj) == Kind::Tuple;
            let (open, close) = if tuple { ("(", ")") } else { ("[", "]") };
            if self.stack.contains(&obj) {
                self.put(if tuple { "(...)" } else { "[...]" });
                return;
            }
            self.stack.push(obj);
            self.put(open);
            let (items, len) = sequence_items(obj, tuple);
            for i in 0..len {
                if self.full() {
                    break;
                }
                let item = *items.add(i);
                if item.is_null() {
                    break;
                }
                // While the room surely holds `, ` and any int or float
                // repr: those, the commonest items, straight into the text.
                if self.limit - self.chars >= 2 + MAX_FLOAT_REPR {
                    if i > 0 {
                        self.text.push_str(", ");
                        self.chars += 2;
                    }
                    let t = type_of(item);
                    if t == &raw mut ffi::PyLong_Type
                        && let Some(value) = small_int(item)
                    {
                        self.chars += push_int(&mut self.text, value);
                        continue;
                    }
                    if t == &raw mut ffi::PyFloat_Type {
                        let before = self.text.len();
                        self.floats
                            .push(&mut self.text, ffi::PyFloat_AS_DOUBLE(item));
                        self.chars += self.text.len() - before; // ASCII
                        continue;
                    }
                } else if i > 0 {
                    self.put(", ");
                }
                self.render(item);
            }
            if tuple && len == 1 {
                self.put(",");
            }
            self.put(close);
            self.stack.pop();
        }
    }

    /// # Safety
    /// GIL held, `obj` an exact dict.
    unsafe fn dict(&mut self, obj: *mut ffi::PyObject) {
        // SAFETY: forwarded; PyDict_Next lends its items and runs no user code.
        unsafe {
            if self.stack.contains(&obj) {
                self.put("{...}");
                return;
            }
            self.stack.push(obj);
            self.put("{");
            let mut pos: ffi::Py_ssize_t = 0;
            let (mut key, mut value) = (ptr::null_mut(), ptr::null_mut());
            let mut first = true;
            while !self.full() && ffi::PyDict_Next(obj, &mut pos, &mut key, &mut value) != 0 {
                if !first {
                    self.put(", ");
                }
                first = false;
                self.render(key);
                self.put(": ");
                self.render(value);
            }
            self.put("}");
            self.stack.pop();
        }
    }

    /// # Safety
    /// GIL held, `obj` an exact set or frozenset.
    unsafe fn set(&mut self, obj: *mut ffi::PyObject) {
        // SAFETY: forwarded; iterating an exact set runs no user code.
        unsafe {
            let frozen = kind_of(obj) == Kind::FrozenSet;
            let name = if frozen { "frozenset" } else { "set" };
            if ffi::PySet_Size(obj) == 0 {
                self.put(name);
                self.put("()");
                return;
            }
            if self.stack.contains(&obj) {
                self.put(name);
                self.put("(...)");
                return;
            }
            self.stack.push(obj);
            self.put(if frozen { "frozenset({" } else { "{" });
            let iter = ffi::PyObject_GetIter(obj);
            if iter.is_null() {
                ffi::PyErr_Clear();
            } else {
                let mut first = true;
                while !self.full() {
                    let item = ffi::PyIter_Next(iter);
                    if item.is_null() {
                        break;
                    }
                    if !first {
                        self.put(", ");
                    }
                    first = false;
                    self.render(item);
                    ffi::Py_DecRef(item);
                }
                ffi::Py_DecRef(iter);
                ffi::PyErr_Clear();
            }
            self.put(if frozen { "})" } else { "}" });
            self.stack.pop();
        }
    }

    /// `Name(arg, ...)`, as `BaseException.__repr__` renders it.
    ///
    /// # Safety
    /// GIL held, `obj` an exception.
    unsafe fn exception(&mut self, obj: *mut ffi::PyObject) {
        // SAFETY: forwarded; the args tuple is read without user code.
        unsafe {
            let t = type_of(obj);
            let full_name = CStr::from_ptr((*t).tp_name).to_string_lossy();
            let name = full_name
                .rsplit('.')
                .next()
                .unwrap_or(&full_name)
                .to_string();
            self.put(&name);
            // The C field, not the `args` attribute a subclass could override.
            let args = (*obj.cast::<ffi::PyBaseExceptionObject>()).args;
            if args.is_null() || type_of(args) != &raw mut ffi::PyTuple_Type {
                self.put("()");
            } else if ffi::PyTuple_Size(args) == 1 {
                self.put("(");
                self.render(ffi::PyTuple_GetItem(args, 0));
                self.put(")");
            } else {
                self.render(args);
            }
        }
    }
}

/// The item array and length of an exact list or tuple (`tuple` says
/// which), as `PyList_GET_ITEM` and `PyTuple_GET_ITEM` read them.
///
/// # Safety
/// GIL held, `obj` an exact list or tuple; the items are borrowed while no
/// code runs.
#[inline(always)]
pub(crate) unsafe fn sequence_items(
    obj: *mut ffi::PyObject,
    tuple: bool,
) -> (*const *mut ffi::PyObject, usize) {
    // SAFETY: the object's own fields.
    unsafe {
        let len = ffi::Py_SIZE(obj).max(0) as usize;
        let items = if tuple {
            (*obj.cast::<ffi::PyTupleObject>()).ob_item.as_ptr()
        } else {
            (*obj.cast::<ffi::PyListObject>()).ob_item.cast_const()
        };
        (items, len)
    }
}

/// # Safety
/// GIL held, `obj` an exact list or tuple.
unsafe fn sequence_len(obj: *mut ffi::PyObject) -> usize {
    // SAFETY: forwarded.
    unsafe {
        if type_of(obj) == &raw mut ffi::PyTuple_Type {
            ffi::PyTuple_Size(obj).max(0) as usize
        } else {
            ffi::PyList_Size(obj).max(0) as usize
        }
    }
}

/// # Safety
/// GIL held, `obj` an exact list or tuple, `i` in range.
unsafe fn sequence_item(obj: *mut ffi::PyObject, i: usize) -> *mut ffi::PyObject {
    // SAFETY: forwarded; a borrowed reference.
    unsafe {
        if type_of(obj) == &raw mut ffi::PyTuple_Type {
            ffi::PyTuple_GetItem(obj, i as ffi::Py_ssize_t)
        } else {
            ffi::PyList_GetItem(obj, i as ffi::Py_ssize_t)
        }
    }
}

/// Checks that ints are laid out as [`int_stamp`] and [`small_int`] read
/// them (3.11–3.13, 64-bit, no `Py_TRACE_REFS`): values read back from
/// their fields must be what the C API made. `Err` says what differed.
///
/// # Safety
/// GIL held.
pub(crate) unsafe fn check_int_layout() -> Result<(), String> {
    const VALUES: [i64; 6] = [0, 7, -300, 123_456_789, -(1 << 40) - 3, (1 << 59) + 12_345];
    for value in VALUES {
        // SAFETY: GIL held; the new reference is released below.
        let read = unsafe {
            let obj = ffi::PyLong_FromLongLong(value);
            if obj.is_null() {
                ffi::PyErr_Clear();
                return Err("could not make an int to check the int layout".into());
            }
            let read = small_int(obj);
            ffi::Py_DecRef(obj);
            read
        };
        if read != Some(value) {
            return Err(format!(
                "this build of CPython lays ints out in a way chronolog does not know \
                 ({value} read as {read:?})"
            ));
        }
    }
    Ok(())
}

/// The value of an exact int that fits 64 bits (`None` for a larger one).
///
/// # Safety
/// GIL held, `obj` an exact int.
#[inline]
unsafe fn small_int(obj: *mut ffi::PyObject) -> Option<i64> {
    // SAFETY: forwarded.
    unsafe {
        // Up to two digits (60 bits): read directly, no call.
        let (_, digits, negative) = int_shape(obj);
        if digits <= 2 {
            let mut value = 0;
            if digits >= 1 {
                value = i64::from(int_digit(obj, 0));
            }
            if digits == 2 {
                value |= i64::from(int_digit(obj, 1)) << 30;
            }
            return Some(if negative { -value } else { value });
        }
        let mut overflow = 0;
        let value = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        if overflow == 0 && (value != -1 || ffi::PyErr_Occurred().is_null()) {
            return Some(value);
        }
        ffi::PyErr_Clear();
        None
    }
}

/// Appends the decimal digits of `value`; returns how many characters.
fn push_int(out: &mut String, value: i64) -> usize {
    let mut n = value.unsigned_abs();
    let len = usize::from(value < 0) + n.checked_ilog10().map_or(1, |d| d as usize + 1);
    // The sign, if any, is the `-` left at the front.
    let mut buf = [b'-'; 24];
    let mut i = len;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push_ascii_prefix(out, &buf, len);
    len
}

/// Appends the first `len` bytes of `bytes`, ASCII, to `out` by copying all
/// `N` into its spare room: a copy of a fixed size is a few moves, one of a
/// variable size a call to `memcpy` costing more than the digits of a
/// short int or a remembered float.
#[inline(always)]
fn push_ascii_prefix<const N: usize>(out: &mut String, bytes: &[u8; N], len: usize) {
    let len = len.min(N);
    debug_assert!(bytes[..len].is_ascii());
    out.reserve(N);
    // SAFETY: `reserve` made room for `N` more bytes; the first `len` of
    // them are ASCII, so the string stays UTF-8, and the rest lie beyond
    // its new length.
    unsafe {
        let vec = out.as_mut_vec();
        let end = vec.len();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), vec.as_mut_ptr().add(end), N);
        vec.set_len(end + len);
    }
}

/// Slots of the float repr cache: 2^8 (10 KB per thread).
const FLOAT_REPRS_BITS: u32 = 8;

/// One remembered float repr; `len` 0 is an empty slot (no repr is empty).
#[derive(Clone, Copy)]
struct FloatRepr {
    bits: u64,
    len: usize,
    text: [u8; MAX_FLOAT_REPR],
}

/// Reprs of recently rendered floats, by their bits (direct-mapped), and a
/// buffer for reprs rendered only to be remembered. A container is rendered
/// again when one of its items changed: its other floats are the same
/// values as last time (nbody's lists change one coordinate per line), and
/// the shortest digits plus CPython's layout cost ~270 instructions per
/// float against ~30 for a hit.
struct FloatSlots {
    slots: [FloatRepr; 1 << FLOAT_REPRS_BITS],
    scratch: String,
}

/// What rendering keeps between values: the float repr cache and the
/// buffers one cut repr leaves for the next. Each thread has one, looked up
/// once per rendering (each lookup is a call in a shared library; the
/// buffers and the cache in two lazily set-up thread-locals cost ~150
/// instructions per container rendered), and each recording one of its
/// own ([`ReprScratch`]), which looks nothing up.
struct ScratchSlots {
    floats: FloatSlots,
    buffers: Buffers,
}

impl ScratchSlots {
    const EMPTY: ScratchSlots = ScratchSlots {
        floats: FloatSlots {
            slots: [FloatRepr {
                bits: 0,
                len: 0,
                text: [0; MAX_FLOAT_REPR],
            }; 1 << FLOAT_REPRS_BITS],
            scratch: String::new(),
        },
        buffers: Buffers {
            stack: Vec::new(),
            reversed: Vec::new(),
            piece: String::new(),
        },
    };
}

thread_local! {
    static SCRATCH: std::cell::UnsafeCell<ScratchSlots> = const {
        std::cell::UnsafeCell::new(ScratchSlots::EMPTY)
    };
}

/// A thread's [`ScratchSlots`], or a [`ReprScratch`]'s. Not `Send`: it
/// stays on its thread, and no reference into it outlives a method call,
/// none of which calls out (the buffers are moved out while a repr renders:
/// one rendered meanwhile, by user code with `--unsafe-repr`, finds them
/// taken and starts empty ones).
#[derive(Clone, Copy)]
pub(crate) struct Scratch(*mut ScratchSlots);

impl Scratch {
    fn here() -> Scratch {
        Scratch(SCRATCH.with(std::cell::UnsafeCell::get))
    }

    pub(crate) fn floats(self) -> FloatReprs {
        // SAFETY: this thread's slots (see the type); a place, no reference.
        FloatReprs(unsafe { &raw mut (*self.0).floats })
    }

    fn take_buffers(self) -> Buffers {
        // SAFETY: this thread's slots, borrowed for the call.
        std::mem::take(unsafe { &mut (*self.0).buffers })
    }

    fn put_buffers(self, buffers: Buffers) {
        // SAFETY: as above.
        unsafe { (*self.0).buffers = buffers };
    }
}

/// The recording's rendering scratch, used by whichever thread holds it
/// locked: a buffer for one value's text, and [`ScratchSlots`] of its own,
/// so that its renderings and fingerprint walks look no thread-local up (in
/// a shared library each lookup is a call). Between renderings the slots
/// hold no object (the buffers' container stack is emptied before each use
/// and never read across them), so they may move to another thread.
pub(crate) struct ReprScratch {
    pub(crate) text: String,
    slots: Box<std::cell::UnsafeCell<ScratchSlots>>,
}

// SAFETY: see the type.
unsafe impl Send for ReprScratch {}

impl std::fmt::Debug for ReprScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReprScratch")
            .field("text", &self.text)
            .finish()
    }
}

impl ReprScratch {
    pub(crate) fn new() -> ReprScratch {
        ReprScratch {
            text: String::new(),
            slots: Box::new(std::cell::UnsafeCell::new(ScratchSlots::EMPTY)),
        }
    }

    /// A handle for renderings while `self` is borrowed mutably (by the
    /// locked recording that owns it).
    pub(crate) fn slots(&mut self) -> Scratch {
        Scratch(self.slots.get())
    }
}

/// A float repr cache (a thread's or a [`ReprScratch`]'s), looked up once
/// per rendering or fingerprint walk.
#[derive(Clone, Copy)]
pub(crate) struct FloatReprs(*mut FloatSlots);

impl FloatReprs {
    fn slot(bits: u64) -> usize {
        (bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FLOAT_REPRS_BITS)) as usize
    }

    /// The length of `value`'s repr, rendered into the cache if it is not
    /// there: a fingerprint walk over an unchanged list of floats then
    /// counts each float's width (and stops after what its cut shows)
    /// instead of the 3 characters the shortest float takes, and a changed
    /// one is rendered next anyway.
    pub(crate) fn width(self, value: f64) -> usize {
        let bits = value.to_bits();
        // SAFETY: this thread's cache (see the type), borrowed for the call.
        let cache = unsafe { &mut *self.0 };
        let entry = &mut cache.slots[Self::slot(bits)];
        if entry.len > 0 && entry.bits == bits {
            return entry.len;
        }
        cache.scratch.clear();
        push_float_repr(&mut cache.scratch, value);
        let written = cache.scratch.as_bytes();
        if written.len() <= MAX_FLOAT_REPR {
            entry.bits = bits;
            entry.len = written.len();
            entry.text[..written.len()].copy_from_slice(written);
        }
        written.len()
    }

    /// `f(repr(value))` when the cache holds it.
    pub(crate) fn with_cached<R>(self, value: f64, f: impl FnOnce(&str) -> R) -> Option<R> {
        let bits = value.to_bits();
        // SAFETY: this thread's cache (see the type), borrowed for the call.
        let entry = unsafe { &(*self.0).slots[Self::slot(bits)] };
        if entry.len == 0 || entry.bits != bits {
            return None;
        }
        // SAFETY: entries hold what `push_float_repr` wrote: ASCII.
        Some(f(unsafe {
            std::str::from_utf8_unchecked(&entry.text[..entry.len])
        }))
    }

    /// Appends `repr(value)`, from the cache or rendered into it.
    pub(crate) fn push(self, out: &mut String, value: f64) {
        let bits = value.to_bits();
        let slot = Self::slot(bits);
        // SAFETY: this thread's cache (see the type), borrowed for the call.
        let entry = unsafe { &mut (*self.0).slots[slot] };
        if entry.len > 0 && entry.bits == bits {
            // Entries hold what `push_float_repr` wrote: ASCII.
            push_ascii_prefix(out, &entry.text, entry.len);
            return;
        }
        let start = out.len();
        push_float_repr(out, value);
        let written = &out.as_bytes()[start..];
        if written.len() <= MAX_FLOAT_REPR {
            entry.bits = bits;
            entry.len = written.len();
            entry.text[..written.len()].copy_from_slice(written);
        }
    }
}

/// Decimal text of an int beyond 64 bits.
///
/// # Safety
/// GIL held, `obj` an exact int.
unsafe fn big_int_repr(obj: *mut ffi::PyObject) -> String {
    // Python's own conversion; it refuses ints of more than 4,300 digits.
    // SAFETY: forwarded.
    unsafe { c_repr(obj) }.unwrap_or_else(|| "<int too large to show>".to_string())
}

/// Renders the end of a repr backwards, until `need` characters are known.
///
/// Pieces arrive last first; each is appended byte-reversed to one buffer,
/// and the buffer is reversed once at the end, which restores every piece
/// (UTF-8 sequences included) in reading order without an allocation per
/// piece.
struct Tail {
    reversed: Vec<u8>,
    chars: usize,
    need: usize,
    stack: Vec<*mut ffi::PyObject>,
    /// Scratch text for one character's escape or one scalar's repr.
    piece: String,
    /// See [`ReprOptions::user_code`].
    user_code: bool,
    floats: FloatReprs,
}

impl Tail {
    fn new(need: usize, user_code: bool, floats: FloatReprs) -> Tail {
        Tail {
            user_code,
            floats,
            reversed: Vec::new(),
            chars: 0,
            need,
            stack: Vec::new(),
            piece: String::new(),
        }
    }

    fn done(&self) -> bool {
        self.chars >= self.need
    }

    #[inline]
    fn put(&mut self, s: &str) {
        if !self.done() {
            self.chars += if s.is_ascii() {
                s.len()
            } else {
                s.chars().count()
            };
            self.reversed.extend(s.bytes().rev());
        }
    }

    fn put_piece(&mut self) {
        let piece = std::mem::take(&mut self.piece);
        self.put(&piece);
        self.piece = piece;
        self.piece.clear();
    }

    /// Renders into the buffers a previous repr left.
    fn reuse(&mut self, buffers: &mut Buffers) {
        self.stack = std::mem::take(&mut buffers.stack);
        self.stack.clear();
        self.reversed = std::mem::take(&mut buffers.reversed);
        self.reversed.clear();
        self.piece = std::mem::take(&mut buffers.piece);
        self.piece.clear();
    }

    /// Appends the tail to `out` and hands the buffers back.
    fn finish_into(mut self, out: &mut String, buffers: &mut Buffers) {
        self.reversed.reverse();
        if self.reversed.is_ascii() {
            // The commonest tail: a character a byte, nothing to decode.
            let start = self.reversed.len().saturating_sub(self.need);
            out.push_str(std::str::from_utf8(&self.reversed[start..]).unwrap_or_default());
        } else {
            let text = String::from_utf8_lossy(&self.reversed);
            let skip = text.chars().count().saturating_sub(self.need);
            let start = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
            out.push_str(&text[start..]);
        }
        buffers.stack = self.stack;
        buffers.reversed = self.reversed;
        buffers.piece = self.piece;
    }

    /// # Safety
    /// GIL held, `obj` valid.
    unsafe fn render(&mut self, obj: *mut ffi::PyObject) {
        if self.done() {
            return;
        }
        // SAFETY: forwarded from the caller for `obj` and every item reached.
        unsafe {
            match kind_of(obj) {
                Kind::Str => {
                    let view = StrView::new(obj);
                    let quote = view.quote();
                    self.put(quote.encode_utf8(&mut [0; 4]));
                    let mut i = view.len;
                    while i > 0 && !self.done() {
                        i -= 1;
                        view.escape_at(i, quote, &mut self.piece);
                        self.put_piece();
                    }
                    if i == 0 {
                        self.put(quote.encode_utf8(&mut [0; 4]));
                    }
                }
                Kind::Bytes | Kind::ByteArray => {
                    let bytearray = kind_of(obj) == Kind::ByteArray;
                    let bytes = byte_contents(obj, bytearray);
                    let quote = bytes_quote(bytes);
                    if bytearray {
                        self.put(")");
                    }
                    self.put(quote.encode_utf8(&mut [0; 4]));
                    let mut i = bytes.len();
                    while i > 0 && !self.done() {
                        i -= 1;
                        escape_byte(bytes[i], quote, bytearray, &mut self.piece);
                        self.put_piece();
                    }
                    if i == 0 {
                        self.put(if quote == '"' { "b\"" } else { "b'" });
                        if bytearray {
                            self.put("bytearray(");
                        }
                    }
                }
                Kind::List | Kind::Tuple => {
                    let tuple = kind_of(obj) == Kind::Tuple;
                    if self.stack.contains(&obj) {
                        self.put(if tuple { "(...)" } else { "[...]" });
                        return;
                    }
                    self.stack.push(obj);
                    let len = sequence_len(obj);
                    self.put(if tuple { ")" } else { "]" });
                    if tuple && len == 1 {
                        self.put(",");
                    }
                    let mut i = len;
                    while i > 0 && !self.done() {
                        i -= 1;
                        self.render(sequence_item(obj, i));
                        if i > 0 {
                            self.put(", ");
                        }
                    }
                    if i == 0 {
                        self.put(if tuple { "(" } else { "[" });
                    }
                    self.stack.pop();
                }
                Kind::Dict => self.dict(obj),
                Kind::Set | Kind::FrozenSet => self.set(obj),
                _ => {
                    // Scalars and objects: short enough to render whole.
                    let mut head = Head::new(usize::MAX, self.user_code, self.floats);
                    head.text = std::mem::take(&mut self.piece);
                    head.render(obj);
                    self.piece = head.text;
                    self.put_piece();
                }
            }
        }
    }

    /// # Safety
    /// GIL held, `obj` an exact dict.
    unsafe fn dict(&mut self, obj: *mut ffi::PyObject) {
        // SAFETY: forwarded; `reversed(d.items())` is C code over an exact dict.
        unsafe {
            if self.stack.contains(&obj) {
                self.put("{...}");
                return;
            }
            self.stack.push(obj);
            self.put("}");
            let reversed = reversed_items(obj);
            let mut remaining = ffi::PyDict_Size(obj);
            if !reversed.is_null() {
                while !self.done() {
                    let pair = ffi::PyIter_Next(reversed);
                    if pair.is_null() {
                        break;
                    }
                    remaining -= 1;
                    self.render(ffi::PyTuple_GetItem(pair, 1));
                    self.put(": ");
                    self.render(ffi::PyTuple_GetItem(pair, 0));
                    if remaining > 0 {
                        self.put(", ");
                    }
                    ffi::Py_DecRef(pair);
                }
                ffi::Py_DecRef(reversed);
            }
            ffi::PyErr_Clear();
            self.put("{");
            self.stack.pop();
        }
    }

    /// # Safety
    /// GIL held, `obj` an exact set or frozenset.
    unsafe fn set(&mut self, obj: *mut ffi::PyObject) {
        // SAFETY: forwarded; the item pointers stay valid: the set is not
        // changed while no user code runs, and it holds them.
        unsafe {
            let frozen = kind_of(obj) == Kind::FrozenSet;
            if ffi::PySet_Size(obj) == 0 || self.stack.contains(&obj) {
                let mut head = Head::new(usize::MAX, self.user_code, self.floats);
                head.stack = self.stack.clone();
                head.set(obj);
                self.put(&head.text);
                return;
            }
            self.stack.push(obj);
            self.put(if frozen { "})" } else { "}" });
            // Sets cannot be walked backwards: keep the last `need` items.
            let keep = self.need.max(1);
            let mut last: std::collections::VecDeque<*mut ffi::PyObject> =
                std::collections::VecDeque::new();
            let iter = ffi::PyObject_GetIter(obj);
            let total = ffi::PySet_Size(obj).max(0) as usize;
            if !iter.is_null() {
                loop {
                    let item = ffi::PyIter_Next(iter);
                    if item.is_null() {
                        break;
                    }
                    // Borrowed from here on: the set keeps the item alive.
                    ffi::Py_DecRef(item);
                    if last.len() == keep {
                        last.pop_front();
                    }
                    last.push_back(item);
                }
                ffi::Py_DecRef(iter);
            }
            ffi::PyErr_Clear();
            let shown = last.len();
            for (n, &item) in last.iter().rev().enumerate() {
                if self.done() {
                    break;
                }
                self.render(item);
                if n + 1 < shown || total > shown {
                    self.put(", ");
                }
            }
            if shown == total {
                self.put(if frozen { "frozenset({" } else { "{" });
            }
            self.stack.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::address_closing;

    #[test]
    fn addresses_print_as_pointers_do() {
        for address in [0usize, 1, 0xf, 0x10, 0x7f12_3456_789a, usize::MAX] {
            let (text, len) = address_closing(address);
            let expected = format!("{:p}>", address as *const u8);
            assert_eq!(&text[..len], expected.as_bytes());
        }
    }
}

#[cfg(test)]
mod float_tests {
    use super::Scratch;
    use chronolog_format::push_float_repr;

    #[test]
    fn cached_float_reprs_match_fresh_ones_whatever_the_collisions() {
        // Thousands of values over 256 slots: every slot is overwritten many times.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let values: Vec<f64> = (0..4000)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if i % 50 == 0 {
                    [f64::NAN, f64::INFINITY, -0.0, 1e16, 0.00001][i / 50 % 5]
                } else if i % 2 == 0 {
                    f64::from_bits(state)
                } else {
                    (i % 97) as f64 / 8.0
                }
            })
            .collect();
        for _ in 0..2 {
            for &value in &values {
                let (mut cached, mut fresh) = (String::new(), String::new());
                Scratch::here().floats().push(&mut cached, value);
                push_float_repr(&mut fresh, value);
                assert_eq!(cached, fresh);
            }
        }
    }
}
