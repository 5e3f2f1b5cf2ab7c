"""SQL speed: chronolog's tables against DuckDB over chronolog's own Parquet
export, in the same run, on a synthetic trace (and on any recorded ones given).

    python benches/sql/run.py [--events 50000000] [--repeat 3] [--recorded N] [TRACE.clog ...]

Needs chronolog (installed), duckdb and pyarrow. Prints one table per trace:
best-of-N wall time per query for each engine, and events scanned per second.
Besides the synthetic trace, it records a small real program (recursion and
dict updates, `--recorded` rounds) with `chronolog record` and measures that
trace too. Peak memory of each engine is the high-water mark of its own child
process (VmHWM, which starts afresh at exec).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERIES = {
    "group-by kind": "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
    "one function": "SELECT count(*) AS n, max(line) AS l FROM events "
    "WHERE function = '{function}'",
    "calls aggregate": "SELECT function, count(*) AS n, sum(duration_ns) AS t, max(depth) AS d "
    "FROM calls GROUP BY function ORDER BY function",
}


def best(fn, repeat: int) -> tuple[float, object]:
    times, answer = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        answer = fn()
        times.append(time.perf_counter() - start)
    return min(times), answer


def child(engine: str, target: str, repeat: int) -> None:
    """Runs the queries in this process and prints JSON timings."""
    # The function filtered on: one of the synthetic trace's, or the
    # recorded program's recursive one.
    function = "fib" if "recorded" in target else "price_for"
    queries = {name: q.format(function=function) for name, q in QUERIES.items()}
    out = {}
    if engine == "chronolog":
        import chronolog

        trace = chronolog.open(target)
        for name, query in queries.items():
            seconds, table = best(lambda q=query: trace.sql(q), repeat)
            out[name] = (seconds, [tuple(r.values()) for r in table.to_pylist()])
    else:
        import duckdb

        db = duckdb.connect()
        for table in ("events", "calls"):
            db.execute(
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{target}/{table}/*.parquet')"
            )
        for name, query in queries.items():
            seconds, rows = best(lambda q=query: db.execute(q).fetchall(), repeat)
            out[name] = (seconds, rows)
    status = Path("/proc/self/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    out["max_rss_mib"] = int(hwm.split()[1]) / 1024
    print(json.dumps(out))


WORKLOAD = """
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def words(i):
    counts = {}
    for word in ("alpha beta gamma delta " * 3).split():
        counts[word] = counts.get(word, 0) + i
    return counts


for i in range(ROUNDS):
    fib(12)
    words(i)
"""


def record_workload(scratch: Path, rounds: int) -> Path:
    script = scratch / "workload.py"
    script.write_text(WORKLOAD.replace("ROUNDS", str(rounds)))
    out = scratch / "recorded.clog"
    chronolog_cli = [sys.executable, "-m", "chronolog", "record", "-o", str(out), str(script)]
    subprocess.run(chronolog_cli, check=True)
    return out


def measure(engine: str, target: Path, repeat: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", engine, str(target), "--repeat", str(repeat)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def report(trace: Path, repeat: int, scratch: Path) -> None:
    import chronolog

    t = chronolog.open(trace)
    events = t.info()["events"]
    parquet = scratch / f"{trace.stem}-parquet"
    start = time.perf_counter()
    t.export_parquet(parquet)
    export_s = time.perf_counter() - start
    ours = measure("chronolog", trace, repeat)
    theirs = measure("duckdb", parquet, repeat)
    size = trace.stat().st_size / 2**20
    psize = sum(p.stat().st_size for p in parquet.rglob("*.parquet")) / 2**20
    print(f"\n{trace.name}: {events:,} events, {size:,.0f} MiB (Parquet export {psize:,.0f} MiB "
          f"in {export_s:.1f} s); best of {repeat}")  # fmt: skip
    print("| query | chronolog | DuckDB over Parquet | chronolog events/s | same answer |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name in QUERIES:
        (a, rows_a), (b, rows_b) = ours[name], theirs[name]
        same = [list(r) for r in rows_a] == [list(r) for r in rows_b]
        rate = events / a / 1e6
        print(f"| {name} | {a * 1000:,.0f} ms | {b * 1000:,.0f} ms | {rate:,.0f} M | {same} |")
    print(f"| peak RSS | {ours['max_rss_mib']:,.0f} MiB | {theirs['max_rss_mib']:,.0f} MiB | | |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--recorded", type=int, default=3000, help="rounds of the recorded program")
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "TARGET"))
    parser.add_argument("traces", nargs="*", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.repeat)
        return
    import chronolog._native as native

    with tempfile.TemporaryDirectory(prefix="chronolog-sql-bench-") as tmp:
        scratch = Path(tmp)
        synthetic = scratch / "synthetic.clog"
        start = time.perf_counter()
        native.write_synthetic(synthetic, events=args.events, seed=7, threads=4)
        print(f"wrote {args.events:,} synthetic events in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        recorded = record_workload(scratch, args.recorded)
        print(f"recorded the workload in {time.perf_counter() - start:.1f} s")
        for trace in [synthetic, recorded, *args.traces]:
            report(trace, args.repeat, scratch)


if __name__ == "__main__":
    main()
