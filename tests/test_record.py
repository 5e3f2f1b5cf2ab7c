"""Recording real programs: the program behaves as without chronolog, and
the trace holds exactly the events CPython reported (checked against a
pure-Python reference tracer: sys.monitoring on 3.12+, sys.settrace on 3.11)."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import chronolog
from conftest import REPO, run_cli

PROGRAMS = sorted((REPO / "fixtures" / "programs").glob("*.py"))
EVENT_LINE = re.compile(r"^  \d+ \+\d+ T(\d+) (\w+) frame=(\d+) depth=(\d+) (\S+):(\d+)")


def run_plain(program: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def trace_events(path: Path) -> list[tuple[str, str, int, int, int]]:
    """(function, kind, thread, frame, depth) of every event, from the dump."""
    events = []
    for line in "".join(chronolog.open(path).dump()).splitlines():
        match = EVENT_LINE.match(line)
        if match:
            thread, kind, frame, depth, function, _ = match.groups()
            events.append((function, kind, int(thread), int(frame), int(depth)))
    return events


def reference_counts(program: Path, cwd: Path) -> dict[str, int]:
    out = cwd / "reference.json"
    subprocess.run(
        [sys.executable, str(REPO / "tests" / "reference_tracer.py"), str(out), str(program)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    return json.loads(out.read_text())


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.stem)
def test_the_program_behaves_as_without_recording(program: Path, tmp_path: Path) -> None:
    plain = run_plain(program, tmp_path)
    recorded = run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    assert (recorded.code, recorded.out, recorded.err) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert chronolog.open(tmp_path / "t.clog").check()["clean"]


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.stem)
def test_event_counts_equal_the_reference_tracer(program: Path, tmp_path: Path) -> None:
    run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    counted = collections.Counter(f"{f} {k}" for f, k, *_ in trace_events(tmp_path / "t.clog"))
    assert dict(sorted(counted.items())) == reference_counts(program, tmp_path)


def test_frames_nest_and_every_call_ends(tmp_path: Path) -> None:
    program = REPO / "fixtures" / "programs" / "closures.py"
    run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    stack: dict[int, list[int]] = collections.defaultdict(list)
    for _, kind, thread, frame, depth in trace_events(tmp_path / "t.clog"):
        if kind == "call":
            assert depth == len(stack[thread])
            stack[thread].append(frame)
        else:
            assert stack[thread] and stack[thread][-1] == frame and depth == len(stack[thread]) - 1
            if kind in ("return", "unwind"):
                stack[thread].pop()
    assert all(not frames for frames in stack.values())


def test_variable_changes_follow_pysnooper_vocabulary(tmp_path: Path) -> None:
    program = REPO / "fixtures" / "programs" / "basics.py"
    run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    dump = "".join(chronolog.open(tmp_path / "t.clog").dump())
    assert "      start a = 1 (int)\n      start b = 2 (int)\n" in dump
    assert "      new total = 3 (int)" in dump
    items = re.findall(r"(new|modified) items = (\[.*\]) \(list\)", dump)
    assert items == [
        ("new", "[]"),
        ("modified", "[0]"),
        ("modified", "[0, 1]"),
        ("modified", "[0, 1, 4]"),
        ("modified", "[0, 1, 4, 9]"),
    ]
    assert "modified mapping = {'b': 2} (dict)" in dump


def test_the_api_records_a_block(tmp_path: Path) -> None:
    path = tmp_path / "api.clog"
    code = f"""
import chronolog

def square(x):
    y = x * x
    return y

with chronolog.record({str(path)!r}):
    square(3)
square(4)
"""
    script = tmp_path / "api_script.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    events = trace_events(path)
    # The block's own lines are recorded too (the module was running when
    # recording started), up to the `with` line that leaves it.
    assert [(f, k) for f, k, *_ in events] == [
        ("<module>", "line"),
        ("square", "call"),
        ("square", "line"),
        ("square", "line"),
        ("square", "return"),
        ("<module>", "line"),
    ]


def test_no_lines_and_no_vars(tmp_path: Path) -> None:
    program = REPO / "fixtures" / "programs" / "basics.py"
    run_cli("record", "--no-lines", "--no-vars", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    info = chronolog.open(tmp_path / "t.clog").info()
    assert info["events_by_kind"]["line"] == 0
    assert info["var_changes"] == 0
    assert info["events_by_kind"]["call"] > 0


def write_program(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "program.py"
    path.write_text(text)
    return path


def test_a_forked_child_records_into_its_own_file(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        """
import os, sys

def work(tag):
    total = sum(range(5))
    return f"{tag} {total}"

pid = os.fork()
if pid == 0:
    print(work("child"), flush=True)
    sys.exit(0)
os.waitpid(pid, 0)
print(work("parent"))
""",
    )
    run = run_cli("record", "-o", tmp_path / "run.clog", program, cwd=tmp_path)
    assert run.code == 0 and run.out == "child 10\nparent 10\n", run
    children = list(tmp_path.glob("run.*.clog"))
    assert len(children) == 1
    child = chronolog.open(children[0])
    assert child.check()["clean"]
    assert child.info()["meta"]["parent_pid"].isdigit()
    child_calls = [e for e in trace_events(children[0]) if e[:2] == ("work", "call")]
    parent_calls = [e for e in trace_events(tmp_path / "run.clog") if e[:2] == ("work", "call")]
    assert len(child_calls) == 1 and len(parent_calls) == 1


def test_a_killed_process_leaves_a_readable_trace(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        """
import time

def tick(n):
    return n + 1

n = 0
print("started", flush=True)
while True:
    n = tick(n)
    if n % 1000 == 0:
        time.sleep(0.001)
""",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "chronolog", "record", "-o", str(tmp_path / "k.clog"), str(program)],
        stdout=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
    import time

    time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=30)
    trace = chronolog.open(tmp_path / "k.clog")
    report = trace.check()
    assert report["footer"] == "missing" and report["events"] > 1000
    assert all("ends inside a block" in d for d in report["damage"])


def test_chronolog_record_environment_variable(tmp_path: Path) -> None:
    program = REPO / "fixtures" / "programs" / "basics.py"
    plain = run_plain(program, tmp_path)
    env = {**os.environ, "CHRONOLOG_RECORD": str(tmp_path / "env.clog")}
    done = subprocess.run(
        [sys.executable, str(program)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    info = chronolog.open(tmp_path / "env.clog").info()
    assert info["footer"] == "intact" and info["events_by_kind"]["call"] >= 6


def test_start_without_stop_is_completed_at_exit(tmp_path: Path) -> None:
    script = write_program(
        tmp_path,
        f"""
import chronolog

def f(x):
    return x * 2

chronolog.start({str(tmp_path / "s.clog")!r})
f(21)
""",
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert chronolog.open(tmp_path / "s.clog").check()["clean"]


def test_an_unwritable_path_warns_once_and_the_program_runs_on(tmp_path: Path) -> None:
    program = REPO / "fixtures" / "programs" / "basics.py"
    plain = run_plain(program, tmp_path)
    (tmp_path / "a-file").write_text("not a directory")
    run = run_cli("record", "-o", tmp_path / "a-file" / "t.clog", program, cwd=tmp_path)
    assert (run.code, run.out) == (plain.returncode, plain.stdout)
    assert run.err.count("chronolog: not recording") == 1 and "Traceback" not in run.err


def test_the_output_directory_is_created(tmp_path: Path) -> None:
    program = REPO / "fixtures" / "programs" / "basics.py"
    out = tmp_path / "traces" / "today" / "t.clog"
    run = run_cli("record", "-o", out, program, cwd=tmp_path)
    assert run.err == "" and chronolog.open(out).check()["clean"]


def test_a_full_disk_stops_recording_with_one_warning(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        """
def f(i):
    return i * i

total = 0
for i in range(300_000):
    total += f(i)
print(total)
""",
    )
    plain = run_plain(program, tmp_path)
    run = run_cli("record", "-o", "/dev/full", program, cwd=tmp_path)
    assert (run.code, run.out) == (plain.returncode, plain.stdout)
    assert run.err.count("chronolog:") == 1 and "No space left" in run.err, run.err


UNSAFE_REPR_PROGRAM = """
import threading

class Money:
    def __init__(self, cents):
        self.cents = cents

    def __repr__(self):
        helper()  # traced code called by the recorder itself: not recorded
        return f"Money({self.cents})"

class Broken:
    def __repr__(self):
        raise ValueError("no repr")

def helper():
    return 1

def spend():
    wallet = Money(100)
    wallet.cents -= 30
    broken = Broken()
    return wallet

def worker():
    for _ in range(300):
        spend()

threads = [threading.Thread(target=worker) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(spend().cents)
"""


def test_unsafe_repr_calls_repr_guarded(tmp_path: Path) -> None:
    program = write_program(tmp_path, UNSAFE_REPR_PROGRAM)
    done = run_cli("record", "--unsafe-repr", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    assert (done.code, done.out, done.err) == (0, "70\n", "")
    dump = "".join(chronolog.open(tmp_path / "t.clog").dump())
    assert "new wallet = Money(100) (Money)" in dump
    # Re-rendered at every event: the in-place change shows.
    assert "modified wallet = Money(70) (Money)" in dump
    # A raising __repr__: the failure, as the contract words it.
    assert "new broken = <repr failed: ValueError: no repr> (Broken)" in dump
    functions = {f for f, *_ in trace_events(tmp_path / "t.clog")}
    assert "helper" not in functions and "Money.__repr__" not in functions
    assert len([e for e in trace_events(tmp_path / "t.clog") if e[:2] == ("spend", "call")]) == 1201


def test_safe_repr_never_calls_repr(tmp_path: Path) -> None:
    program = write_program(tmp_path, UNSAFE_REPR_PROGRAM)
    done = run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    assert (done.code, done.out, done.err) == (0, "70\n", "")
    dump = "".join(chronolog.open(tmp_path / "t.clog").dump())
    assert re.search(r"new wallet = <__main__\.Money object at 0x[0-9a-f]+> \(Money\)", dump)
    assert "modified wallet" not in dump


DISGUISED_EXCEPTION_PROGRAM = """
asked = []


class Disguised(Exception):
    @property
    def __class__(self):
        asked.append("__class__")
        return OSError


def fail():
    raise Disguised("quiet")


try:
    fail()
except Exception:
    pass
print(len(asked))
"""


def test_recording_an_exception_asks_nothing_of_its_class(tmp_path: Path) -> None:
    program = write_program(tmp_path, DISGUISED_EXCEPTION_PROGRAM)
    done = run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    assert (done.code, done.out, done.err) == (0, "0\n", "")
    dump = "".join(chronolog.open(tmp_path / "t.clog").dump())
    assert "raise" in dump and "quiet" in dump


MUTATIONS_PROGRAM = """
import random
from chronolog._native import safe_repr

random.seed({seed})


def scalar():
    return random.choice([
        random.randint(-5, 10**random.randint(1, 12)),
        random.random() * 10**random.randint(-3, 9),
        "s" * random.randint(0, 30),
        None,
        True,
    ])


def build(depth=0):
    kinds = ["list", "list", "tuple", "dict", "set", "scalar"] if depth < 2 else ["scalar"]
    kind = random.choice(kinds)
    n = random.choice([0, 1, 2, 4, 8, 16])
    if kind == "list":
        return [build(depth + 1) for _ in range(n)]
    if kind == "tuple":
        return tuple(build(depth + 1) for _ in range(n))
    if kind == "dict":
        return {{f"k{{i}}": build(depth + 1) for i in range(n)}}
    if kind == "set":
        return {{random.randint(0, 999) for _ in range(n)}}
    return scalar()


def containers(value, found):
    if isinstance(value, (list, dict, set)):
        found.append(value)
    items = ()
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    for item in items:
        containers(item, found)
    return found


def mutate(value):
    target = random.choice(containers(value, []) or [None])
    if isinstance(target, list):
        if target and random.random() < 0.7:
            target[random.randrange(len(target))] = build(2)
        else:
            target.append(scalar())
    elif isinstance(target, dict):
        key = random.choice(list(target) or ["new"])
        target[key] = build(2)
    elif isinstance(target, set):
        target.add(random.randint(0, 999))


def mutate_loop():
    tracked = [build(), build()]
    for _ in range(300):
        mutate(tracked)
        print(safe_repr(tracked, {max_repr}))


mutate_loop()
"""


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("max_repr", [100, 24])
def test_in_place_changes_are_recorded_exactly_when_the_cut_repr_changes(
    seed: int, max_repr: int, tmp_path: Path
) -> None:
    program = write_program(tmp_path, MUTATIONS_PROGRAM.format(seed=seed, max_repr=max_repr))
    done = run_cli(
        "record", "--max-repr", str(max_repr), "-o", tmp_path / "t.clog", program, cwd=tmp_path
    )
    assert done.code == 0, done.err
    dump = "".join(chronolog.open(tmp_path / "t.clog").dump())
    recorded = re.findall(r"^      (?:new|modified) tracked = (.*) \(list\)$", dump, re.M)
    # After the first value, a change is recorded each time the cut repr
    # (printed by the program after each mutation) differs from the last one.
    expected, last = [], recorded[0]
    for printed in done.out.splitlines():
        if printed != last:
            expected.append(printed)
            last = printed
    assert len(expected) > 30
    assert recorded[1:] == expected


BYTEARRAY_PROGRAM = """
import random
from chronolog._native import safe_repr

random.seed({seed})


def work():
    for size in (6, 60, 600, 20_000):
        tracked = bytearray(random.choice(b"ab'\\"\\x00") for _ in range(size))
        print(safe_repr(tracked, 100))
        for _ in range(40):
            where = random.choice([0, 1, size // 2, size - 2, size - 1, random.randrange(size)])
            tracked[where] = random.choice(b"xy'\\"\\x7f")
            print(safe_repr(tracked, 100))


work()
"""


def tracked_changes(tmp_path: Path, source: str, *options: str) -> tuple[list[str], list[str]]:
    """Records `source` (with `options`), which prints the cut repr of its
    local `tracked` after every step: the values recorded for `tracked`, and
    those a change is expected at — each printed repr that differs from the
    one before."""
    program = write_program(tmp_path, source)
    done = run_cli("record", *options, "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    assert done.code == 0, done.err
    recorded = (
        chronolog.open(tmp_path / "t.clog")
        .sql("SELECT repr FROM vars WHERE name = 'tracked' ORDER BY seq")
        .column(0)
        .to_pylist()
    )
    expected: list[str] = []
    for printed in done.out.splitlines():
        if not expected or printed != expected[-1]:
            expected.append(printed)
    return recorded, expected


FLOATS_PROGRAM = """
from chronolog._native import safe_repr


class F(float):
    pass


def half(x):
    return x / 2


def work():
    steps = [
        1.5, float("1.5"), F(1.5), 1.5, 0.0, -0.0, float("nan"), float("-nan"),
        float("inf"), -float("inf"), 1e16, 1e15, 1e-05, 0.0001, 2**0.5, 5e-324,
        -2.2250738585072014e-308, 1, 1.0, "1.0", F(2.5), 2.5, None, 0.1 + 0.2,
        half(3.0), half(1e300), [0.5, half(0.5)],
    ]
    for value in steps:
        tracked = value
        print({show})


work()
"""


@pytest.mark.parametrize(
    ("options", "show"),
    [
        # A float subclass shows as a float with its own __repr__: from a
        # float to it and back, the repr stays the same, so no change.
        (("--unsafe-repr",), "repr(tracked)"),
        # Reprs cut shorter than the longest float's.
        (("--max-repr", "12"), "safe_repr(tracked, 12)"),
    ],
)
def test_float_variables_change_exactly_when_their_repr_does(
    options: tuple[str, ...], show: str, tmp_path: Path
) -> None:
    recorded, expected = tracked_changes(tmp_path, FLOATS_PROGRAM.format(show=show), *options)
    assert recorded == expected
    if show == "repr(tracked)":
        assert "-0.0" in recorded and "5e-324" in recorded and "1e-05" in recorded
        # One change from the first 1.5 to 0.0, one for both NaNs.
        assert recorded[:2] == ["1.5", "0.0"] and recorded.count("nan") == 1
    returned = (
        chronolog.open(tmp_path / "t.clog")
        .sql("SELECT arg, arg_type FROM events WHERE kind = 'return' AND function = 'half'")
        .to_pylist()
    )
    assert returned == [{"arg": arg, "arg_type": "float"} for arg in ("1.5", "5e+299", "0.25")]


@pytest.mark.parametrize("seed", [1, 2])
def test_bytearrays_changed_in_place_are_recorded_when_their_cut_repr_changes(
    seed: int, tmp_path: Path
) -> None:
    recorded, expected = tracked_changes(tmp_path, BYTEARRAY_PROGRAM.format(seed=seed))
    assert len(expected) > 100
    assert recorded == expected


DICT_TAIL_PROGRAM = """
import random
from chronolog._native import safe_repr

random.seed({seed})
words = ["alpha", "beta", "gamma", "delta"]  # interned: their hashes are cached


def work():
    nested = {{f"n{{i}}": [i, "x" * i] for i in range(5)}}
    tracked = [0.5, {{f"k{{i}}": i for i in range(60)}}, {{"inner": nested, "last": "z"}}]
    targets = [tracked[1], tracked[2], nested, nested["n4"]]
    print(safe_repr(tracked, 100))
    for _ in range(200):
        target = random.choice(targets)
        if isinstance(target, list):
            target[random.randrange(len(target))] = random.choice(words + [7, 8.25])
        else:
            key = random.choice(list(target)[-3:] + list(target)[:2] + ["new"])
            target[key] = random.choice(words + [1, 2.5, "w" * random.randint(0, 9)])
        print(safe_repr(tracked, 100))


work()
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dicts_at_the_tail_of_a_cut_repr_are_followed_from_their_last_entry(
    seed: int, tmp_path: Path
) -> None:
    recorded, expected = tracked_changes(tmp_path, DICT_TAIL_PROGRAM.format(seed=seed))
    assert len(expected) > 40
    assert recorded == expected


def test_bytearray_reprs_are_pythons() -> None:
    from chronolog._native import safe_repr

    for value in (bytearray(b"ab'c"), bytearray(b"a\"b'"), bytearray(range(256)), bytearray(8000)):
        assert safe_repr(value, 1_000_000) == repr(value)


@pytest.mark.parametrize("entry", ["module", "script"])
def test_only_the_program_is_recorded_not_the_launcher(tmp_path: Path, entry: str) -> None:
    program = REPO / "fixtures" / "programs" / "basics.py"
    out = tmp_path / "t.clog"
    run = run_cli("record", "-o", out, program, entry=entry, cwd=tmp_path)
    assert run.err == ""
    trace = chronolog.open(out)
    for table in ("code", "source"):
        files = set(trace.sql(f"SELECT DISTINCT file FROM {table}").column("file").to_pylist())
        assert files == {str(program)}, table


HELPER = {("helper.py", "<module>"), ("helper.py", "helper")}
APP = {("app.py", "<module>"), ("app.py", "main")}


@pytest.mark.parametrize(
    ("options", "recorded"),
    [
        (["--include", "pkg/helper.py"], HELPER),
        (["--include", "pkg/*.py"], HELPER | {("__init__.py", "<module>")}),
        (["--include", "pkg.*"], HELPER),
        (["--include", "app.py"], APP),
        (["--exclude", "pkg/helper.py"], APP | {("__init__.py", "<module>")}),
        (["--exclude", "*/pkg/*"], APP),
        ([], APP | HELPER | {("__init__.py", "<module>")}),
    ],
)
def test_scope_patterns_relative_paths_and_module_names(
    tmp_path: Path, options: list[str], recorded: set[str]
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "helper.py").write_text("def helper(x):\n    return x + 1\n")
    (tmp_path / "app.py").write_text(
        "from pkg.helper import helper\n\ndef main():\n    return helper(1)\n\nmain()\n"
    )
    out = tmp_path / "t.clog"
    run = run_cli("record", "-o", out, *options, "app.py", cwd=tmp_path)
    assert run.code == 0, run.err
    called = chronolog.open(out).sql("SELECT file, function FROM events WHERE kind = 'call'")
    assert {(Path(r["file"]).name, r["function"]) for r in called.to_pylist()} == recorded


def test_threads_run_one_after_another_are_distinct_threads(tmp_path: Path) -> None:
    # A thread's ident (pthread_self) is reused as soon as it ends: each of
    # these threads gets the ident of the one before.
    program = write_program(
        tmp_path,
        """
import threading

def work(n):
    return n * 2

for i in range(5):
    thread = threading.Thread(target=work, args=(i,), name=f"worker-{i}")
    thread.start()
    thread.join()
""",
    )
    out = tmp_path / "t.clog"
    assert run_cli("record", "-o", out, program, cwd=tmp_path).code == 0
    trace = chronolog.open(out)
    names = trace.sql("SELECT name FROM threads ORDER BY thread_id").column("name").to_pylist()
    assert names == ["MainThread"] + [f"worker-{i}" for i in range(5)]
    calls = trace.sql(
        "SELECT t.name, c.args FROM calls c JOIN threads t USING (thread_id) "
        "WHERE c.function = 'work' ORDER BY c.start_seq"
    ).to_pylist()
    assert calls == [{"name": f"worker-{i}", "args": f"n={i}"} for i in range(5)]


FINALIZER_PROGRAM = """
class Noted:
    def __init__(self, log):
        self.log = log

    def __del__(self):
        self.log.append("released")


def work():
    log = []
    held = Noted(log)
    count = 1
    held = 2
    count = count + 1
    return log


work()
"""


def test_a_finalizer_run_by_a_plain_store_is_seen_at_the_next_line(tmp_path: Path) -> None:
    """`held = 2` looks like plain arithmetic, but releasing the object it
    held runs a finalizer that changes `log`: the line is not taken for a
    pure one (recorder/src/purity.rs), and the change shows at the next
    line with `held`'s, as PySnooper would show it. The next plain line
    shows only what it stores."""
    program = write_program(tmp_path, FINALIZER_PROGRAM)
    run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    dump = "".join(chronolog.open(tmp_path / "t.clog").dump())
    assert re.search(
        r"line frame=\d+ depth=1 work:15\n"
        r"      modified log = \['released'\] \(list\)\n"
        r"      modified held = 2 \(int\)\n"
        r".* line frame=\d+ depth=1 work:16\n"
        r"      modified count = 2 \(int\)\n",
        dump,
    ), dump


EXCEPTION_MESSAGES_PROGRAM = """
def gen():
    yield 1
    return 12345


def exhaust():
    g = gen()
    next(g)
    try:
        next(g)
    except StopIteration:
        pass


def fail(exc):
    raise exc


def catch(exc):
    try:
        fail(exc)
    except Exception:
        pass


exhaust()
catch(ValueError("plain text"))
catch(KeyError("k"))
catch(ValueError(1, "two"))
catch(RuntimeError())
"""


def test_exception_events_carry_the_message_str_gives(tmp_path: Path) -> None:
    # Each event of an exception's path shows its message as `str(exc)`
    # would: a str argument as it is, any other one (a generator's returned
    # value, a KeyError's key) or several as their repr.
    program = write_program(tmp_path, EXCEPTION_MESSAGES_PROGRAM)
    run_cli("record", "-o", tmp_path / "t.clog", program, cwd=tmp_path)
    rows = (
        chronolog.open(tmp_path / "t.clog")
        .sql(
            "SELECT function, kind, arg_type, arg FROM events "
            "WHERE kind IN ('raise', 'unwind') AND function = 'fail' ORDER BY seq"
        )
        .to_pylist()
    )
    seen = [(r["function"], r["kind"], r["arg_type"], r["arg"]) for r in rows]
    assert seen == [
        ("fail", kind, exc_type, message)
        for exc_type, message in [
            ("ValueError", "plain text"),
            ("KeyError", "'k'"),
            ("ValueError", "(1, 'two')"),
            ("RuntimeError", ""),
        ]
        for kind in ("raise", "unwind")
    ]
    stop = (
        chronolog.open(tmp_path / "t.clog")
        .sql("SELECT arg FROM events WHERE arg_type = 'StopIteration' AND kind = 'raise'")
        .to_pylist()
    )
    assert stop and all(r["arg"] == "12345" for r in stop)
