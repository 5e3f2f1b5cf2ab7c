"""chronolog: record what a Python program did; ask the trace afterwards.

A trace (``.clog``) holds calls, lines, returns, exceptions and variable
changes of a recorded run. Open one with :func:`open` and ask it questions;
on the command line, ``chronolog --help`` lists the commands.

PYTEST_DONT_REWRITE: chronolog ships a pytest plugin (``pytest --chronolog``),
so pytest would rewrite the asserts of its modules, and warn when chronolog
was imported first (``chronolog record -m pytest``); they need no rewriting.
"""

from __future__ import annotations

import os

from chronolog._native import FORMAT_VERSION, QueryError, TraceError, __version__
from chronolog._record import Recording, record, start, stop
from chronolog._snoop import snoop
from chronolog._trace import Trace, queries

__all__ = [
    "FORMAT_VERSION",
    "QueryError",
    "Recording",
    "Trace",
    "TraceError",
    "__version__",
    "open",
    "queries",
    "record",
    "snoop",
    "start",
    "stop",
]


def open(path: str | os.PathLike[str], *more: str | os.PathLike[str]) -> Trace:
    """Open the trace at ``path`` (and any ``more``: several traces are one
    set of SQL tables, told apart by their ``trace`` column).

    Raises :class:`TraceError` (one line naming the file and the problem) when
    the file is missing, is not a trace, is damaged beyond use, or was written
    by a newer format version. A trace whose writer died is opened by scanning:
    everything intact is readable.
    """
    return Trace(os.fspath(path), *(os.fspath(p) for p in more))
