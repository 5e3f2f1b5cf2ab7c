"""Whole-run recording without code changes: ``CHRONOLOG_RECORD=out.clog python app.py``.

The wheel installs ``chronolog-autorecord.pth`` into site-packages; Python runs
its one line at start-up, which imports this module only when
``CHRONOLOG_RECORD`` is set (the way coverage.py and hunter hook in). The
variable is removed from the environment once read, so child processes are
not recorded into the same file. The recording stops at interpreter exit.
"""

from __future__ import annotations

import os
import sys


def _start() -> None:
    path = os.environ.pop("CHRONOLOG_RECORD", "")
    if not path:
        return
    try:
        from chronolog._record import start

        start(path)
    except Exception as error:  # the program runs on, unrecorded
        print(f"chronolog: not recording to {path}: {error}", file=sys.stderr)


_start()
