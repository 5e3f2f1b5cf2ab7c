"""Starting and stopping a recording (the Python side of the recorder).

The native :class:`chronolog._native.Recorder` does the work; this module
wires it to ``sys.monitoring`` (CPython 3.12+): the ``PY_START`` and exception
events globally, ``LINE`` / ``PY_RETURN`` / ``PY_YIELD`` / ``PY_RESUME`` only
for code objects the recorder finds in scope.
"""

from __future__ import annotations

import atexit
import os
import platform
import socket
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import CodeType, TracebackType
from typing import Any

from chronolog import _native

_TOOL_NAME = "chronolog"
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


def _own_dirs() -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted({here, os.path.realpath(here)})


def _free_tool_id() -> int:
    monitoring = sys.monitoring  # type: ignore[attr-defined]
    for tool in (monitoring.PROFILER_ID, 3, 4, monitoring.DEBUGGER_ID):
        if monitoring.get_tool(tool) is None:
            return tool
    raise RuntimeError("chronolog: every sys.monitoring tool id is taken")


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
        meta: Sequence[tuple[str, str]] = (),
    ) -> None:
        if sys.version_info < (3, 12):
            raise NotImplementedError(
                "chronolog: recording on CPython 3.11 (the trace-hook backend) is not available yet"
            )
        if unsafe_repr:
            raise NotImplementedError("chronolog: unsafe_repr is not available yet")
        self.path = Path(path)
        self._options = {
            "include": [self._pattern(p) for p in include or ()],
            "exclude": [self._pattern(p) for p in exclude or ()],
            "stdlib": stdlib,
            "vars": vars,
            "lines": lines,
            "max_repr": max_repr,
        }
        self._meta = list(meta)
        self._recorder: _native.Recorder | None = None
        self._tool: int | None = None
        self._enabled_codes: list[CodeType] = []
        self._callbacks: list[int] = []
        self.summary: dict[str, Any] | None = None

    @staticmethod
    def _pattern(pattern: str) -> str:
        return os.path.abspath(pattern) if os.path.isabs(pattern) else pattern

    def _header(self) -> list[tuple[str, str]]:
        options = ", ".join(f"{k}={v!r}" for k, v in self._options.items())
        return [
            ("python", sys.version.split()[0]),
            ("implementation", platform.python_implementation()),
            ("argv", repr(sys.argv)),
            ("pid", str(os.getpid())),
            ("host", socket.gethostname()),
            ("cwd", os.getcwd()),
            ("start_time", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            ("backend", "sys.monitoring"),
            ("options", options),
            *self._meta,
        ]

    def start(self) -> Recording:
        global _active
        with _lock:
            if _active is not None:
                raise RuntimeError(f"chronolog: already recording to {_active.path}")
            monitoring = sys.monitoring  # type: ignore[attr-defined]
            events = monitoring.events
            tool = _free_tool_id()
            local_events = events.LINE | events.PY_RETURN | events.PY_YIELD | events.PY_RESUME
            if not self._options["lines"]:
                local_events &= ~events.LINE

            enabled = self._enabled_codes

            def enable_code(code: CodeType) -> None:
                monitoring.set_local_events(tool, code, local_events)
                enabled.append(code)

            try:
                recorder = _native.Recorder(
                    os.fspath(self.path),
                    self._header(),
                    library_dirs=_library_dirs(),
                    own_dirs=_own_dirs(),
                    disable=monitoring.DISABLE,
                    enable_code=enable_code,
                    on_failure=self._failed,
                    thread_info=_thread_info,
                    **self._options,
                )
            except RuntimeError as error:
                # An unwritable path: one warning, and the program runs on.
                print(f"chronolog: not recording: {error}", file=sys.stderr)
                return self
            monitoring.use_tool_id(tool, _TOOL_NAME)
            callbacks = {
                events.PY_START: recorder.on_start,
                events.PY_RESUME: recorder.on_resume,
                events.PY_THROW: recorder.on_throw,
                events.LINE: recorder.on_line,
                events.PY_RETURN: recorder.on_return,
                events.PY_YIELD: recorder.on_yield,
                events.RAISE: recorder.on_raise,
                events.RERAISE: recorder.on_reraise,
                events.EXCEPTION_HANDLED: recorder.on_handled,
                events.PY_UNWIND: recorder.on_unwind,
            }
            for event, callback in callbacks.items():
                monitoring.register_callback(tool, event, callback)
            self._callbacks = list(callbacks)
            monitoring.set_events(
                tool,
                events.PY_START
                | events.PY_THROW
                | events.RAISE
                | events.RERAISE
                | events.EXCEPTION_HANDLED
                | events.PY_UNWIND,
            )
            self._recorder, self._tool = recorder, tool
            _active = self
        return self

    def _release_tool(self) -> None:
        if self._tool is None:
            return
        monitoring = sys.monitoring  # type: ignore[attr-defined]
        tool, self._tool = self._tool, None
        monitoring.set_events(tool, 0)
        for code in self._enabled_codes:
            monitoring.set_local_events(tool, code, 0)
        self._enabled_codes.clear()
        for event in self._callbacks:
            monitoring.register_callback(tool, event, None)
        monitoring.free_tool_id(tool)

    def _failed(self, message: str) -> None:
        """Called by the recorder when it had to stop: warn once, carry on."""
        print(message, file=sys.stderr)
        self._release_tool()

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
            self._release_tool()
            self.summary = self._recorder.stop()
            self._recorder = None
            if _active is self:
                _active = None
        return self.summary

    def _fork_child(self) -> None:
        """In a child after ``fork()``: the parent completes its own file;
        the child records on into ``OUT.<pid>.clog``."""
        global _active, _lock
        _lock = threading.Lock()  # the parent's lock state is meaningless here
        if self._recorder is not None:
            self._recorder.abandon()
            self._recorder = None
        self._release_tool()
        _active = None
        stem = str(self.path)
        if stem.endswith(".clog"):
            stem = stem[: -len(".clog")]
        meta = [*self._meta, ("parent_pid", str(os.getppid()))]
        child = Recording(f"{stem}.{os.getpid()}.clog", **self._options, meta=meta)
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
