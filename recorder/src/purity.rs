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
//! plain list). An attribute, or an operation on a value the line did not
//! load itself makes a line impure, and so does a call unless it is
//! observed (3.12+: see [`CallWindow`]; a global may be moved or called);
//! so does any instruction without a line (CPython runs them between line
//! events) that is not a no-op and can be reached without an exception: a
//! code object with one has no pure line at all. (Cleanup code reached only
//! through an exception handler runs after a `raise` event, which compares
//! every local; the prelude before the first `RESUME` — a closure's
//! `MAKE_CELL`s — runs before the frame's first event.)
//!
//! A line is analysed from each place its events come from — where
//! execution enters it from another line, falling through or jumping —
//! following every path through it (forward jumps within the line); a
//! line with several such *entries* is told apart at its event by the
//! frame's instruction. Values on the stack at the event may be moved or
//! unpacked, as checked then: a `for` line's entry at `FOR_ITER` needs a
//! list, tuple or range iterator (or an `enumerate` of one) that calls
//! nothing and frees nothing when exhausted, and each level of its target's
//! unpacking a list, tuple or scalar in the item it gives next. A jump back
//! to another line (each loop's end) is where CPython may run other
//! threads: such a line is pure only while the interpreter has one thread.
//! A jump back into the line itself makes it impure (3.11 reports one as a
//! new event, 3.12 does not).
//!
//! Whether a pure line's locals are what it needs is checked when its
//! `line` event comes (and the old values of the locals it stores must be
//! plain or referenced elsewhere, so that their release runs no
//! finalizer). The frame's next event — its next line or its return, not
//! an exception — then compares the locals the line stores and the lists
//! it changes, plus any other local whose last comparison walked through
//! one of those lists, in slot order (see `locals.rs`: each shadow keeps a
//! small bit set of the lists its value's visible part goes through).
//! Every other event
//! compares them all, and so does the next event after a garbage
//! collection ran during the line (the allocation of a list by a slice can
//! start one on 3.11, and int formatting can run a pending one).
//!
//! A pure line is used only where it saves comparing a few locals (see
//! [`LineFacts::worth_it`]): its checks cost about what comparing the
//! locals of a small method does.
//!
//! What this cannot see: a local written from outside the frame while a
//! pure line runs — by a debugger's hook at that line's event (`pdb`'s
//! `!x = 1`), or by a Python signal handler CPython runs from inside
//! long-int arithmetic or int formatting, or at a loop's backward jump —
//! which is seen at the frame's next impure line instead.

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
    /// `JUMP_FORWARD`, `JUMP_BACKWARD`.
    Jump,
    /// `RETURN_VALUE`.
    Return,
    /// `RETURN_CONST`.
    ReturnConst,
    /// `FOR_ITER`: the next item of the iterator on top, or (exhausted)
    /// a jump with the iterator popped.
    ForIter,
    /// `LOAD_GLOBAL` (3.12+): a global, after a `NULL` when `oparg & 1`.
    LoadGlobal,
    /// `PUSH_NULL` (3.12+).
    PushNull,
    /// `CALL oparg` (3.12+): pops the callable, `self` or `NULL`, and
    /// `oparg` arguments; pushes what the callee returns.
    Call,
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
    ("JUMP_BACKWARD", Op::Jump),
    ("POP_JUMP_BACKWARD_IF_FALSE", Op::JumpIf),
    ("POP_JUMP_BACKWARD_IF_TRUE", Op::JumpIf),
    ("POP_JUMP_BACKWARD_IF_NONE", Op::JumpIfNone),
    ("POP_JUMP_BACKWARD_IF_NOT_NONE", Op::JumpIfNone),
    ("FOR_ITER", Op::ForIter),
    ("RETURN_VALUE", Op::Return),
    ("RETURN_CONST", Op::ReturnConst),
];

/// Calls (3.12+; 3.11's `PRECALL` leaves its calls impure): observed at
/// run time, see [`CallWindow`].
const CALL_OPS: &[(&str, Op)] = &[
    ("LOAD_GLOBAL", Op::LoadGlobal),
    ("PUSH_NULL", Op::PushNull),
    ("CALL", Op::Call),
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
    /// Instructions an exhausted `FOR_ITER` skips at its target: none
    /// (3.11), `END_FOR` (3.12), `END_FOR` and `POP_TOP` (3.13).
    for_exit_skip: usize,
    /// `RESUME`, where a frame's first event comes: what runs before it
    /// (`MAKE_CELL`, `COPY_FREE_VARS`) runs before any event.
    resume: Option<u8>,
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
            resume: opmap
                .get_item("RESUME")
                .and_then(|n| n.extract::<u8>())
                .ok(),
            for_exit_skip: match py.version_info() {
                v if v >= (3, 13) => 2,
                v if v >= (3, 12) => 1,
                _ => 0,
            },
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
        let calls: &[(&str, Op)] = if py.version_info() >= (3, 12) {
            CALL_OPS
        } else {
            &[]
        };
        for &(name, op) in OPS.iter().chain(calls) {
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

/// Where a value a line finds on the stack at its event comes from: the
/// value `k` places below the top, or the next item of the iterator `k`
/// places below the top (a `for` line's target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    Stack(u8),
    Next(u8),
}

/// What a line needs of a value on the stack at its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StackNeed {
    /// A list, tuple or range iterator whose exhaustion frees nothing:
    /// `FOR_ITER` runs no code.
    Iterator,
    /// Each value this many unpackings inside it is a list, a tuple or a
    /// scalar: unpacking it runs no code (or raises).
    Unpackable(u8),
}

/// A need of a line on a value on the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StackCheck {
    root: Root,
    need: StackNeed,
}

/// The deepest unpacking of a value from the stack a pure line may do.
const MAX_UNPACK_DEPTH: u8 = 4;

/// A value on the abstract stack of one path through a line.
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
    /// A value on the stack at the line's event (of any kind, as checked
    /// when the line starts), or an item `depth` unpackings inside it:
    /// it may be moved or unpacked.
    Found { root: Root, depth: u8 },
}

/// What the paths through one line from one of its events do with the
/// frame's locals, found by running their instructions on an abstract
/// stack.
#[derive(Debug, Default)]
struct LineFacts {
    impure: bool,
    needs: Vec<(u16, Need)>,
    stores: Vec<u16>,
    mutates: Vec<u16>,
    checks: Vec<StackCheck>,
    /// A path jumps backward: CPython may run other threads there.
    interrupts: bool,
    /// `CALL`s run (the line has one path when there are any).
    calls: u8,
    /// The line loads a global.
    globals: bool,
    /// Paths run through the line.
    paths: u32,
}

impl LineFacts {
    /// Whether starting the line as pure costs less than what it saves,
    /// in a code object of `slots` local slots: comparing the locals it
    /// neither stores nor changes (a few instructions each, more for a
    /// container), against checking what it needs when it starts (more
    /// when it loads globals or calls functions, whose events are then
    /// watched).
    fn worth_it(&self, slots: usize) -> bool {
        let mut compared: Vec<u16> = self.stores.iter().chain(&self.mutates).copied().collect();
        compared.sort_unstable();
        compared.dedup();
        let saved = slots.saturating_sub(compared.len());
        let least = if self.calls > 0 || self.globals {
            MIN_SAVED_WATCHING_CALLS
        } else {
            MIN_SAVED
        };
        saved >= least
    }

    fn need(&mut self, slot: u16, need: Need) {
        match self.needs.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, known)) => *known = (*known).max(need),
            None => self.needs.push((slot, need)),
        }
    }

    fn check(&mut self, root: Root, need: StackNeed) {
        // Checking the deepest unpacking of a value checks the others.
        if let StackNeed::Unpackable(depth) = need
            && let Some(known) = self
                .checks
                .iter_mut()
                .find(|c| c.root == root && matches!(c.need, StackNeed::Unpackable(_)))
        {
            if let StackNeed::Unpackable(shallower) = known.need {
                known.need = StackNeed::Unpackable(depth.max(shallower));
            }
            return;
        }
        let check = StackCheck { root, need };
        if !self.checks.contains(&check) {
            self.checks.push(check);
        }
    }

    /// `value` is operated on: it must be plain.
    fn operand(&mut self, value: Val) {
        match value {
            Val::Local(slot) | Val::Item(slot) => self.need(slot, Need::Plain),
            Val::Plain | Val::Slice => {}
            Val::Opaque | Val::Found { .. } => self.impure = true,
        }
    }

    /// `value` is popped and released (not its last reference, unless the
    /// line made it).
    fn dropped(&mut self, value: Val) {
        if matches!(value, Val::Found { .. }) {
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

    /// `value` is unpacked; what its items are.
    fn unpacked(&mut self, value: Val) -> Val {
        match value {
            Val::Found { root, depth } if depth < MAX_UNPACK_DEPTH => {
                self.check(root, StackNeed::Unpackable(depth));
                Val::Found {
                    root,
                    depth: depth + 1,
                }
            }
            // As a subscript: a local must be a list or tuple of any
            // items, or a scalar (which raises).
            other => self.subscripted(other),
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
            Val::Opaque | Val::Found { .. } => self.impure = true,
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

/// One path through a line: its abstract stack, above `below` values it
/// popped from the stack the line's event found.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Path {
    index: usize,
    stack: Vec<Val>,
    below: u8,
}

/// A path being run.
struct Run<'a> {
    facts: &'a mut LineFacts,
    stack: Vec<Val>,
    below: u8,
}

impl Run<'_> {
    fn pop(&mut self) -> Val {
        self.stack.pop().unwrap_or_else(|| {
            let found = Val::Found {
                root: Root::Stack(self.below),
                depth: 0,
            };
            self.below = self.below.saturating_add(1);
            found
        })
    }

    fn push(&mut self, value: Val) {
        self.stack.push(value);
    }

    /// Runs one instruction (jumps are followed by the caller).
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
            Op::Impure | Op::ForIter => self.facts.impure = true,
            Op::Nop | Op::Extend | Op::Jump | Op::ReturnConst => {}
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
                let len = self.stack.len();
                let value = if n == 0 {
                    self.facts.impure = true;
                    Val::Opaque
                } else if n <= len {
                    self.stack[len - n]
                } else {
                    // From the stack the event found.
                    match u8::try_from(n - len - 1 + usize::from(self.below)) {
                        Ok(k) => Val::Found {
                            root: Root::Stack(k),
                            depth: 0,
                        },
                        Err(_) => {
                            self.facts.impure = true;
                            Val::Opaque
                        }
                    }
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
                let item = self.facts.unpacked(value);
                for _ in 0..oparg {
                    self.push(item);
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
            }
            Op::JumpIfNone => {
                let value = self.pop();
                self.facts.dropped(value);
            }
            Op::Return => {
                self.pop();
            }
            Op::LoadGlobal => {
                if oparg & 1 != 0 {
                    self.push(Val::Opaque);
                }
                // Any object, held by the globals: it may be called or
                // moved, not operated on.
                self.facts.globals = true;
                self.push(Val::Opaque);
            }
            Op::PushNull => self.push(Val::Opaque),
            Op::Call => {
                // Arguments of any kind move into the callee's frame, and
                // the callable is released after the call: each is held
                // elsewhere, or checked when the callee returns.
                for _ in 0..oparg {
                    self.pop();
                }
                for _ in 0..2 {
                    let value = self.pop();
                    self.facts.dropped(value);
                }
                self.facts.calls = self.facts.calls.saturating_add(1);
                // Plain: every value returned during the line is checked.
                self.push(Val::Plain);
            }
        }
    }
}

/// The pure lines of one code object, with what each needs of the locals
/// it reads and of the values on the stack, and which locals it stores and
/// changes.
#[derive(Debug, Default)]
pub(crate) struct PureLines {
    /// The first line in `by_line`.
    first: u32,
    /// By line − `first`: 0, or 1 + the index in `spans` of the line's
    /// first pure entry.
    by_line: Box<[u32]>,
    spans: Box<[Span]>,
    /// By span: how many times in a row its calls were not all observed
    /// (see [`CallWindow`]); at [`MAX_UNOBSERVED`] it is not started again
    /// (it calls a C function, or code out of scope, each time).
    unobserved: Box<[std::cell::Cell<u8>]>,
    slots: Box<[u16]>,
    checks: Box<[StackCheck]>,
    /// The code's local slots and stack size: where its stack is.
    local_slots: usize,
    stack_size: usize,
}

/// One pure entry of a line: where its slots are in [`PureLines::slots`]
/// — from `start`, its `indexable`, `plain`, `stores` and `mutates` slots
/// and then all it stores or changes in slot order (what its next event
/// compares), one after the other, part `k` ending at `start + ends[k]` —
/// and its stack checks in [`PureLines::checks`].
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    ends: [u16; 5],
    checks_start: u32,
    checks_len: u16,
    /// The instruction whose event starts it ([`ANY_ENTRY`]: the line has
    /// one place its events come from).
    entry: u32,
    /// The last entry of its line.
    last: bool,
    interrupts: bool,
    /// The `CALL`s it runs.
    calls: u8,
    /// It loads globals or calls functions: see [`PureLines::may_watch`].
    watches: bool,
}

/// [`Span::entry`] of the only entry of a line.
const ANY_ENTRY: u32 = u32::MAX;

/// The fewest locals a pure line must leave uncompared (see
/// [`LineFacts::worth_it`]), and a line that loads globals or calls
/// functions (see [`CallWindow`]).
const MIN_SAVED: usize = 2;
const MIN_SAVED_WATCHING_CALLS: usize = 4;

/// See [`PureLines::unobserved`]: one miss is expected, the first call
/// of a function (seen by the slow path).
const MAX_UNOBSERVED: u8 = 3;

/// One pure line (an index into its [`PureLines`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PureLine(std::num::NonZeroU32);

impl PureLine {
    /// (Stored plus one: an `Option<PureStep>` takes no more room than a
    /// step.)
    fn new(index: u32) -> Option<PureLine> {
        index
            .checked_add(1)
            .and_then(std::num::NonZeroU32::new)
            .map(PureLine)
    }

    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

/// The most instructions the paths through one entry of a line may run
/// on the abstract stack (conditions multiply paths).
const MAX_STEPS: usize = 2048;

/// The code object's instructions and lines, as the analysis walks them.
struct Code<'a> {
    opcodes: &'a Opcodes,
    /// Offset, opcode, argument and the offset after its caches.
    all: Vec<(usize, u8, u32, usize)>,
    /// By code unit: the instruction's index in `all`.
    index_at: Vec<Option<usize>>,
    /// By code unit: its line.
    line_of: Vec<Option<u32>>,
    /// Instructions `FOR_ITER` skips when its iterator is exhausted: the
    /// `END_FOR` at its target (3.12), and the `POP_TOP` after (3.13).
    for_exit_skip: usize,
}

impl Code<'_> {
    fn line(&self, offset: usize) -> Option<u32> {
        self.line_of.get(offset / 2).copied().flatten()
    }

    fn index(&self, offset: usize) -> Option<usize> {
        self.index_at.get(offset / 2).copied().flatten()
    }

    /// Where an exhausted `FOR_ITER` whose target is `target` goes on.
    fn for_exit(&self, target: usize) -> Option<usize> {
        let index = self.index(target)?;
        self.all.get(index + self.for_exit_skip).map(|i| i.0)
    }

    /// The facts of the paths from the event at instruction `entry` of
    /// `line` until they leave it; `impure` set when one is not pure.
    fn run_entry(
        &self,
        entry: usize,
        line: u32,
        slot: impl Fn(u32) -> Option<u16> + Copy,
        plain_const: impl Fn(u32) -> bool,
    ) -> LineFacts {
        let mut facts = LineFacts::default();
        let mut pending = vec![Path {
            index: entry,
            stack: Vec::new(),
            below: 0,
        }];
        let mut seen: Vec<Path> = Vec::new();
        let mut steps = 0;
        while let Some(path) = pending.pop() {
            if seen.contains(&path) {
                continue;
            }
            seen.push(path.clone());
            facts.paths += 1;
            let mut run = Run {
                facts: &mut facts,
                stack: path.stack,
                below: path.below,
            };
            let mut index = path.index;
            while let Some(&(at, opcode, oparg, after)) = self.all.get(index) {
                steps += 1;
                if steps > MAX_STEPS || run.below > 64 {
                    run.facts.impure = true;
                }
                if run.facts.impure {
                    return facts;
                }
                match self.line(at) {
                    Some(l) if l == line => {}
                    // Line-less: a no-op (see `of`).
                    None => {
                        index += 1;
                        continue;
                    }
                    // Falls into the next line, which starts with an event.
                    Some(_) => break,
                }
                let op = self.opcodes.ops[usize::from(opcode)];
                let target = self.opcodes.target(opcode, oparg as usize, after);
                if op == Op::ForIter {
                    // Only where the event is: the iterator is checked then.
                    if index != entry || !run.stack.is_empty() {
                        run.facts.impure = true;
                        continue;
                    }
                    run.facts.check(Root::Stack(0), StackNeed::Iterator);
                    // Exhausted: the iterator is popped and released.
                    match target.and_then(|t| self.for_exit(t)) {
                        Some(exit) => self.follow(
                            &mut run,
                            at,
                            exit,
                            line,
                            &mut pending,
                            Path {
                                index: 0,
                                stack: Vec::new(),
                                below: 1,
                            },
                        ),
                        None => run.facts.impure = true,
                    }
                    run.push(Val::Found {
                        root: Root::Next(0),
                        depth: 0,
                    });
                    index += 1;
                    continue;
                }
                run.step(op, oparg, slot, op == Op::Const && plain_const(oparg));
                if let Some(target) = target {
                    let path = Path {
                        index: 0,
                        stack: run.stack.clone(),
                        below: run.below,
                    };
                    self.follow(&mut run, at, target, line, &mut pending, path);
                }
                if self.opcodes.ends[usize::from(opcode)] {
                    break;
                }
                index += 1;
            }
        }
        if facts.calls > 0 {
            // Each `CALL` runs once (see `PureStep`), and CPython may run
            // other threads when a function starts.
            facts.impure |= facts.paths > 1 || facts.calls == u8::MAX;
            facts.interrupts = true;
        }
        facts
    }

    /// A jump from `at` (in `line`) to `target` with the stack of `path`:
    /// within the line, forward, one more path; to another line, whose
    /// event compares what this one did, with nothing left on the stack.
    fn follow(
        &self,
        run: &mut Run<'_>,
        at: usize,
        target: usize,
        line: u32,
        pending: &mut Vec<Path>,
        mut path: Path,
    ) {
        match (self.line(target), self.index(target)) {
            (Some(l), Some(index)) if l == line && target > at => {
                path.index = index;
                pending.push(path);
            }
            (Some(l), Some(_)) if l != line => {
                if !path.stack.is_empty() {
                    run.facts.impure = true;
                }
                if target < at {
                    run.facts.interrupts = true;
                }
            }
            // Backward within the line, or to no line.
            _ => run.facts.impure = true,
        }
    }
}

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
        let stack_size: usize = code.getattr("co_stacksize")?.extract()?;
        // The line of each 2-byte code unit.
        let mut line_of: Vec<Option<u32>> = vec![None; bytecode.len() / 2];
        for range in code.call_method0("co_lines")?.try_iter()? {
            let (start, end, line): (usize, usize, Option<u32>) = range?.extract()?;
            for unit in line_of.iter_mut().take(end / 2).skip(start / 2) {
                *unit = line;
            }
        }
        let all: Vec<_> = instructions(bytecode, opcodes)
            .map(|(at, opcode, oparg, after)| {
                let oparg = u32::try_from(oparg).unwrap_or(u32::MAX);
                (at, opcode, oparg, after)
            })
            .collect();
        let mut index_at = vec![None; bytecode.len() / 2 + 1];
        for (index, &(at, ..)) in all.iter().enumerate() {
            index_at[at / 2] = Some(index);
        }
        let reached = normally_reached(bytecode, opcodes);
        // The prelude, up to the first `RESUME`, runs before the frame's
        // first event.
        let prelude = all
            .iter()
            .position(|&(_, opcode, ..)| Some(opcode) == opcodes.resume)
            .map_or(0, |index| index + 1);
        for &(at, opcode, ..) in &all[prelude..] {
            let op = opcodes.ops[usize::from(opcode)];
            // Run between line events, by any line: no line is pure.
            // (Reached only through an exception handler: after an event
            // that compares every local.)
            if line_of[at / 2].is_none() && reached[at / 2] && !matches!(op, Op::Nop | Op::Extend) {
                return Ok(None);
            }
        }
        let code_info = Code {
            opcodes,
            all,
            index_at,
            line_of,
            for_exit_skip: opcodes.for_exit_skip,
        };
        let entries = entries(&code_info, &handler_targets(code)?);
        let slot = |n: u32| u16::try_from(n).ok().filter(|&s| usize::from(s) < slots);
        // SAFETY: GIL held; the constant is alive for the check.
        let plain_const = |n: u32| {
            consts
                .get_item(n)
                .is_ok_and(|value| unsafe { is_plain_constant(value.as_ptr()) })
        };
        let mut found = PureLines {
            local_slots: slots,
            stack_size,
            ..PureLines::default()
        };
        let mut spans: Vec<Span> = Vec::new();
        let (mut all_slots, mut all_checks) = (Vec::new(), Vec::new());
        let mut by_line: Vec<(u32, u32)> = Vec::new();
        for (line, starts) in entries {
            let mut pure = Vec::new();
            for &index in &starts {
                let facts = code_info.run_entry(index, line, slot, plain_const);
                let worth = facts.worth_it(slots);
                if !facts.impure && worth {
                    pure.push((code_info.all[index].0, facts));
                }
            }
            let only = starts.len() == 1;
            let first = spans.len();
            for (entry, facts) in pure {
                let Some(span) = span_of(&facts, &mut all_slots, &mut all_checks) else {
                    continue;
                };
                spans.push(Span {
                    entry: if only { ANY_ENTRY } else { entry as u32 },
                    ..span
                });
            }
            if let Some(last) = spans.get_mut(first..).and_then(|s| s.last_mut()) {
                last.last = true;
                by_line.push((line, first as u32 + 1));
            }
        }
        let (Some(&(first, _)), Some(&(last, _))) = (by_line.first(), by_line.last()) else {
            return Ok(None);
        };
        let mut lines = vec![0; (last - first + 1) as usize];
        for (line, index) in by_line {
            lines[(line - first) as usize] = index;
        }
        found.first = first;
        found.by_line = lines.into();
        found.unobserved = spans.iter().map(|_| std::cell::Cell::new(0)).collect();
        found.spans = spans.into();
        found.slots = all_slots.into();
        found.checks = all_checks.into();
        Ok(Some(found))
    }

    /// `line`, if it has a pure entry.
    #[inline]
    pub(crate) fn line(&self, line: u32) -> Option<PureLine> {
        let index = line.checked_sub(self.first)? as usize;
        match self.by_line.get(index) {
            Some(&n) if n > 0 => PureLine::new(n - 1),
            _ => None,
        }
    }

    /// The slots of `line`: what it subscripts, operates on, stores and
    /// changes in place.
    #[inline]
    fn parts(&self, span: &Span) -> [&[u16]; 4] {
        let Span { start, ends, .. } = *span;
        let slots = &self.slots[start as usize..];
        let [a, b, c, d, _] = ends.map(usize::from);
        [&slots[..a], &slots[a..b], &slots[b..c], &slots[c..d]]
    }

    /// The locals `line` stores or changes, in slot order: what its next
    /// event compares.
    #[inline]
    fn compared_slots(&self, span: &Span) -> &[u16] {
        let Span { start, ends, .. } = *span;
        let start = start as usize;
        &self.slots[start + usize::from(ends[3])..start + usize::from(ends[4])]
    }

    /// Whether a line that loads globals or calls functions may start as
    /// pure: the frame's globals and builtins are exact dicts (whose
    /// lookups run no code of the program), and its calls were not found
    /// unobserved [`MAX_UNOBSERVED`] times in a row.
    ///
    /// # Safety
    /// GIL held; `frame` live.
    #[inline(never)]
    unsafe fn may_watch(&self, line: PureLine, layout: &Layout, frame: InterpreterFrame) -> bool {
        // SAFETY: forwarded.
        self.unobserved[line.index()].get() < MAX_UNOBSERVED
            && unsafe { layout.names_are_plain_dicts(frame) }
    }

    /// Whether every call of `line` (`calls`) was observed, and every event
    /// since it started until event `seq` (see [`CallWindow`]), counting
    /// the line's misses in a row.
    #[inline(never)]
    fn calls_observed(&self, line: PureLine, calls: u8, window: CallWindow, seq: u64) -> bool {
        let misses = &self.unobserved[line.index()];
        let between = (seq as u32).wrapping_sub(window.seq);
        let observed = window.calls == calls && u32::from(window.observed) == between;
        misses.set(if observed {
            0
        } else {
            misses.get().saturating_add(1)
        });
        observed
    }

    /// What `line` needs of the values on the stack.
    #[inline]
    fn checks(&self, span: &Span) -> &[StackCheck] {
        let start = span.checks_start as usize;
        &self.checks[start..start + usize::from(span.checks_len)]
    }
}

/// `facts` as a span (its entry unset), its slots and checks appended;
/// `None` if they do not fit.
fn span_of(
    facts: &LineFacts,
    all_slots: &mut Vec<u16>,
    all_checks: &mut Vec<StackCheck>,
) -> Option<Span> {
    let of_need = |need: Need| {
        facts
            .needs
            .iter()
            .filter(move |(_, n)| *n == need)
            .map(|&(s, _)| s)
    };
    let start = all_slots.len();
    all_slots.extend(of_need(Need::Indexable));
    all_slots.extend(of_need(Need::Plain));
    all_slots.extend(&facts.stores);
    all_slots.extend(&facts.mutates);
    let mut compared: Vec<u16> = facts.stores.iter().chain(&facts.mutates).copied().collect();
    compared.sort_unstable();
    compared.dedup();
    all_slots.extend(&compared);
    let plain = of_need(Need::Plain).count();
    let lens = [
        facts.needs.len() - plain,
        plain,
        facts.stores.len(),
        facts.mutates.len(),
        compared.len(),
    ];
    let mut ends = [0u16; 5];
    let mut end = 0;
    for (k, len) in lens.into_iter().enumerate() {
        end += len;
        ends[k] = u16::try_from(end).unwrap_or(u16::MAX);
    }
    let (Ok(checks_len), Ok(checks_start), Ok(start32)) = (
        u16::try_from(facts.checks.len()),
        u32::try_from(all_checks.len()),
        u32::try_from(start),
    ) else {
        all_slots.truncate(start);
        return None;
    };
    if usize::from(ends[4]) != end {
        all_slots.truncate(start);
        return None;
    }
    all_checks.extend(&facts.checks);
    Some(Span {
        start: start32,
        ends,
        checks_start,
        checks_len,
        entry: ANY_ENTRY,
        last: false,
        interrupts: facts.interrupts,
        calls: facts.calls,
        watches: facts.calls > 0 || facts.globals,
    })
}

/// By line, in order: the instructions (indices) where its events come
/// from — where execution enters it from another line, by falling
/// through or by a jump, or from an exception handler. A line that jumps
/// back into itself has none (3.11 reports such a jump, 3.12 does not).
fn entries(code: &Code<'_>, handlers: &[usize]) -> std::collections::BTreeMap<u32, Vec<usize>> {
    let mut entry = vec![false; code.all.len()];
    let mut looping: Vec<u32> = Vec::new();
    for (index, &(at, opcode, oparg, after)) in code.all.iter().enumerate() {
        let Some(line) = code.line(at) else { continue };
        let falls_in = index == 0 || {
            let (before, before_opcode, ..) = code.all[index - 1];
            !code.opcodes.ends[usize::from(before_opcode)] && code.line(before) != Some(line)
        };
        if falls_in {
            entry[index] = true;
        }
        if let Some(target) = code.opcodes.target(opcode, oparg as usize, after)
            && let Some(target_index) = code.index(target)
        {
            match code.line(target) {
                Some(l) if l != line => entry[target_index] = true,
                Some(l) if target <= at => looping.push(l),
                _ => {}
            }
        }
    }
    for &handler in handlers {
        if let Some(index) = code.index(handler) {
            entry[index] = true;
        }
    }
    let mut by_line: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
    for (index, &(at, ..)) in code.all.iter().enumerate() {
        if let Some(line) = code.line(at)
            && entry[index]
        {
            by_line.entry(line).or_default().push(index);
        }
    }
    by_line.retain(|line, _| !looping.contains(line));
    by_line
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

/// Offsets of every jump target and exception handler of `code`.
fn jump_targets(
    code: &Bound<'_, PyAny>,
    bytecode: &[u8],
    opcodes: &Opcodes,
) -> PyResult<Vec<usize>> {
    let mut labels: Vec<usize> = instructions(bytecode, opcodes)
        .filter_map(|(_, opcode, oparg, after)| opcodes.target(opcode, oparg, after))
        .collect();
    labels.extend(handler_targets(code)?);
    labels.sort_unstable();
    labels.dedup();
    Ok(labels)
}

/// Offsets of the exception handlers of `code`, read from its exception
/// table (no Python code runs: this is called with the recording's state
/// locked).
fn handler_targets(code: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    let mut targets = Vec::new();
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
        targets.push(2 * target);
    }
    Ok(targets)
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
            let entries = pyo3::types::PyList::empty(py);
            for k in (n - 1) as usize.. {
                let span = lines.spans[k];
                let entry = pyo3::types::PyDict::new(py);
                let parts = lines.parts(&span);
                for (name, part) in ["indexable", "plain", "stores", "mutates"]
                    .iter()
                    .zip(parts)
                {
                    entry.set_item(name, part.to_vec())?;
                }
                let checks: Vec<String> = lines
                    .checks(&span)
                    .iter()
                    .map(|c| format!("{:?} {:?}", c.root, c.need))
                    .collect();
                entry.set_item("stack", checks)?;
                entry.set_item("interrupts", span.interrupts)?;
                entry.set_item("calls", span.calls)?;
                entry.set_item("entry", (span.entry != ANY_ENTRY).then_some(span.entry))?;
                entries.append(entry)?;
                if span.last {
                    break;
                }
            }
            found.set_item(lines.first + index as u32, entries)?;
        }
    }
    let described = pyo3::types::PyDict::new(py);
    described.set_item("labels", labels)?;
    described.set_item("lines", found)?;
    Ok(described)
}

/// Whether the locals of `frame` and the values on its stack are what pure
/// line `line` needs, so that it runs no code but its own: the bit set of
/// the lists it changes in place (see [`list_bit`]), or `None`.
///
/// # Safety
/// GIL held; `frame` the live frame of the code `lines` belongs to, at the
/// line's event.
#[inline]
unsafe fn runs_alone(
    lines: &PureLines,
    span: &Span,
    layout: &Layout,
    frame: InterpreterFrame,
) -> Option<u64> {
    let [indexable, plain, stores, mutates] = lines.parts(span);
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
        for check in lines.checks(span) {
            let on_stack = |down: u8| {
                layout.stack_value(
                    frame,
                    lines.local_slots,
                    lines.stack_size,
                    usize::from(down),
                )
            };
            let met = match (check.root, check.need) {
                (Root::Stack(down), StackNeed::Iterator) => {
                    let v = on_stack(down);
                    !v.is_null() && iterator_runs_alone(v)
                }
                (Root::Stack(down), StackNeed::Unpackable(depth)) => {
                    let v = on_stack(down);
                    !v.is_null() && unpackable(v, depth)
                }
                // (After the iterator's own check, which comes first.)
                (Root::Next(down), StackNeed::Unpackable(depth)) => {
                    let v = on_stack(down);
                    !v.is_null() && next_unpackable(v, depth)
                }
                (Root::Next(_), StackNeed::Iterator) => false,
            };
            if !met {
                return None;
            }
        }
        // No other thread can run while this one waits at a backward jump:
        // it is the only one.
        if span.interrupts && layout.sole_thread().is_none() {
            return None;
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

/// Whether a frame returning `value` does what an observed call must (see
/// [`CallWindow`]): the value is plain, and each local it releases (`slots`:
/// its code's) is plain, or held elsewhere too, so that freeing it runs no
/// finalizer. Cell and free variables are not looked into: a function
/// with any is not observed.
///
/// # Safety
/// GIL held; `frame` live, at its return; `value` alive.
#[cfg(Py_3_12)]
pub(crate) unsafe fn returns_safely(
    layout: &Layout,
    frame: InterpreterFrame,
    slots: &[(u32, SlotKind)],
    value: *mut ffi::PyObject,
) -> bool {
    // SAFETY: forwarded; the slots are the code's, values borrowed.
    unsafe {
        if !is_plain(value) {
            return false;
        }
        let local = |slot: usize| layout.slot(frame, slot, SlotKind::Plain);
        slots.iter().enumerate().all(|(slot, &(_, kind))| {
            let v = local(slot);
            kind == SlotKind::Plain && {
                v.is_null() || is_plain(v) || {
                    let holders = (0..slots.len()).filter(|&s| local(s) == v).count();
                    ffi::Py_REFCNT(v) > holders as ffi::Py_ssize_t
                }
            }
        })
    }
}

/// The fields of a list or tuple iterator (`listiterobject`,
/// `_PyTupleIterObject`): read only once [`check_iterator_layout`] found
/// them there.
#[repr(C)]
struct SequenceIterator {
    header: ffi::PyObject,
    index: ffi::Py_ssize_t,
    sequence: *mut ffi::PyObject,
}

/// The fields of an `enumerate` (`enumobject`): read only once
/// [`check_iterator_layout`] found them there.
#[repr(C)]
struct Enumerate {
    header: ffi::PyObject,
    index: ffi::Py_ssize_t,
    iterator: *mut ffi::PyObject,
    /// The tuple it reuses for its next item when nothing else holds it.
    result: *mut ffi::PyObject,
    long_index: *mut ffi::PyObject,
}

/// [`SequenceIterator`] and [`Enumerate`] match the running CPython.
static ITERATOR_LAYOUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Checks [`SequenceIterator`] and [`Enumerate`] against iterators made
/// here (at import, where Python code may run), one item into a list, a
/// tuple and an enumerate.
pub(crate) fn check_iterator_layout(py: Python<'_>) -> PyResult<()> {
    let made = py.eval(
        c"(lambda l, t: (l, t, iter(l), iter(t), enumerate(l)))([5, 6], (7, 8))",
        None,
        None,
    )?;
    let mut matches = true;
    for (sequence, iterator) in [(0, 2), (1, 3)] {
        let (sequence, iterator) = (made.get_item(sequence)?, made.get_item(iterator)?);
        iterator.call_method0("__next__")?;
        // SAFETY: a live iterator, read within its size (a count and a
        // pointer after the header).
        let fields = unsafe { &*iterator.as_ptr().cast::<SequenceIterator>() };
        matches &= fields.index == 1 && fields.sequence == sequence.as_ptr();
    }
    let enumerate = made.get_item(4)?;
    let first = enumerate.call_method0("__next__")?;
    // SAFETY: a live enumerate, read within its size (a count and three
    // pointers after the header); the inner iterator's type read only once
    // it is known not to be null.
    matches &= unsafe {
        let fields = &*enumerate.as_ptr().cast::<Enumerate>();
        fields.index == 1
            && fields.result == first.as_ptr()
            && fields.long_index.is_null()
            && !fields.iterator.is_null()
            && ffi::Py_TYPE(fields.iterator) == &raw mut ffi::PyListIter_Type
    };
    ITERATOR_LAYOUT.store(matches, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The list or tuple a list or tuple iterator goes through (null once
/// exhausted), or `None` for other objects.
///
/// # Safety
/// GIL held, `value` valid.
#[inline]
unsafe fn iterated(value: *mut ffi::PyObject) -> Option<(*mut ffi::PyObject, ffi::Py_ssize_t)> {
    // SAFETY: the layout was checked.
    unsafe {
        let t = ffi::Py_TYPE(value);
        if (t == &raw mut ffi::PyListIter_Type || t == &raw mut ffi::PyTupleIter_Type)
            && ITERATOR_LAYOUT.load(std::sync::atomic::Ordering::Relaxed)
        {
            let fields = &*value.cast::<SequenceIterator>();
            return Some((fields.sequence, fields.index));
        }
        None
    }
}

/// The inner iterator, reused result tuple and long index of an
/// `enumerate`, or `None` for other objects.
///
/// # Safety
/// GIL held, `value` valid.
#[inline]
unsafe fn enumerated(
    value: *mut ffi::PyObject,
) -> Option<(*mut ffi::PyObject, *mut ffi::PyObject, *mut ffi::PyObject)> {
    // SAFETY: the layout was checked.
    unsafe {
        if ffi::Py_TYPE(value) != &raw mut ffi::PyEnum_Type
            || !ITERATOR_LAYOUT.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let fields = &*value.cast::<Enumerate>();
        Some((fields.iterator, fields.result, fields.long_index))
    }
}

/// An iterator whose `__next__` runs no code and whose exhaustion frees
/// nothing: a list or tuple iterator (its sequence held elsewhere too), a
/// range iterator, or an `enumerate` of one (the item it last gave held
/// elsewhere too, as it may release it).
///
/// # Safety
/// GIL held, `value` valid.
unsafe fn iterator_runs_alone(value: *mut ffi::PyObject) -> bool {
    // SAFETY: forwarded; the sequence is alive while its iterator is.
    unsafe {
        let t = ffi::Py_TYPE(value);
        if t == &raw mut ffi::PyRangeIter_Type || t == &raw mut ffi::PyLongRangeIter_Type {
            return true;
        }
        if let Some((sequence, _)) = iterated(value) {
            return sequence.is_null() || ffi::Py_REFCNT(sequence) > 1;
        }
        let Some((iterator, result, long_index)) = enumerated(value) else {
            return false;
        };
        let last_item_held = result.is_null()
            || ffi::Py_REFCNT(result) > 1
            || (0..2).all(|i| {
                let item = ffi::PyTuple_GET_ITEM(result, i);
                item.is_null() || is_scalar(item) || ffi::Py_REFCNT(item) > 1
            });
        long_index.is_null()
            && !iterator.is_null()
            && last_item_held
            && iterator_runs_alone(iterator)
    }
}

/// Whether unpacking each value `depth` unpackings inside the item the
/// iterator `value` gives next runs no code (see [`unpackable`]); true
/// when it gives none.
///
/// # Safety
/// GIL held, `value` valid and [`iterator_runs_alone`].
unsafe fn next_unpackable(value: *mut ffi::PyObject, depth: u8) -> bool {
    // SAFETY: items are read within their sequence's length.
    unsafe {
        if let Some((sequence, index)) = iterated(value) {
            if sequence.is_null() || index < 0 {
                return true;
            }
            let tuple = ffi::Py_TYPE(sequence) == &raw mut ffi::PyTuple_Type;
            let (items, len) = crate::repr::sequence_items(sequence, tuple);
            let index = index as usize;
            return index >= len || unpackable(*items.add(index), depth);
        }
        match enumerated(value) {
            // A tuple of an int and the inner iterator's item.
            Some((iterator, ..)) => depth == 0 || next_unpackable(iterator, depth - 1),
            // A range iterator gives ints.
            None => true,
        }
    }
}

/// Whether unpacking each value `depth` unpackings inside `value` runs no
/// code: each is an exact list or tuple (of at most [`MAX_PLAIN_ITEMS`]
/// items, for what is inside it) or a scalar (unpacking one raises, or
/// gives the characters of a str).
///
/// # Safety
/// GIL held, `value` valid.
unsafe fn unpackable(value: *mut ffi::PyObject, depth: u8) -> bool {
    // SAFETY: the items are borrowed from the live sequence.
    unsafe {
        if is_scalar(value) {
            return true;
        }
        if !is_sequence(value) {
            return false;
        }
        if depth == 0 {
            return true;
        }
        let tuple = ffi::Py_TYPE(value) == &raw mut ffi::PyTuple_Type;
        let (items, len) = crate::repr::sequence_items(value, tuple);
        len <= MAX_PLAIN_ITEMS && (0..len).all(|i| unpackable(*items.add(i), depth - 1))
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
    /// [`gc_runs`] when it started (its low bits: 65,536 collections
    /// during one line that is not a loop are out of reach).
    gc_runs: u16,
    /// The line calls functions: its [`CallWindow`] is watched.
    calls: bool,
    /// The lists it changes (see [`list_bit`]), and those the lines of the
    /// functions it calls change.
    changed: u64,
}

impl PureStep {
    /// The line calls functions: its [`CallWindow`] is watched.
    #[inline]
    pub(crate) fn calls(&self) -> bool {
        self.calls
    }

    /// The lists the line changes.
    #[cfg(Py_3_12)]
    #[inline]
    pub(crate) fn changed(&self) -> u64 {
        self.changed
    }

    /// A pure line of a function it called changes the lists `changed`.
    #[cfg(Py_3_12)]
    #[inline]
    pub(crate) fn join(&mut self, changed: u64) {
        self.changed |= changed;
    }
}

/// The calls of a pure line under way (3.12+), kept beside its
/// [`PureStep`] by its frame while it runs.
///
/// A line that calls functions stays pure only if every call is
/// *observed*: each `CALL` starts a recorded Python frame whose caller is
/// this one (a C function, a class, code out of scope or a callback from
/// C code starts none, or one whose caller is a C entry frame), and every
/// event until this frame's next is one of those frames' start, pure
/// lines and returns ([`CallWindow::observe`]) — their lines' changed
/// lists join this line's — each returning a plain value and releasing
/// nothing that could run a finalizer ([`returns_safely`]). Any other
/// event (an exception, a nested call, another thread's) leaves the count
/// of observed events short of the events recorded, and the next event
/// compares every local.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CallWindow {
    /// The event sequence number when the line started (the next event's;
    /// low bits), and the events observed since.
    seq: u32,
    observed: u16,
    /// The calls observed.
    calls: u8,
}

impl CallWindow {
    /// The window of a line starting before event `seq`.
    pub(crate) fn open(seq: u64) -> CallWindow {
        CallWindow {
            seq: seq as u32,
            observed: 0,
            calls: 0,
        }
    }

    /// An event of a function the line called, observed: its start
    /// (`call`), a pure line, or a plain return.
    #[cfg(Py_3_12)]
    #[inline]
    pub(crate) fn observe(&mut self, call: bool) {
        self.calls = self.calls.saturating_add(u8::from(call));
        self.observed = self.observed.saturating_add(1);
    }
}

/// What the event after a pure line compares: the locals it stores and
/// those whose lists it changes, and any other whose value may go through
/// one of the lists in `changed`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Compared<'a> {
    /// The locals the line stores or changes, in slot order.
    pub(crate) slots: &'a [u16],
    pub(crate) changed: u64,
}

impl PureLines {
    /// Starts `line` if the event of `frame` (running `code`) is at one of
    /// its pure entries, and its locals and stack let it run alone.
    ///
    /// # Safety
    /// As [`runs_alone`].
    #[inline]
    pub(crate) unsafe fn start(
        &self,
        line: PureLine,
        layout: &Layout,
        frame: InterpreterFrame,
        code: *mut ffi::PyObject,
    ) -> Option<PureStep> {
        let mut line = line;
        let mut span = &self.spans[line.index()];
        if span.entry != ANY_ENTRY {
            // SAFETY: forwarded.
            let at = unsafe { layout.instruction(frame, code) };
            while span.entry as usize != at {
                if span.last {
                    return None;
                }
                line = PureLine::new(line.index() as u32 + 1)?;
                span = self.spans.get(line.index())?;
            }
        }
        // SAFETY: forwarded.
        if span.watches && !unsafe { self.may_watch(line, layout, frame) } {
            return None;
        }
        // SAFETY: forwarded.
        let changed = unsafe { runs_alone(self, span, layout, frame) }?;
        Some(PureStep {
            line,
            gc_runs: gc_runs() as u16,
            calls: span.calls > 0,
            changed,
        })
    }

    /// What the event after `step` compares, event `seq` (its calls
    /// observed in `window`); `None`: everything (a garbage collection ran
    /// meanwhile, or its calls were not all observed).
    #[inline]
    pub(crate) fn compared(
        &self,
        step: PureStep,
        window: CallWindow,
        seq: u64,
    ) -> Option<Compared<'_>> {
        let span = &self.spans[step.line.index()];
        if step.calls && !self.calls_observed(step.line, span.calls, window, seq) {
            return None;
        }
        (step.gc_runs == gc_runs() as u16).then(|| Compared {
            slots: self.compared_slots(span),
            changed: step.changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::PureStep;

    #[test]
    fn a_frame_holds_its_pure_step_in_two_words() {
        // Every event moves one.
        assert_eq!(std::mem::size_of::<Option<PureStep>>(), 16);
    }
}
