"""Starting and stopping a recording (the Python side of the recorder).

The native :class:`chronolog._native.Recorder` does the work, including
hooking into CPython (``sys.monitoring`` on 3.12+, the C trace hook on 3.11);
this module holds the options, the one active recording, ``fork()`` and exit
handling.
"""

from __future__ import annotations

import atexit
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

from chronolog import _native

#: Interpreter names as `platform.python_implementation()` gives them
#: (`platform` itself, with the `re` it imports, would double the time
#: `import chronolog` takes).
_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy"}


def _host() -> str:
    """The machine's name, as `socket.gethostname()` gives it, without
    importing `socket` (Windows has no `os.uname`)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    return os.environ.get("COMPUTERNAME", "")


_lock = threading.Lock()
_active: Recording | None = None


def _library_dirs() -> list[str]:
    """The standard library and site-packages directories of this interpreter."""
    dirs: set[str] = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            dirs.add(os.path.realpath(path))
            dirs.add(path)
    try:
        import site

        for path in [*site.getsitepackages(), site.getusersitepackages()]:
            dirs.add(path)
            dirs.add(os.path.realpath(path))
    except (AttributeError, ImportError):  # some embedded interpreters lack them
        pass
    return sorted(dirs)


#: Set while a recording with ``subprocess=True`` runs: Python child
#: processes (``subprocess``, ``multiprocessing`` spawn and forkserver) read
#: it at start-up (chronolog-autorecord.pth) and record into
#: ``<stem>.<pid>.clog`` with the parent's options.
SUBPROCESS_VARIABLE = "CHRONOLOG_SUBPROCESS"


def _stem(path: str | os.PathLike[str]) -> str:
    """A trace path without its ``.clog``."""
    text = os.fspath(path)
    return text[: -len(".clog")] if text.endswith(".clog") else text


#: Variables whose names contain one of these (any case) are recorded as
#: ``<redacted>``.
SECRET_NAMES = ("password", "passwd", "secret", "token", "api_key", "apikey", "auth", "credential")


def _redact_patterns(redact: bool | Iterable[str]) -> list[str]:
    """The globs of redacted variable names: the secret-looking names unless
    ``redact`` is false, plus the patterns it lists. A pattern without
    wildcards matches names containing it."""
    if redact is False:
        return []
    extra = [] if redact is True else list(redact)
    return [p if any(c in p for c in "*?[") else f"*{p}*" for p in (*SECRET_NAMES, *extra)]


def _path_patterns(patterns: Iterable[str] | None) -> list[str]:
    """Scope patterns as the recorder matches them: an absolute path
    normalised; a relative file path or path glob (``src/app.py``,
    ``src/*.py``: one with a ``/`` or ending in ``.py``, not starting with a
    wildcard) kept and also resolved against the current directory, since
    code objects usually carry absolute file names."""
    resolved: list[str] = []
    for pattern in patterns or ():
        if os.path.isabs(pattern):
            resolved.append(os.path.abspath(pattern))
            continue
        resolved.append(pattern)
        is_path = "/" in pattern or os.sep in pattern or pattern.endswith(".py")
        if is_path and pattern[0] not in "*?[":
            resolved.append(os.path.abspath(pattern))
    return resolved


#: The `chronolog` launcher script, when the command line runs from one (its
#: frame is running when `chronolog record` starts: not the program's code).
launcher: str | None = None


def _own_paths() -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    paths = {here, os.path.realpath(here)}
    if launcher is not None:
        paths |= {launcher, os.path.realpath(launcher)}
    return sorted(paths)


def _thread_info() -> tuple[str, int]:
    current = threading.current_thread()
    return current.name, current.native_id or 0


class Recording:
    """A running recording; also a context manager (``with chronolog.record(...)``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None,
        stdlib: bool = False,
        vars: bool = True,
        lines: bool = True,
        max_repr: int = 100,
        unsafe_repr: bool = False,
        redact: bool | Iterable[str] = True,
        subprocess: bool = False,
        meta: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.path = Path(path)
        self._options = {
            "include": _path_patterns(include),
            "exclude": _path_patterns(exclude),
            "stdlib": stdlib,
            "vars": vars,
            "lines": lines,
            "max_repr": max_repr,
            "unsafe_repr": unsafe_repr,
            "redact": _redact_patterns(redact),
        }
        self._meta = list(meta)
        self._subprocess = subprocess
        self._recorder: _native.Recorder | None = None
        self.summary: dict[str, Any] | None = None

    @classmethod
    def with_options(
        cls,
        path: str | os.PathLike[str],
        options: dict[str, Any],
        meta: Sequence[tuple[str, str]],
        subprocess: bool,
    ) -> Recording:
        """A recording with the (already resolved) options of another: a
        forked or spawned child's."""
        recording = cls(path, meta=meta, subprocess=subprocess)
        recording._options = dict(options)
        return recording

    def _header(self) -> list[tuple[str, str]]:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        name = sys.implementation.name
        return [
            ("python", sys.version.split()[0]),
            ("implementation", _IMPLEMENTATIONS.get(name, name)),
            ("argv", repr(sys.argv)),
            ("pid", str(os.getpid())),
            ("host", _host()),
            ("cwd", os.getcwd()),
            ("start_time", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            ("options", options),
            ("library_dirs", os.pathsep.join(_library_dirs())),
            *self._meta,
        ]

    def start(self) -> Recording:
        global _active
        with _lock:
            if _active is not None:
                raise RuntimeError(f"chronolog: already recording to {_active.path}")
            try:
                # `-o traces/run.clog` makes `traces/` (as `export --parquet`
                # makes its directory).
                self.path.parent.mkdir(parents=True, exist_ok=True)
                recorder = _native.Recorder(
                    os.fspath(self.path),
                    self._header(),
                    library_dirs=_library_dirs(),
                    own_paths=_own_paths(),
                    on_failure=self._failed,
                    thread_info=_thread_info,
                    **self._options,
                )
            except (OSError, RuntimeError) as error:
                # An unwritable path, an unsupported interpreter: one warning,
                # and the program runs on.
                print(f"chronolog: not recording: {error}", file=sys.stderr)
                return self
            try:
                recorder.install()
            except Exception as error:  # the program must run on, unrecorded
                recorder.stop()
                print(f"chronolog: not recording: {error}", file=sys.stderr)
                return self
            self._recorder = recorder
            _active = self
            os._exit = _exit_completing_the_trace
            if self._subprocess:
                import json  # here, not at the top: `import chronolog` stays quick

                os.environ[SUBPROCESS_VARIABLE] = json.dumps(
                    {
                        "stem": _stem(self.path.absolute()),
                        "options": self._options,
                        "parent": os.getpid(),
                    }
                )
        return self

    def _failed(self, message: str) -> None:
        """Called by the recorder when it had to stop: warn once, carry on."""
        print(message, file=sys.stderr)

    def add_meta(self, key: str, value: str) -> None:
        """Stores a key/value fact in the trace (``meta`` table)."""
        if self._recorder is not None:
            self._recorder.add_meta(key, value)

    def stop(self) -> dict[str, Any] | None:
        """Stops recording and completes the trace; returns what was written."""
        global _active
        with _lock:
            if self._recorder is None:
                return self.summary
            self.summary = self._recorder.stop()
            self._recorder = None
            if _active is self:
                _active = None
                if os._exit is _exit_completing_the_trace:
                    os._exit = _real_exit
            if self._subprocess:
                os.environ.pop(SUBPROCESS_VARIABLE, None)
        return self.summary

    def _fork_child(self) -> None:
        """In a child after ``fork()``: the parent completes its own file;
        the child records on into ``OUT.<pid>.clog``."""
        global _active, _lock
        _lock = threading.Lock()  # the parent's lock state is meaningless here
        if self._recorder is not None:
            self._recorder.abandon()
            self._recorder = None
        _active = None
        meta = [*self._meta, ("parent_pid", str(os.getppid()))]
        child = Recording.with_options(
            f"{_stem(self.path)}.{os.getpid()}.clog", self._options, meta, self._subprocess
        )
        try:
            child.start()
        except Exception as error:  # the child runs on unrecorded
            print(f"chronolog: not recording the forked child: {error}", file=sys.stderr)

    def __enter__(self) -> Recording:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _after_fork_in_child() -> None:
    if _active is not None:
        _active._fork_child()


def _stop_at_exit() -> None:
    """Completes a recording the program never stopped."""
    active = _active
    if active is not None:
        active.stop()


_real_exit = os._exit


def _exit_completing_the_trace(status: int) -> NoReturn:
    """``os._exit`` while recording: completes the trace first (exit handlers
    do not run on ``os._exit``; multiprocessing's workers and forked children
    leave through it), then exits as asked. Installed only while a
    recording runs, the way coverage.py's ``patch = _exit`` does."""
    try:
        stop()
    finally:
        _real_exit(status)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_at_exit)


def record(path: str | os.PathLike[str] = "chronolog.clog", **options: Any) -> Recording:
    """A recording to use as a context manager: ``with chronolog.record("run.clog"):``."""
    return Recording(path, **options)


def start(path: str | os.PathLike[str] = "chronolog.clog", **options: Any) -> Recording:
    """Starts recording now; stop with ``rec.stop()`` or :func:`stop`."""
    return Recording(path, **options).start()


def stop() -> dict[str, Any] | None:
    """Stops the active recording, if any."""
    active = _active
    return active.stop() if active is not None else None
