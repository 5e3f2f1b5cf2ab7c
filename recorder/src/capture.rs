//! Captured values: what the repr of a changed list or tuple of scalars
//! shows, copied as bytes on the program's thread and turned into text on
//! the writer's (a [`chronolog_format::Deferred`] value).
//!
//! Rendering is most of what recording a changed container costs: a
//! float's shortest round-trip digits alone take hundreds of instructions,
//! and a list of floats that changes at every line (nbody's velocities) is
//! rendered again at every line. Copying the items' bits costs a few.
//! Whether a container changed is still told by its fingerprint
//! (`locals.rs`): a capture is taken only when that differs. A float bound
//! to a variable is rendered where it is (it fills the float repr cache
//! whose exact widths keep fingerprint walks over long lists of floats
//! short).
//!
//! A capture is a header — the cut length (`max_repr`) — and tokens, each
//! one piece of the repr's text: a bracket, a separator, an int, a float's
//! bits, or a text rendered here (an object's `<T object at 0x…>`, a short
//! string's repr). Like a fingerprint walk (`locals.rs`), the walk counts
//! the fewest characters each piece takes, and gives up once the repr is
//! surely longer than `max_repr`: a cut repr shows its two ends, which only
//! the renderer's exact widths locate, and a walk over the visible ends
//! with a fingerprint (`locals.rs`) is then cheaper than a capture that
//! must hold more than is shown. Anything else — dicts, long strings, big
//! ints, exceptions, user reprs — is not captured either: the caller
//! renders it as before.
//!
//! A capture can still stand for a cut repr (the widths counted are the
//! fewest), and equal reprs can then come from different captures (a
//! change where the cut repr does not show): a variable change carries the
//! capture it replaces, and the writer drops it when both texts are equal.

use pyo3::ffi;

use crate::repr::{
    FloatReprs, ReprOptions, object_parts, push_int, sequence_items, short_repr, small_int,
    truncate_into,
};

const INT: u8 = 1;
const FLOAT: u8 = 2;
const TEXT: u8 = 3;
const LIST_OPEN: u8 = 4;
const TUPLE_OPEN: u8 = 5;
const LIST_CLOSE: u8 = 6;
const TUPLE_CLOSE: u8 = 7;
/// `,)` closing a one-item tuple.
const SINGLE_CLOSE: u8 = 8;
const SEPARATOR: u8 = 9;
const NONE: u8 = 10;
const TRUE: u8 = 11;
const FALSE: u8 = 12;

/// Strings longer than this (in characters) are not captured: their repr
/// would be cut inside them, which the capture does not model.
const MAX_STRING: usize = 64;
/// Nesting followed at most (deeper values, and cycles, are not captured).
const MAX_DEPTH: usize = 8;

/// Captures `obj` into `out` (cleared first): true for an exact list or
/// tuple of ints of up to 64 bits, floats, `None`,
/// booleans, short strings, objects shown as `<T object at 0x…>` and such
/// lists and tuples, whose repr is not surely longer than `max_repr`. False
/// (and `out` meaningless) for anything else, for `--unsafe-repr` and for
/// uncut reprs (`max_repr` 0).
///
/// # Safety
/// GIL held, `obj` valid.
#[inline]
pub(crate) unsafe fn capture(
    obj: *mut ffi::PyObject,
    options: ReprOptions,
    out: &mut Vec<u8>,
) -> bool {
    // SAFETY: forwarded.
    unsafe {
        let t = ffi::Py_TYPE(obj);
        if (t != &raw mut ffi::PyList_Type && t != &raw mut ffi::PyTuple_Type)
            || options.user_code
            || options.max_len == 0
        {
            return false;
        }
        out.clear();
        out.extend_from_slice(
            &u32::try_from(options.max_len)
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        let mut walk = Walk {
            out,
            budget: options.max_len + 1,
            text: String::new(),
        };
        walk.value(obj, 0) == Seen::Whole
    }
}

/// Bytes of the header: the cut length.
const HEADER: usize = 4;

/// What a walk saw of a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Whole,
    /// Its first pieces: the repr is surely longer than the cut length.
    Prefix,
    /// Something a capture cannot hold.
    Unknown,
}

struct Walk<'a> {
    out: &'a mut Vec<u8>,
    /// Characters still to be surely covered.
    budget: usize,
    /// Scratch text for a string's repr.
    text: String,
}

impl Walk<'_> {
    /// Emits a fixed piece of `chars` characters.
    fn piece(&mut self, token: u8, chars: usize) {
        self.out.push(token);
        self.budget = self.budget.saturating_sub(chars);
    }

    /// # Safety
    /// GIL held, `obj` valid; no code runs during the walk.
    unsafe fn value(&mut self, obj: *mut ffi::PyObject, depth: usize) -> Seen {
        if self.budget == 0 {
            return Seen::Prefix;
        }
        // SAFETY: forwarded; fields read are those of the exact types checked.
        unsafe {
            let t = ffi::Py_TYPE(obj);
            if let Some(seen) = self.number(obj, t) {
                return seen;
            }
            if t == &raw mut ffi::PyList_Type || t == &raw mut ffi::PyTuple_Type {
                return self.sequence(obj, t == &raw mut ffi::PyTuple_Type, depth);
            } else if obj == ffi::Py_None() {
                self.piece(NONE, 4);
            } else if obj == ffi::Py_True() {
                self.piece(TRUE, 4);
            } else if obj == ffi::Py_False() {
                self.piece(FALSE, 5);
            } else if (*t).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE != 0
                && ffi::PyExceptionInstance_Check(obj) == 0
            {
                // `<module.QualName object at 0x…>` (ASCII but the name).
                let out = &mut *self.out;
                let chars = object_parts(obj, |prefix, closing| {
                    push_text(out, &[prefix, closing]);
                    prefix.chars().count() + closing.len()
                });
                self.budget = self.budget.saturating_sub(chars);
            } else if t == &raw mut ffi::PyUnicode_Type
                && ffi::PyUnicode_GetLength(obj) as usize <= MAX_STRING
            {
                let mut text = std::mem::take(&mut self.text);
                text.clear();
                short_repr(obj, ReprOptions::safe(0), &mut text);
                push_text(self.out, &[&text]);
                self.budget = self.budget.saturating_sub(text.chars().count());
                self.text = text;
            } else {
                return Seen::Unknown;
            }
            Seen::Whole
        }
    }

    /// An int or a float (the commonest items, taken inline); `None` for
    /// anything else.
    ///
    /// # Safety
    /// As [`Walk::value`], `t` the type of `obj`.
    #[inline(always)]
    unsafe fn number(
        &mut self,
        obj: *mut ffi::PyObject,
        t: *mut ffi::PyTypeObject,
    ) -> Option<Seen> {
        // SAFETY: forwarded; the fields of the exact types checked.
        unsafe {
            let (token, word, chars) = if t == &raw mut ffi::PyLong_Type {
                let Some(value) = small_int(obj) else {
                    return Some(Seen::Unknown);
                };
                (INT, value as u64, int_width(value))
            } else if t == &raw mut ffi::PyFloat_Type {
                let value = ffi::PyFloat_AS_DOUBLE(obj);
                // Every NaN prints `nan`: one capture for all of them.
                let value = if value.is_nan() { f64::NAN } else { value };
                (FLOAT, value.to_bits(), 3) // at least `0.0`, `inf`
            } else {
                return None;
            };
            let mut piece = [token; 9];
            piece[1..].copy_from_slice(&word.to_le_bytes());
            self.out.extend_from_slice(&piece);
            self.budget = self.budget.saturating_sub(chars);
            Some(Seen::Whole)
        }
    }

    /// # Safety
    /// As [`Walk::value`], `obj` an exact list or tuple.
    unsafe fn sequence(&mut self, obj: *mut ffi::PyObject, tuple: bool, depth: usize) -> Seen {
        if depth >= MAX_DEPTH {
            return Seen::Unknown;
        }
        // SAFETY: forwarded.
        let (items, len) = unsafe { sequence_items(obj, tuple) };
        let (open, close) = match (tuple, len) {
            (false, _) => (LIST_OPEN, LIST_CLOSE),
            (true, 1) => (TUPLE_OPEN, SINGLE_CLOSE),
            (true, _) => (TUPLE_OPEN, TUPLE_CLOSE),
        };
        self.piece(open, 1);
        for i in 0..len {
            if i > 0 {
                if self.budget == 0 {
                    return Seen::Prefix;
                }
                self.piece(SEPARATOR, 2);
            }
            // SAFETY: i < len; items are borrowed while no code runs.
            let item = unsafe { *items.add(i) };
            if item.is_null() {
                return Seen::Unknown;
            }
            // SAFETY: forwarded.
            let seen = unsafe {
                match self.number(item, ffi::Py_TYPE(item)) {
                    Some(seen) => seen,
                    None => self.value(item, depth + 1),
                }
            };
            if seen != Seen::Whole {
                return seen;
            }
        }
        self.piece(close, 1);
        Seen::Whole
    }
}

/// The fewest characters `value` takes in decimal, from its bit length
/// (a number of `b` bits has at least `⌊(b − 1)·log10 2⌋ + 1` digits; no
/// division).
fn int_width(value: i64) -> usize {
    let bits = (64 - value.unsigned_abs().leading_zeros()) as usize;
    ((bits.saturating_sub(1) * 1233) >> 12) + 1 + usize::from(value < 0)
}

fn push_text(out: &mut Vec<u8>, parts: &[&str]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(TEXT);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
}

/// A capture of `text` itself: how a value rendered as text is compared
/// with a captured one (see [`chronolog_format::Deferred::push_replacing`]).
pub(crate) fn capture_text(text: &str, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&0u32.to_le_bytes()); // never cut again
    push_text(out, &[text]);
}

/// The repr a capture stands for, exactly as `short_repr` renders the
/// value; false for bytes that are no capture. The writer thread's
/// [`chronolog_format::RenderDeferred`].
pub(crate) fn render(bytes: &[u8], out: &mut String) -> bool {
    render_into(bytes, out).is_some()
}

fn render_into(bytes: &[u8], out: &mut String) -> Option<()> {
    let (max_len, tokens_bytes) = bytes.split_first_chunk::<HEADER>()?;
    let mut text = String::new();
    tokens(tokens_bytes, FloatReprs::here(), |piece| {
        text.push_str(piece)
    })?;
    truncate_into(&text, u32::from_le_bytes(*max_len) as usize, out);
    Some(())
}

/// Calls `piece` with the text of each token of `bytes`, in their order.
fn tokens(mut bytes: &[u8], floats: FloatReprs, mut piece: impl FnMut(&str)) -> Option<()> {
    let mut number = String::new();
    while let Some((&token, rest)) = bytes.split_first() {
        bytes = rest;
        let word = |bytes: &mut &[u8]| -> Option<u64> {
            let (value, rest) = bytes.split_first_chunk::<8>()?;
            *bytes = rest;
            Some(u64::from_le_bytes(*value))
        };
        match token {
            INT => {
                number.clear();
                push_int(&mut number, word(&mut bytes)? as i64);
                piece(&number);
            }
            FLOAT => {
                number.clear();
                floats.push(&mut number, f64::from_bits(word(&mut bytes)?));
                piece(&number);
            }
            TEXT => {
                let (len, rest) = bytes.split_first_chunk::<4>()?;
                let len = u32::from_le_bytes(*len) as usize;
                let text = rest.get(..len)?;
                bytes = &rest[len..];
                piece(std::str::from_utf8(text).ok()?);
            }
            LIST_OPEN => piece("["),
            TUPLE_OPEN => piece("("),
            LIST_CLOSE => piece("]"),
            TUPLE_CLOSE => piece(")"),
            SINGLE_CLOSE => piece(",)"),
            SEPARATOR => piece(", "),
            NONE => piece("None"),
            TRUE => piece("True"),
            FALSE => piece("False"),
            _ => return None,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_are_never_counted_wider_than_their_digits() {
        for shift in 0..63 {
            for value in [
                1i64 << shift,
                (1i64 << shift) - 1,
                -(1i64 << shift),
                10i64.pow(shift / 4),
            ] {
                let width = int_width(value);
                let digits = value.to_string().len();
                assert!(width <= digits && width + 1 >= digits, "{value}: {width}");
            }
        }
        assert_eq!(int_width(i64::MIN), 20);
    }

    #[test]
    fn texts_render_as_themselves_and_garbage_is_refused() {
        let mut bytes = Vec::new();
        capture_text("[1, 'é']", &mut bytes);
        let mut out = String::new();
        assert!(render(&bytes, &mut out));
        assert_eq!(out, "[1, 'é']");
        for garbage in [
            &[][..],
            &[1, 2, 3],
            &[0, 0, 0, 0, 99],
            &[0, 0, 0, 0, 1, 9, 0, 0, 0],
        ] {
            assert!(!render(garbage, &mut String::new()), "{garbage:?}");
        }
    }
}
