"""Exports (contract §5): DuckDB answers the same queries over the Parquet
export with the same rows, pyarrow reads the Arrow IPC export, and the
Perfetto JSON has one slice per activation segment, nested per thread."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc
import pytest

import chronolog
from conftest import REPO, run_cli

PROGRAMS = REPO / "fixtures" / "programs"

TABLES = ["events", "calls", "vars", "exceptions", "code", "threads", "source", "meta"]

# The same queries, asked of chronolog's tables and of DuckDB over the export.
QUERIES = [
    "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
    "SELECT seq, line, arg FROM events WHERE function = 'fact' ORDER BY seq",
    "SELECT function, count(*) AS n, sum(duration_ns) AS total, max(depth) AS deepest "
    "FROM calls GROUP BY function ORDER BY function",
    "SELECT seq, name, change, repr, type FROM vars ORDER BY seq, name",
    "SELECT seq, event, type, message, exc_id FROM exceptions ORDER BY seq",
    "SELECT code_id, file, function, name, first_line FROM code ORDER BY code_id",
    "SELECT file, line, text FROM source ORDER BY file, line",
    "SELECT key, value FROM meta ORDER BY key, value",
    "SELECT thread_id, name FROM threads ORDER BY thread_id",
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    out = folder / "recursion.clog"
    done = run_cli("record", "-o", out, PROGRAMS / "recursion.py")
    assert done.code == 0, done.err
    return out


@pytest.fixture(scope="module")
def generators(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "generators.clog"
    assert run_cli("record", "-o", out, PROGRAMS / "generators.py").code == 0
    return out


def test_duckdb_answers_the_same_over_parquet(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "parquet"
    done = run_cli("export", recorded, "--parquet", out)
    assert done.code == 0, done.err
    trace = chronolog.open(recorded)
    db = duckdb.connect()
    for table in TABLES:
        assert (out / table / "part-0.parquet").exists()
        db.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{out / table}/*.parquet')")
    for query in QUERIES:
        ours = [tuple(r.values()) for r in trace.sql(query).to_pylist()]
        theirs = db.execute(query).fetchall()
        assert ours == theirs, query


def test_parquet_export_replaces_an_earlier_one(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "parquet"
    (out / "events").mkdir(parents=True)
    (out / "events" / "part-99.parquet").write_bytes(b"stale")
    (out / "events" / "notes.txt").write_text("mine")
    chronolog.open(recorded).export_parquet(out)
    assert not (out / "events" / "part-99.parquet").exists()
    assert (out / "events" / "notes.txt").read_text() == "mine"
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/events/*.parquet')")
    assert count.fetchall()[0] == (chronolog.open(recorded).info()["events"],)


def test_pyarrow_reads_the_arrow_ipc_export(recorded: Path, tmp_path: Path) -> None:
    trace = chronolog.open(recorded)
    for table in ["events", "vars", "calls"]:
        path = tmp_path / f"{table}.arrow"
        done = run_cli("export", recorded, "--arrow", path, "--table", table)
        assert done.code == 0, done.err
        with pa.ipc.open_file(path) as reader:
            exported = reader.read_all()
        expected = trace.table(table)
        assert exported.num_rows == expected.num_rows
        assert exported.column_names == expected.column_names
        key = "seq" if table != "calls" else "frame_id"
        assert sorted(exported.column(key).to_pylist()) == sorted(expected.column(key).to_pylist())
    bad = run_cli("export", recorded, "--arrow", tmp_path / "x.arrow", "--table", "nope")
    assert bad.code == 2 and "unknown table 'nope'" in bad.err


def perfetto(trace: Path, out: Path) -> list[dict]:
    done = run_cli("export", trace, "--perfetto", out)
    assert done.code == 0, done.err
    return json.loads(out.read_text())["traceEvents"]


def assert_nested(slices: list[dict]) -> None:
    """Within each thread, slices are disjoint or contain one another."""
    by_thread: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for s in slices:
        start = float(s["ts"])
        by_thread[(s["pid"], s["tid"])].append((start, start + float(s["dur"])))
    for spans in by_thread.values():
        spans.sort(key=lambda span: (span[0], -span[1]))
        open_ends: list[float] = []
        for start, end in spans:
            while open_ends and open_ends[-1] <= start:
                open_ends.pop()
            if open_ends:
                assert end <= open_ends[-1] + 1e-9, (start, end, open_ends[-1])
            open_ends.append(end)


def test_perfetto_has_a_slice_per_call(recorded: Path, tmp_path: Path) -> None:
    events = perfetto(recorded, tmp_path / "trace.json")
    slices = [e for e in events if e["ph"] == "X"]
    calls = chronolog.open(recorded).sql("SELECT function FROM calls").column("function")
    assert sorted(s["name"] for s in slices) == sorted(calls.to_pylist())
    assert_nested(slices)
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {"MainThread"}
    raised = [e for e in events if e["ph"] == "i" and e["name"] == "raise RecursionError"]
    # dig(0) raises it, then it passes into dig(1..60) and bounded().
    assert len(raised) == 62


def test_perfetto_slices_of_generators_nest(generators: Path, tmp_path: Path) -> None:
    events = perfetto(generators, tmp_path / "gen.json")
    slices = [e for e in events if e["ph"] == "X"]
    starts = chronolog.open(generators).sql(
        "SELECT count(*) AS n FROM events WHERE kind IN ('call', 'resume', 'throw')"
    )
    assert len(slices) == starts.column("n")[0].as_py()
    assert_nested(slices)


def assert_importable(document: dict) -> None:
    """What Perfetto's JSON importer (and chrome://tracing) reads: a
    `traceEvents` list of complete slices (`X`: `ts` and `dur` in
    microseconds), instants (`i` with a scope) and name metadata (`M`), with
    integer process and thread ids; every process and thread named."""
    assert document.get("displayTimeUnit", "ms") in ("ms", "ns")
    processes: set[int] = set()
    threads: set[tuple[int, int]] = set()
    used: set[tuple[int, int]] = set()
    for event in document["traceEvents"]:
        assert event["ph"] in ("X", "i", "M"), event
        assert type(event["pid"]) is int and type(event["tid"]) is int, event
        assert isinstance(event["name"], str) and event["name"], event
        assert isinstance(event.get("args", {}), dict), event
        if event["ph"] == "M":
            assert isinstance(event["args"]["name"], str) and event["args"]["name"], event
            if event["name"] == "process_name":
                processes.add(event["pid"])
            else:
                assert event["name"] == "thread_name", event
                threads.add((event["pid"], event["tid"]))
            continue
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0, event
        if event["ph"] == "X":
            assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0, event
        else:
            assert event["s"] in ("t", "p", "g"), event
        used.add((event["pid"], event["tid"]))
    assert used and used <= threads
    assert {pid for pid, _ in threads} <= processes


def test_perfetto_export_is_what_the_ui_imports(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    for name, program in (("threads", "many_threads.py"), ("errors", "exceptions.py")):
        done = run_cli("record", "-o", runs / f"{name}.clog", PROGRAMS / program, cwd=tmp_path)
        assert done.err == ""  # (exceptions.py exits with status 3)
    out = tmp_path / "runs.json"
    assert run_cli("export", runs, "--perfetto", out).code == 0
    document = json.loads(out.read_text())
    assert_importable(document)
    events = document["traceEvents"]
    named = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert len(named) == 2  # one process per trace
    threads = {(e["pid"], e["tid"]) for e in events if e["name"] == "thread_name"}
    assert len(threads) >= 17  # the main thread and 16 workers
    assert any(e["ph"] == "i" for e in events)
    assert_nested([e for e in events if e["ph"] == "X"])


def test_progress_shows_on_a_terminal_only(recorded: Path, tmp_path: Path) -> None:
    main, secondary = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "chronolog", "export", str(recorded), "--parquet", str(tmp_path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary, timeout=120,
        check=False,
    )  # fmt: skip
    os.close(secondary)
    seen = b""
    while True:
        try:
            piece = os.read(main, 65536)
        except OSError:  # the terminal closed: everything was read
            break
        if not piece:
            break
        seen += piece
    os.close(main)
    assert done.returncode == 0
    text = seen.decode()
    events = chronolog.open(recorded).info()["events"]
    assert f"events: {events} / {events} rows (100%)" in text
    assert done.stdout == b""
    # Not a terminal: no progress line, only the closing message.
    piped = run_cli("export", recorded, "--parquet", tmp_path / "again")
    assert "rows" not in piped.err and "exported" in piped.err


def test_duckdb_queries_trace_answers_without_a_file(recorded: Path) -> None:
    """DuckDB reads a `Trace.table()` answer (a pyarrow Table) and a
    `Trace.sql_arrow()` stream (the Arrow PyCapsule interface) in place."""
    trace = chronolog.open(recorded)
    calls = trace.table("calls")
    deepest = duckdb.sql(
        "SELECT function, max(depth) AS d FROM calls GROUP BY function ORDER BY function"
    ).fetchall()
    expected = trace.sql(
        "SELECT function, max(depth) AS d FROM calls GROUP BY function ORDER BY function"
    ).to_pylist()
    assert deepest == [(row["function"], row["d"]) for row in expected]
    assert calls.num_rows > 0
    stream = trace.sql_arrow("SELECT kind, count(*) AS n FROM events GROUP BY kind")
    counted = dict(duckdb.from_arrow(stream).fetchall())
    assert counted == {
        row["kind"]: row["n"]
        for row in trace.sql("SELECT kind, count(*) AS n FROM events GROUP BY kind").to_pylist()
    }
