//! Pure lines: lines whose bytecode runs no code but their own, so that at
//! the frame's next event only the locals they store, and the lists they
//! change, can have changed.
//!
//! PySnooper's semantics compare every local at every line, and most of
//! what that costs on numeric code is walking the containers a function
//! holds (nbody's lists of bodies) at lines that cannot have touched them:
//! `dx = x1 - x2`, `v1[0] -= dx * b2m`, `k = perm[0]`. Each line's
//! instructions are run on an abstract stack once per code object, which
//! tells what each instruction does with which local: moves it (a store, a
//! return, an `is` test: any value), operates on it (arithmetic,
//! comparisons, truth tests, formatting: it must be a *plain* value — an
//! exact int, float, str, bool or `None`, or a list or tuple of at most 32
//! of those — on which these instructions run no Python code), subscripts
//! it (an exact list, tuple or str: `x = items[i]` moves an item), or
//! changes it in place (`v[0] = x`, `v[i:j] = w`, `del v[i]`, `v += w`: a
//! plain list). A call, an attribute, a global, a backward jump (where
//! CPython runs signal handlers, other threads and the garbage
//! collector), a jump into the middle of the line, a jump that leaves
//! values on the stack, or an operation on a value the line did not load
//! itself makes a line impure; so does any instruction without a line
//! (CPython runs them between line events) that is not a no-op and can be
//! reached without an exception: a code object with one has no pure line
//! at all. (Cleanup code reached only through an exception handler runs
//! after a `raise` event, which compares every local.)
//!
//! Whether a pure line's locals are what it needs is checked when its
//! `line` event comes (and the old values of the locals it stores must be
//! plain or referenced elsewhere, so that their release runs no
//! finalizer). The frame's next event — its next line or its return, not
//! an exception — then compares the locals the line stores and the lists
//! it changes, plus any other local whose last comparison walked through
//! one of those lists (see `locals.rs`: each shadow keeps a small bit set
//! of the lists its value's visible part goes through). Every other event
//! compares them all, and so does the next event after a garbage
//! collection ran during the line (the allocation of a list by a slice can
//! start one on 3.11, and int formatting can run a pending one).
//!
//! What this cannot see: a local written from outside the frame while a
//! pure line runs — by a debugger's hook at that line's event (`pdb`'s
//! `!x = 1`), or by a Python signal handler CPython runs from inside
//! long-int arithmetic or int formatting — which is seen at the frame's
//! next impure line instead.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::frames::{InterpreterFrame, Layout, SlotKind};

/// What an instruction does, as far as purity goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Impure,
    /// No effect on the stack: `NOP`, `CACHE`.
    Nop,
    /// Extends the next instruction's `oparg`.
    Extend,
    /// Pushes local `oparg`.
    Load,
    /// Pushes locals `oparg >> 4` and `oparg & 15`.
    LoadLoad,
    /// Pops into local `oparg`.
    Store,
    /// Pops into local `oparg >> 4`, pushes local `oparg & 15`.
    StoreLoad,
    /// Pops into locals `oparg >> 4` and `oparg & 15`.
    StoreStore,
    /// Unbinds local `oparg`.
    Delete,
    /// Pushes constant `oparg`.
    Const,
    PopTop,
    Copy,
    Swap,
    /// Pops this many plain operands, pushes a plain result: unary
    /// operators, truth, comparisons, containment, slices, conversions.
    Operate(u8),
    /// `BINARY_OP`: in-place forms (`+=`, ...) change a list on the left.
    Binary,
    /// `BINARY_SUBSCR`.
    Subscript,
    /// `BUILD_STRING oparg`: pops `oparg` plain values.
    BuildString,
    /// `BUILD_SLICE oparg`: pops `oparg` plain values.
    BuildSlice,
    /// `BUILD_TUPLE oparg`, `BUILD_LIST oparg`: pops `oparg` values of any
    /// kind into a new tuple or list (`return x, y`).
    BuildSequence,
    /// `FORMAT_VALUE`: one value, and a spec when `oparg & 4`.
    FormatValue,
    StoreSubscript,
    StoreSlice,
    DeleteSubscript,
    /// `UNPACK_SEQUENCE oparg`.
    Unpack,
    /// `IS_OP`: two values of any kind.
    Identity,
    /// A conditional jump on a value's truth.
    JumpIf,
    /// A conditional jump on a value being `None`.
    JumpIfNone,
    /// `JUMP_FORWARD`.
    Jump,
    /// `RETURN_VALUE`.
    Return,
    /// `RETURN_CONST`.
    ReturnConst,
}

/// The instructions a pure line may hold, by name (3.11–3.13; a name the
/// running version lacks is skipped).
const OPS: &[(&str, Op)] = &[
    ("NOP", Op::Nop),
    ("CACHE", Op::Nop),
    ("EXTENDED_ARG", Op::Extend),
    ("LOAD_FAST", Op::Load),
    ("LOAD_FAST_CHECK", Op::Load),
    ("LOAD_FAST_LOAD_FAST", Op::LoadLoad),
    ("STORE_FAST", Op::Store),
    ("STORE_FAST_LOAD_FAST", Op::StoreLoad),
    ("STORE_FAST_STORE_FAST", Op::StoreStore),
    ("DELETE_FAST", Op::Delete),
    ("LOAD_CONST", Op::Const),
    ("POP_TOP", Op::PopTop),
    ("COPY", Op::Copy),
    ("SWAP", Op::Swap),
    ("UNARY_NEGATIVE", Op::Operate(1)),
    ("UNARY_POSITIVE", Op::Operate(1)),
    ("UNARY_NOT", Op::Operate(1)),
    ("UNARY_INVERT", Op::Operate(1)),
    ("TO_BOOL", Op::Operate(1)),
    ("COMPARE_OP", Op::Operate(2)),
    ("CONTAINS_OP", Op::Operate(2)),
    ("BINARY_SLICE", Op::Operate(3)),
    ("CONVERT_VALUE", Op::Operate(1)),
    ("FORMAT_SIMPLE", Op::Operate(1)),
    ("FORMAT_WITH_SPEC", Op::Operate(2)),
    ("BINARY_OP", Op::Binary),
    ("BINARY_SUBSCR", Op::Subscript),
    ("BUILD_SLICE", Op::BuildSlice),
    ("BUILD_STRING", Op::BuildString),
    ("BUILD_TUPLE", Op::BuildSequence),
    ("BUILD_LIST", Op::BuildSequence),
    ("FORMAT_VALUE", Op::FormatValue),
    ("STORE_SUBSCR", Op::StoreSubscript),
    ("STORE_SLICE", Op::StoreSlice),
    ("DELETE_SUBSCR", Op::DeleteSubscript),
    ("UNPACK_SEQUENCE", Op::Unpack),
    ("IS_OP", Op::Identity),
    ("POP_JUMP_IF_FALSE", Op::JumpIf),
    ("POP_JUMP_IF_TRUE", Op::JumpIf),
    ("POP_JUMP_FORWARD_IF_FALSE", Op::JumpIf),
    ("POP_JUMP_FORWARD_IF_TRUE", Op::JumpIf),
    ("POP_JUMP_IF_NONE", Op::JumpIfNone),
    ("POP_JUMP_IF_NOT_NONE", Op::JumpIfNone),
    ("POP_JUMP_FORWARD_IF_NONE", Op::JumpIfNone),
    ("POP_JUMP_FORWARD_IF_NOT_NONE", Op::JumpIfNone),
    ("JUMP_FORWARD", Op::Jump),
    ("RETURN_VALUE", Op::Return),
    ("RETURN_CONST", Op::ReturnConst),
];

/// `BINARY_OP`'s first in-place operator (`NB_INPLACE_ADD`, 3.11–3.13).
const FIRST_INPLACE_OP: u32 = 13;

/// The most items a plain list or tuple has: checking them is the price
/// of a pure line, and must stay below what it saves.
const MAX_PLAIN_ITEMS: usize = 32;

/// Where a jump instruction's argument points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Jump {
    Not,
    /// `oparg` code units after the instruction and its caches.
    Forward,
    /// `oparg` code units before the end of the instruction and its caches.
    Backward,
    /// To code unit `oparg`.
    Absolute,
}

/// The running CPython's instruction set, as far as purity goes.
#[derive(Debug)]
pub(crate) struct Opcodes {
    ops: [Op; 256],
    /// Inline cache entries (2 bytes each) after each instruction.
    caches: [u8; 256],
    jumps: [Jump; 256],
    /// The instruction never falls through to the next (a return, a
    /// raise, an unconditional jump).
    ends: [bool; 256],
}

/// Instructions that never fall through to the next (names of 3.11–3.13).
const ENDS: &[&str] = &[
    "RETURN_VALUE",
    "RETURN_CONST",
    "RERAISE",
    "RAISE_VARARGS",
    "JUMP_FORWARD",
    "JUMP_BACKWARD",
    "JUMP_BACKWARD_NO_INTERRUPT",
];

impl Opcodes {
    /// Reads the opcode numbers and cache sizes from `dis`.
    pub(crate) fn load(py: Python<'_>) -> PyResult<Opcodes> {
        let dis = py.import("dis")?;
        let opmap = dis.getattr("opmap")?;
        let entries = dis.getattr("_inline_cache_entries")?;
        let mut opcodes = Opcodes {
            ops: [Op::Impure; 256],
            caches: [0; 256],
            jumps: [Jump::Not; 256],
            ends: [false; 256],
        };
        for name in ENDS {
            if let Ok(number) = opmap.get_item(name).and_then(|n| n.extract::<u8>()) {
                opcodes.ends[usize::from(number)] = true;
            }
        }
        // As `dis` finds jump targets (its `_get_jump_target`).
        let opname = dis.getattr("opname")?;
        for (list, relative) in [("hasjrel", true), ("hasjabs", false)] {
            for number in dis.getattr(list)?.try_iter()? {
                let Ok(number) = number?.extract::<u8>() else {
                    continue;
                };
                let name: String = opname.get_item(number)?.extract()?;
                opcodes.jumps[usize::from(number)] = match relative {
                    false => Jump::Absolute,
                    true if name.contains("BACKWARD") => Jump::Backward,
                    true => Jump::Forward,
                };
            }
        }
        for &(name, op) in OPS {
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

/// What a line needs of a local it reads, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    /// An exact list, tuple or a scalar: subscripted, its items moved.
    Indexable,
    /// A scalar, or a list or tuple of few scalars: operated on.
    Plain,
}

/// A value on the abstract stack of one run of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    /// Local `n` as the line found it.
    Local(u16),
    /// An item or a slice of local `n`.
    Item(u16),
    /// A value the line made from plain values: plain too.
    Plain,
    /// A slice the line built from plain values (plain too).
    Slice,
    /// A value that may only be moved: a constant that is not plain (a
    /// code object, a frozenset), a tuple or list the line built.
    Opaque,
    /// Pushed before the run started: of any kind.
    Outer,
}

/// What the runs of one line do with the frame's locals, found by running
/// their instructions on an abstract stack.
#[derive(Debug, Default)]
struct LineFacts {
    impure: bool,
    needs: Vec<(u16, Need)>,
    stores: Vec<u16>,
    mutates: Vec<u16>,
}

impl LineFacts {
    fn need(&mut self, slot: u16, need: Need) {
        match self.needs.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, known)) => *known = (*known).max(need),
            None => self.needs.push((slot, need)),
        }
    }

    /// `value` is operated on: it must be plain.
    fn operand(&mut self, value: Val) {
        match value {
            Val::Local(slot) | Val::Item(slot) => self.need(slot, Need::Plain),
            Val::Plain | Val::Slice => {}
            Val::Opaque | Val::Outer => self.impure = true,
        }
    }

    /// `value` is popped and released (not its last reference, unless the
    /// line made it).
    fn dropped(&mut self, value: Val) {
        if value == Val::Outer {
            self.impure = true;
        }
    }

    /// `value` is subscripted; what the subscript gives.
    fn subscripted(&mut self, value: Val) -> Val {
        match value {
            Val::Local(slot) => {
                self.need(slot, Need::Indexable);
                Val::Item(slot)
            }
            other => {
                self.operand(other);
                Val::Plain
            }
        }
    }

    /// `value` is changed in place (a list's item or slice).
    fn changed(&mut self, value: Val) {
        match value {
            Val::Local(slot) => {
                self.need(slot, Need::Plain);
                if !self.mutates.contains(&slot) {
                    self.mutates.push(slot);
                }
            }
            // A list the line made.
            Val::Plain | Val::Slice => {}
            // An item of a plain list is a scalar: changing it raises.
            Val::Item(slot) => self.need(slot, Need::Plain),
            Val::Opaque | Val::Outer => self.impure = true,
        }
    }

    fn load(&mut self, slot: u16) -> Val {
        // A local read after the line stored it holds what the line put
        // there, not what was checked at the line's start.
        if self.stores.contains(&slot) {
            self.impure = true;
        }
        Val::Local(slot)
    }

    fn store(&mut self, slot: u16) {
        if !self.stores.contains(&slot) {
            self.stores.push(slot);
        }
    }
}

/// One run of a line: consecutive instructions with its number.
struct Run<'a> {
    facts: &'a mut LineFacts,
    stack: Vec<Val>,
}

impl Run<'_> {
    fn pop(&mut self) -> Val {
        self.stack.pop().unwrap_or(Val::Outer)
    }

    fn push(&mut self, value: Val) {
        self.stack.push(value);
    }

    /// A jump: the values left on the stack would reach another place of
    /// the code, which this analysis does not follow.
    fn jump(&mut self) {
        if !self.stack.is_empty() {
            self.facts.impure = true;
        }
    }

    /// Runs one instruction.
    fn step(&mut self, op: Op, oparg: u32, slot: impl Fn(u32) -> Option<u16>, plain_const: bool) {
        // Local slot `n`; one past the code's locals makes the line impure.
        let local = |run: &mut Self, n: u32| {
            let found = slot(n);
            if found.is_none() {
                run.facts.impure = true;
            }
            found.unwrap_or(0)
        };
        match op {
            Op::Impure => self.facts.impure = true,
            Op::Nop | Op::Extend => {}
            Op::Load => {
                let s = local(self, oparg);
                let value = self.facts.load(s);
                self.push(value);
            }
            Op::LoadLoad => {
                for n in [oparg >> 4, oparg & 15] {
                    let s = local(self, n);
                    let value = self.facts.load(s);
                    self.push(value);
                }
            }
            Op::Store | Op::Delete => {
                let s = local(self, oparg);
                if op == Op::Store {
                    self.pop();
                }
                self.facts.store(s);
            }
            Op::StoreStore => {
                for n in [oparg >> 4, oparg & 15] {
                    let s = local(self, n);
                    self.pop();
                    self.facts.store(s);
                }
            }
            Op::StoreLoad => {
                let s = local(self, oparg >> 4);
                self.pop();
                self.facts.store(s);
                let s = local(self, oparg & 15);
                let value = self.facts.load(s);
                self.push(value);
            }
            Op::Const => self.push(if plain_const { Val::Plain } else { Val::Opaque }),
            Op::PopTop => {
                let value = self.pop();
                self.facts.dropped(value);
            }
            Op::Copy => {
                let n = oparg as usize;
                let value = match self.stack.len().checked_sub(n) {
                    Some(i) if n > 0 => self.stack[i],
                    _ => Val::Outer,
                };
                self.push(value);
            }
            Op::Swap => {
                let n = oparg as usize;
                let len = self.stack.len();
                if n < 2 || n > len {
                    self.facts.impure = true;
                } else {
                    self.stack.swap(len - 1, len - n);
                }
            }
            Op::Operate(pops) => {
                for _ in 0..pops {
                    let value = self.pop();
                    self.facts.operand(value);
                }
                self.push(Val::Plain);
            }
            Op::BuildString | Op::BuildSlice => {
                for _ in 0..oparg {
                    let value = self.pop();
                    self.facts.operand(value);
                }
                self.push(if op == Op::BuildSlice {
                    Val::Slice
                } else {
                    Val::Plain
                });
            }
            Op::BuildSequence => {
                for _ in 0..oparg {
                    // Held by the new sequence, released with it.
                    let value = self.pop();
                    self.facts.dropped(value);
                }
                self.push(Val::Opaque);
            }
            Op::FormatValue => {
                let pops = if oparg & 4 != 0 { 2 } else { 1 };
                for _ in 0..pops {
                    let value = self.pop();
                    self.facts.operand(value);
                }
                self.push(Val::Plain);
            }
            Op::Binary => {
                let (right, left) = (self.pop(), self.pop());
                self.facts.operand(right);
                if oparg >= FIRST_INPLACE_OP {
                    // `v += w` extends a list in place.
                    self.facts.changed(left);
                } else {
                    self.facts.operand(left);
                }
                self.push(Val::Plain);
            }
            Op::Subscript => {
                let (index, container) = (self.pop(), self.pop());
                self.facts.operand(index);
                let item = self.facts.subscripted(container);
                self.push(item);
            }
            Op::StoreSubscript => {
                let (index, container, value) = (self.pop(), self.pop(), self.pop());
                self.facts.operand(index);
                // An item takes any value; a slice (3.11) iterates it.
                if index == Val::Slice {
                    self.facts.operand(value);
                }
                self.facts.changed(container);
            }
            Op::StoreSlice => {
                let (stop, start, container, value) =
                    (self.pop(), self.pop(), self.pop(), self.pop());
                for bound in [stop, start, value] {
                    self.facts.operand(bound);
                }
                self.facts.changed(container);
            }
            Op::DeleteSubscript => {
                let (index, container) = (self.pop(), self.pop());
                self.facts.operand(index);
                self.facts.changed(container);
            }
            Op::Unpack => {
                let value = self.pop();
                self.facts.operand(value);
                for _ in 0..oparg {
                    self.push(Val::Plain);
                }
            }
            Op::Identity => {
                for _ in 0..2 {
                    let value = self.pop();
                    self.facts.dropped(value);
                }
                self.push(Val::Plain);
            }
            Op::JumpIf => {
                let value = self.pop();
                self.facts.operand(value);
                self.jump();
            }
            Op::JumpIfNone => {
                let value = self.pop();
                self.facts.dropped(value);
                self.jump();
            }
            Op::Jump => self.jump(),
            Op::Return => {
                self.pop();
            }
            Op::ReturnConst => {}
        }
    }
}

/// The pure lines of one code object, with what each needs of the locals
/// it reads, and which it stores and changes.
#[derive(Debug, Default)]
pub(crate) struct PureLines {
    /// The first line in `by_line`.
    first: u32,
    /// By line − `first`: 0, or 1 + the line's index in `spans`.
    by_line: Box<[u32]>,
    spans: Box<[Span]>,
    slots: Box<[u16]>,
}

/// Where a pure line's slots are in [`PureLines::slots`]: from `start`,
/// its `indexable`, `plain`, `stores` and `mutates` slots one after the
/// other, part `k` ending at `start + ends[k]`.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    ends: [u16; 4],
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
        let labels = jump_targets(code, bytecode, opcodes)?;
        let reached = normally_reached(bytecode, opcodes);
        let slot = |n: u32| u16::try_from(n).ok().filter(|&s| usize::from(s) < slots);
        let mut lines: std::collections::BTreeMap<u32, LineFacts> = Default::default();
        // The line of the run being simulated and its stack.
        let mut run_line: Option<u32> = None;
        let mut stack: Vec<Val> = Vec::new();
        for (offset, opcode, oparg, _) in instructions(bytecode, opcodes) {
            let op = opcodes.ops[usize::from(opcode)];
            let oparg = u32::try_from(oparg).unwrap_or(u32::MAX);
            let Some(line) = line_of[offset / 2] else {
                // Reached only through an exception handler: after an
                // event that compares every local.
                if matches!(op, Op::Nop | Op::Extend) || !reached[offset / 2] {
                    continue;
                }
                // Run between line events, by any line: no line is pure.
                return Ok(None);
            };
            let facts = lines.entry(line).or_default();
            if run_line != Some(line) {
                run_line = Some(line);
                stack.clear();
            } else if labels.binary_search(&offset).is_ok() {
                // Entered in the middle, with a stack this run did not make.
                facts.impure = true;
            }
            if facts.impure {
                continue;
            }
            // SAFETY: GIL held; the constant is alive for the check.
            let plain_const = op == Op::Const
                && consts
                    .get_item(oparg)
                    .is_ok_and(|value| unsafe { is_plain_constant(value.as_ptr()) });
            let mut run = Run {
                facts,
                stack: std::mem::take(&mut stack),
            };
            run.step(op, oparg, slot, plain_const);
            stack = run.stack;
        }
        let mut pure = Vec::new();
        // (A line may change a list and rebind its local, `v += w`: the
        // lists it changes are found when it starts.)
        for (line, facts) in lines {
            if !facts.impure {
                pure.push((line, facts));
            }
        }
        let (Some(first), Some(last)) = (pure.first(), pure.last()) else {
            return Ok(None);
        };
        let first = first.0;
        let mut by_line = vec![0; (last.0 - first + 1) as usize];
        let mut spans = Vec::with_capacity(pure.len());
        let mut all_slots = Vec::new();
        for (line, facts) in pure {
            let of_need = |need: Need| {
                facts
                    .needs
                    .iter()
                    .filter(move |(_, n)| *n == need)
                    .map(|&(s, _)| s)
            };
            let start = all_slots.len() as u32;
            all_slots.extend(of_need(Need::Indexable));
            all_slots.extend(of_need(Need::Plain));
            all_slots.extend(&facts.stores);
            all_slots.extend(&facts.mutates);
            let plain = of_need(Need::Plain).count();
            let lens = [
                facts.needs.len() - plain,
                plain,
                facts.stores.len(),
                facts.mutates.len(),
            ];
            let mut ends = [0u16; 4];
            let mut end = 0;
            for (k, len) in lens.into_iter().enumerate() {
                end += len;
                ends[k] = u16::try_from(end).unwrap_or(u16::MAX);
            }
            if usize::from(ends[3]) != end {
                all_slots.truncate(start as usize);
                continue;
            }
            by_line[(line - first) as usize] = spans.len() as u32 + 1;
            spans.push(Span { start, ends });
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

    /// The slots of `line`: what it subscripts, operates on, stores and
    /// changes in place.
    #[inline]
    fn parts(&self, line: PureLine) -> [&[u16]; 4] {
        let Span { start, ends } = self.spans[line.0 as usize];
        let slots = &self.slots[start as usize..];
        let [a, b, c, d] = [ends[0], ends[1], ends[2], ends[3]];
        let (a, b, c, d) = (
            usize::from(a),
            usize::from(b),
            usize::from(c),
            usize::from(d),
        );
        [&slots[..a], &slots[a..b], &slots[b..c], &slots[c..d]]
    }
}

/// Each instruction of `bytecode`: its offset, opcode, argument (with its
/// `EXTENDED_ARG`s) and the offset after its inline caches.
fn instructions<'a>(
    bytecode: &'a [u8],
    opcodes: &'a Opcodes,
) -> impl Iterator<Item = (usize, u8, usize, usize)> + 'a {
    let (mut at, mut extended) = (0, 0);
    std::iter::from_fn(move || {
        if at + 1 >= bytecode.len() {
            return None;
        }
        let opcode = bytecode[at];
        let oparg = usize::from(bytecode[at + 1]) | extended << 8;
        let after = at + 2 + 2 * usize::from(opcodes.caches[usize::from(opcode)]);
        extended = if opcodes.ops[usize::from(opcode)] == Op::Extend {
            oparg
        } else {
            0
        };
        let instruction = (at, opcode, oparg, after);
        at = after;
        Some(instruction)
    })
}

impl Opcodes {
    /// Where a jump goes, as `dis` finds it (its `_get_jump_target`).
    fn target(&self, opcode: u8, oparg: usize, after: usize) -> Option<usize> {
        match self.jumps[usize::from(opcode)] {
            Jump::Not => None,
            Jump::Forward => Some(after + 2 * oparg),
            Jump::Backward => Some(after.saturating_sub(2 * oparg)),
            Jump::Absolute => Some(2 * oparg),
        }
    }
}

/// By code unit: whether the instruction there can run without an
/// exception, following fall-throughs and jumps from the start.
fn normally_reached(bytecode: &[u8], opcodes: &Opcodes) -> Vec<bool> {
    let all: Vec<_> = instructions(bytecode, opcodes).collect();
    let mut index_at = vec![None; bytecode.len() / 2 + 1];
    for (index, &(at, ..)) in all.iter().enumerate() {
        index_at[at / 2] = Some(index);
    }
    let mut reached = vec![false; bytecode.len() / 2 + 1];
    let mut pending = vec![0];
    while let Some(index) = pending.pop() {
        let Some(&(at, opcode, oparg, after)) = all.get(index) else {
            continue;
        };
        if std::mem::replace(&mut reached[at / 2], true) {
            continue;
        }
        if !opcodes.ends[usize::from(opcode)] {
            pending.push(index + 1);
        }
        if let Some(Some(target)) = opcodes
            .target(opcode, oparg, after)
            .map(|t| index_at.get(t / 2).copied().flatten())
        {
            pending.push(target);
        }
    }
    reached
}

/// Offsets of every jump target and exception handler of `code`, read
/// from its bytecode and exception table (no Python code runs: this is
/// called with the recording's state locked).
fn jump_targets(
    code: &Bound<'_, PyAny>,
    bytecode: &[u8],
    opcodes: &Opcodes,
) -> PyResult<Vec<usize>> {
    let mut labels: Vec<usize> = instructions(bytecode, opcodes)
        .filter_map(|(_, opcode, oparg, after)| opcodes.target(opcode, oparg, after))
        .collect();
    // Entries of 4 varints (start, length, target, depth and lasti) in
    // 6-bit groups, 0x40 marking a continuation.
    let table = code.getattr("co_exceptiontable")?;
    let mut table = table.cast::<PyBytes>()?.as_bytes().iter();
    let mut varint = || {
        let mut byte = *table.next()?;
        let mut value = usize::from(byte & 63);
        while byte & 64 != 0 {
            byte = *table.next()?;
            value = value << 6 | usize::from(byte & 63);
        }
        Some(value)
    };
    while let (Some(_), Some(_), Some(target), Some(_)) = (varint(), varint(), varint(), varint()) {
        labels.push(2 * target);
    }
    labels.sort_unstable();
    labels.dedup();
    Ok(labels)
}

/// What the analysis finds in `code`, for tests (see `_native.pyi`).
#[pyfunction]
pub(crate) fn describe<'py>(code: &Bound<'py, PyAny>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
    let py = code.py();
    let opcodes = Opcodes::load(py)?;
    let bytecode = code.getattr("co_code")?;
    let labels = jump_targets(code, bytecode.cast::<PyBytes>()?.as_bytes(), &opcodes)?;
    // Local slots: variables, then cells and free variables (a bound
    // here: cells that are also arguments are counted twice).
    let mut slots = 0;
    for name in ["co_varnames", "co_cellvars", "co_freevars"] {
        slots += code.getattr(name)?.len()?;
    }
    let found = pyo3::types::PyDict::new(py);
    if let Some(lines) = PureLines::of(code, &opcodes, slots)? {
        for (index, &n) in lines.by_line.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let parts = lines.parts(PureLine(n - 1));
            let line = pyo3::types::PyDict::new(py);
            for (name, part) in ["indexable", "plain", "stores", "mutates"]
                .iter()
                .zip(parts)
            {
                line.set_item(name, part.to_vec())?;
            }
            found.set_item(lines.first + index as u32, line)?;
        }
    }
    let described = pyo3::types::PyDict::new(py);
    described.set_item("labels", labels)?;
    described.set_item("lines", found)?;
    Ok(described)
}

/// Whether the locals of `frame` are what pure line `line` needs, so that
/// it runs no code but its own: the bit set of the lists it changes in
/// place (see [`list_bit`]), or `None`.
///
/// # Safety
/// GIL held; `frame` the live frame of the code `lines` belongs to.
#[inline]
unsafe fn runs_alone(
    lines: &PureLines,
    line: PureLine,
    layout: &Layout,
    frame: InterpreterFrame,
) -> Option<u64> {
    let [indexable, plain, stores, mutates] = lines.parts(line);
    // SAFETY: the slots are below the code's number of local slots
    // (checked when the lines were found); values are borrowed.
    unsafe {
        let value = |slot: u16| layout.slot(frame, usize::from(slot), SlotKind::Plain);
        for &slot in indexable {
            let v = value(slot);
            if v.is_null() || !(is_scalar(v) || is_sequence(v)) {
                return None;
            }
        }
        for &slot in plain {
            let v = value(slot);
            if v.is_null() || !is_plain(v) {
                return None;
            }
        }
        for &slot in stores {
            let old = value(slot);
            if old.is_null() || is_plain(old) {
                continue;
            }
            // Released by the line: it must outlive that (no finalizer).
            let holders = stores.iter().filter(|&&s| value(s) == old).count();
            if ffi::Py_REFCNT(old) <= holders as ffi::Py_ssize_t {
                return None;
            }
        }
        let mut changed = 0;
        for &slot in mutates {
            let v = value(slot);
            if ffi::Py_TYPE(v) == &raw mut ffi::PyList_Type {
                changed |= list_bit(v);
            }
        }
        Some(changed)
    }
}

/// A list's bit in the 64-bit sets of lists that pure lines change and
/// that shadows' values go through (a Bloom filter with one hash: sets
/// that share a bit may share a list).
#[inline]
pub(crate) fn list_bit(list: *mut ffi::PyObject) -> u64 {
    1 << ((list as u64 >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

/// An exact int, float, str, bool or `None`: what the pure instructions
/// use without running code or allocating what the garbage collector
/// tracks.
///
/// # Safety
/// GIL held, `value` valid.
#[inline]
unsafe fn is_scalar(value: *mut ffi::PyObject) -> bool {
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

/// An exact list or tuple.
///
/// # Safety
/// GIL held, `value` valid.
#[inline]
unsafe fn is_sequence(value: *mut ffi::PyObject) -> bool {
    // SAFETY: as above.
    unsafe {
        let t = ffi::Py_TYPE(value);
        t == &raw mut ffi::PyList_Type || t == &raw mut ffi::PyTuple_Type
    }
}

/// A scalar, or an exact list or tuple of at most [`MAX_PLAIN_ITEMS`]
/// scalars: what every instruction of a pure line handles without running
/// code (comparing two lists compares scalars; formatting one formats
/// scalars; releasing one releases scalars).
///
/// # Safety
/// GIL held, `value` valid.
#[inline]
unsafe fn is_plain(value: *mut ffi::PyObject) -> bool {
    // SAFETY: the items are borrowed from the live sequence.
    unsafe {
        if is_scalar(value) {
            return true;
        }
        if !is_sequence(value) {
            return false;
        }
        let tuple = ffi::Py_TYPE(value) == &raw mut ffi::PyTuple_Type;
        let (items, len) = crate::repr::sequence_items(value, tuple);
        len <= MAX_PLAIN_ITEMS && (0..len).all(|i| is_scalar(*items.add(i)))
    }
}

/// A constant that is plain: a scalar, or a tuple of scalars (`x in (1, 2)`).
///
/// # Safety
/// GIL held, `value` valid.
unsafe fn is_plain_constant(value: *mut ffi::PyObject) -> bool {
    // SAFETY: forwarded.
    unsafe { is_plain(value) && ffi::Py_TYPE(value) != &raw mut ffi::PyList_Type }
}

/// Garbage collections started since the process began (counted by a
/// `gc.callbacks` entry while a recording compares variables at lines): a
/// collection during a pure line can run finalizers, so its next event
/// compares every local.
static GC_RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The `gc.callbacks` entry, made once.
static GC_CALLBACK: std::sync::OnceLock<Py<PyAny>> = std::sync::OnceLock::new();

#[pyfunction]
fn count_gc_run(phase: &str, _info: &Bound<'_, PyAny>) {
    if phase == "start" {
        GC_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How many garbage collections have started (see [`GC_RUNS`]).
#[inline]
pub(crate) fn gc_runs() -> u32 {
    GC_RUNS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Starts counting garbage collections (idempotent).
pub(crate) fn watch_gc(py: Python<'_>) -> PyResult<()> {
    let callback = match GC_CALLBACK.get() {
        Some(callback) => callback,
        None => {
            let made = wrap_pyfunction!(count_gc_run, py)?.into_any().unbind();
            GC_CALLBACK.get_or_init(|| made)
        }
    };
    let callbacks = py.import("gc")?.getattr("callbacks")?;
    if !callbacks.contains(callback.bind(py))? {
        callbacks.call_method1("append", (callback.bind(py),))?;
    }
    Ok(())
}

/// Stops counting garbage collections.
pub(crate) fn unwatch_gc(py: Python<'_>) -> PyResult<()> {
    if let Some(callback) = GC_CALLBACK.get() {
        let callbacks = py.import("gc")?.getattr("callbacks")?;
        if callbacks.contains(callback.bind(py))? {
            callbacks.call_method1("remove", (callback.bind(py),))?;
        }
    }
    Ok(())
}

/// A pure line under way in a frame: what its next event compares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PureStep {
    line: PureLine,
    /// The lists it changes (see [`list_bit`]).
    changed: u64,
    /// [`gc_runs`] when it started.
    gc_runs: u32,
}

/// What the event after a pure line compares: the locals it stores and
/// those whose lists it changes, and any other whose value may go through
/// one of the lists in `changed`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Compared<'a> {
    pub(crate) stores: &'a [u16],
    pub(crate) mutates: &'a [u16],
    pub(crate) changed: u64,
}

impl PureLines {
    /// Starts `line` if the locals of `frame` let it run alone.
    ///
    /// # Safety
    /// As [`runs_alone`].
    #[inline]
    pub(crate) unsafe fn start(
        &self,
        line: PureLine,
        layout: &Layout,
        frame: InterpreterFrame,
    ) -> Option<PureStep> {
        // SAFETY: forwarded.
        let changed = unsafe { runs_alone(self, line, layout, frame) }?;
        Some(PureStep {
            line,
            changed,
            gc_runs: gc_runs(),
        })
    }

    /// What the event after `step` compares; `None`: everything (a
    /// garbage collection ran meanwhile).
    #[inline]
    pub(crate) fn compared(&self, step: PureStep) -> Option<Compared<'_>> {
        (step.gc_runs == gc_runs()).then(|| {
            let [_, _, stores, mutates] = self.parts(step.line);
            Compared {
                stores,
                mutates,
                changed: step.changed,
            }
        })
    }
}
