"""Type stubs and user docs of the Rust extension module."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT_VERSION: str
"""The trace format version this chronolog writes (``"MAJOR.MINOR"``)."""
__version__: str
"""chronolog's version, the workspace's (``Cargo.toml``)."""

class TraceError(Exception):
    """A trace is missing, unreadable, damaged beyond use, or of a newer
    format. The message is one line naming the file and the problem."""

class QueryError(ValueError):
    """A query cannot run: invalid SQL, an unknown table, column or function,
    or a statement that would change something (queries are read-only).
    The message is one line."""

class ArrowStream:
    """A query answer exported through the Arrow PyCapsule interface
    (``__arrow_c_stream__``): ``pyarrow.table(s)``, ``polars.DataFrame(s)``
    or DuckDB import it without a copy, as many times as they ask."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

class Trace:
    """One or more open traces. Create it with :func:`chronolog.open`.

    ``info``, ``check`` and ``dump`` describe the first trace; SQL and exports
    see every trace as one set of tables with a ``trace`` column."""

    def __init__(self, *paths: str | os.PathLike[str]) -> None: ...
    @property
    def path(self) -> Path:
        """The path the (first) trace was opened from."""
    @property
    def paths(self) -> list[Path]:
        """Every trace opened, in order."""
    def sql(self, query: str) -> Any:
        """Run a read-only SQL query over the tables ``events``, ``calls``,
        ``vars``, ``exceptions``, ``code``, ``threads``, ``source``, ``meta``;
        the answer is a ``pyarrow.Table``. The GIL is released while it runs.
        Raises :class:`QueryError` for a query that cannot run."""
    def sql_arrow(self, query: str) -> ArrowStream:
        """Like :meth:`sql`, the answer as an Arrow stream for any consumer."""
    def table(self, name: str) -> Any:
        """Every row of table ``name`` as a ``pyarrow.Table``."""
    def sql_text(self, query: str, format: str = "table") -> str:
        """The answer rendered as ``table``, ``csv`` or ``json`` text."""
    def damage(self) -> list[str]:
        """Damage met so far (opening, then queries), one line each."""
    def export_parquet(self, dir: str | os.PathLike[str], progress: bool = False) -> None:
        """Write every table to ``dir/<table>/part-N.parquet`` (replacing earlier
        ``part-*.parquet`` files there)."""
    def export_arrow(
        self, path: str | os.PathLike[str], table: str = "events", progress: bool = False
    ) -> None:
        """Write table ``table`` to the Arrow IPC file ``path``."""
    def export_perfetto(self, path: str | os.PathLike[str], progress: bool = False) -> None:
        """Write a Perfetto (Chrome JSON) timeline to ``path``."""
    def info(self) -> dict[str, Any]:
        """What the trace holds.

        Keys: ``format_version``, ``writer``, ``start_unix_ns``,
        ``duration_ns``, ``events``, ``events_by_kind`` (kind name to count),
        ``var_changes``, ``threads`` (dicts with ``thread_id``, ``name``,
        ``native_id``), ``files``, ``sources``, ``code_objects``, ``chunks``,
        ``file_bytes``, ``encoded_bytes``, ``naive_bytes``,
        ``compression_ratio`` (naive fixed-width size / file size),
        ``bytes_per_event``, ``footer`` (``intact``, ``missing`` or
        ``damaged: ...``), ``damage`` (one line per unreadable stretch) and
        ``meta`` (recording metadata).
        """
    def check(self, repair: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Decode every chunk and report what is intact.

        Keys: ``clean`` (complete and undamaged), ``footer``, ``chunks``,
        ``good_chunks``, ``events``, ``var_changes`` (in the good chunks),
        ``damage`` and ``repaired``. With ``repair``, the intact part is
        written to that path as a complete trace (never over the input).
        """
    def dump(self) -> Iterator[str]:
        """The stable text rendering of the whole trace, in pieces."""

    # Stepping primitives behind replay, state_at and `chronolog debug`
    # (chronolog.Trace wraps them; see docs/analysis.md).
    def _replay(
        self,
        codes: list[int],
        depth: int,
        thread: int | None,
        from_seq: int | None,
        to_seq: int | None,
        style: str,
    ) -> Iterator[str]: ...
    def _state_at(self, seq: int) -> list[dict[str, Any]]: ...
    def _event(self, seq: int) -> dict[str, Any] | None: ...
    def _seek(
        self,
        seq: int,
        forward: bool,
        thread: int | None = None,
        kinds: list[str] | None = None,
        max_depth: int | None = None,
        frame: int | None = None,
        codes: list[int] | None = None,
        lines: list[tuple[int, int]] | None = None,
    ) -> dict[str, Any] | None: ...
    def _codes_named(self, name: str) -> list[int]: ...
    def _codes_in_file(self, file: str) -> list[int]: ...
    def _bounds(self) -> tuple[int, int] | None: ...

def write_synthetic(
    path: str | os.PathLike[str], events: int = 10_000, seed: int = 1, threads: int = 2
) -> dict[str, int]:
    """Write a deterministic synthetic trace (for the demo and tests, until
    the recorder lands). Returns ``bytes``, ``chunks``, ``events`` and
    ``var_changes``."""

class Recorder:
    """The native recorder behind :class:`chronolog.Recording` (internal:
    use :func:`chronolog.record` / :func:`chronolog.start`)."""

    def __init__(
        self,
        path: str,
        header: list[tuple[str, str]],
        *,
        include: list[str],
        exclude: list[str],
        stdlib: bool,
        library_dirs: list[str],
        own_paths: list[str],
        vars: bool,
        lines: bool,
        max_repr: int,
        unsafe_repr: bool,
        redact: list[str],
        on_failure: Any,
        thread_info: Any,
    ) -> None: ...
    def install(self) -> None:
        """Starts recording in every thread."""
    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        """As a trace function (3.11): puts the C trace hook in this thread."""
    def add_meta(self, key: str, value: str) -> None: ...
    def abandon(self) -> None:
        """After fork() in the child: forget the parent's recording."""
    @property
    def active(self) -> bool: ...
    def stop(self) -> dict[str, Any] | None:
        """Stops recording and completes the file."""

def safe_repr(value: object, max_repr: int = 100) -> str:
    """The sanitized repr the recorder stores for ``value``."""

def describe(code: Any) -> dict[str, Any]:
    """What the recorder's pure-line analysis finds in a code object (for
    tests): ``labels``, the jump targets, and ``lines``, each pure line with
    the local slots it subscripts (``indexable``), operates on (``plain``),
    stores and changes in place (``mutates``)."""
