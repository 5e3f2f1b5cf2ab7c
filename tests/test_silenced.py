"""Silenced exceptions: the corpus of patterns in fixtures/programs/silencing.py,
recorded for real, with the verdict expected for each."""

from __future__ import annotations

from pathlib import Path

import pytest

import chronolog
from conftest import REPO, run_cli

CORPUS = REPO / "fixtures" / "programs" / "silencing.py"

# (type, raise function, handler function, outcome), one per swallowed exception.
EXPECTED = sorted(
    [
        ("KeyError", "except_pass", "except_pass", "continued"),
        ("ValueError", "default_returned", "default_returned", "returned"),
        ("RuntimeError", "finally_return", "finally_return", "finally_return"),
        ("IndexError", "loop_continue", "loop_continue", "continued"),
        ("IndexError", "loop_continue", "loop_continue", "continued"),
        ("FileNotFoundError", "suppressed", "suppressed", "suppressed"),
        # A bare `raise` passes it on: the caller swallowed it.
        ("LookupError", "reraising", "catches_reraised", "returned"),
        # The KeyError was translated, so only the ValueError counts.
        ("ValueError", "translating", "catches_translated", "continued"),
        ("ArithmeticError", "level3", "catches_deep", "returned"),
        ("TimeoutError", "in_thread.<locals>.work", "in_thread.<locals>.work", "continued"),
        ("ZeroDivisionError", "generator_swallows", "generator_swallows", "continued"),
        ("ConnectionError", "task_swallows", "task_swallows", "returned"),
    ]
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("silenced") / "silencing.clog"
    done = run_cli("record", "-o", path, CORPUS)
    assert done.code == 0, done.err
    return path


def verdicts(table: object) -> list[tuple[str, str, str, str]]:
    rows = table.to_pylist()  # type: ignore[attr-defined]
    return sorted(
        (r["type"], r["raise_function"], r["handler_function"], r["outcome"]) for r in rows
    )


def test_every_pattern_gets_its_verdict(corpus: Path) -> None:
    trace = chronolog.open(corpus)
    assert verdicts(trace.silenced()) == EXPECTED


def test_translated_and_reraised_exceptions_are_not_silenced_where_they_were_handled(
    corpus: Path,
) -> None:
    trace = chronolog.open(corpus)
    rows = trace.silenced(all=True).to_pylist()
    assert not [r for r in rows if r["message"] == "'translated'"]
    assert not [r for r in rows if r["handler_function"] in ("reraising", "translating")]
    # The KeyError was handled, then a ValueError raised from its handler.
    handled = trace.sql(
        "SELECT e.exc_id FROM exceptions e WHERE e.type = 'KeyError' "
        "AND e.message = '''translated''' AND e.event = 'handled'"
    )
    assert handled.num_rows >= 1
    chained = trace.sql(
        "SELECT type FROM exceptions WHERE event = 'raise' AND context_exc_id = "
        f"{handled.column(0)[0].as_py()}"
    )
    assert set(chained.column(0).to_pylist()) == {"ValueError"}


def test_control_flow_exceptions_only_with_all(corpus: Path) -> None:
    trace = chronolog.open(corpus)
    everything = verdicts(trace.silenced(all=True))
    assert ("StopIteration", "stop_iteration", "stop_iteration", "continued") in everything
    # (3.11 also reports the StopIteration ending an awaited coroutine.)
    assert [v for v in everything if v[0] != "StopIteration"] == EXPECTED
    same = trace.sql("SELECT count(*) AS n FROM silenced").column(0)[0].as_py()
    assert same == len(EXPECTED)


def test_rows_point_at_the_handling(corpus: Path) -> None:
    trace = chronolog.open(corpus)
    rows = trace.sql(
        "SELECT s.handler_line, s.seq, s.frame_id, e.kind, e.frame_id AS event_frame, src.text "
        "FROM silenced s JOIN events e ON e.seq = s.seq "
        "JOIN source src ON src.file = s.handler_file AND src.line = s.handler_line "
        "WHERE s.handler_function = 'except_pass'"
    ).to_pylist()
    assert len(rows) == 1
    row = rows[0]
    assert row["kind"] == "handled" and row["event_frame"] == row["frame_id"]
    assert row["text"].strip() == "except KeyError:"


def test_cli_groups_sites_and_shows_handler_and_what_followed(corpus: Path) -> None:
    done = run_cli("silenced", corpus)
    assert done.code == 0, done.err
    out = done.out
    assert out.startswith(f"{len(EXPECTED)} silenced exceptions at {len(EXPECTED) - 1} ")
    assert "IndexError: odd 1  x2   (outcome: continued)" in out
    assert "ValueError: invalid literal for int() with base 10: 'x'   (outcome: returned)" in out
    assert ">   37 |         except IndexError:" in out
    assert "            continue" in out  # the handler's source
    assert "then:" in out and "loop_continue:38  continue" in out
    assert "StopIteration" not in out
    with_all = run_cli("silenced", corpus, "--all", "--context", "0")
    assert "StopIteration" in with_all.out and "then:" not in with_all.out


def test_cli_says_when_nothing_was_silenced(tmp_path: Path) -> None:
    program = tmp_path / "clean.py"
    program.write_text("def f(x):\n    return x * 2\n\nprint(f(2))\n")
    trace = tmp_path / "clean.clog"
    assert run_cli("record", "-o", trace, program).code == 0
    done = run_cli("silenced", trace)
    assert done.code == 0
    assert done.out.strip() == f"no silenced exceptions in {trace}"


def test_missing_trace_is_one_line(tmp_path: Path) -> None:
    done = run_cli("silenced", tmp_path / "nope.clog")
    assert done.code == 2
    assert done.err.count("\n") == 1 and "nope.clog" in done.err
