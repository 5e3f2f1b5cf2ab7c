"""Replay, variable history, the stack at a moment, time-travel debugging and
@chronolog.snoop(), on fixture programs recorded for real. The PySnooper
format is compared with PySnooper's own output for the same program."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import chronolog
from conftest import REPO, run_cli

PROGRAM = REPO / "fixtures" / "programs" / "replayed.py"

SNOOP_ONE = """
import importlib.util, sys, pysnooper
spec = importlib.util.spec_from_file_location("replayed", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
owner, _, name = sys.argv[2].rpartition(".")
holder = getattr(module, owner) if owner else module
setattr(holder, name, pysnooper.snoop(color=False)(getattr(holder, name)))
module.main()
"""


def normalize(text: str) -> list[str]:
    """Timestamps, durations and addresses masked; the module PySnooper
    imported is the recorded `__main__`."""
    text = re.sub(r"\d{2}:\d{2}:\d{2}\.\d{6}", "TIME", text)
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    text = text.replace("<replayed.", "<__main__.")
    return text.splitlines()


def first_value(trace: chronolog.Trace, query: str) -> object:
    """The first column of the first row of a query's answer."""
    return trace.sql(query).column(0)[0].as_py()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "replayed.clog"
    done = run_cli("record", "-o", path, PROGRAM)
    assert done.code == 0, done.err
    return path


@pytest.mark.parametrize(
    "function",
    [
        "main",
        "fib",
        "running_totals",
        "parse",
        "dive",
        "make_counter",
        "Box.add",
        "shuffle",
        "settle",
    ],
)
def test_pysnooper_format_equals_pysnooper(recorded: Path, tmp_path: Path, function: str) -> None:
    pytest.importorskip("pysnooper")
    runner = tmp_path / "snoop_one.py"
    runner.write_text(SNOOP_ONE)
    theirs = subprocess.run(
        [sys.executable, str(runner), str(PROGRAM), function],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stderr
    done = run_cli("replay", recorded, "--function", function)
    assert done.code == 0, done.err
    assert normalize(done.out) == normalize(theirs)


def test_plain_format_lists_events_with_changes(recorded: Path) -> None:
    done = run_cli("replay", recorded, "--function", "parse", "--format", "plain")
    lines = done.out.splitlines()
    assert re.match(r"\s*\d+ T0 call\s+parse:\d+  def parse\(text\):", lines[0])
    assert any(re.search(r"start\s+text = 'x'", line) for line in lines)
    assert any("raise" in line and "! ValueError: invalid literal" in line for line in lines)
    assert any("return" in line and "-> -1" in line for line in lines)


def test_replay_bounds_and_thread(recorded: Path) -> None:
    trace = chronolog.open(recorded)
    first, last = (
        trace.sql("SELECT min(seq), max(seq) FROM events WHERE function = 'fib'")
        .to_pylist()[0]
        .values()
    )
    plain = list(trace.replay(format="plain", from_seq=first, to_seq=last, thread="MainThread"))
    seqs = [int(line.split()[0]) for line in plain if line[:8].strip().isdigit()]
    assert seqs[0] == first and seqs[-1] == last and seqs == sorted(seqs)
    with pytest.raises(chronolog.QueryError, match="unknown thread"):
        trace.replay(thread="nobody")


def test_state_at_rebuilds_the_stack_in_recursion(recorded: Path) -> None:
    trace = chronolog.open(recorded)
    seq = first_value(
        trace,
        "SELECT seq FROM exceptions WHERE function = 'dive' AND event = 'raise' "
        "ORDER BY seq LIMIT 1",
    )
    frames = trace.state_at(seq)
    assert [f["function"] for f in frames] == ["<module>", "main", "dive", "dive", "dive"]
    assert [f["locals"]["n"] for f in frames[2:]] == ["2", "1", "0"]
    main = frames[1]["locals"]
    assert main["size"] == "3" and main["sums"] == "[0, 1, 3, 6]" and main["f"] == "5"
    assert "bump" not in main  # assigned later
    assert all(f["complete"] for f in frames)

    done = run_cli("replay", recorded, "--at", seq)
    assert done.code == 0, done.err
    assert "#4 dive at " in done.out and "      n = 0" in done.out


def test_state_at_sees_deletions_and_generators(recorded: Path) -> None:
    trace = chronolog.open(recorded)
    after_del = (
        trace.sql("SELECT seq FROM vars WHERE function = 'shuffle' AND name = 'label' LIMIT 1")
        .column(0)[0]
        .as_py()
    )
    seen = trace.state_at(after_del)[-1]["locals"]["seen"]
    assert seen == "{'a': 2, 'bb': 1}"
    in_generator = (
        trace.sql(
            "SELECT max(seq) FROM events WHERE function = 'running_totals' AND kind = 'yield'"
        )
        .column(0)[0]
        .as_py()
    )
    top = trace.state_at(in_generator)[-1]
    assert top["function"] == "running_totals" and top["locals"]["total"] == "6"


def test_history_of_loop_variables(recorded: Path) -> None:
    trace = chronolog.open(recorded)
    history = trace.history("total", function="running_totals").to_pylist()
    assert [(h["change"], h["repr"]) for h in history] == [
        ("new", "0"),
        ("modified", "1"),
        ("modified", "3"),
        ("modified", "6"),
        ("deleted", None),
    ]
    assert all(h["function"] == "running_totals" for h in history)
    # Each change carries the line that made it.
    setters = trace.sql(
        "SELECT line, text FROM source WHERE file LIKE '%replayed.py' "
        f"AND line IN ({', '.join(str(h['line']) for h in history)})"
    ).to_pylist()
    texts = {row["line"]: row["text"].strip() for row in setters}
    assert [texts[h["line"]] for h in history] == [
        "total = 0",
        "total += i",
        "total += i",
        "total += i",
        "del total",
    ]
    assert [h["seq"] for h in history] == sorted(h["seq"] for h in history)
    word = trace.history("word", file="replayed.py").to_pylist()
    assert [h["repr"] for h in word] == ["'a'", "'bb'", "'a'", "'ccc'"]

    done = run_cli("history", recorded, "i", "--function", "running_totals", "--format", "csv")
    assert done.code == 0, done.err
    rows = done.out.splitlines()
    assert rows[0].startswith("seq,ts_ns,thread_id,frame_id,file,function,line,name,change,repr")
    assert [row.split(",")[9] for row in rows[1:]] == ["0", "1", "2", "3"]


def test_unknown_names_are_one_line_errors(recorded: Path) -> None:
    for args, message in [
        (("history", recorded, "no_such_variable"), "unknown variable 'no_such_variable'"),
        (("history", recorded, "n", "--function", "nope"), "unknown function 'nope'"),
        (("replay", recorded, "--function", "nope"), "unknown function 'nope'"),
        (("replay", recorded, "--at", "999999999"), "no event 999999999"),
    ]:
        done = run_cli(*args)
        assert done.code == 2, (args, done.out)
        assert done.err.strip() == f"chronolog: error: {message}" or message in done.err
        assert done.err.count("\n") == 1


def debug(recorded: Path, commands: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "chronolog", "debug", str(recorded)],
        input="\n".join(commands) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_debug_break_continue_stops_before_the_first_line(recorded: Path) -> None:
    out = debug(recorded, ["break fib", "continue", "p n", "where", "continue", "p n", "quit"])
    lines = out.splitlines()
    assert lines[0].startswith("> ") and "<module>()" in lines[0]
    stop = lines.index("Breakpoint 1")
    assert "fib()" in lines[stop + 1] and lines[stop + 2] == "-> if n < 2:"
    assert lines[stop + 3] == "5"
    assert any(line.strip().endswith("main()") for line in lines[stop + 4 : stop + 8])
    assert lines[-1] == "4"


def test_debug_goes_forward_and_back(recorded: Path) -> None:
    out = debug(
        recorded,
        [
            "break parse",
            "c",
            "p text",
            "n",
            "n",
            "rn",
            "rn",
            "c",
            "p text",
            "rc",
            "p text",
            "s",
            "rs",
            "locals",
            "l",
            "q",
        ],
    )
    values = [line for line in out.splitlines() if line in ("'x'", "'41'")]
    assert values == ["'x'", "'41'", "'x'"]
    positions = re.findall(r"parse\(\)\s+\[seq (\d+)", out)
    # next, next, reverse-next, reverse-next come back where they started.
    assert (
        positions[1] < positions[2]
        and positions[3] == positions[1]
        and positions[4] == positions[0]
    )
    assert "text = 'x'" in out
    assert "-> " in out and "def parse(text):" in out


def test_debug_goto_and_line_breakpoints(recorded: Path) -> None:
    trace = chronolog.open(recorded)
    line = (
        trace.sql(
            "SELECT line FROM source WHERE file LIKE '%replayed.py' AND text LIKE '%count += by%'"
        )
        .column(0)[0]
        .as_py()
    )
    out = debug(
        recorded, [f"break replayed.py:{line}", "c", "p count", "c", "p count", "goto 1", "q"]
    )
    assert "Breakpoint 1 at replayed.py:" in out
    counts = [x for x in out.splitlines() if x in ("10", "12")]
    assert counts == ["10", "12"]
    assert out.rstrip().splitlines()[-2].endswith("[seq 1, thread 0]")


SNOOPED = """
import sys
{import_line}

@{decorator}
def collatz(n):
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps

print(collatz(6), file=sys.stdout)
"""


def test_snoop_decorator_prints_what_pysnooper_prints(tmp_path: Path) -> None:
    pytest.importorskip("pysnooper")
    outputs = []
    for import_line, decorator in [
        ("import chronolog", "chronolog.snoop()"),
        ("import pysnooper", "pysnooper.snoop(color=False)"),
    ]:
        program = tmp_path / "snooped.py"
        program.write_text(SNOOPED.format(import_line=import_line, decorator=decorator))
        done = subprocess.run(
            [sys.executable, str(program)], capture_output=True, text=True, timeout=120, check=True
        )
        assert done.stdout == "8\n"
        outputs.append(normalize(done.stderr))
    ours, theirs = outputs
    assert ours == theirs
    assert ours[-1].startswith("Elapsed time: ")


LONG_RUN = """
import threading

def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)

def evens(limit):
    seen = []
    for k in range(limit):
        if k % 2 == 0:
            seen.append(k)
            yield k

def work(rounds):
    total = 0
    for r in range(rounds):
        for e in evens(6):
            total += e
        total += fib(r % 9)
    return total

helper = threading.Thread(target=work, args=(300,), name="helper")
helper.start()
print(work(1500))
helper.join()
"""


def reference_stack(trace: chronolog.Trace, seq: int) -> list[tuple[int, dict[str, str]]]:
    """The stack at `seq` by a plain forward scan of the events and vars
    tables: (frame id, locals) from the outermost frame."""
    thread = trace.sql(f"SELECT thread_id FROM events WHERE seq = {seq}").column(0)[0].as_py()
    events = trace.sql(
        f"SELECT seq, kind, frame_id FROM events WHERE thread_id = {thread} AND seq <= {seq} "
        "ORDER BY seq"
    ).to_pylist()
    changes: dict[int, list[dict[str, object]]] = {}
    for change in trace.sql(
        f"SELECT seq, name, change, repr FROM vars WHERE thread_id = {thread} AND seq <= {seq}"
    ).to_pylist():
        changes.setdefault(change["seq"], []).append(change)
    stack: list[int] = []
    local: dict[int, dict[str, str]] = {}
    for event in events:
        frame = event["frame_id"]
        if event["kind"] == "call" or (
            event["kind"] in ("resume", "throw") and stack[-1:] != [frame]
        ):
            stack.append(frame)
        values = local.setdefault(frame, {})
        for change in changes.get(event["seq"], []):
            if change["change"] == "deleted":
                values.pop(str(change["name"]), None)
            else:
                values[str(change["name"])] = str(change["repr"])
        if event["kind"] in ("return", "unwind", "yield") and event["seq"] != seq:
            stack = stack[: stack.index(frame)]
    return [(frame, local[frame]) for frame in stack]


def test_state_at_equals_a_forward_scan_across_chunks(tmp_path: Path) -> None:
    program = tmp_path / "long_run.py"
    program.write_text(LONG_RUN)
    path = tmp_path / "long_run.clog"
    assert run_cli("record", "-o", path, program).code == 0
    trace = chronolog.open(path)
    assert trace.info()["chunks"] >= 3
    last = trace.sql("SELECT max(seq) FROM events").column(0)[0].as_py()
    for seq in range(7, last, last // 23):
        mine = [(f["frame_id"], f["locals"]) for f in trace.state_at(seq)]
        assert mine == reference_stack(trace, seq), seq


def named(trace: chronolog.Trace, name: str) -> list[dict[str, object]]:
    return trace.sql(f"@{name}").to_pylist()


def test_named_analyses_answer_as_data(recorded: Path) -> None:
    trace = chronolog.open(recorded)
    assert set(chronolog.queries()) >= {
        "call_counts",
        "slowest_calls",
        "hot_lines",
        "exception_paths",
        "churning_variables",
        "silenced_summary",
    }
    counts = {row["function"]: row for row in named(trace, "call_counts")}
    assert counts["fib"]["calls"] == 15 and counts["dive"]["unwound"] == 3
    assert counts["Box.add"]["calls"] == 1

    hot = named(trace, "hot_lines")
    assert (hot[0]["function"], hot[0]["runs"]) == ("fib", 15)
    assert hot[0]["text"].strip() == "if n < 2:"

    paths = {row["type"]: row for row in named(trace, "exception_paths")}
    assert paths["KeyError"]["frames"] == "dive > dive > dive > main"
    assert paths["KeyError"]["last_event"] == "handled"
    assert paths["ZeroDivisionError"]["last_function"] == "main"

    churn = {(row["function"], row["name"]): row for row in named(trace, "churning_variables")}
    total = churn[("running_totals", "total")]
    assert (total["changes"], total["first_value"], total["last_value"]) == (4, "0", "6")

    slowest = named(trace, "slowest_calls")
    assert slowest[0]["function"] == "<module>" and len(slowest) == 20
    assert [r["duration_ns"] for r in slowest] == sorted(
        (r["duration_ns"] for r in slowest), reverse=True
    )

    summary = {
        (row["type"], row["outcome"]): row["times"] for row in named(trace, "silenced_summary")
    }
    assert summary == {
        ("ValueError", "returned"): 1,
        ("KeyError", "continued"): 1,
        ("ZeroDivisionError", "suppressed"): 1,
        ("ValueError", "suppressed"): 1,  # settle(50)
    }


def test_named_queries_from_the_cli(recorded: Path) -> None:
    listing = run_cli("queries")
    assert listing.code == 0 and "@hot_lines" in listing.out
    done = run_cli("sql", recorded, "@call_counts", "--format", "csv")
    assert done.code == 0, done.err
    assert done.out.startswith("function,calls,unwound,total_ns,mean_ns,max_ns")
    unknown = run_cli("sql", recorded, "@nope")
    assert unknown.code == 2 and "unknown named query '@nope'" in unknown.err


MANY_GENERATORS = """
def counter(start):
    value = start
    while True:
        value += 1
        yield value


def spin(n):
    total = 0
    for i in range(n):
        total += i
    return total


open_ones = [counter(i) for i in range(3000)]
for gen in open_ones:
    next(gen)
spin(40_000)
print(next(open_ones[0]), next(open_ones[-1]))
"""


def test_checkpoints_bound_the_suspended_generators_they_describe(tmp_path: Path) -> None:
    program = tmp_path / "many.py"
    program.write_text(MANY_GENERATORS)
    path = tmp_path / "many.clog"
    done = run_cli("record", "-o", path, program)
    assert done.code == 0 and done.out == "2 3001\n", done.err
    trace = chronolog.open(path)
    dump = "".join(trace.dump())
    per_chunk = [part.count("checkpoint suspended") for part in dump.split("\nchunk ")]
    assert max(per_chunk) == 1024
    # The first generator is resumed from outside every checkpoint: its
    # stack is still rebuilt, its earlier locals are marked unknown.
    resume = first_value(
        trace,
        "SELECT min(seq) FROM events WHERE function = 'counter' AND kind = 'resume' "
        "AND seq > (SELECT max(seq) FROM events WHERE function = 'spin')",
    )
    frames = trace.state_at(resume)
    assert [f["function"] for f in frames] == ["<module>", "counter"]
