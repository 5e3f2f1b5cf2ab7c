"""A pure-Python sys.monitoring tracer: the reference the recorder's event
counts are checked against.

    python reference_tracer.py OUT.json PROGRAM [ARGS...]

Runs PROGRAM as `python PROGRAM ARGS` would and writes, for every code object
of PROGRAM's file, how many events of each kind CPython reported, keyed
"qualname kind". Kinds are named as in chronolog's traces.
"""

from __future__ import annotations

import collections
import json
import os
import runpy
import sys

TOOL = 4


def main() -> int:
    out, program, *args = sys.argv[1:]
    program = os.path.abspath(program)
    counts: collections.Counter[str] = collections.Counter()
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
    monitoring.use_tool_id(TOOL, "reference")
    for event, kind in hooks.items():
        monitoring.register_callback(TOOL, event, counter(kind))
    all_events = 0
    for event in hooks:
        all_events |= event
    sys.argv = [program, *args]
    sys.path[0] = os.path.dirname(program)
    status = 0
    monitoring.set_events(TOOL, all_events)
    try:
        runpy.run_path(program, run_name="__main__")
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:  # the program's own uncaught exception
        status = 1
    finally:
        monitoring.set_events(TOOL, 0)
        monitoring.free_tool_id(TOOL)
        with open(out, "w") as f:
            json.dump(dict(sorted(counts.items())), f, indent=1)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
