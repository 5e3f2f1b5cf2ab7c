"""Whole-run recording without code changes: ``CHRONOLOG_RECORD=out.clog python app.py``;
and the recording of Python child processes (``chronolog record --subprocess``).

The wheel installs ``chronolog-autorecord.pth`` into site-packages; Python runs
its one line at start-up, which imports this module only when
``CHRONOLOG_RECORD`` is set (the way coverage.py and hunter hook in). The
variable is removed from the environment once read, so child processes are
not recorded into the same file. The recording stops at interpreter exit.

``CHRONOLOG_SUBPROCESS`` (set by a parent recording with ``subprocess=True``)
holds the parent's trace stem, options and pid: the child records into
``<stem>.<pid>.clog`` and keeps the variable, so grandchildren are recorded
too.
"""

from __future__ import annotations

import os
import sys


def _start() -> None:
    path = os.environ.pop("CHRONOLOG_RECORD", "")
    try:
        if path:
            from chronolog._record import start

            start(path)
            return
        spec = os.environ.get("CHRONOLOG_SUBPROCESS", "")
        if spec:
            import json

            from chronolog._record import Recording

            parent = json.loads(spec)
            path = f"{parent['stem']}.{os.getpid()}.clog"
            meta = [("parent_pid", str(parent["parent"]))]
            Recording.with_options(path, parent["options"], meta, subprocess=True).start()
    except Exception as error:  # the program runs on, unrecorded
        print(f"chronolog: not recording to {path}: {error}", file=sys.stderr)


_start()
