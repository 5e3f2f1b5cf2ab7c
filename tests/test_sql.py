"""SQL over recorded traces (contract §5): queries checked as data, from the
CLI and from Python, across several traces, and the errors of §6."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import chronolog
from conftest import REPO, run_cli

PROGRAMS = REPO / "fixtures" / "programs"


def record(program: str, out: Path) -> Path:
    done = run_cli("record", "-o", out, PROGRAMS / program)
    # Some programs end with a non-zero status on purpose (exceptions.py).
    assert out.exists() and "Traceback" not in done.err.replace("Traceback (most", ""), done.err
    return out


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Recorded fixture programs, by program name."""
    folder = tmp_path_factory.mktemp("sql")
    names = ["demo", "recursion", "generators", "threads", "exceptions"]
    return {name: record(f"{name}.py", folder / f"{name}.clog") for name in names}


def rows(trace: chronolog.Trace, query: str) -> list[tuple]:
    table = trace.sql(query)
    assert isinstance(table, pa.Table)
    columns = table.to_pydict()
    return list(zip(*columns.values(), strict=True)) if columns else []


def test_event_counts_agree_with_info(traces: dict[str, Path]) -> None:
    for path in traces.values():
        trace = chronolog.open(path)
        info = trace.info()
        assert rows(trace, "SELECT count(*) FROM events") == [(info["events"],)]
        by_kind = dict(rows(trace, "SELECT kind, count(*) FROM events GROUP BY kind"))
        assert by_kind == {k: n for k, n in info["events_by_kind"].items() if n}
        assert rows(trace, "SELECT count(*) FROM vars") == [(info["var_changes"],)]


def test_events_are_ordered_and_typed(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["demo"])
    table = trace.sql("SELECT * FROM events ORDER BY seq")
    seqs = table.column("seq").to_pylist()
    assert seqs == list(range(len(seqs)))
    first = table.slice(0, 1).to_pylist()[0]
    assert first["kind"] == "call" and first["function"] == "<module>"
    assert first["file"].endswith("demo.py") and first["trace"] == str(traces["demo"])
    assert set(table.column_names) >= {
        "seq", "ts_ns", "thread_id", "kind", "frame_id", "depth", "code_id",
        "file", "function", "line", "arg",
    }  # fmt: skip


def test_calls_pair_arguments_and_return_values(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["demo"])
    got = rows(
        trace,
        "SELECT args, return_value, exit FROM calls WHERE function = 'parse_price' "
        "ORDER BY start_seq",
    )
    assert got == [
        ("text='3.20'", "3.2", "return"),
        ("text='2.10'", "2.1", "return"),
        ("text='12,50'", "0.0", "return"),
        ("text='2.80'", "2.8", "return"),
    ]
    # Every call of parse_price ran inside end_of_day.
    parents = rows(
        trace,
        "SELECT DISTINCT p.function FROM calls c JOIN calls p ON c.parent_frame_id = p.frame_id "
        "WHERE c.function = 'parse_price'",
    )
    assert parents == [("end_of_day",)]
    durations = rows(trace, "SELECT min(duration_ns), count(*) FROM calls")
    assert durations[0][0] >= 0
    assert durations[0][1] == rows(trace, "SELECT count(*) FROM events WHERE kind = 'call'")[0][0]


def test_calls_of_a_recursion_nest(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["recursion"])
    facts = rows(
        trace,
        "SELECT args, return_value, depth FROM calls WHERE function = 'fact' ORDER BY depth",
    )
    assert [a for a, _, _ in facts] == [f"n={n}" for n in range(30, 0, -1)]
    assert facts[0][1] == str(265252859812191058636308480000000)
    assert facts[-1][1] == "1"
    # dig(60) .. dig(0) end by unwinding; the exception reaches bounded().
    unwound = rows(
        trace, "SELECT count(*), max(return_value) FROM calls WHERE function = 'dig' AND "
        "exit = 'unwind'"
    )  # fmt: skip
    assert unwound == [(61, None)]


def test_generators_are_one_activation_each(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["generators"])
    got = rows(
        trace,
        "SELECT function, exit, args FROM calls WHERE function IN ('countdown', 'stubborn') "
        "ORDER BY start_seq",
    )
    # countdown(5) is closed while suspended at a yield outside any try: 3.12
    # throws GeneratorExit into it (an unwind); 3.13 closes it without running
    # its frame, so no event ends it and it stays running. stubborn is never
    # exhausted nor closed before the trace ends.
    closed = "running" if sys.version_info >= (3, 13) else "unwind"
    assert got[:2] == [("countdown", "return", "n=3"), ("countdown", closed, "n=5")]
    assert got[2][0] == "stubborn" and got[2][1] in {"running", "unwind"}


def test_variable_history(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["demo"])
    got = rows(
        trace,
        "SELECT change, repr, type, line FROM vars WHERE name = 'total' ORDER BY seq",
    )
    assert got == [
        ("new", "0.0", "float", 25),
        ("modified", "3.2", "float", 25),
        ("modified", "5.09", "float", 25),
        ("modified", "7.89", "float", 25),
    ]


def test_exceptions_follow_one_identity(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["demo"])
    got = rows(trace, "SELECT event, function, type, message, exc_id FROM exceptions ORDER BY seq")
    assert [(e, f, t) for e, f, t, _, _ in got] == [
        ("raise", "parse_price", "ValueError"),
        ("handled", "parse_price", "ValueError"),
    ]
    assert got[0][3] == "could not convert string to float: '12,50'"
    assert got[0][4] == got[1][4] and got[0][4] > 0


def test_metadata_tables(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["demo"])
    source = rows(trace, "SELECT text FROM source WHERE file LIKE '%demo.py' AND line = 10")
    assert source == [("def parse_price(text):",)]
    code = rows(trace, "SELECT name, first_line FROM code WHERE function = 'parse_price'")
    assert code == [("parse_price", 10)]
    threads = rows(trace, "SELECT name FROM threads")
    assert threads == [("MainThread",)]
    meta = dict(rows(trace, "SELECT key, value FROM meta"))
    assert meta["format_version"] == chronolog.FORMAT_VERSION
    assert any("python" in key for key in meta)


def test_threads_are_told_apart(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["threads"])
    per_thread = rows(
        trace,
        "SELECT t.name, count(*) FROM events e JOIN threads t USING (thread_id) "
        "GROUP BY t.name ORDER BY t.name",
    )
    assert len(per_thread) > 1
    assert sum(n for _, n in per_thread) == trace.info()["events"]


def test_filters_on_statistics_give_the_same_rows_as_without(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["recursion"])
    everything = trace.sql("SELECT seq, function FROM events ORDER BY seq").to_pylist()
    middle = [r for r in everything if 100 <= r["seq"] < 200 and r["function"] == "fact"]
    pruned = trace.sql(
        "SELECT seq, function FROM events WHERE seq >= 100 AND seq < 200 "
        "AND function = 'fact' ORDER BY seq"
    ).to_pylist()
    assert pruned == middle
    assert rows(trace, "SELECT count(*) FROM events WHERE function = 'no_such_function'") == [(0,)]
    assert len(trace.sql("SELECT * FROM events LIMIT 5")) == 5


def test_several_traces_are_one_set_of_tables(traces: dict[str, Path]) -> None:
    both = chronolog.open(traces["demo"], traces["recursion"])
    got = dict(rows(both, "SELECT trace, count(*) FROM events GROUP BY trace"))
    assert got == {
        str(traces["demo"]): chronolog.open(traces["demo"]).info()["events"],
        str(traces["recursion"]): chronolog.open(traces["recursion"]).info()["events"],
    }
    cli = run_cli(
        "sql", traces["demo"], traces["recursion"],
        "SELECT trace, count(*) AS calls FROM calls GROUP BY trace ORDER BY trace",
        "--format", "csv",
    )  # fmt: skip
    assert cli.code == 0, cli.err
    parsed = list(csv.DictReader(io.StringIO(cli.out)))
    assert {r["trace"] for r in parsed} == {str(traces["demo"]), str(traces["recursion"])}


def test_cli_formats_and_output_file(traces: dict[str, Path], tmp_path: Path) -> None:
    query = "SELECT function, count(*) AS n FROM calls GROUP BY function ORDER BY function"
    table = run_cli("sql", traces["demo"], query)
    assert table.code == 0 and "parse_price" in table.out and "(4 rows)" in table.out
    as_json = run_cli("sql", traces["demo"], query, "--format", "json")
    assert json.loads(as_json.out) == [
        {"function": "<module>", "n": 1},
        {"function": "apply_discount", "n": 4},
        {"function": "end_of_day", "n": 1},
        {"function": "parse_price", "n": 4},
    ]
    empty = run_cli("sql", traces["demo"], "SELECT * FROM calls WHERE false", "--format", "json")
    assert json.loads(empty.out) == []
    out = tmp_path / "answer.csv"
    written = run_cli("sql", traces["demo"], query, "--format", "csv", "-o", out)
    assert written.code == 0 and written.out == ""
    assert out.read_text().splitlines()[0] == "function,n"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("SELEC kind FROM events", ["invalid SQL"]),
        ("SELECT * FROM nonsense", ["nonsense", "not found"]),
        ("SELECT no_such_column FROM events", ["no_such_column"]),
        ("CREATE TABLE x AS SELECT 1", ["only queries"]),
        ("INSERT INTO meta VALUES ('t', 'k', 'v')", ["only queries"]),
    ],
)
def test_query_errors_are_one_line(traces: dict[str, Path], query: str, words: list[str]) -> None:
    done = run_cli("sql", traces["demo"], query)
    assert done.code == 2 and done.out == ""
    assert done.err.startswith("chronolog: error: ") and done.err.count("\n") == 1
    assert "Traceback" not in done.err
    for word in words:
        assert word in done.err
    with pytest.raises(chronolog.QueryError):
        chronolog.open(traces["demo"]).sql(query)


def test_copy_to_a_file_is_refused(traces: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "leak.csv"
    done = run_cli("sql", traces["demo"], f"COPY (SELECT 1) TO '{target}'")
    assert done.code == 2 and "only queries" in done.err
    assert not target.exists()


def test_missing_trace(tmp_path: Path) -> None:
    done = run_cli("sql", tmp_path / "nope.clog", "SELECT 1")
    assert done.code == 2 and "nope.clog" in done.err and done.err.count("\n") == 1


def test_damaged_chunks_are_skipped_with_a_warning(tmp_path: Path, trace_bytes: bytes) -> None:
    damaged = bytearray(trace_bytes)
    damaged[len(damaged) // 3] ^= 0xFF
    path = tmp_path / "flipped.clog"
    path.write_bytes(bytes(damaged))
    done = run_cli("sql", path, "SELECT count(*) AS n FROM events", "--format", "csv")
    assert done.code == 0
    n = int(done.out.splitlines()[1])
    assert 0 < n < 200_000
    assert "warning" in done.err and "skipped" in done.err


def test_arrow_stream_reaches_other_consumers(traces: dict[str, Path]) -> None:
    trace = chronolog.open(traces["demo"])
    stream = trace.sql_arrow("SELECT seq, kind FROM events ORDER BY seq LIMIT 3")
    table = pa.table(stream)
    assert table.column("seq").to_pylist() == [0, 1, 2]
    # Each import is a new stream over the same buffers (DuckDB imports twice).
    assert pa.table(stream).equals(table)
    calls = trace.table("calls")
    assert calls.num_rows == 10
    with pytest.raises(chronolog.QueryError):
        trace.table("nonsense")
