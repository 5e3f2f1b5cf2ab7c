"""`chronolog record --subprocess`: Python child processes started with
subprocess, multiprocessing (fork, spawn, forkserver) and os.fork each
record into their own file beside the parent's, with the parent's pid in
`meta`; `chronolog sql` over the directory answers for all of them."""

from __future__ import annotations

import json
from pathlib import Path

import chronolog
from conftest import run_cli

FAMILY = """
import multiprocessing
import os
import subprocess
import sys


def square(n):
    return n * n


def report(queue, n):
    queue.put(square(n))


def in_process(method):
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    child = context.Process(target=report, args=(queue, 3))
    child.start()
    answer = queue.get()
    child.join()
    return answer


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print("child", square(int(sys.argv[1])))
        sys.exit(0)
    out = subprocess.run([sys.executable, __file__, "7"], capture_output=True, text=True).stdout
    print(out.strip())
    for method in ("fork", "spawn", "forkserver"):
        print(method, in_process(method))
    pid = os.fork()
    if pid == 0:
        square(5)
        os._exit(0)
    os.waitpid(pid, 0)
    print("done")
"""


def test_children_record_beside_the_parent(tmp_path: Path) -> None:
    program = tmp_path / "family.py"
    program.write_text(FAMILY)
    traces = tmp_path / "traces"
    traces.mkdir()
    done = run_cli("record", "--subprocess", "-o", traces / "family.clog", program, cwd=tmp_path)
    assert done.code == 0, done.err
    assert done.out.splitlines() == [
        "child 49",
        "fork 9",
        "spawn 9",
        "forkserver 9",
        "done",
    ]
    files = sorted(p.name for p in traces.iterdir())
    assert "family.clog" in files and len(files) >= 5, files
    parent_pid = (
        chronolog.open(traces / "family.clog")
        .sql("SELECT value FROM meta WHERE key = 'pid'")
        .column(0)[0]
        .as_py()
    )

    # One query over the directory: every trace, each with its own rows.
    answer = run_cli(
        "sql",
        traces,
        "SELECT trace, count(*) AS n FROM calls WHERE function = 'square' GROUP BY trace",
        "--format",
        "json",
    )
    assert answer.code == 0, answer.err
    rows = json.loads(answer.out)
    # square ran in the subprocess, in each multiprocessing child, and in the fork.
    assert len(rows) == 5 and all(row["n"] == 1 for row in rows), rows
    parents = run_cli(
        "sql",
        f"{traces}/*.clog",
        "SELECT value FROM meta WHERE key = 'parent_pid'",
        "--format",
        "csv",
    )
    assert parents.code == 0, parents.err
    assert parents.out.splitlines()[1:].count(parent_pid) >= 3


def test_without_the_option_children_are_not_recorded(tmp_path: Path) -> None:
    program = tmp_path / "family.py"
    program.write_text(FAMILY)
    traces = tmp_path / "traces"
    traces.mkdir()
    done = run_cli("record", "-o", traces / "family.clog", program, cwd=tmp_path)
    assert done.code == 0, done.err
    # Forked children always record (contract §3): the os.fork child and
    # multiprocessing's fork child; spawned interpreters do not.
    names = sorted(p.name for p in traces.iterdir())
    assert "family.clog" in names and len(names) == 3, names


def test_a_missing_directory_or_empty_glob_is_one_line(tmp_path: Path) -> None:
    done = run_cli("sql", f"{tmp_path}/*.clog", "SELECT 1")
    assert done.code == 2 and done.err.count("\n") == 1 and "no trace there" in done.err
