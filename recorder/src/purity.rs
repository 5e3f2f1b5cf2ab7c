//! Pure lines: lines whose bytecode runs no code but their own, so that only
//! the locals they store can have changed when the frame's next event
//! comes.
//!
//! PySnooper's semantics compare every local at every line, and most of
//! what that costs on numeric code is walking the containers a function
//! holds (nbody's lists of bodies) at lines that cannot have touched them:
//! `dx = x1 - x2`. A line is pure when each of its instructions is one of a
//! few that, given operands that are exact ints, floats, bools, `None` or
//! strs, call no Python code, allocate no object the garbage collector
//! tracks, and check no pending signal or thread switch (so no other thread
//! and no finalizer runs either): loads and stores of plain locals, loads of
//! such constants, arithmetic, comparisons, forward jumps, string
//! formatting, returns. A backward jump, a call, an attribute or a
//! subscript makes a line impure; so does any instruction without a line
//! (CPython runs them between line events) that is not itself pure: a code
//! object with one has no pure line at all.
//!
//! Whether a pure line's operands are scalars is checked when its `line`
//! event comes (the values of the locals it reads, and the old values of
//! those it stores, whose release must not run a finalizer). The frame's
//! next event — its next line or its return, not an exception — then
//! compares only the locals the line stores. Every other event compares
//! them all.
//!
//! What this cannot see: a local written from outside the frame while a
//! pure line runs — by a debugger's hook at that line's event (`pdb`'s
//! `!x = 1`), which is seen at the frame's next impure line instead.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// How an instruction bears on its line's purity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Impure,
    Pure,
    /// Reads local `oparg`.
    Load,
    /// Stores (or deletes) local `oparg`.
    Store,
    /// Reads locals `oparg >> 4` and `oparg & 15`.
    LoadLoad,
    /// Stores local `oparg >> 4`, reads local `oparg & 15`.
    StoreLoad,
    /// Stores locals `oparg >> 4` and `oparg & 15`.
    StoreStore,
    /// Loads constant `oparg`: pure if it is a scalar.
    Const,
    /// Extends the next instruction's `oparg`.
    Extend,
}

/// Instructions that are pure on scalar operands (names of 3.11–3.13; a
/// name the running version lacks is skipped).
const PURE: &[&str] = &[
    "NOP",
    "CACHE",
    "POP_TOP",
    "COPY",
    "SWAP",
    "BINARY_OP",
    "UNARY_NEGATIVE",
    "UNARY_NOT",
    "UNARY_INVERT",
    "TO_BOOL",
    "COMPARE_OP",
    "IS_OP",
    "CONTAINS_OP",
    "POP_JUMP_IF_FALSE",
    "POP_JUMP_IF_TRUE",
    "POP_JUMP_IF_NONE",
    "POP_JUMP_IF_NOT_NONE",
    "POP_JUMP_FORWARD_IF_FALSE",
    "POP_JUMP_FORWARD_IF_TRUE",
    "POP_JUMP_FORWARD_IF_NONE",
    "POP_JUMP_FORWARD_IF_NOT_NONE",
    "JUMP_FORWARD",
    "RETURN_VALUE",
    "RETURN_CONST",
    "FORMAT_VALUE",
    "FORMAT_SIMPLE",
    "FORMAT_WITH_SPEC",
    "CONVERT_VALUE",
    "BUILD_STRING",
];

const OPS: &[(&str, Op)] = &[
    ("LOAD_FAST", Op::Load),
    ("LOAD_FAST_CHECK", Op::Load),
    ("LOAD_FAST_LOAD_FAST", Op::LoadLoad),
    ("STORE_FAST", Op::Store),
    ("DELETE_FAST", Op::Store),
    ("STORE_FAST_LOAD_FAST", Op::StoreLoad),
    ("STORE_FAST_STORE_FAST", Op::StoreStore),
    ("LOAD_CONST", Op::Const),
    ("EXTENDED_ARG", Op::Extend),
];

/// The running CPython's instruction set, as far as purity goes.
#[derive(Debug)]
pub(crate) struct Opcodes {
    ops: [Op; 256],
    /// Inline cache entries (2 bytes each) after each instruction.
    caches: [u8; 256],
}

impl Opcodes {
    /// Reads the opcode numbers and cache sizes from `dis`.
    pub(crate) fn load(py: Python<'_>) -> PyResult<Opcodes> {
        let dis = py.import("dis")?;
        let opmap = dis.getattr("opmap")?;
        let entries = dis.getattr("_inline_cache_entries")?;
        let mut opcodes = Opcodes {
            ops: [Op::Impure; 256],
            caches: [0; 256],
        };
        let named = PURE
            .iter()
            .map(|&name| (name, Op::Pure))
            .chain(OPS.iter().copied());
        for (name, op) in named {
            if let Ok(number) = opmap.get_item(name).and_then(|n| n.extract::<u8>()) {
                opcodes.ops[usize::from(number)] = op;
            }
        }
        for item in opmap.call_method0("items")?.try_iter()? {
            let (name, number): (String, u32) = item?.extract()?;
            // Pseudo-instructions (numbered from 256) never appear in bytecode.
            let Ok(number) = u8::try_from(number) else {
                continue;
            };
            // 3.11 and 3.12: a list by opcode; 3.13: a dict by name.
            let count = entries
                .get_item(number)
                .or_else(|_| entries.get_item(&name))
                .and_then(|c| c.extract::<u8>())
                .unwrap_or(0);
            opcodes.caches[usize::from(number)] = count;
        }
        Ok(opcodes)
    }
}

/// The pure lines of one code object, with the local slots each reads and
/// stores.
#[derive(Debug, Default)]
pub(crate) struct PureLines {
    /// The first line in `by_line`.
    first: u32,
    /// By line − `first`: 0, or 1 + the line's index in `spans`.
    by_line: Box<[u32]>,
    /// Of each pure line: where its slots start in `slots`, how many it
    /// reads (first) and stores (after).
    spans: Box<[(u32, u16, u16)]>,
    slots: Box<[u16]>,
}

/// One pure line (an index into its [`PureLines`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PureLine(u32);

impl PureLines {
    /// Finds the pure lines of `code` (`None` when it has none), given the
    /// number of its local slots.
    pub(crate) fn of(
        code: &Bound<'_, PyAny>,
        opcodes: &Opcodes,
        slots: usize,
    ) -> PyResult<Option<PureLines>> {
        let bytecode = code.getattr("co_code")?;
        let bytecode = bytecode.cast::<PyBytes>()?.as_bytes();
        let consts = code.getattr("co_consts")?;
        // The line of each 2-byte code unit.
        let mut line_of: Vec<Option<u32>> = vec![None; bytecode.len() / 2];
        for range in code.call_method0("co_lines")?.try_iter()? {
            let (start, end, line): (usize, usize, Option<u32>) = range?.extract()?;
            for unit in line_of.iter_mut().take(end / 2).skip(start / 2) {
                *unit = line;
            }
        }
        // Per line: impure, slots read, slots stored.
        let mut lines: std::collections::BTreeMap<u32, (bool, Vec<u16>, Vec<u16>)> =
            std::collections::BTreeMap::new();
        let mut extended: u32 = 0;
        let mut at = 0;
        while at + 1 < bytecode.len() {
            let (opcode, oparg) = (bytecode[at], u32::from(bytecode[at + 1]) | extended << 8);
            let op = opcodes.ops[usize::from(opcode)];
            let line = line_of[at / 2];
            at += 2 + 2 * usize::from(opcodes.caches[usize::from(opcode)]);
            if op == Op::Extend {
                extended = oparg;
                continue;
            }
            extended = 0;
            let pure = match op {
                Op::Impure | Op::Extend => false,
                // SAFETY: GIL held; the constant is alive for the check.
                Op::Const => consts
                    .get_item(oparg)
                    .is_ok_and(|value| unsafe { is_scalar(value.as_ptr()) }),
                _ => true,
            };
            let Some(line) = line else {
                if pure {
                    continue;
                }
                // Run between line events, by any line: no line is pure.
                return Ok(None);
            };
            let entry = lines.entry(line).or_default();
            if !pure {
                entry.0 = true;
                continue;
            }
            let slot = |n: u32| u16::try_from(n).ok().filter(|&s| usize::from(s) < slots);
            let (reads, stores): (&[u32], &[u32]) = match op {
                Op::Load => (&[oparg], &[]),
                Op::Store => (&[], &[oparg]),
                Op::LoadLoad => (&[oparg >> 4, oparg & 15], &[]),
                Op::StoreLoad => (&[oparg & 15], &[oparg >> 4]),
                Op::StoreStore => (&[], &[oparg >> 4, oparg & 15]),
                _ => (&[], &[]),
            };
            for (numbers, into) in [(reads, &mut entry.1), (stores, &mut entry.2)] {
                for &n in numbers {
                    match slot(n) {
                        Some(s) if !into.contains(&s) => into.push(s),
                        Some(_) => {}
                        None => entry.0 = true,
                    }
                }
            }
        }
        let pure: Vec<_> = lines
            .into_iter()
            .filter(|(_, (impure, ..))| !impure)
            .collect();
        let (Some(first), Some(last)) = (pure.first(), pure.last()) else {
            return Ok(None);
        };
        let first = first.0;
        let mut by_line = vec![0; (last.0 - first + 1) as usize];
        let mut spans = Vec::with_capacity(pure.len());
        let mut all_slots = Vec::new();
        for (line, (_, reads, stores)) in pure {
            by_line[(line - first) as usize] = spans.len() as u32 + 1;
            spans.push((
                all_slots.len() as u32,
                reads.len() as u16,
                stores.len() as u16,
            ));
            all_slots.extend(reads);
            all_slots.extend(stores);
        }
        Ok(Some(PureLines {
            first,
            by_line: by_line.into(),
            spans: spans.into(),
            slots: all_slots.into(),
        }))
    }

    /// `line`, if it is pure.
    #[inline]
    pub(crate) fn line(&self, line: u32) -> Option<PureLine> {
        let index = line.checked_sub(self.first)? as usize;
        match self.by_line.get(index) {
            Some(&n) if n > 0 => Some(PureLine(n - 1)),
            _ => None,
        }
    }

    /// The slots `line` reads.
    #[inline]
    pub(crate) fn reads(&self, line: PureLine) -> &[u16] {
        let (start, reads, _) = self.spans[line.0 as usize];
        let start = start as usize;
        &self.slots[start..start + usize::from(reads)]
    }

    /// The slots `line` stores (or deletes).
    #[inline]
    pub(crate) fn stores(&self, line: PureLine) -> &[u16] {
        let (start, reads, stores) = self.spans[line.0 as usize];
        let start = start as usize + usize::from(reads);
        &self.slots[start..start + usize::from(stores)]
    }
}

/// True when every local `line` reads holds an exact int, float, bool,
/// str or `None`, and every one it stores holds one or nothing (its release
/// runs no finalizer): the line then runs no code but its own.
///
/// # Safety
/// GIL held; `frame` the live frame of the code `lines` belongs to.
#[inline]
pub(crate) unsafe fn runs_alone(
    lines: &PureLines,
    line: PureLine,
    layout: &crate::frames::Layout,
    frame: crate::frames::InterpreterFrame,
) -> bool {
    use crate::frames::SlotKind;
    // SAFETY: the slots are below the code's number of local slots
    // (checked when the lines were found); values are borrowed.
    unsafe {
        lines.reads(line).iter().all(|&slot| {
            let value = layout.slot(frame, usize::from(slot), SlotKind::Plain);
            !value.is_null() && is_scalar(value)
        }) && lines.stores(line).iter().all(|&slot| {
            let value = layout.slot(frame, usize::from(slot), SlotKind::Plain);
            value.is_null() || is_scalar(value)
        })
    }
}

/// An exact int, float, str, bool or `None`: what the pure instructions
/// use without running code or allocating what the garbage collector
/// tracks (for constants and for locals alike).
///
/// # Safety
/// GIL held, `value` valid.
#[inline]
unsafe fn is_scalar(value: *mut pyo3::ffi::PyObject) -> bool {
    use pyo3::ffi;
    // SAFETY: comparing a valid object's type with static types.
    unsafe {
        let t = ffi::Py_TYPE(value);
        t == &raw mut ffi::PyLong_Type
            || t == &raw mut ffi::PyFloat_Type
            || t == &raw mut ffi::PyUnicode_Type
            || t == &raw mut ffi::PyBool_Type
            || value == ffi::Py_None()
    }
}
