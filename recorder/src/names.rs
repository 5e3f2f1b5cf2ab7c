//! Interned strings and type names of a recording.
//!
//! Every name, file and type name is written to the trace once and referred
//! to by id afterwards. Types are remembered by address with a weak
//! reference (see `weak.rs`), and the cache starts over past a bound: a
//! program creating classes in a loop neither grows the recorder's memory
//! nor has its classes kept alive.

use chronolog_format::TraceWriter;
use pyo3::ffi;
use pyo3::prelude::*;
use rustc_hash::FxHashMap;

use crate::weak::{LastType, Weak};

/// Types whose name ids are kept at most.
const MAX_TYPES: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Names {
    strings: FxHashMap<String, u32>,
    /// Type object address -> string id + 1 of its name.
    types: FxHashMap<usize, (u32, Weak)>,
    /// Lower-case globs of variable names whose values are not recorded.
    redact: Vec<String>,
    /// By string id: whether a variable of that name is redacted.
    redacted: Vec<bool>,
    /// The types last looked up, with their name ids (the types of changed
    /// values alternate among a few: ints, strs, the program's classes).
    last_type: LastType<u32, 8>,
}

impl Names {
    /// Names whose variables match one of `patterns` (globs, any case) are
    /// redacted.
    pub(crate) fn redacting(patterns: &[String]) -> Names {
        Names {
            redact: patterns.iter().map(|p| p.to_lowercase()).collect(),
            ..Names::default()
        }
    }

    /// The string id of `text`, defining it in the trace the first time.
    pub(crate) fn string(&mut self, writer: &mut TraceWriter, text: &str) -> u32 {
        if let Some(&id) = self.strings.get(text) {
            return id;
        }
        let id = writer.define_string(text);
        self.strings.insert(text.to_string(), id);
        if !self.redact.is_empty() {
            let lower = text.to_lowercase();
            let secret = self.redact.iter().any(|p| crate::scope::glob(p, &lower));
            let index = id as usize;
            if self.redacted.len() <= index {
                self.redacted.resize(index + 1, false);
            }
            self.redacted[index] = secret;
        }
        id
    }

    /// Whether the values of variables named by string `id` are redacted.
    #[inline]
    pub(crate) fn is_redacted(&self, id: u32) -> bool {
        self.redacted.get(id as usize).copied().unwrap_or(false)
    }

    /// String id + 1 of the name of `value`'s type.
    pub(crate) fn type_of(&mut self, writer: &mut TraceWriter, value: &Bound<'_, PyAny>) -> u32 {
        // SAFETY: GIL held; `value`'s type is alive.
        unsafe {
            let t = ffi::Py_TYPE(value.as_ptr());
            if let Some(&id) = self.last_type.get(t) {
                return id;
            }
            let id = self.type_id(writer, value, t as usize);
            *self.last_type.set(t, id)
        }
    }

    fn type_id(&mut self, writer: &mut TraceWriter, value: &Bound<'_, PyAny>, key: usize) -> u32 {
        if let Some((id, weak)) = self.types.get(&key)
            && weak.is(key)
        {
            return *id;
        }
        let t = value.get_type();
        if self.types.len() >= MAX_TYPES {
            self.types.clear();
        }
        let name = t
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        let id = self.string(writer, &name) + 1;
        self.types.insert(key, (id, Weak::new(t.as_any())));
        id
    }
}
