"""The ``chronolog`` command line.

Data goes to stdout, diagnostics to stderr. Bad input (a missing file, a
file that is not a trace, a trace of a newer format, ...) gives one line
``chronolog: error: ...`` on stderr and exit status 2, never a traceback.
``chronolog check`` exits 1 when the trace is not complete and intact.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import os
import sys
from collections.abc import Callable, Sequence

import chronolog

EXIT_OK = 0
EXIT_DAMAGED = 1
EXIT_ERROR = 2


def _count(n: int) -> str:
    return f"{n:,}"


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # unreachable; keeps type checkers content


def _duration(ns: int) -> str:
    if ns < 1_000_000:
        return f"{ns / 1000:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.3f} s"


def cmd_info(args: argparse.Namespace) -> int:
    info = chronolog.open(args.trace).info()
    out: list[tuple[str, str]] = []
    out.append(("trace", f"{args.trace} (format v{info['format_version']}, by {info['writer']})"))
    started = _dt.datetime.fromtimestamp(info["start_unix_ns"] / 1e9, tz=_dt.UTC)
    out.append(("started", started.strftime("%Y-%m-%d %H:%M:%S UTC")))
    out.append(("duration", _duration(info["duration_ns"])))
    kinds = ", ".join(f"{k} {_count(n)}" for k, n in info["events_by_kind"].items() if n)
    out.append(("events", f"{_count(info['events'])}" + (f" ({kinds})" if kinds else "")))
    out.append(("var changes", _count(info["var_changes"])))
    threads = ", ".join(f"{t['name']} (native id {t['native_id']})" for t in info["threads"])
    out.append(("threads", f"{len(info['threads'])}" + (f": {threads}" if threads else "")))
    files = ", ".join(info["files"])
    out.append(
        (
            "files",
            f"{len(info['files'])}, {info['sources']} with source"
            + (f": {files}" if files else ""),
        )
    )
    out.append(("code objects", _count(info["code_objects"])))
    size = f"{_size(info['file_bytes'])} in {info['chunks']} chunks"
    if info["events"]:
        size += (
            f", {info['bytes_per_event']:.2f} bytes/event, "
            f"{info['compression_ratio']:.1f}x smaller than fixed-width columns"
        )
    out.append(("size", size))
    out.append(("footer", info["footer"]))
    for key, value in info["meta"].items():
        out.append((f"meta {key}", value))
    width = max(len(label) for label, _ in out)
    for label, value in out:
        print(f"{label:<{width}}  {value}")
    for damage in info["damage"]:
        print(f"damage  {damage}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    trace = chronolog.open(args.trace)
    report = trace.check(repair=args.repair)
    summary = (
        f"{report['good_chunks']} of {report['chunks']} chunks intact, "
        f"{_count(report['events'])} events, {_count(report['var_changes'])} variable changes"
    )
    if report["clean"]:
        print(f"{args.trace}: OK, {summary}, footer intact")
    else:
        footer = report["footer"]
        verdict = "INCOMPLETE (its writer did not finish)" if footer == "missing" else "DAMAGED"
        print(f"{args.trace}: {verdict}, {summary}, footer {footer}")
        for damage in report["damage"]:
            print(f"  {damage}")
    if args.repair is not None:
        print(f"wrote {args.repair}: {_count(report['events'])} events from the intact chunks")
        return EXIT_OK
    if not report["clean"]:
        print(
            f"hint: `chronolog check {args.trace} --repair OUT.clog` writes the intact part "
            "as a complete trace",
            file=sys.stderr,
        )
        return EXIT_DAMAGED
    return EXIT_OK


def cmd_dump(args: argparse.Namespace) -> int:
    trace = chronolog.open(args.trace)
    write = sys.stdout.write
    for piece in trace.dump():
        write(piece)
    sys.stdout.flush()
    return EXIT_OK


def _warn_damage(trace: chronolog.Trace) -> None:
    for line in trace.damage():
        print(f"chronolog: warning: {line}", file=sys.stderr)


def _expand(traces: Sequence[str]) -> list[str]:
    """Trace arguments with directories (their *.clog) and globs expanded."""
    expanded: list[str] = []
    for given in traces:
        if os.path.isdir(given):
            found = sorted(glob.glob(os.path.join(glob.escape(given), "*.clog")))
        elif any(c in given for c in "*?["):
            found = sorted(glob.glob(given))
        else:
            found = [given]
        if not found:
            raise _UsageError(f"{given}: no trace there")
        expanded.extend(found)
    return expanded


def cmd_sql(args: argparse.Namespace) -> int:
    *traces, query = args.args
    if not traces:
        raise _UsageError('sql: give at least one TRACE, then the "QUERY"')
    trace = chronolog.open(*_expand(traces))
    text = trace.sql_text(query, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    _warn_damage(trace)
    return EXIT_OK


def cmd_queries(args: argparse.Namespace) -> int:
    for name, text in chronolog.queries().items():
        first = text.splitlines()[0] if text else ""
        summary = first.removeprefix("--").strip()
        print(f"@{name:<22} {summary}")
        if args.show:
            print(text)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    trace = chronolog.open(*_expand(args.trace))
    progress = sys.stderr.isatty()
    if args.parquet:
        trace.export_parquet(args.parquet, progress=progress)
        where = f"{args.parquet}/<table>/part-N.parquet"
    elif args.arrow:
        trace.export_arrow(args.arrow, table=args.table, progress=progress)
        where = f"{args.arrow} (table {args.table})"
    else:
        trace.export_perfetto(args.perfetto, progress=progress)
        where = f"{args.perfetto} (open it at the Perfetto UI)"
    _warn_damage(trace)
    print(f"chronolog: exported {where}", file=sys.stderr)
    return EXIT_OK


def _source_lines(trace: chronolog.Trace, file: str, first: int, last: int) -> dict[int, str]:
    from chronolog._trace import quote

    rows = trace.sql(
        f"SELECT line, text FROM source WHERE file = {quote(file)} "
        f"AND line BETWEEN {first} AND {last} ORDER BY line"
    ).to_pylist()
    return {row["line"]: row["text"] for row in rows}


def cmd_silenced(args: argparse.Namespace) -> int:
    trace = chronolog.open(args.trace)
    rows = trace.silenced(all=args.all).to_pylist()
    if not rows:
        hidden = 0 if args.all else trace.silenced(all=True).num_rows
        more = (
            f" ({hidden} more in library code or StopIteration-like; see --all)" if hidden else ""
        )
        print(f"no silenced exceptions in {args.trace}{more}")
        _warn_damage(trace)
        return EXIT_OK
    groups: dict[tuple[object, ...], list[dict[str, object]]] = {}
    for row in rows:
        key = (
            row["type"],
            row["raise_file"],
            row["raise_line"],
            row["handler_file"],
            row["handler_line"],
        )
        groups.setdefault(key, []).append(row)
    print(
        f"{len(rows)} silenced exception{'s' if len(rows) != 1 else ''} "
        f"at {len(groups)} raise/handler "
        f"site{'s' if len(groups) != 1 else ''} in {args.trace}"
    )
    for group in sorted(groups.values(), key=lambda g: (-len(g), g[0]["seq"])):
        first = group[0]
        outcomes = sorted({str(r["outcome"]) for r in group})
        message = f"{first['type']}: {first['message']}" if first["message"] else str(first["type"])
        times = f"  x{len(group)}" if len(group) > 1 else ""
        print()
        print(f"{message}{times}   (outcome: {', '.join(outcomes)})")
        print(
            f"  raised  at {first['raise_file']}:{first['raise_line']} in {first['raise_function']}"
        )
        print(
            f"  handled at {first['handler_file']}:{first['handler_line']} "
            f"in {first['handler_function']}"
            f"  (seq {first['seq']}, frame {first['frame_id']})"
        )
        line = int(first["handler_line"])  # type: ignore[arg-type]
        for number, text in _source_lines(
            trace, str(first["handler_file"]), line - 1, line + 3
        ).items():
            marker = ">" if number == line else " "
            print(f"  {marker}{number:5} | {text}")
        if args.context > 0:
            after = trace.sql(
                "SELECT e.seq, e.kind, e.function, e.line, s.text FROM events e "
                "LEFT JOIN source s ON s.file = e.file AND s.line = e.line "
                f"WHERE e.thread_id = {first['thread_id']} AND e.seq > {first['seq']} "
                f"ORDER BY e.seq LIMIT {args.context}"
            ).to_pylist()
            if after:
                print("  then:")
            for event in after:
                text = (event["text"] or "").strip()
                print(
                    f"    seq {event['seq']:<6} {event['kind']:<8} "
                    f"{event['function']}:{event['line']}  {text}"
                )
    _warn_damage(trace)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    trace = chronolog.open(args.trace)
    query = trace.history_query(args.name, function=args.function, file=args.file)
    sys.stdout.write(trace.sql_text(query, args.format))
    _warn_damage(trace)
    return EXIT_OK


def _print_stack(trace: chronolog.Trace, seq: int) -> None:
    frames = trace.state_at(seq)
    event = trace._event(seq)
    assert event is not None
    print(
        f"seq {seq}: {event['kind']} in {event['function']} ({event['file']}:{event['line']}), "
        f"thread {event['thread_id']}"
    )
    for index, frame in enumerate(frames):
        partial = "" if frame["complete"] else "  (started before recording: locals partial)"
        print(
            f"#{index} {frame['function']} at {frame['file']}:{frame['line']}  "
            f"[frame {frame['frame_id']}]{partial}"
        )
        for name, value in frame["locals"].items():
            print(f"      {name} = {value}")


def cmd_replay(args: argparse.Namespace) -> int:
    trace = chronolog.open(args.trace)
    if args.at is not None:
        _print_stack(trace, args.at)
        return EXIT_OK
    lines = trace.replay(
        function=args.function,
        thread=args.thread,
        from_seq=args.from_seq,
        to_seq=args.to_seq,
        format=args.format,
        depth=args.depth,
    )
    write = sys.stdout.write
    for line in lines:
        write(line + "\n")
    sys.stdout.flush()
    _warn_damage(trace)
    return EXIT_OK


def cmd_debug(args: argparse.Namespace) -> int:
    from chronolog._debug import Debugger

    trace = chronolog.open(args.trace)
    return Debugger(trace, sys.stdin, sys.stdout).run()


def cmd_record(args: argparse.Namespace) -> int:
    from chronolog import _run

    if bool(args.module) == bool(args.command):
        raise _UsageError("record: give a SCRIPT or -m MODULE (and their arguments)")
    if args.module:
        module, *argv = args.module
        target = _run.Target(module=module, argv=argv)
    else:
        script, *argv = args.command
        target = _run.Target(script=script, argv=argv)
    output = args.output or f"{target.stem}.clog"
    return _run.run(
        target,
        output,
        include=args.include,
        exclude=args.exclude,
        stdlib=args.stdlib,
        vars=not args.no_vars,
        lines=not args.no_lines,
        max_repr=args.max_repr,
        unsafe_repr=args.unsafe_repr,
        redact=False if args.no_redact else args.redact,
        subprocess=args.subprocess,
    )


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chronolog",
        description="Record what a Python program did; ask the trace afterwards.",
    )
    parser.add_argument("--version", action="version", version=f"chronolog {chronolog.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    record = commands.add_parser(
        "record",
        help="run a Python program as `python` would, recording it",
        usage="chronolog record [-o OUT] [options] (SCRIPT [ARGS...] | -m MODULE [ARGS...])",
    )
    record.add_argument("-o", "--output", metavar="OUT", help="trace to write (default: NAME.clog)")
    record.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PAT",
        help="record exactly what these globs name (modules or paths)",
    )
    record.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PAT",
        help="do not record what these globs name",
    )
    record.add_argument(
        "--stdlib", action="store_true", help="also record the stdlib and site-packages"
    )
    record.add_argument("--no-vars", action="store_true", help="no variable changes")
    record.add_argument(
        "--no-lines", action="store_true", help="calls, returns and exceptions only"
    )
    record.add_argument(
        "--max-repr",
        type=int,
        default=100,
        metavar="N",
        help="cut values longer than N characters (default 100)",
    )
    record.add_argument(
        "--unsafe-repr",
        action="store_true",
        help="call __repr__ of objects that are not built-in values",
    )
    record.add_argument(
        "--subprocess",
        action="store_true",
        help="also record Python child processes (subprocess, multiprocessing) into OUT.<pid>.clog",
    )
    secrets = record.add_mutually_exclusive_group()
    secrets.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="PATTERN",
        help="also record variables matching PATTERN (a glob, any case) as <redacted>",
    )
    secrets.add_argument(
        "--no-redact",
        action="store_true",
        help="record secret-looking variables (password, token, ...) too",
    )
    record.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        metavar="MODULE",
        help="run a library module as a script",
    )
    record.add_argument("command", nargs=argparse.REMAINDER, metavar="SCRIPT ARGS")
    record.set_defaults(run=cmd_record)

    info = commands.add_parser("info", help="what a trace holds: events, threads, files, sizes")
    info.add_argument("trace", metavar="TRACE")
    info.set_defaults(run=cmd_info)

    check = commands.add_parser(
        "check", help="verify every chunk; optionally write the intact part"
    )
    check.add_argument("trace", metavar="TRACE")
    check.add_argument(
        "--repair", metavar="OUT", help="write the intact part to OUT as a complete trace"
    )
    check.set_defaults(run=cmd_check)

    sql = commands.add_parser(
        "sql",
        help="ask one or more traces a SQL question (tables: events, calls, vars, ...)",
        usage='chronolog sql TRACE... ("QUERY" | @NAME) [--format table|csv|json] [-o FILE]',
        description="Run a read-only SQL query over the traces' tables: events, calls, vars, "
        "exceptions, silenced, code, threads, source, meta. Several traces form one set of "
        "tables with a `trace` column. @NAME runs a named analysis (`chronolog queries`).",
    )
    sql.add_argument("args", nargs="+", metavar="TRACE... QUERY")
    sql.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format"
    )
    sql.add_argument("-o", "--output", metavar="FILE", help="write the answer to FILE")
    sql.set_defaults(run=cmd_sql)

    named = commands.add_parser(
        "queries",
        help="the named analyses: run one with `chronolog sql TRACE @NAME`",
    )
    named.add_argument("--show", action="store_true", help="print each query's SQL")
    named.set_defaults(run=cmd_queries)

    export = commands.add_parser(
        "export",
        help="write the tables as Parquet, Arrow IPC or a Perfetto timeline",
        usage="chronolog export TRACE... (--parquet DIR | --arrow FILE [--table T] "
        "| --perfetto FILE.json)",
    )
    export.add_argument("trace", nargs="+", metavar="TRACE")
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--parquet", metavar="DIR", help="every table as DIR/<table>/part-N.parquet"
    )
    target.add_argument("--arrow", metavar="FILE", help="one table as an Arrow IPC file")
    target.add_argument(
        "--perfetto", metavar="FILE", help="a Chrome JSON trace for the Perfetto UI"
    )
    export.add_argument("--table", default="events", help="table for --arrow (default events)")
    export.set_defaults(run=cmd_export)

    silenced = commands.add_parser(
        "silenced",
        help="exceptions raised, then swallowed (except: pass, a default returned, ...)",
        usage="chronolog silenced TRACE [--all] [--context N]",
    )
    silenced.add_argument("trace", metavar="TRACE")
    silenced.add_argument(
        "--all",
        action="store_true",
        help="also handlers in library code, and StopIteration/StopAsyncIteration/GeneratorExit",
    )
    silenced.add_argument(
        "--context",
        type=int,
        default=3,
        metavar="N",
        help="events shown after each handling (default 3)",
    )
    silenced.set_defaults(run=cmd_silenced)

    history = commands.add_parser(
        "history",
        help="every value a variable took, with the line that set it",
        usage="chronolog history TRACE NAME [--function F] [--file F] [--format table|csv|json]",
    )
    history.add_argument("trace", metavar="TRACE")
    history.add_argument("name", metavar="NAME")
    history.add_argument(
        "--function", metavar="F", help="only in this function (qualified or bare name)"
    )
    history.add_argument(
        "--file", metavar="F", help="only in this file (path or its trailing part)"
    )
    history.add_argument("--format", choices=("table", "csv", "json"), default="table")
    history.set_defaults(run=cmd_history)

    replay = commands.add_parser(
        "replay",
        help="the run as PySnooper-style text, or the whole stack at one moment (--at)",
        usage="chronolog replay TRACE [--function F] [--thread T] [--from SEQ] [--to SEQ] "
        "[--format pysnooper|plain] | chronolog replay TRACE --at SEQ",
    )
    replay.add_argument("trace", metavar="TRACE")
    replay.add_argument(
        "--function", metavar="F", help="only this function's calls (as @pysnooper.snoop())"
    )
    replay.add_argument(
        "--depth",
        type=int,
        default=1,
        metavar="N",
        help="with --function, callees N-1 levels down too (default 1)",
    )
    replay.add_argument("--thread", metavar="T", help="only this thread (id or name)")
    replay.add_argument("--from", dest="from_seq", type=int, metavar="SEQ")
    replay.add_argument("--to", dest="to_seq", type=int, metavar="SEQ")
    replay.add_argument("--format", choices=("pysnooper", "plain"), default="pysnooper")
    replay.add_argument(
        "--at", type=int, metavar="SEQ", help="the stack with every local at event SEQ"
    )
    replay.set_defaults(run=cmd_replay)

    debug = commands.add_parser(
        "debug",
        help="step through the recorded run, forward and backward (pdb and gdb commands)",
        usage="chronolog debug TRACE",
    )
    debug.add_argument("trace", metavar="TRACE")
    debug.set_defaults(run=cmd_debug)

    dump = commands.add_parser("dump", help="every event and variable change as stable text")
    dump.add_argument("trace", metavar="TRACE")
    dump.set_defaults(run=cmd_dump)
    return parser


def _fail(message: str) -> int:
    print(f"chronolog: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and not sys.argv[0].endswith(".py"):
        # Run from the `chronolog` console script (not `python -m chronolog`).
        from chronolog import _record

        _record.launcher = os.path.abspath(sys.argv[0])
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (chronolog.TraceError, chronolog.QueryError, _UsageError) as error:
        return _fail(str(error))
    except OSError as error:
        if isinstance(error, BrokenPipeError):
            # The reader (e.g. `| head`) went away: stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_OK
        where = f"{error.filename}: " if error.filename else ""
        return _fail(f"{where}{error.strerror or error}")
    except KeyboardInterrupt:
        return 130
