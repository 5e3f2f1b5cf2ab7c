"""The recorder's pure-line analysis (recorder/src/purity.rs), checked on
the running CPython's own bytecode: jump targets as `dis` finds them, and
which lines run no code but their own, with what they need of each local.
Recording the programs these lines come from is checked against PySnooper
in test_pysnooper_parity.py (fixtures/programs/pure_lines.py)."""

from __future__ import annotations

import dis
import importlib
import inspect
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


def lines_of(function: Any) -> dict[int, dict[str, list[str]]]:
    """Pure lines by offset from the `def`, with local names for slots."""
    code = function.__code__
    names = [*code.co_varnames, *code.co_cellvars, *code.co_freevars]
    first = code.co_firstlineno
    return {
        line - first: {part: sorted(names[s] for s in slots) for part, slots in facts.items()}
        for line, facts in _native.describe(code)["lines"].items()
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
    # A call, an attribute, a conditional expression (a jump into the line).
    assert not {9, 10, 11} & set(lines)
    assert lines[12] == facts(plain=("a", "x"), stores=("s",))
    assert lines[13] == facts()  # a tuple of any values, returned


def loops(items):
    total = 0
    for item in items:
        total += item
    while total > 10:
        total -= 3
    return total


def test_lines_with_backward_jumps_are_impure() -> None:
    lines = lines_of(loops)
    # `for` and `while` lines jump back (where CPython runs other threads,
    # signal handlers and the garbage collector), and so does the last line
    # of the `for` body; `while` tests its condition again on its own line.
    assert {1, 5, 6} <= set(lines)
    assert not {2, 3, 4} & set(lines)


def comprehension(items):
    doubled = [i * 2 for i in items]
    n = len(doubled)
    total = n + 1
    return total


def test_cleanup_code_run_only_after_an_exception_does_not_count() -> None:
    # 3.12+ inlines the comprehension, with line-less cleanup code that
    # runs only when it raises (an event that compares every local).
    assert lines_of(comprehension)[3] == facts(plain=("n",), stores=("total",))
