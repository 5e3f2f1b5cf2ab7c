"""``@chronolog.snoop()``: a drop-in for ``@pysnooper.snoop()``.

Each call of the decorated function is recorded into a temporary trace (or
into ``trace=PATH``, kept); when the call returns, its PySnooper-style replay
is written to stderr, a stream or a file. The function runs at recording
speed instead of under a Python trace function, and the replay is the same
text PySnooper prints. A generator function is recorded from its first
resume to its end (PySnooper prints each resume separately; so does the
replay, as ``call``/``return`` pairs). While another recording is running,
the decorated function just runs (recordings do not nest).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from chronolog import _record

if TYPE_CHECKING:
    import tempfile

F = TypeVar("F", bound=Callable[..., Any])


def _writer(
    output: str | os.PathLike[str] | TextIO | Callable[[str], Any] | None, overwrite: bool
) -> Callable[[str], Any]:
    if output is None:
        return sys.stderr.write
    if isinstance(output, (str, os.PathLike)):
        path = os.fspath(output)
        state = {"mode": "w" if overwrite else "a"}

        def to_file(text: str) -> None:
            with open(path, state["mode"], encoding="utf-8") as out:
                out.write(text)
            state["mode"] = "a"

        return to_file
    if callable(output):
        return output
    return output.write


def snoop(
    output: str | os.PathLike[str] | TextIO | Callable[[str], Any] | None = None,
    *,
    depth: int = 1,
    prefix: str = "",
    overwrite: bool = False,
    max_variable_length: int = 100,
    trace: str | os.PathLike[str] | None = None,
    **record_options: Any,
) -> Callable[[F], F]:
    """Decorator: record each call of the function and print its
    PySnooper-style replay when it returns.

    ``output``: where the replay goes (stderr by default; a path is appended
    to, or overwritten first with ``overwrite=True``; a stream or a
    callable taking text). ``depth``: callees shown below the function, as
    PySnooper's. ``prefix``: put before every line. ``max_variable_length``:
    longest repr kept. ``trace``: keep the recording at this path instead of a
    temporary file. Other keyword arguments go to :func:`chronolog.record`.
    """
    write = _writer(output, overwrite)
    record_options.setdefault("max_repr", max_variable_length)

    def decorate(function: F) -> F:
        import inspect  # here, not at the top: `import chronolog` stays quick

        code = function.__code__

        def replay(path: str) -> None:
            from chronolog._trace import Trace, quote

            recorded = Trace(path)
            found = recorded.sql(
                f"SELECT code_id FROM code WHERE function = {quote(code.co_qualname)} "
                f"AND file = {quote(code.co_filename)} AND first_line = {code.co_firstlineno}"
            )
            codes = [int(c) for c in found.column(0).to_pylist()]
            if codes:
                lines = recorded._replay(codes, depth, None, None, None, "pysnooper")
                write("".join(f"{prefix}{line}\n" for line in lines))

        def recording() -> tuple[
            _record.Recording | None, str, tempfile.TemporaryDirectory[str] | None
        ]:
            if _record._active is not None:
                return None, "", None
            scratch = None
            if trace is None:
                import tempfile  # here, not at the top: `import chronolog` stays quick

                scratch = tempfile.TemporaryDirectory(prefix="chronolog-snoop-")
                path = os.path.join(scratch.name, "snoop.clog")
            else:
                path = os.fspath(trace)
            return _record.start(path, **record_options), path, scratch

        def finish(
            active: _record.Recording, path: str, scratch: tempfile.TemporaryDirectory[str] | None
        ) -> None:
            try:
                active.stop()
                replay(path)
            finally:
                if scratch is not None:
                    scratch.cleanup()

        if inspect.isgeneratorfunction(function):

            @functools.wraps(function)
            def generator_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                active, path, scratch = recording()
                if active is None:
                    return (yield from function(*args, **kwargs))
                try:
                    return (yield from function(*args, **kwargs))
                finally:
                    finish(active, path, scratch)

            return generator_wrapper  # type: ignore[return-value]

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def coroutine_wrapper(*args: Any, **kwargs: Any) -> Any:
                active, path, scratch = recording()
                if active is None:
                    return await function(*args, **kwargs)
                try:
                    return await function(*args, **kwargs)
                finally:
                    finish(active, path, scratch)

            return coroutine_wrapper  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            active, path, scratch = recording()
            if active is None:
                return function(*args, **kwargs)
            try:
                return function(*args, **kwargs)
            finally:
                finish(active, path, scratch)

        return wrapper  # type: ignore[return-value]

    return decorate
