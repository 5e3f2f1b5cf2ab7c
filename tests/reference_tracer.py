"""A pure-Python tracer: the reference the recorder's event counts are
checked against.

    python reference_tracer.py OUT.json PROGRAM [ARGS...]

Runs PROGRAM as `python PROGRAM ARGS` would and writes, for every code object
of PROGRAM's file, how many events of each kind CPython reported, keyed
"qualname kind". Kinds are named as in chronolog's traces.

On 3.12+ it counts sys.monitoring's events, with line events as settrace
reports them: a backward JUMP that stays on its line (a one-line loop or
comprehension running its line again) is a `line` too. On 3.11 it uses sys.settrace and
the rules docs/recording.md gives for that backend: a `call` into a
suspended generator is a resume; a `return` without a value is an unwind
while an exception is pending in the frame, else a yield at YIELD_VALUE, a return at
RETURN_VALUE and an unwind anywhere else; an `exception` is a
raise; an exception is handled when its frame runs a line after it, and
re-raised when that frame then unwinds.
"""

from __future__ import annotations

import collections
import dis
import json
import os
import runpy
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

TOOL = 4


def monitoring_counter(program: str, counts: collections.Counter[str]) -> Callable[[], None]:
    """Starts counting sys.monitoring's events; returns the function that stops."""
    monitoring = sys.monitoring
    events = monitoring.events

    def counter(kind: str):
        def callback(code, *rest):
            if code.co_filename == program:
                counts[f"{code.co_qualname} {kind}"] += 1

        return callback

    hooks = {
        events.PY_START: "call",
        events.LINE: "line",
        events.PY_RETURN: "return",
        events.PY_YIELD: "yield",
        events.PY_RESUME: "resume",
        events.PY_THROW: "throw",
        events.RAISE: "raise",
        events.RERAISE: "reraise",
        events.EXCEPTION_HANDLED: "handled",
        events.PY_UNWIND: "unwind",
    }

    def jump(code, source, target):
        if code.co_filename != program or target > source:
            return
        lines = {start: line for start, _, line in code.co_lines()}
        line_of = lambda offset: max(  # noqa: E731 - the line of the instruction at offset
            (start, line) for start, line in lines.items() if start <= offset
        )[1]
        if line_of(source) == line_of(target):
            counts[f"{code.co_qualname} line"] += 1

    monitoring.use_tool_id(TOOL, "reference")
    for event, kind in hooks.items():
        monitoring.register_callback(TOOL, event, counter(kind))
    monitoring.register_callback(TOOL, events.JUMP, jump)
    all_events = events.JUMP
    for event in hooks:
        all_events |= event
    monitoring.set_events(TOOL, all_events)

    def stop() -> None:
        monitoring.set_events(TOOL, 0)
        monitoring.free_tool_id(TOOL)

    return stop


def settrace_counter(program: str, counts: collections.Counter[str]) -> Callable[[], None]:
    """Starts counting events derived from sys.settrace's (3.11)."""
    opcodes = {dis.opmap["YIELD_VALUE"]: "yield", dis.opmap["RETURN_VALUE"]: "return"}
    suspended: set[FrameType] = set()
    pending: dict[FrameType, list[Any]] = {}  # frame -> [exception, handled]

    def count(frame: FrameType, kind: str) -> None:
        counts[f"{frame.f_code.co_qualname} {kind}"] += 1

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != program:
            return None
        if event == "call":
            count(frame, "resume" if frame in suspended else "call")
            suspended.discard(frame)
        elif event == "line":
            exception = pending.get(frame)
            if exception and not exception[1]:
                count(frame, "handled")
                exception[1] = True
            count(frame, "line")
        elif event == "exception":
            count(frame, "raise")
            pending[frame] = [arg[1], False]
        elif event == "return":
            exception = pending.pop(frame, None)
            if exception and not exception[1] and arg is None:
                # e.g. thrown in at a yield: f_lasti still points at it. (With a
                # value, the frame returns: the exception was consumed without
                # a line running, as the StopIteration ending an `await`.)
                kind = "unwind"
            else:
                kind = opcodes.get(frame.f_code.co_code[frame.f_lasti], "unwind")
            if kind == "unwind" and exception and exception[1]:
                count(frame, "reraise")
            count(frame, kind)
            if kind == "yield":
                suspended.add(frame)
        return tracer

    import threading

    threading.settrace(tracer)
    sys.settrace(tracer)

    def stop() -> None:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]

    return stop


def main() -> int:
    out, program, *args = sys.argv[1:]
    program = os.path.abspath(program)
    counts: collections.Counter[str] = collections.Counter()
    sys.argv = [program, *args]
    sys.path[0] = os.path.dirname(program)
    status = 0
    if sys.version_info >= (3, 12):
        stop = monitoring_counter(program, counts)
    else:
        stop = settrace_counter(program, counts)
    try:
        runpy.run_path(program, run_name="__main__")
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:  # the program's own uncaught exception
        status = 1
    finally:
        stop()
        with open(out, "w") as f:
            json.dump(dict(sorted(counts.items())), f, indent=1)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
