"""Hostile programs under recording (the fixture programs hostile_values,
many_threads and signals are also run by test_record.py): the recursion
limit, os._exit from a thread, an uncaught KeyboardInterrupt, and a trace
whose directory vanishes. Output and exit status stay what they are
without recording."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import chronolog
from conftest import Run, run_cli


def both(
    tmp_path: Path, source: str, *record_options: str, setup: Callable[[], None] = lambda: None
) -> tuple[subprocess.CompletedProcess[str], Run]:
    """The program run plainly, then recorded (`setup` runs before each)."""
    program = tmp_path / "hostile.py"
    program.write_text(source)
    setup()
    plain = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    setup()
    recorded = run_cli("record", *record_options, program, cwd=tmp_path)
    return plain, recorded


def test_hitting_the_recursion_limit(tmp_path: Path) -> None:
    plain, recorded = both(
        tmp_path,
        """
import sys

def deep(n):
    return deep(n + 1)

try:
    deep(0)
except RecursionError as error:
    print("caught", type(error).__name__)
sys.setrecursionlimit(200)
try:
    deep(0)
except RecursionError:
    print("caught again")
""",
        "-o",
        str(tmp_path / "t.clog"),
    )
    assert (recorded.code, recorded.out, recorded.err) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    trace = chronolog.open(tmp_path / "t.clog")
    assert trace.check()["clean"]
    depth = trace.sql("SELECT max(depth) FROM events WHERE function = 'deep'").column(0)[0].as_py()
    assert depth > 150


def test_os_exit_from_a_thread_keeps_status_and_completes_the_trace(tmp_path: Path) -> None:
    plain, recorded = both(
        tmp_path,
        """
import os, sys, threading

def square(i):
    return i * i

def work():
    total = 0
    for i in range(300_000):
        total += square(i % 1000)
    print("total", total, flush=True)
    os._exit(7)

threading.Thread(target=work).start()
threading.Event().wait(30)
print("never")
""",
        "-o",
        str(tmp_path / "t.clog"),
    )
    assert (
        (recorded.code, recorded.out)
        == (plain.returncode, plain.stdout)
        == (7, "total 99850050000\n")
    )
    # os._exit completes the trace first (as coverage.py's `patch = _exit`).
    trace = chronolog.open(tmp_path / "t.clog")
    assert trace.check()["clean"]
    calls = trace.sql("SELECT count(*) FROM calls WHERE function = 'square'").column(0)[0]
    assert calls.as_py() == 300_000


def test_an_uncaught_keyboard_interrupt(tmp_path: Path) -> None:
    plain, recorded = both(
        tmp_path,
        """
def handle():
    raise KeyboardInterrupt

print("before", flush=True)
handle()
""",
        "-o",
        str(tmp_path / "t.clog"),
    )
    assert (recorded.code, recorded.out) == (plain.returncode, plain.stdout) == (-2, "before\n")
    assert recorded.err == plain.stderr
    assert chronolog.open(tmp_path / "t.clog").check()["events"] > 0


def test_a_vanishing_trace_directory(tmp_path: Path) -> None:
    out = tmp_path / "gone"
    plain, recorded = both(
        tmp_path,
        f"""
import shutil

def f(i):
    return i + 1

total = 0
for i in range(50_000):
    total += f(i)
shutil.rmtree({str(out)!r})
for i in range(50_000):
    total += f(i)
print(total)
""",
        "-o",
        str(out / "t.clog"),
        setup=lambda: out.mkdir(exist_ok=True),
    )
    assert (recorded.code, recorded.out) == (plain.returncode, plain.stdout)
    assert recorded.err.count("chronolog:") <= 1, recorded.err


def test_analysis_writes_nothing_and_runs_nothing_from_the_trace(tmp_path: Path) -> None:
    """sql, silenced, history, replay and debug read the trace: no file
    appears or changes, and the recorded program is not run again (its
    source would write a marker file if it were)."""
    program = tmp_path / "marker.py"
    marker = tmp_path / "ran.txt"
    program.write_text(
        f"""
def note(text):
    with open({str(marker)!r}, "a") as out:
        out.write(text)

note("once")
"""
    )
    trace = tmp_path / "t.clog"
    assert run_cli("record", "-o", trace, program).code == 0
    marker.unlink()
    work = tmp_path / "work"
    work.mkdir()
    before = trace.read_bytes()
    for args in [
        ("sql", trace, "SELECT count(*) FROM events"),
        ("silenced", trace, "--all"),
        ("history", trace, "text"),
        ("replay", trace, "--format", "plain"),
        ("replay", trace, "--at", "3"),
        ("info", trace),
        ("check", trace),
    ]:
        done = run_cli(*args, cwd=work)
        assert done.code == 0, (args, done.err)
    debug = subprocess.run(
        [sys.executable, "-m", "chronolog", "debug", str(trace)],
        input="s\\ns\\nrs\\nwhere\\nq\\n",
        capture_output=True,
        text=True,
        cwd=work,
        timeout=60,
    )
    assert debug.returncode == 0, debug.stderr
    assert list(work.iterdir()) == [] and not marker.exists()
    assert trace.read_bytes() == before
