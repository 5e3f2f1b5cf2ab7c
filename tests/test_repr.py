"""The recorder's safe repr: identical to repr() for built-in values, cut as
PySnooper cuts long ones, and never running user code."""

from __future__ import annotations

import abc
import collections
import enum
import re

import pytest

from chronolog._native import safe_repr


class Loud:
    calls = 0

    def __repr__(self) -> str:
        Loud.calls += 1
        return "LOUD"

    def __hash__(self) -> int:
        Loud.calls += 1
        return 1

    def __eq__(self, other: object) -> bool:
        Loud.calls += 1
        return self is other


def pysnooper_truncate(text: str, max_length: int) -> str:
    """PySnooper's rule: head, '...', tail."""
    if len(text) <= max_length:
        return text
    left = (max_length - 3) // 2
    right = max_length - 3 - left
    return f"{text[:left]}...{text[-right:]}"


cyclic_list: list[object] = [1, 2]
cyclic_list.append(cyclic_list)
cyclic_dict: dict[str, object] = {"a": 1}
cyclic_dict["self"] = cyclic_dict


class Meta(type):
    """A metaclass that keeps `type.__repr__`."""


class WithMeta(metaclass=Meta):
    pass


class Abstract(abc.ABC):
    @abc.abstractmethod
    def run(self) -> None: ...


class Color(enum.Enum):
    """Its metaclass defines `__repr__` (Python code, not run)."""

    RED = 1


BUILTINS = [
    WithMeta,
    Abstract,
    Loud,
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**100),
    3.5,
    1e20,
    1e-7,
    float("nan"),
    float("-inf"),
    1 + 2j,
    "",
    "plain",
    "it's",
    'say "hi"',
    "both ' and \"",
    "tab\tnew\nline\r\\ \x00 \x7f \x85 é ü 中文 \u200b \U0001f600 \ud800",
    b"",
    b"bytes \x00\xff ' \"",
    b"it's",
    bytearray(b"ba\n"),
    [],
    [1, "a", None, [2, [3]]],
    (),
    (1,),
    (1, 2),
    {},
    {"k": [1, 2], 3: (4,), None: {"x": b"y"}},
    set(),
    {1},
    frozenset(),
    frozenset({"a"}),
    range(5),
    range(1, 10, 2),
    range(10, -10, -3),
    range(-(2**62), 2**62, 2**61),
    range(10**30, 10**31, 10**29),
    range(0),
    cyclic_list,
    cyclic_dict,
    ValueError("bad value"),
    KeyError("k"),
    OSError(2, "No such file"),
    Exception(),
    len,
    pysnooper_truncate,
    int,
    Ellipsis,
    NotImplemented,
]


@pytest.mark.parametrize("value", BUILTINS, ids=lambda v: type(v).__name__)
def test_builtin_values_match_repr(value: object) -> None:
    assert safe_repr(value, 0) == repr(value)
    assert safe_repr(value, 100) == pysnooper_truncate(repr(value), 100)


@pytest.mark.parametrize("max_repr", [5, 10, 17, 100])
@pytest.mark.parametrize(
    "value",
    [
        list(range(1000)),
        tuple(range(500)),
        {i: str(i) for i in range(300)},
        "x" * 300 + "é" * 200 + "'",
        b"\x01" * 400,
        bytearray(b"ab" * 300),
        [[i, "s" * 30] for i in range(100)],
        {"nested": [{"deep": list(range(80))}] * 3},
        {10**i for i in range(40)},
        frozenset(range(200)),
    ],
    ids=lambda v: type(v).__name__,
)
def test_long_values_are_cut_like_pysnooper(value: object, max_repr: int) -> None:
    assert safe_repr(value, max_repr) == pysnooper_truncate(repr(value), max_repr)


def test_user_objects_render_without_running_user_code() -> None:
    loud = Loud()
    value = [loud, {loud: loud}, {loud}]
    Loud.calls = 0
    text = safe_repr(value, 0)
    assert Loud.calls == 0
    address = f"{id(loud):#x}"
    expected = f"<{__name__}.Loud object at {address}>"
    assert text == f"[{expected}, {{{expected}: {expected}}}, {{{expected}}}]"


def test_subclasses_of_builtins_are_objects() -> None:
    value = collections.OrderedDict(a=1)
    assert safe_repr(value, 0) == f"<collections.OrderedDict object at {id(value):#x}>"


def test_huge_values_cost_little() -> None:
    big = list(range(1_000_000))
    assert safe_repr(big, 100) == pysnooper_truncate(repr(big), 100)
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    text = safe_repr(deep, 100)
    assert text.startswith("[[[[") and text.endswith("]]]]") and len(text) == 100
    huge = "a" * 5_000_000
    assert safe_repr(huge, 100) == pysnooper_truncate(repr(huge), 100)


def test_a_failing_exception_repr_is_never_called() -> None:
    class Sneaky(Exception):
        pass

    err = Sneaky("x", 1)
    assert safe_repr(err, 0) == "Sneaky('x', 1)"


def test_floats_match_repr_everywhere() -> None:
    import random
    import struct

    rng = random.Random(7)
    values = [0.0, -0.0, 1.0, -1.5, 0.1, 1 / 3, 2.0**53, 1e15, 1e16, 1e-4, 1e-5, 123456789.125]
    values += [
        5e-324,
        1.7976931348623157e308,
        2.2250738585072014e-308,
        -1e300,
        9.999999999999999e15,
    ]
    values += [rng.uniform(-1e6, 1e6) for _ in range(2000)]
    values += [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(5000)
    ]
    values += [float(10**k) for k in range(-20, 25)] + [1.5 * 10.0**k for k in range(-20, 25)]
    # Either side of where CPython switches to an exponent (1e-4 and 1e16).
    for edge in (1e-4, 1e16):
        values += [edge * (1 + k * 2.0**-52) for k in range(-4, 5)]
    values += [rng.uniform(1e-4, 1e-3) for _ in range(500)] + [
        rng.uniform(1e15, 1e16) for _ in range(500)
    ]
    values += [rng.random() * 10.0 ** rng.randrange(-5, 17) for _ in range(3000)]
    for value in values:
        assert safe_repr(value, 0) == repr(value), value


def test_modules_generators_and_coroutines_match_repr() -> None:
    import asyncio
    import json
    import os
    import sys

    def numbers():
        yield 1

    async def later():
        return 1

    gen, coro = numbers(), later()
    try:
        for value in (json, os, sys, asyncio, gen, coro, str.join):
            assert safe_repr(value, 0) == repr(value)
    finally:
        coro.close()


def test_a_class_whose_metaclass_has_its_own_repr_is_shown_as_an_object() -> None:
    metaclass = type(Color).__name__  # EnumType (EnumMeta before 3.11)
    assert re.fullmatch(rf"<enum\.{metaclass} object at 0x[0-9a-f]+>", safe_repr(Color, 0))
