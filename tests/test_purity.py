"""The recorder's pure-line analysis (recorder/src/purity.rs), checked on
the running CPython's own bytecode: jump targets as `dis` finds them, and
which lines run no code but their own, with what they need of each local.
Recording the programs these lines come from is checked against PySnooper
in test_pysnooper_parity.py (fixtures/programs/pure_lines.py)."""

from __future__ import annotations

import dis
import importlib
import inspect
import sys
import types
from typing import Any

import pytest

from chronolog import _native


def code_objects(root: types.CodeType) -> list[types.CodeType]:
    found = [root]
    for const in root.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(code_objects(const))
    return found


def exception_targets(code: types.CodeType) -> set[int]:
    parse = getattr(dis, "_parse_exception_table", None)
    return {entry.target for entry in parse(code)} if parse else set()


@pytest.mark.parametrize("module", ["json.decoder", "asyncio.tasks", "dis", "inspect"])
def test_jump_targets_are_those_dis_finds(module: str) -> None:
    source = inspect.getsource(importlib.import_module(module))
    for code in code_objects(compile(source, module, "exec")):
        expected = set(dis.findlabels(code.co_code)) | exception_targets(code)
        assert set(_native.describe(code)["labels"]) == expected, code.co_name


PARTS = ("indexable", "plain", "stores", "mutates")


def entries_of(function: Any) -> dict[int, list[dict[str, Any]]]:
    """Pure entries of each line by offset from the `def`, with local names
    for slots: what each needs of the locals and of the stack."""
    code = function.__code__
    names = [*code.co_varnames, *code.co_cellvars, *code.co_freevars]
    first = code.co_firstlineno
    return {
        line - first: [
            {part: sorted(names[s] for s in entry[part]) for part in PARTS}
            | {
                "stack": sorted(entry["stack"]),
                "interrupts": entry["interrupts"],
                "calls": entry["calls"],
                "at": entry["entry"],
            }
            for entry in entries
        ]
        for line, entries in _native.describe(code)["lines"].items()
    }


def lines_of(function: Any) -> dict[int, dict[str, list[str]]]:
    """Lines with one place their events come from, and what they need."""
    return {
        line: {part: entries[0][part] for part in PARTS}
        for line, entries in entries_of(function).items()
        if len(entries) == 1
        and entries[0]["at"] is None
        and not entries[0]["stack"]
        and not entries[0]["calls"]
    }


def facts(
    indexable: tuple[str, ...] = (),
    plain: tuple[str, ...] = (),
    stores: tuple[str, ...] = (),
    mutates: tuple[str, ...] = (),
) -> dict[str, list[str]]:
    return {
        "indexable": sorted(indexable),
        "plain": sorted(plain),
        "stores": sorted(stores),
        "mutates": sorted(mutates),
    }


def sample(a, b, items, v, obj, n):
    x = a + b
    k = items[0]
    v[0] -= x * 2
    if v[1] > 0 and a != n:
        n += 1
    y = obj
    v[1:2] = items[0:1]
    if obj is None:
        y = len(items)
    z = obj.attribute
    w = a if b else n
    s = f"{x}-{a}"
    return y, k, z, w, s


def test_which_lines_are_pure_and_what_they_need() -> None:
    lines = lines_of(sample)
    assert lines[1] == facts(plain=("a", "b"), stores=("x",))
    # An item is moved: the list need only be a list.
    assert lines[2] == facts(indexable=("items",), stores=("k",))
    assert lines[3] == facts(plain=("v", "x"), mutates=("v",))
    assert lines[4] == facts(plain=("a", "n", "v"))
    # An in-place operator may change a list: the local is compared after it.
    assert lines[5] == facts(plain=("n",), stores=("n",), mutates=("n",))
    # Moving any value: nothing to check but the old value it replaces.
    assert lines[6] == facts(stores=("y",))
    assert lines[7] == facts(plain=("items", "v"), mutates=("v",))
    assert lines[8] == facts()
    # A call (observed when it runs, 3.12+: see test_observed_calls), an
    # attribute.
    assert not {9, 10} & set(lines)
    calls = [entry["calls"] for entry in entries_of(sample).get(9, [])]
    assert calls == ([1] if sys.version_info >= (3, 12) else [])
    # A conditional expression: two paths through the line.
    assert lines[11] == facts(plain=("b",), stores=("w",))
    assert lines[12] == facts(plain=("a", "x"), stores=("s",))
    assert lines[13] == facts()  # a tuple of any values, returned


def loops(items, pairs):
    total = 0
    for item in items:
        total += item
    while total > 10:
        total -= 3
    for k, ((a, b), c) in enumerate(pairs):
        total += a * b + c * k
    return total


def test_loop_lines_are_pure_where_their_events_come_from() -> None:
    entries = entries_of(loops)
    # The `for` line: pure where each iteration's event is (at FOR_ITER),
    # given a list, tuple or range iterator on the stack; not where the
    # loop starts (`iter()` may run code).
    [next_item] = entries[2]
    assert next_item["at"] is not None
    assert next_item["stack"] == ["Stack(0) Iterator"]
    assert next_item["stores"] == ["item"]
    # The body's last line jumps back, where CPython may run other threads.
    [body] = entries[3]
    assert body["interrupts"] and body["mutates"] == body["stores"] == ["total"]
    # `while` tests its condition on entry and again after its body.
    assert entries[4] and all(entry["plain"] == ["total"] for entry in entries[4])
    assert any(entry["interrupts"] for entry in entries[4] + entries[5])
    # Unpacking the item: each level must be a list, a tuple or a scalar.
    [unpacking] = entries[6]
    # (Checking the deepest level checks the others.)
    assert unpacking["stack"] == ["Next(0) Unpackable(2)", "Stack(0) Iterator"]
    assert unpacking["stores"] == ["a", "b", "c", "k"]


def generator_loop(n):
    total = 0
    for x in (i for i in range(n)):
        total += x
    return total


def breaking(items):
    for item in items:
        if item:
            break
    return items


def test_loops_that_may_run_code_are_impure() -> None:
    # Any iterator but a list, tuple, range or enumerate iterator is
    # refused when the line starts (its `__next__` may run code): the
    # analysis allows it; the check at the event does not.
    assert entries_of(generator_loop)[2][0]["stack"] == ["Stack(0) Iterator"]
    # `break` pops the iterator: releasing it may free its list.
    assert 3 not in entries_of(breaking)


def test_an_iterator_checked_at_the_event() -> None:
    pure = _native.describe(loops.__code__)["lines"]
    first = loops.__code__.co_firstlineno
    assert pure[first + 2][0]["entry"] in {
        instruction.offset
        for instruction in dis.get_instructions(loops)
        if instruction.opname == "FOR_ITER"
    }


def comprehension(items):
    doubled = [i * 2 for i in items]
    n = len(doubled)
    total = n + 1
    return total


def closure(items):
    factor = 3
    count = len(items)
    total = count + 1
    return total, lambda: factor


def test_cells_made_before_the_first_event_do_not_count() -> None:
    # `MAKE_CELL` runs, without a line, before the frame's first event.
    lines = lines_of(closure)
    assert lines[3] == facts(plain=("count",), stores=("total",))
    # A line that reads a cell is not pure.
    assert 1 not in lines


def test_cleanup_code_run_only_after_an_exception_does_not_count() -> None:
    # 3.12+ inlines the comprehension, with line-less cleanup code that
    # runs only when it raises (an event that compares every local).
    assert lines_of(comprehension)[3] == facts(plain=("n",), stores=("total",))
