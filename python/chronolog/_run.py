"""`chronolog record`: run a program exactly as `python` would, recording it.

Same `sys.argv`, `__main__`, `sys.path[0]`, output and exit status as
`python SCRIPT ARGS` / `python -m MODULE ARGS`; an uncaught exception prints
its traceback (without chronolog's own frames) and exits 1, as Python does.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from chronolog._record import Recording


@dataclass
class Target:
    script: str | None = None
    module: str | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str:
        if self.module:
            return self.module.rsplit(".", 1)[-1]
        return os.path.splitext(os.path.basename(self.script or "chronolog"))[0]


def _exit_code(exit: SystemExit) -> int:
    code = exit.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _print_user_traceback(error: BaseException, first_user_file: str | None) -> None:
    """The traceback Python would print, starting at the program's own frames."""
    tb = error.__traceback__
    if first_user_file is not None:
        probe = tb
        while probe is not None and probe.tb_frame.f_code.co_filename != first_user_file:
            probe = probe.tb_next
        if probe is not None:
            tb = probe
    traceback.print_exception(type(error), error, tb)


def run(target: Target, output: str, **options: Any) -> int:
    if target.script is not None:
        script = target.script
        if not os.path.exists(script):
            print(f"chronolog: error: can't open file {script!r}: no such file", file=sys.stderr)
            return 2
        sys.argv = [script, *target.argv]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        first_user_file: str | None = os.path.abspath(script)
    else:
        sys.argv = [target.module or "", *target.argv]
        sys.path[0] = os.getcwd()
        first_user_file = None
    recording = Recording(output, **options)
    status = 0
    interrupted = False
    recording.start()
    try:
        if target.script is not None:
            runpy.run_path(os.path.abspath(target.script), run_name="__main__")
        else:
            runpy.run_module(target.module or "", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        status = _exit_code(exit)
    except KeyboardInterrupt as error:
        status, interrupted = 130, True
        recording.add_meta("uncaught_exception", "KeyboardInterrupt")
        _print_user_traceback(error, first_user_file)
    except BaseException as error:  # the program's own uncaught exception
        status = 1
        recording.add_meta("uncaught_exception", f"{type(error).__name__}: {error}")
        _print_user_traceback(error, first_user_file)
    finally:
        recording.add_meta("exit_status", str(status))
        recording.stop()
    # Nothing is printed here: the program's stdout and stderr stay its own.
    sys.stdout.flush()
    sys.stderr.flush()
    if interrupted and hasattr(signal, "SIGINT"):
        # As CPython does: an uncaught KeyboardInterrupt ends the process by
        # SIGINT (the trace is complete by now).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return status
