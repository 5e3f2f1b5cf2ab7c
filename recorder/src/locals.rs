//! Variable changes: comparing a frame's locals with their last recorded
//! state, with PySnooper's semantics (contract §3).
//!
//! A value is rendered only when it may have changed: a local bound to the
//! same object as before, with the same [`identity_stamp`], is skipped
//! outright when its repr is fixed by its identity (scalars, `<Type object
//! at 0x…>` objects), and containers are compared through a [`fingerprint`]
//! of everything their cut repr shows, so an unchanged list is not rendered
//! again while an in-place mutation is still seen. No reference to a value
//! is kept, so an address alone proves nothing: a freed value's address is
//! soon given to another value.

use chronolog_format::{TraceWriter, Values, VarChange, VarRecord, push_float_repr};
use pyo3::ffi;
use pyo3::prelude::*;
use rustc_hash::FxHashMap;

use crate::names::Names;
use crate::purity::list_bit;
use crate::repr::{
    FloatReprs, ReprOptions, ReprScratch, deferred_float, float_stamp, identity_stamp,
    is_plain_class, mix, mix_bytes, repr_fixed_by_identity, reversed_items, scalar_summary,
    sequence_items, short_repr_in,
};

/// What a redacted variable's value is recorded as.
pub(crate) const REDACTED: &str = "<redacted>";

/// Last recorded value of one local. Unbound shadows keep their text
/// buffer, and frames hand their shadows on to later frames (see
/// `Recording::new_frame`): recording a call allocates nothing once warm.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shadow {
    bound: bool,
    object: usize,
    /// The recorded repr, unless `float` holds the recorded value.
    repr: String,
    /// A float recorded as a number, whose text the writer renders (see
    /// `Values::push_float`): its repr is not rendered while recording.
    float: Option<f64>,
    /// For containers: what their cut repr depends on (see [`fingerprint`]).
    fingerprint: Option<u64>,
    /// The repr of `object` is fixed by its identity (see
    /// `repr_fixed_by_identity`): while the variable holds that object,
    /// nothing is to compare.
    fixed: bool,
    /// For such objects: their [`identity_stamp`], which tells them from
    /// another object later made at the same address.
    stamp: u64,
    /// For other values: the lists the last comparison walked through
    /// (their [`list_bit`]s; all bits when it could not tell), so that a
    /// pure line that changes none of them cannot have changed this value
    /// (see `purity.rs`).
    reach: u64,
}

impl Shadow {
    /// Forgets the value (keeping the buffer).
    pub(crate) fn unbind(&mut self) {
        self.bound = false;
    }

    /// The value may have changed when the lists in `lists` (a set of
    /// [`list_bit`]s) changed.
    #[inline]
    pub(crate) fn may_reach(&self, lists: u64) -> bool {
        self.bound && !self.fixed && self.reach & lists != 0
    }

    /// The last recorded value, while the variable is bound.
    pub(crate) fn recorded(&self) -> Option<Recorded<'_>> {
        self.bound.then(|| match self.float {
            Some(number) => Recorded::Float(number),
            None => Recorded::Text(&self.repr),
        })
    }

    /// The last recorded repr as text (a float's rendered now).
    fn recorded_text(&mut self) -> &str {
        if let Some(number) = self.float.take() {
            self.repr.clear();
            push_float_repr(&mut self.repr, number);
        }
        &self.repr
    }
}

/// A variable's last recorded value: its repr, or a float whose text the
/// writer renders.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Recorded<'a> {
    Text(&'a str),
    Float(f64),
}

impl Recorded<'_> {
    /// Pushes the value into `values`; returns its value ref.
    pub(crate) fn push_into(self, values: &mut Values) -> u32 {
        match self {
            Recorded::Text(text) => values.push(text),
            Recorded::Float(number) => values.push_float(number),
        }
    }
}

/// Floats of the same repr: the same bits, or both NaN (`nan` whatever
/// their sign and payload).
fn same_float_repr(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

impl NamespaceShadow {
    /// The bound variables with their last recorded value, by name id.
    pub(crate) fn recorded(&self) -> Vec<(u32, Recorded<'_>)> {
        let mut bound: Vec<(u32, Recorded<'_>)> = self
            .vars
            .iter()
            .filter_map(|(&name, (shadow, _))| Some((name, shadow.recorded()?)))
            .collect();
        bound.sort_unstable_by_key(|&(name, _)| name);
        bound
    }
}

/// Last recorded state of a namespace's variables, by name id, with the
/// generation of the diff that last saw each (to find deleted ones).
#[derive(Debug, Default)]
pub(crate) struct NamespaceShadow {
    vars: FxHashMap<u32, (Shadow, u64)>,
    generation: u64,
}

/// Value refs of values recorded lately in the batch whose repr is fixed
/// by their identity (objects of the program's classes, ints, strs), by
/// address: a method's `self` is recorded at each of its calls, and is
/// rendered once per batch, not once per call. An entry holds while its
/// batch does ([`RecentValues::new_batch`]) and while the object at the
/// address has the same [`identity_stamp`] — the test a shadow trusts.
#[derive(Debug)]
pub(crate) struct RecentValues {
    slots: Box<[RecentValue; RECENT_VALUES]>,
    /// Of the batch being filled; entries of others are stale.
    batch: u32,
}

const RECENT_VALUES: usize = 256;

#[derive(Clone, Copy, Debug, Default)]
struct RecentValue {
    object: usize,
    stamp: u64,
    batch: u32,
    value_ref: u32,
    type_name: u32,
}

impl Default for RecentValues {
    fn default() -> RecentValues {
        RecentValues {
            slots: Box::new([RecentValue::default(); RECENT_VALUES]),
            batch: 1,
        }
    }
}

impl RecentValues {
    /// Forgets every entry: the batch they refer into was handed over.
    pub(crate) fn new_batch(&mut self) {
        self.batch = self.batch.wrapping_add(1).max(1);
    }

    fn slot(object: usize) -> usize {
        (object >> 4) % RECENT_VALUES
    }

    /// The value ref and type name recorded for `object` with `stamp` in
    /// this batch.
    fn get(&self, object: usize, stamp: u64) -> Option<(u32, u32)> {
        let entry = &self.slots[Self::slot(object)];
        (entry.batch == self.batch && entry.object == object && entry.stamp == stamp)
            .then_some((entry.value_ref, entry.type_name))
    }

    fn put(&mut self, object: usize, stamp: u64, value_ref: u32, type_name: u32) {
        self.slots[Self::slot(object)] = RecentValue {
            object,
            stamp,
            batch: self.batch,
            value_ref,
            type_name,
        };
    }
}

/// Everything needed to record variable changes at one event.
pub(crate) struct VarSink<'a> {
    /// The batch's variable changes and value texts.
    pub(crate) vars: &'a mut Vec<VarRecord>,
    pub(crate) values: &'a mut Values,
    pub(crate) scratch: &'a mut ReprScratch,
    pub(crate) names: &'a mut Names,
    pub(crate) writer: &'a mut TraceWriter,
    pub(crate) repr: ReprOptions,
    pub(crate) recent: &'a mut RecentValues,
    pub(crate) index: u32,
    pub(crate) is_start: bool,
}

impl VarSink<'_> {
    pub(crate) fn intern(&mut self, text: &str) -> u32 {
        self.names.string(self.writer, text)
    }

    /// The value ref and type name of `value` (an event's argument: a
    /// returned or yielded value), reused from [`RecentValues`] when its
    /// repr is fixed by its identity and it was recorded lately.
    ///
    /// # Safety
    /// GIL held; `value` alive for the call.
    pub(crate) unsafe fn value_ref(
        &mut self,
        py: Python<'_>,
        value: *mut ffi::PyObject,
    ) -> (u32, u32) {
        // SAFETY: forwarded.
        if let Some(number) = unsafe { deferred_float(value, self.repr) } {
            return (self.push_float(number), self.type_name(py, value));
        }
        // SAFETY: forwarded.
        let stamp = unsafe {
            repr_fixed_by_identity(value, self.repr.user_code)
                .then(|| identity_stamp(value, self.repr.max_len))
        };
        if let Some(found) = stamp.and_then(|stamp| self.recent.get(value as usize, stamp)) {
            return found;
        }
        let mut text = std::mem::take(&mut self.scratch.text);
        text.clear();
        // SAFETY: forwarded.
        unsafe { short_repr_in(value, self.repr, &mut text, self.scratch.slots()) };
        let found = self.push_value(py, value, &text, stamp);
        self.scratch.text = text;
        found
    }

    /// Pushes `text`, the repr of `value`, into the batch: its value ref
    /// and type name, remembered in [`RecentValues`] when `stamp` says the
    /// repr is fixed by identity.
    fn push_value(
        &mut self,
        py: Python<'_>,
        value: *mut ffi::PyObject,
        text: &str,
        stamp: Option<u64>,
    ) -> (u32, u32) {
        let value_ref = self.values.push(text);
        let type_name = self.type_name(py, value);
        if let Some(stamp) = stamp {
            self.recent.put(value as usize, stamp, value_ref, type_name);
        }
        (value_ref, type_name)
    }

    /// Pushes a float into the batch: its text when the float repr cache
    /// holds it (a float just shown inside a container, such as a
    /// coordinate unpacked from a list: a copy), else the number, for the
    /// writer to render.
    fn push_float(&mut self, number: f64) -> u32 {
        let values = &mut *self.values;
        let floats = self.scratch.slots().floats();
        floats
            .with_cached(number, |text| values.push(text))
            .unwrap_or_else(|| values.push_float(number))
    }

    /// String id + 1 of the name of `value`'s type.
    fn type_name(&mut self, py: Python<'_>, value: *mut ffi::PyObject) -> u32 {
        // SAFETY: GIL held; `value` borrowed for the event.
        let bound = unsafe { Bound::from_borrowed_ptr(py, value) };
        self.names.type_of(self.writer, &bound)
    }

    /// Compares `value` (null: unbound) with its last recorded state and
    /// records the change, if any. Inlined for its common answers: the
    /// variable is still unbound, or still holds the object recorded last,
    /// an int or an object of the program's whose repr cannot have changed.
    ///
    /// # Safety
    /// GIL held; `value` null or alive for the call.
    #[inline(always)]
    pub(crate) unsafe fn observe(
        &mut self,
        py: Python<'_>,
        previous: &mut Shadow,
        value: *mut ffi::PyObject,
        name: u32,
    ) {
        if value.is_null() && !previous.bound {
            return; // still unbound
        }
        if previous.fixed
            && previous.bound
            && previous.object == value as usize
            // SAFETY: forwarded (`value` is not null: `object` never is).
            && unsafe { identity_stamp(value, self.repr.max_len) } == previous.stamp
        {
            return;
        }
        // SAFETY: forwarded.
        unsafe { self.compare(py, previous, value, name) }
    }

    /// # Safety
    /// As [`VarSink::observe`].
    unsafe fn compare(
        &mut self,
        py: Python<'_>,
        previous: &mut Shadow,
        value: *mut ffi::PyObject,
        name: u32,
    ) {
        if value.is_null() {
            if previous.bound {
                previous.bound = false;
                self.push_change(name, VarChange::Deleted, 0, 0);
            }
            return;
        }
        if self.names.is_redacted(name) {
            // The value is never rendered: bound or not is all that shows.
            if !previous.bound {
                previous.bound = true;
                previous.object = value as usize;
                previous.fingerprint = None;
                previous.float = None;
                previous.repr.clear();
                previous.repr.push_str(REDACTED);
                let value_ref = self.values.push(REDACTED);
                self.push_change(name, self.first_change(), value_ref, 0);
            }
            return;
        }
        // SAFETY: forwarded from the caller.
        if let Some(number) = unsafe { deferred_float(value, self.repr) } {
            // SAFETY: as above.
            unsafe { self.compare_float(py, previous, value, number, name) };
            return;
        }
        // A repr that can change while the object stays the same: mutable
        // containers, containers that may hold them, exceptions, and (when
        // their own `__repr__` is called) any object but plain scalars.
        // SAFETY: forwarded from the caller.
        let mutable = unsafe { !repr_fixed_by_identity(value, self.repr.user_code) };
        let stamp = if mutable {
            0
        } else {
            // SAFETY: as above.
            unsafe { identity_stamp(value, self.repr.max_len) }
        };
        let same_object = previous.bound && previous.object == value as usize;
        if same_object && !mutable && previous.fixed && previous.stamp == stamp {
            return;
        }
        let (fingerprint, reach) = if mutable {
            // SAFETY: as above.
            unsafe { fingerprint(value, self.repr, self.scratch.slots().floats()) }
        } else {
            (None, 0)
        };
        if same_object && fingerprint.is_some() && previous.fingerprint == fingerprint {
            previous.reach = reach;
            return;
        }
        let recent = if mutable {
            None
        } else {
            self.recent.get(value as usize, stamp)
        };
        let first_change = self.first_change();
        let slots = self.scratch.slots();
        let text = &mut self.scratch.text;
        text.clear();
        match recent.and_then(|(value_ref, _)| self.values.get(value_ref)) {
            Some(recent) => text.push_str(recent),
            // SAFETY: as above.
            None => unsafe { short_repr_in(value, self.repr, text, slots) },
        }
        let change = if !previous.bound {
            first_change
        } else if previous.recorded_text() == text.as_str() {
            previous.object = value as usize;
            previous.fingerprint = fingerprint;
            previous.fixed = !mutable;
            previous.stamp = stamp;
            previous.reach = reach;
            return;
        } else {
            VarChange::Modified
        };
        previous.bound = true;
        previous.object = value as usize;
        previous.fingerprint = fingerprint;
        previous.fixed = !mutable;
        previous.stamp = stamp;
        previous.reach = reach;
        previous.float = None;
        // The new text becomes the shadow's; the old one's buffer becomes
        // the scratch (cleared before its next use).
        std::mem::swap(&mut previous.repr, text);
        let (value_ref, type_name) = match recent {
            Some(found) => found,
            None => self.push_value(py, value, &previous.repr, (!mutable).then_some(stamp)),
        };
        self.push_change(name, change, value_ref, type_name);
    }

    /// What a variable's first value is: `start` at its frame's start (the
    /// arguments), else `new`.
    fn first_change(&self) -> VarChange {
        if self.is_start {
            VarChange::Start
        } else {
            VarChange::New
        }
    }

    fn push_change(&mut self, name: u32, change: VarChange, value: u32, type_name: u32) {
        self.vars.push(VarRecord {
            event: self.index,
            name,
            change: change as u8,
            value,
            type_name,
        });
    }

    /// [`VarSink::compare`] for a float (`number`) recorded as a number: no
    /// text is rendered unless the variable held something else before.
    ///
    /// # Safety
    /// As [`VarSink::observe`], `value` not null.
    unsafe fn compare_float(
        &mut self,
        py: Python<'_>,
        previous: &mut Shadow,
        value: *mut ffi::PyObject,
        number: f64,
        name: u32,
    ) {
        let same = previous.bound
            && match previous.float {
                Some(recorded) => same_float_repr(recorded, number),
                None => {
                    let text = &mut self.scratch.text;
                    text.clear();
                    push_float_repr(text, number);
                    previous.repr == *text
                }
            };
        let change = if same {
            None
        } else if !previous.bound {
            Some(self.first_change())
        } else {
            Some(VarChange::Modified)
        };
        previous.bound = true;
        previous.object = value as usize;
        previous.fingerprint = None;
        previous.fixed = true;
        // The float's identity stamp, from the number already read.
        previous.stamp = float_stamp(number);
        previous.reach = 0;
        let Some(change) = change else {
            return;
        };
        previous.float = Some(number);
        let value_ref = self.push_float(number);
        let type_name = self.type_name(py, value);
        self.push_change(name, change, value_ref, type_name);
    }
}

/// Module and class bodies keep their variables in a dict (the frame's
/// locals mapping is the namespace itself, no copy): every entry is a
/// variable, as PySnooper shows them.
///
/// # Safety
/// GIL held; `namespace` null or a live mapping borrowed from the frame.
pub(crate) unsafe fn diff_namespace(
    py: Python<'_>,
    sink: &mut VarSink<'_>,
    shadows: &mut NamespaceShadow,
    namespace: *mut ffi::PyObject,
) {
    // SAFETY: forwarded; entries are borrowed from the dict while no code runs.
    unsafe {
        if namespace.is_null() || ffi::PyDict_Check(namespace) == 0 {
            return;
        }
        shadows.generation += 1;
        let generation = shadows.generation;
        let mut pos: ffi::Py_ssize_t = 0;
        let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
        while ffi::PyDict_Next(namespace, &mut pos, &mut key, &mut value) != 0 {
            if ffi::PyUnicode_Check(key) == 0 {
                continue;
            }
            // `__builtins__` is Python's, not the program's: the builtins
            // dict of a module run by runpy would otherwise be fingerprinted
            // whole (160 entries) at every line of the module.
            let Some(text) = crate::repr::str_contents(key).filter(|t| *t != "__builtins__") else {
                continue;
            };
            let name = sink.intern(text);
            let entry = shadows
                .vars
                .entry(name)
                .or_insert_with(|| (Shadow::default(), generation));
            entry.1 = generation;
            sink.observe(py, &mut entry.0, value, name);
        }
        for (&name, (shadow, seen)) in shadows.vars.iter_mut() {
            if *seen != generation {
                sink.observe(py, shadow, std::ptr::null_mut(), name);
            }
        }
    }
}

/// A hash of everything a container's cut repr can show — the types and
/// identities of its items (of scalars, their [`identity_stamp`]), recursively
/// through nested lists, tuples, dicts and sets, and their lengths.
/// Immutable scalars and objects shown as `<Type object at 0x…>` have
/// reprs fixed by their identity and stamp, so equal fingerprints of the
/// same object mean an equal repr and the repr is not rendered again.
///
/// A repr cut to `max_repr` characters shows its first `left` and last
/// `right` characters (see `repr.rs`). Every object and separator accounts
/// for at least a known number of characters (a float 3, `, ` 2, a bracket
/// 1, ...): walking forwards until `left` characters are surely used, and
/// backwards until `right` are, reaches everything visible, however large
/// the value; a change anywhere else cannot change the cut repr. `None`
/// when the value holds something whose repr can change in place (a
/// bytearray, an exception, an object with `--unsafe-repr`) or that cannot
/// be summarised this way (a big dict or set at the tail, deep nesting):
/// it is rendered. With it, the set of lists the walk went through (see
/// [`Shadow::may_reach`]; all bits with `None`).
///
/// # Safety
/// GIL held, `value` valid.
unsafe fn fingerprint(
    value: *mut ffi::PyObject,
    repr: ReprOptions,
    floats: FloatReprs,
) -> (Option<u64>, u64) {
    let (head, tail) = match repr.max_len {
        0 => (1024, 0),
        max => {
            let shown = max.saturating_sub(3);
            (shown / 2, shown - shown / 2)
        }
    };
    let mut walk = Walk {
        budget: head,
        backwards: false,
        hash: 0x9e37_79b9_7f4a_7c15u64,
        user_code: repr.user_code,
        max_len: repr.max_len,
        floats,
        lists: 0,
    };
    // SAFETY: forwarded.
    let hash = match unsafe { fingerprint_into(value, &mut walk, 0) } {
        Coverage::Whole => Some(walk.hash),
        Coverage::Unknown => None,
        Coverage::Prefix if repr.max_len == 0 => None,
        Coverage::Prefix => {
            walk.budget = tail;
            walk.backwards = true;
            // SAFETY: forwarded.
            match unsafe { fingerprint_into(value, &mut walk, 0) } {
                Coverage::Unknown => None,
                _ => Some(walk.hash),
            }
        }
    };
    (hash, if hash.is_some() { walk.lists } else { u64::MAX })
}

/// The fewest characters of `<module.QualName object at 0x…>`: the
/// brackets, ` object at 0x`, a name and a digit (addresses have more).
const MIN_OBJECT_REPR: usize = 17;

/// What a fingerprint walk saw of a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// All of it.
    Whole,
    /// Its first (or, walking backwards, last) objects, up to the budget.
    Prefix,
    /// Something it cannot vouch for.
    Unknown,
}

/// The state of one fingerprint walk.
struct Walk {
    /// Characters of the repr not yet surely used by what it visited: it
    /// stops when none is left.
    budget: usize,
    /// Items of lists and tuples from the last.
    backwards: bool,
    hash: u64,
    /// See [`ReprOptions::user_code`].
    user_code: bool,
    /// See [`ReprOptions::max_len`] (for [`identity_stamp`]).
    max_len: usize,
    floats: FloatReprs,
    /// The lists visited (their [`list_bit`]s).
    lists: u64,
}

/// # Safety
/// GIL held, `value` valid.
unsafe fn fingerprint_into(value: *mut ffi::PyObject, walk: &mut Walk, depth: usize) -> Coverage {
    if walk.budget == 0 {
        return Coverage::Prefix;
    }
    if depth > 32 {
        return Coverage::Unknown;
    }
    // SAFETY: items are borrowed from their containers while no code runs.
    unsafe {
        let t = ffi::Py_TYPE(value);
        // The type too: a list and a tuple of the same items differ.
        mix(&mut walk.hash, value as u64 ^ (t as u64).rotate_left(32));
        if t == &raw mut ffi::PyList_Type || t == &raw mut ffi::PyTuple_Type {
            if t == &raw mut ffi::PyList_Type {
                walk.lists |= list_bit(value);
            }
            let (items, len) = sequence_items(value, t == &raw mut ffi::PyTuple_Type);
            mix(&mut walk.hash, len as u64);
            walk.use_chars(1); // the bracket
            walk_items(items, len, walk, depth)
        } else if t == &raw mut ffi::PyDict_Type {
            if walk.backwards {
                return dict_backwards(value, walk, depth);
            }
            let len = ffi::PyDict_Size(value).max(0) as usize;
            mix(&mut walk.hash, len as u64);
            walk.use_chars(1);
            let mut pos: ffi::Py_ssize_t = 0;
            let (mut key, mut item) = (std::ptr::null_mut(), std::ptr::null_mut());
            let mut first = true;
            while ffi::PyDict_Next(value, &mut pos, &mut key, &mut item) != 0 {
                // `, ` before the pair, `: ` inside it.
                if !first && !walk.use_more(2) {
                    return Coverage::Prefix;
                }
                first = false;
                for (part, after) in [(key, 2), (item, 0)] {
                    let coverage = fingerprint_into(part, walk, depth + 1);
                    if coverage != Coverage::Whole {
                        return coverage;
                    }
                    walk.use_chars(after);
                }
            }
            Coverage::Whole
        } else if t == &raw mut ffi::PySet_Type || t == &raw mut ffi::PyFrozenSet_Type {
            if walk.backwards {
                return fingerprint_whole(value, walk, depth);
            }
            let len = ffi::PySet_Size(value).max(0) as usize;
            mix(&mut walk.hash, len as u64);
            walk.use_chars(1);
            let iter = ffi::PyObject_GetIter(value);
            if iter.is_null() {
                ffi::PyErr_Clear();
                return Coverage::Unknown;
            }
            let mut coverage = Coverage::Whole;
            let mut first = true;
            while coverage == Coverage::Whole {
                let item = ffi::PyIter_Next(iter);
                if item.is_null() {
                    break;
                }
                coverage = if first || walk.use_more(2) {
                    fingerprint_into(item, walk, depth + 1)
                } else {
                    Coverage::Prefix
                };
                first = false;
                ffi::Py_DecRef(item);
            }
            ffi::Py_DecRef(iter);
            ffi::PyErr_Clear();
            coverage
        } else if t == &raw mut ffi::PyByteArray_Type {
            // `bytearray(b'...')`: each byte shows as 1 to 4 characters, so
            // the repr's visible part depends on at most `budget` bytes from
            // the walked end, plus the quote character.
            let bytes = crate::repr::byte_contents(value, true);
            mix(&mut walk.hash, bytes.len() as u64);
            mix(&mut walk.hash, u64::from(crate::repr::bytes_quote(bytes)));
            walk.use_chars(14); // `bytearray(b'` and `')`
            let seen = walk.budget.min(bytes.len());
            let window = if walk.backwards {
                &bytes[bytes.len() - seen..]
            } else {
                &bytes[..seen]
            };
            mix_bytes(&mut walk.hash, window);
            walk.use_chars(seen);
            if seen == bytes.len() {
                Coverage::Whole
            } else {
                Coverage::Prefix
            }
        } else if repr_fixed_by_identity(value, walk.user_code) {
            // Neither a container nor a scalar: an object of the program's
            // classes, stamped by its type (as `identity_stamp` does,
            // without asking twice), or a built-in, by what it shows.
            let (width, stamp) =
                if (*t).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE != 0 && !is_plain_class(t) {
                    // An object of the program's classes: `<m.T object at 0x…>`.
                    (MIN_OBJECT_REPR, t as u64)
                } else {
                    scalar_summary(value, walk.max_len, walk.floats)
                        .unwrap_or_else(|| (1, identity_stamp(value, walk.max_len)))
                };
            mix(&mut walk.hash, stamp);
            walk.use_chars(width);
            Coverage::Whole
        } else {
            Coverage::Unknown
        }
    }
}

/// Walks the items of a list or tuple (from the last when walking
/// backwards), separators included, straight from the item array. Scalars
/// — most items — are summarised in the loop ([`scalar_summary`] is
/// inlined); anything else goes through [`fingerprint_into`].
///
/// # Safety
/// GIL held; `items` the `len` items of a live list or tuple, which no code
/// changes during the walk.
#[inline(always)]
unsafe fn walk_items(
    items: *const *mut ffi::PyObject,
    len: usize,
    walk: &mut Walk,
    depth: usize,
) -> Coverage {
    let backwards = walk.backwards;
    for n in 0..len {
        if n > 0 && !walk.use_more(2) {
            return Coverage::Prefix; // `, `
        }
        let i = if backwards { len - 1 - n } else { n };
        // SAFETY: `i` < `len`; items are borrowed while no code runs.
        unsafe {
            let item = *items.add(i);
            if item.is_null() {
                return Coverage::Unknown;
            }
            let (width, stamp) = match scalar_summary(item, walk.max_len, walk.floats) {
                Some(summary) => summary,
                None => match fingerprint_into(item, walk, depth + 1) {
                    Coverage::Whole => continue,
                    other => return other,
                },
            };
            if !walk.use_more(width) {
                return Coverage::Prefix;
            }
            // The value, not the address (see `identity_stamp`).
            mix(&mut walk.hash, stamp);
        }
    }
    Coverage::Whole
}

/// A dict at the tail of a repr: from its last entry (see
/// [`reversed_items`]) until the budget is used, as a list's items are — a
/// dict of thousands of entries, or of nested dicts, costs what a small
/// one does.
///
/// # Safety
/// GIL held, `value` an exact dict.
unsafe fn dict_backwards(value: *mut ffi::PyObject, walk: &mut Walk, depth: usize) -> Coverage {
    // SAFETY: forwarded; items are borrowed from the pair while no code runs.
    unsafe {
        let len = ffi::PyDict_Size(value).max(0) as usize;
        mix(&mut walk.hash, len as u64);
        walk.use_chars(1); // `}`
        let reversed = reversed_items(value);
        let mut coverage = if reversed.is_null() {
            Coverage::Unknown
        } else {
            Coverage::Whole
        };
        let mut first = true;
        while coverage == Coverage::Whole {
            let pair = ffi::PyIter_Next(reversed);
            if pair.is_null() {
                break;
            }
            // `, ` after the pair, `: ` inside it; the value comes first.
            if !first && !walk.use_more(2) {
                coverage = Coverage::Prefix;
            }
            first = false;
            for (index, after) in [(1, 2), (0, 0)] {
                if coverage != Coverage::Whole {
                    break;
                }
                let part = ffi::PyTuple_GetItem(pair, index);
                coverage = if part.is_null() {
                    Coverage::Unknown
                } else {
                    fingerprint_into(part, walk, depth + 1)
                };
                walk.use_chars(after);
            }
            ffi::Py_DecRef(pair);
        }
        if !reversed.is_null() {
            ffi::Py_DecRef(reversed);
        }
        ffi::PyErr_Clear();
        coverage
    }
}

/// Sets, and small dicts, are not walked backwards: at the tail of a repr,
/// one is walked whole (forwards, up to a bound) or not vouched for.
///
/// # Safety
/// GIL held, `value` a valid dict or set.
unsafe fn fingerprint_whole(value: *mut ffi::PyObject, walk: &mut Walk, depth: usize) -> Coverage {
    const LIMIT: usize = 4096;
    let budget = walk.budget;
    walk.budget = LIMIT;
    walk.backwards = false;
    // SAFETY: forwarded.
    let coverage = unsafe { fingerprint_into(value, walk, depth) };
    let used = LIMIT - walk.budget;
    walk.backwards = true;
    walk.budget = budget.saturating_sub(used);
    match coverage {
        Coverage::Whole => Coverage::Whole,
        _ => Coverage::Unknown,
    }
}

impl Walk {
    /// Counts `chars` characters as used.
    fn use_chars(&mut self, chars: usize) {
        self.budget = self.budget.saturating_sub(chars);
    }

    /// Counts `chars` more characters as used before the next object; false
    /// if the repr is surely cut before that object.
    fn use_more(&mut self, chars: usize) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.use_chars(chars);
        true
    }
}
