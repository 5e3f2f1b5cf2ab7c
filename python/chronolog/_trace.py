"""The questions users record for, on top of the native trace: silenced
exceptions, a variable's history, the replay and the state at a moment.

The heavy lifting is native (SQL tables, the replay, the stack rebuild);
this layer names things the way the command line and the docs do and turns
unknown names into one-line :class:`chronolog.QueryError`\\ s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chronolog._native import QueryError
from chronolog._native import Trace as _NativeTrace


def quote(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def queries() -> dict[str, str]:
    """The named analyses shipped with chronolog (``chronolog/queries/*.sql``),
    by name: run one with ``trace.sql("@name")`` or ``chronolog sql TRACE @name``."""
    from importlib import resources  # here, not at the top: `import chronolog` stays quick

    folder = resources.files("chronolog") / "queries"
    return {
        entry.name.removesuffix(".sql"): entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".sql")
    }


def expand(query: str) -> str:
    """``query``, or the named analysis it names (``@hot_lines``)."""
    name = query.strip()
    if not name.startswith("@") or " " in name:
        return query
    named = queries()
    if name[1:] not in named:
        raise QueryError(f"unknown named query '{name}' (named queries: {', '.join(named)})")
    return named[name[1:]]


class Trace(_NativeTrace):
    """One or more open traces (see :func:`chronolog.open`)."""

    def sql(self, query: str) -> Any:
        """Runs a read-only SQL query (or a named one, ``"@hot_lines"``); the
        answer as a ``pyarrow.Table``."""
        return super().sql(expand(query))

    def sql_arrow(self, query: str) -> Any:
        """Like :meth:`sql`, as an Arrow stream (PyCapsule interface)."""
        return super().sql_arrow(expand(query))

    def sql_text(self, query: str, format: str = "table") -> str:
        """Like :meth:`sql`, rendered as ``table``, ``csv`` or ``json`` text."""
        return super().sql_text(expand(query), format)

    def silenced(self, all: bool = False) -> Any:
        """Exceptions raised, handled and never re-raised, as a
        ``pyarrow.Table`` ordered by when they were handled. By default only
        handlers in the program's own code, and no StopIteration,
        StopAsyncIteration or GeneratorExit; ``all=True`` keeps every one."""
        table = "silenced_all" if all else "silenced"
        return self.sql(f"SELECT * FROM {table} ORDER BY trace, seq")

    def history(self, name: str, function: str | None = None, file: str | None = None) -> Any:
        """Every value variable ``name`` took, in order: the ``vars`` rows of
        that name (optionally only in ``function`` — qualified or bare name —
        or ``file`` — a path or its trailing part), as a ``pyarrow.Table``."""
        return self.sql(self.history_query(name, function, file))

    def history_query(self, name: str, function: str | None = None, file: str | None = None) -> str:
        """The SQL query behind :meth:`history` (checked: unknown names raise
        :class:`chronolog.QueryError`)."""
        if self.sql(f"SELECT 1 FROM vars WHERE name = {quote(name)} LIMIT 1").num_rows == 0:
            raise QueryError(
                f"unknown variable '{name}': no recorded change of a variable of that name"
            )
        where = [f"name = {quote(name)}"]
        if function is not None:
            self._check_function(function)
            where.append(
                f"(function = {quote(function)} OR ends_with(function, {quote('.' + function)}))"
            )
        if file is not None:
            self._check_file(file)
            where.append(f"(file = {quote(file)} OR ends_with(file, {quote('/' + file)}))")
        # A change is observed when the frame's next line starts (PySnooper's
        # convention); the line that made it is the frame's previous one.
        setter = (
            "CASE WHEN steps.kind = 'line' AND steps.previous_line IS NOT NULL "
            "THEN steps.previous_line ELSE v.line END AS line"
        )
        columns = (
            f"v.seq, v.ts_ns, v.thread_id, v.frame_id, v.file, v.function, {setter}, "
            "v.name, v.change, v.repr, v.type"
        )
        if len(self.paths) > 1:
            columns = "v.trace, " + columns
        return (
            f"WITH v AS (SELECT * FROM vars WHERE {' AND '.join(where)}), "
            "steps AS (SELECT trace, seq, kind, LAG(line) OVER "
            "(PARTITION BY trace, frame_id ORDER BY seq) AS previous_line FROM events "
            "WHERE frame_id IN (SELECT DISTINCT frame_id FROM v) "
            "AND kind IN ('call', 'line', 'resume', 'return', 'yield')) "
            f"SELECT {columns} FROM v "
            "LEFT JOIN steps ON steps.trace = v.trace AND steps.seq = v.seq "
            "ORDER BY v.trace, v.seq"
        )

    def replay(
        self,
        function: str | None = None,
        thread: int | str | None = None,
        from_seq: int | None = None,
        to_seq: int | None = None,
        format: str = "pysnooper",
        depth: int = 1,
    ) -> Iterator[str]:
        """The run as text, one line at a time: ``format="pysnooper"`` prints
        what PySnooper prints (``function``: that function's calls, and
        callees ``depth - 1`` levels down), ``"plain"`` one line per event.
        ``thread`` is a thread id or name; ``from_seq``/``to_seq`` bound the
        events replayed."""
        codes = self._check_function(function) if function is not None else []
        thread_id = self._thread_id(thread) if thread is not None else None
        return iter(self._replay(codes, depth, thread_id, from_seq, to_seq, format))

    def state_at(self, seq: int) -> list[dict[str, Any]]:
        """The whole stack of the thread that ran event ``seq``, at that
        event, outermost frame first: each frame a dict with ``function``,
        ``file``, ``line``, ``frame_id``, ``depth`` and ``locals`` (name →
        recorded repr), rebuilt from the recorded changes."""
        return self._state_at(seq)

    def _check_function(self, function: str) -> list[int]:
        codes = self._codes_named(function)
        if not codes:
            raise QueryError(f"unknown function '{function}': no recorded function has that name")
        return codes

    def _check_file(self, file: str) -> list[int]:
        codes = self._codes_in_file(file)
        if not codes:
            raise QueryError(f"unknown file '{file}': no recorded code comes from it")
        return codes

    def _thread_id(self, thread: int | str) -> int:
        if isinstance(thread, int) or str(thread).isdigit():
            wanted = f"thread_id = {int(thread)}"
        else:
            wanted = f"name = {quote(str(thread))}"
        found = self.sql(f"SELECT thread_id FROM threads WHERE {wanted}")
        if found.num_rows == 0:
            raise QueryError(f"unknown thread '{thread}'")
        return int(found.column(0)[0].as_py())
