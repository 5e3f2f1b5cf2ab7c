"""Variable changes equal what PySnooper itself prints for the same program.

PySnooper (installed in the test environment) traces a fixture program with
`sys.settrace`; chronolog records the same program in another process. The
`Starting var` / `New var` / `Modified var` lines of the program's own frames
must equal chronolog's `start` / `new` / `modified` changes, in order, with
addresses masked. `__builtins__` is left out: chronolog does not record it
(docs/recording.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import chronolog
from conftest import REPO, run_cli

pysnooper = pytest.importorskip("pysnooper")

SNOOP = """
import runpy, sys, pysnooper
program = sys.argv[1]
sys.argv = sys.argv[1:]
with pysnooper.snoop(depth=10000, color=False):
    try:
        runpy.run_path(program, run_name="__main__")
    except SystemExit:
        pass
"""
VAR_LINE = re.compile(r"(Starting var|New var|Modified var):\.+ (\w+) = (.*)")
KINDS = {"Starting var": "start", "New var": "new", "Modified var": "modified"}
CHANGE_LINE = re.compile(r"^      (start|new|modified) (\w+) = (.*) \([^()]*\)$")


def mask(value: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "0x?", value)


def pysnooper_changes(program: Path, tmp_path: Path) -> list[tuple[str, str, str]]:
    runner = tmp_path / "snoop_runner.py"
    runner.write_text(SNOOP)
    done = subprocess.run(
        [sys.executable, str(runner), str(program)], capture_output=True, text=True, timeout=120
    )
    changes, mine = [], False
    for line in done.stderr.splitlines():
        line = line.strip()
        if line.startswith("Source path:..."):
            mine = line.endswith(str(program))
            continue
        match = VAR_LINE.match(line)
        if mine and match and match.group(2) != "__builtins__":
            changes.append((KINDS[match.group(1)], match.group(2), mask(match.group(3))))
    return changes


EVENT_LINE = re.compile(r"^  \d+ \+\d+ T\d+ (\w+) frame=(\d+) ")
DELETED_LINE = re.compile(r"^      deleted (\w+)")


def chronolog_changes(program: Path, tmp_path: Path) -> list[tuple[str, str, str]]:
    """chronolog's changes as PySnooper prints them. settrace reports a
    generator's resumption (or throw) as a new call, so PySnooper lists every bound local
    as a `Starting var` there; chronolog records a `resume` event and only
    what changed, from which the same lines follow (as replay prints them)."""
    run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    changes: list[tuple[str, str, str]] = []
    bound: dict[str, dict[str, str]] = {}
    frame = ""
    for line in "".join(chronolog.open(tmp_path / "t.clog").dump()).splitlines():
        event = EVENT_LINE.match(line)
        if event:
            kind, frame = event.groups()
            if kind in ("resume", "throw"):
                changes += [("start", n, v) for n, v in bound.get(frame, {}).items()]
            continue
        match = CHANGE_LINE.match(line)
        if match and match.group(2) != "__builtins__":
            kind, name, value = match.group(1), match.group(2), mask(match.group(3))
            changes.append((kind, name, value))
            bound.setdefault(frame, {})[name] = value
        deleted = DELETED_LINE.match(line)
        if deleted:
            bound.get(frame, {}).pop(deleted.group(1), None)
    return changes


@pytest.mark.parametrize(
    "name",
    [
        "variables",
        "exceptions",
        "basics",
        "closures",
        "recursion",
        "comprehensions",
        "exits",
        "generators",
        "unwinding",
        "reused_addresses",
        "cut_values",
        "pure_lines",
        "pure_lists",
        "pure_loops",
        "pure_calls",
        # asyncio_app: left out only for time (PySnooper traces all of
        # asyncio itself: 30 s per run).
    ],
)
def test_variable_changes_equal_pysnooper(name: str, tmp_path: Path) -> None:
    program = REPO / "fixtures" / "programs" / f"{name}.py"
    expected = pysnooper_changes(program, tmp_path)
    assert len(expected) > 10
    assert chronolog_changes(program, tmp_path) == expected
