#!/usr/bin/env python3
"""peers.py -- side-by-side overhead benchmark of Python execution tracers/recorders.

(chronolog's copy of the shared harness, grown with the chronolog tool rows;
see benches/README.md for how it is set up and run here.)

Measures, for each (workload, tool) pair, how much slower the workload's own code
runs while a tracer records it, how many events were produced, and how big the
output is.  Built to set goals for a low-overhead recorder (calls/lines/returns/
exceptions + variable diffs into a compressed binary trace).

Layout
------
  peers.py              this driver (orchestrator *and* the per-run child)
  workloads/*.py        standalone workloads.  Each defines
                            harness_main(loops)           -- the traced entry point
                            LOOPS = {"full": N, "small": M, "tiny": K}
                        bm_*.py are extracted verbatim from the pyperformance wheel
                        (`python peers.py extract`); wl_exceptions.py is hand-written.
  results/              raw JSONL per session, plus summary .md / .csv

Subcommands
-----------
  python peers.py extract                      # (re)generate workloads/bm_*.py from pyperformance
  python peers.py calibrate                    # untraced time of every workload at every size
  python peers.py run --tools all --workloads all --runs 5     # wall-time benchmark
  python peers.py ir  --tools all --workloads all              # valgrind instruction counts
  python peers.py report results/raw_XXXX.jsonl [more.jsonl]   # re-render tables
  python peers.py list                                         # show tools and workloads

Method
------
* Every measurement is a fresh subprocess: `peers.py child --tool T --workload W --loops L`.
  The child loads the workload module (module body untraced), lets the tool set
  itself up, times `harness_main(loops)` with the tool active (t_main), then lets
  the tool stop and flush/save its output (t_total = setup + main + teardown).
* "Trace only the workload's own code": tools with a file filter get the workload
  file/dir; PySnooper/snoop (no file filter) get depth=10000 around harness_main,
  which ALSO traces stdlib Python frames called from the workload (noted in report).
* Canonical event count: a sys.monitoring counter ('count' pseudo-tool) counts
  PY_START/RESUME/RETURN/YIELD/UNWIND/THROW, LINE, RAISE/RERAISE/EXCEPTION_HANDLED
  in workload code.  ns/event and bytes/event use that denominator, so every tool
  is normalised by the same amount of work.
* Drift/noise: each tool run is immediately preceded by an untraced run of the
  same size, and ratios are computed per pair against the mean of the untraced
  runs just before and after it.  We report median/min/max of the paired ratios.
* Slow tools (PySnooper, snoop, hunter) run at the "small" size; fast tools at
  "full".  Ratios are always against untraced at the same size.
* `ir` mode: valgrind cachegrind instruction counts (perf HW counters are not
  available in this VM).  Ir(run) - Ir(same run with --skip-main) removes
  startup/imports/tool setup+teardown; what remains is tracing harness_main
  (plus writing what it produced, e.g. VizTracer's dump at stop).
  (Results collected before this change used loops=0 as the zero run; same idea.)

Adding a tool
-------------
Add one Tool(...) row to TOOLS below.  Either
  kind="inproc": func = generator(ctx) in this file or "module:function" importable
                 by the venv python; code before `yield` = setup, `yield` the callable
                 to time (called with loops), code after = stop + flush output to ctx.out.
  kind="cli":    cmd = argv template run INSTEAD of `python`; the harness appends the
                 untraced child command line.  Placeholders: {py} {out} {wl_dir}
                 {wl_file} {entries}.  Its cost is measured as extra wall time vs
                 the untraced process (includes import + flush at exit).
e.g. a recorder's CLI:
  Tool("chronolog_cli", kind="cli", size="full",
       cmd=["{py}", "-m", "chronolog", "record", "-o", "{out}", "--include", "{wl_file}", "--"],
       count_out=None)
"""
from __future__ import annotations

import argparse
import ast
import csv
import datetime
import glob
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD_DIR = os.path.join(HERE, "workloads")
RESULTS_DIR = os.path.join(HERE, "results")
VENV_PY = os.environ.get("PEERS_PY") or os.path.join(HERE, "venv312", "bin", "python")
DEPTH = 10000  # "large" depth for PySnooper / snoop


# =============================================================================
# Tool definitions
# =============================================================================
@dataclass
class Tool:
    name: str
    kind: str = "inproc"            # "inproc" | "cli"
    func: str | None = None         # inproc: name of generator in this file or "module:func"
    cmd: list[str] | None = None    # cli: argv prefix template
    size: str = "full"              # default size: "full" | "small"
    env: dict = field(default_factory=dict)
    out_ext: str = "out"
    count_out: str | None = None    # how to count events in the output: "lines" | "viztracer"
    desc: str = ""
    default: bool = True            # part of --tools all


TOOLS = [
    Tool("untraced", func="tool_untraced", desc="baseline, no tracer"),
    Tool("settrace_noop", func="tool_settrace_noop",
         desc="sys.settrace, Python no-op fn (global fn filters by filename, local fn returns itself)"),
    Tool("monitoring_noop", func="tool_monitoring_noop",
         desc="sys.monitoring local PY_START/PY_RETURN/LINE on workload code objects, Python no-op callbacks"),
    Tool("viztracer", func="tool_viztracer", out_ext="json", count_out="viztracer",
         desc="VizTracer C tracer (sys.monitoring on 3.12), include_files=workload dir, ignore_c_function, dump_raw. "
              "NB include_files prunes subtrees under non-included frames (e.g. coroutines resumed by asyncio)"),
    Tool("viztracer_args", func="tool_viztracer_args", size="small", out_ext="json", count_out="viztracer",
         desc="VizTracer + log_func_args + log_func_retval"),
    Tool("coverage_sysmon", func="tool_coverage", env={"COVERAGE_CORE": "sysmon"}, out_ext="cov",
         desc="coverage.py line coverage, sys.monitoring core, include=workload file"),
    Tool("coverage_ctrace", func="tool_coverage", env={"COVERAGE_CORE": "ctrace"}, out_ext="cov",
         desc="coverage.py line coverage, C tracer (settrace) core"),
    Tool("hunter_call", func="tool_hunter_call", size="small", out_ext="log", count_out="lines",
         desc="hunter.trace(filename=wl, action=CallPrinter(stream=file)); Cython speedups checked"),
    Tool("hunter_vars", func="tool_hunter_vars", size="small", out_ext="log", count_out="lines",
         desc="hunter.trace(filename=wl, actions=[CallPrinter, VarsSnooper]) (PySnooper-like)"),
    Tool("pysnooper", func="tool_pysnooper", size="small", out_ext="log", count_out="lines",
         desc="pysnooper.snoop(output=<open file>, depth=10000, color=False) on harness_main"),
    Tool("snoop", func="tool_snoop", size="small", out_ext="log", count_out="lines",
         desc="snoop Config(out=file.write, color=False).snoop(depth=10000) on harness_main"),
    # --- optional variants (not in "all") -----------------------------------
    Tool("settrace_noop_all", func="tool_settrace_noop_all", default=False,
         desc="sys.settrace, trace fn returns itself for EVERY frame (incl. stdlib)"),
    Tool("pysnooper_path", func="tool_pysnooper_path", size="small", out_ext="log", count_out="lines",
         default=False, desc="pysnooper.snoop('path', ...) -- PySnooper re-opens the file for every line"),
    Tool("viztracer_cli", kind="cli", out_ext="json", count_out="viztracer", default=False,
         cmd=["{py}", "-m", "viztracer", "--quiet", "-o", "{out}",
              "--ignore_c_function", "--tracer_entries", "{entries}", "--"],
         desc="example CLI-kind tool: python -m viztracer -- peers.py child (untraced). NB no file filter: "
              "VizTracer's include_files prunes whole subtrees below a non-included frame, so under a "
              "wrapper script it would record nothing; this traces harness+stdlib too"),
    # chronolog, in-process through its API (chronolog.start / stop), recording the
    # workload file only (--include), with the trace completed at stop.
    Tool("chronolog", func="tool_chronolog", out_ext="clog",
         desc="chronolog: calls, lines, returns, exceptions and variable diffs"),
    Tool("chronolog_novars", func="tool_chronolog_novars", out_ext="clog",
         desc="chronolog --no-vars"),
    Tool("chronolog_nolines", func="tool_chronolog_nolines", out_ext="clog",
         desc="chronolog --no-lines: calls, returns and exceptions"),
]
TOOLS_BY_NAME = {t.name: t for t in TOOLS}
# pseudo tool used to get the canonical event count
COUNT_TOOL = Tool("count", func="tool_count", desc="sys.monitoring event counter")


# =============================================================================
# In-process tool implementations (run inside the child process)
# =============================================================================
class Ctx:
    """What a tool gets: the workload entry point and where to write."""

    def __init__(self, main, loops, wl_file, codes, out, entries):
        self.main = main            # harness_main(loops)
        self.loops = loops
        self.wl_file = wl_file      # absolute path of the workload source
        self.wl_dir = os.path.dirname(wl_file)
        self.codes = codes          # every code object defined in the workload file
        self.out = out              # output path the tool should write
        self.entries = entries      # upper bound on #calls (for ring-buffer sizing)
        self.info = {}              # anything the tool wants to report


def tool_untraced(ctx):
    yield ctx.main


def tool_settrace_noop(ctx):
    wl = ctx.wl_file

    def local(frame, event, arg):
        return local

    def glob_(frame, event, arg):
        if frame.f_code.co_filename == wl:
            return local
        return None

    sys.settrace(glob_)
    yield ctx.main
    sys.settrace(None)


def tool_settrace_noop_all(ctx):
    def tr(frame, event, arg):
        return tr

    sys.settrace(tr)
    yield ctx.main
    sys.settrace(None)


def tool_monitoring_noop(ctx):
    mon = sys.monitoring
    E = mon.events
    tid = mon.DEBUGGER_ID
    mon.use_tool_id(tid, "peers-noop")

    def py_start(code, offset):
        return None

    def py_return(code, offset, retval):
        return None

    def line(code, lineno):
        return None

    mon.register_callback(tid, E.PY_START, py_start)
    mon.register_callback(tid, E.PY_RETURN, py_return)
    mon.register_callback(tid, E.LINE, line)
    for c in ctx.codes:
        mon.set_local_events(tid, c, E.PY_START | E.PY_RETURN | E.LINE)
    yield ctx.main
    for c in ctx.codes:
        mon.set_local_events(tid, c, 0)
    mon.free_tool_id(tid)


def tool_count(ctx):
    """Canonical event counter: sys.monitoring on workload code only."""
    mon = sys.monitoring
    E = mon.events
    tid = mon.DEBUGGER_ID
    mon.use_tool_id(tid, "peers-count")
    wl = ctx.wl_file
    counts = dict.fromkeys(["PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "PY_UNWIND",
                            "PY_THROW", "LINE", "RAISE", "RERAISE", "EXCEPTION_HANDLED"], 0)

    def mk(name, nargs):
        if nargs == 2:
            def cb(code, a):
                counts[name] += 1
        else:
            def cb(code, a, b):
                counts[name] += 1
        return cb

    def mk_global(name):
        def cb(code, a, b):
            if code.co_filename == wl:
                counts[name] += 1
        return cb

    local = {"PY_START": 2, "PY_RESUME": 2, "PY_RETURN": 3, "PY_YIELD": 3, "LINE": 2}
    for name, n in local.items():
        mon.register_callback(tid, getattr(E, name), mk(name, n))
    gl = 0
    for name in ["PY_UNWIND", "PY_THROW", "RAISE", "RERAISE", "EXCEPTION_HANDLED"]:
        mon.register_callback(tid, getattr(E, name), mk_global(name))
        gl |= getattr(E, name)
    lmask = 0
    for name in local:
        lmask |= getattr(E, name)
    for c in ctx.codes:
        mon.set_local_events(tid, c, lmask)
    mon.set_events(tid, gl)
    yield ctx.main
    mon.set_events(tid, 0)
    for c in ctx.codes:
        mon.set_local_events(tid, c, 0)
    mon.free_tool_id(tid)
    ctx.info["counts"] = dict(counts)


def tool_pysnooper(ctx):
    import pysnooper
    f = open(ctx.out, "w", encoding="utf-8")
    fn = pysnooper.snoop(f, depth=DEPTH, color=False)(ctx.main)
    yield fn
    f.close()


def tool_pysnooper_path(ctx):
    import pysnooper
    fn = pysnooper.snoop(ctx.out, depth=DEPTH, color=False)(ctx.main)
    yield fn


def tool_snoop(ctx):
    import snoop
    f = open(ctx.out, "w", encoding="utf-8")
    # a plain callable avoids snoop's per-write flush(); this is snoop's fastest file mode
    cfg = snoop.Config(out=f.write, color=False)
    fn = cfg.snoop(depth=DEPTH)(ctx.main)
    yield fn
    f.close()


def _hunter_common(ctx, actions):
    import hunter
    ctx.info["hunter_tracer"] = f"{hunter.Tracer.__module__}.{hunter.Tracer.__name__}"
    ctx.info["hunter_speedups"] = hunter.Tracer.__module__ == "hunter._tracer"
    tracer = hunter.trace(filename=ctx.wl_file, actions=actions, threading_support=False)
    return tracer


def tool_hunter_call(ctx):
    import hunter
    f = open(ctx.out, "w", encoding="utf-8")
    tracer = _hunter_common(ctx, [hunter.CallPrinter(stream=f, force_colors=False)])
    yield ctx.main
    tracer.stop()
    f.close()


def tool_hunter_vars(ctx):
    import hunter
    f = open(ctx.out, "w", encoding="utf-8")
    tracer = _hunter_common(ctx, [hunter.CallPrinter(stream=f, force_colors=False),
                                  hunter.VarsSnooper(stream=f, force_colors=False)])
    yield ctx.main
    tracer.stop()
    f.close()


def _viztracer(ctx, **kw):
    from viztracer import VizTracer
    tr = VizTracer(tracer_entries=max(ctx.entries, 1_000_000), verbose=0,
                   include_files=[ctx.wl_dir + "/"], ignore_c_function=True,
                   output_file=ctx.out, dump_raw=True, register_global=False, **kw)
    tr.start()
    yield ctx.main
    tr.stop()
    tr.save(ctx.out)


def _chronolog(ctx, **options):
    import chronolog

    recording = chronolog.start(ctx.out, include=[ctx.wl_file], **options)
    yield ctx.main
    summary = recording.stop() or {}
    ctx.info["chronolog_events"] = summary.get("events")
    ctx.info["chronolog_var_changes"] = summary.get("var_changes")


def tool_chronolog(ctx):
    yield from _chronolog(ctx)


def tool_chronolog_novars(ctx):
    yield from _chronolog(ctx, vars=False)


def tool_chronolog_nolines(ctx):
    yield from _chronolog(ctx, vars=False, lines=False)


def tool_viztracer(ctx):
    yield from _viztracer(ctx)


def tool_viztracer_args(ctx):
    yield from _viztracer(ctx, log_func_args=True, log_func_retval=True)


def tool_coverage(ctx):
    import coverage
    cov = coverage.Coverage(data_file=ctx.out, include=[ctx.wl_file], branch=False)
    cov.start()
    ctx.info["coverage_core"] = cov._core.tracer_class.__name__ if getattr(cov, "_core", None) else "?"
    yield ctx.main
    cov.stop()
    cov.save()


# =============================================================================
# Child process
# =============================================================================
def walk_codes(code):
    out = []
    for c in code.co_consts:
        if hasattr(c, "co_code"):
            out.append(c)
            out.extend(walk_codes(c))
    return out


def load_workload(path):
    import types
    path = os.path.abspath(path)
    with open(path, encoding="utf-8") as f:
        src = f.read()
    code = compile(src, path, "exec")
    name = "wl_" + os.path.splitext(os.path.basename(path))[0]
    mod = types.ModuleType(name)
    mod.__file__ = path
    sys.modules[name] = mod
    exec(code, mod.__dict__)
    return mod, walk_codes(code)


def resolve_func(spec):
    if ":" in spec:
        import importlib
        m, f = spec.split(":", 1)
        return getattr(importlib.import_module(m), f)
    return globals()[spec]


def child_main(a):
    import resource
    tool = COUNT_TOOL if a.tool == "count" else TOOLS_BY_NAME[a.tool]
    mod, codes = load_workload(a.workload)
    ctx = Ctx(mod.harness_main, a.loops, os.path.abspath(a.workload), codes, a.out, a.entries)
    gen = resolve_func(tool.func)(ctx)
    pc = time.perf_counter
    t0 = pc()
    fn = next(gen)
    t1 = pc()
    if not a.skip_main:
        fn(a.loops)
    t2 = pc()
    for _ in gen:
        pass
    t3 = pc()
    # VmHWM is per address space (ru_maxrss survives exec and would include the parent's peak)
    hwm = None
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = dict(t_setup=t1 - t0, t_main=t2 - t1, t_teardown=t3 - t2, t_total=t3 - t0,
               maxrss_kb=hwm, info=ctx.info)
    if a.result:
        with open(a.result, "w") as f:
            json.dump(res, f)
    else:
        print(json.dumps(res))


# =============================================================================
# Orchestration (parent)
# =============================================================================
@dataclass
class Workload:
    name: str
    path: str
    loops: dict


def discover_workloads():
    wls = []
    for p in sorted(glob.glob(os.path.join(WORKLOAD_DIR, "*.py"))):
        loops = None
        tree = ast.parse(open(p, encoding="utf-8").read())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "LOOPS" for t in node.targets):
                loops = ast.literal_eval(node.value)
        if loops is None:
            continue
        name = os.path.splitext(os.path.basename(p))[0]
        name = re.sub(r"^(bm_|wl_)", "", name)
        wls.append(Workload(name, p, loops))
    return wls


def select(items, spec, key, default_filter=lambda x: True):
    if spec in (None, "all"):
        return [i for i in items if default_filter(i)]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    by = {key(i): i for i in items}
    missing = [n for n in names if n not in by]
    if missing:
        sys.exit(f"unknown: {missing}; known: {sorted(by)}")
    return [by[n] for n in names]


def dir_size(d, exclude=("result.json",)):
    total = 0
    for root, _, files in os.walk(d):
        for fn in files:
            if fn in exclude:
                continue
            total += os.path.getsize(os.path.join(root, fn))
    return total


def out_files(d, exclude=("result.json",)):
    res = []
    for root, _, files in os.walk(d):
        for fn in files:
            if fn not in exclude:
                res.append(os.path.join(root, fn))
    return res


def count_lines(paths):
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            while True:
                b = f.read(1 << 22)
                if not b:
                    break
                n += b.count(b"\n")
    return n


def count_viztracer(paths):
    n = 0
    pat = re.compile(rb'"ph":\s*"X"')
    for p in paths:
        with open(p, "rb") as f:
            tail = b""
            while True:
                b = f.read(1 << 22)
                if not b:
                    break
                buf = tail + b
                # count matches that end in the new part only (tail is < 16 bytes)
                n += sum(1 for m in pat.finditer(buf) if m.end() > len(tail))
                tail = buf[-16:]
    return n


def gz_size(paths, level=6):
    tot = 0
    for p in paths:
        z = zlib.compressobj(level)
        with open(p, "rb") as f:
            while True:
                b = f.read(1 << 22)
                if not b:
                    break
                tot += len(z.compress(b))
        tot += len(z.flush())
    return tot


def build_cmd(tool, wl, loops, run_dir, entries, skip_main=False):
    out = os.path.join(run_dir, f"trace.{tool.out_ext}")
    result = os.path.join(run_dir, "result.json")
    inner_tool = tool.name if tool.kind == "inproc" else "untraced"
    child = [os.path.abspath(__file__), "child", "--tool", inner_tool, "--workload", wl.path,
             "--loops", str(loops), "--out", out, "--result", result, "--entries", str(entries)]
    if skip_main:
        child.append("--skip-main")
    if tool.kind == "inproc":
        return [VENV_PY] + child, out, result
    fmt = dict(py=VENV_PY, out=out, wl_dir=os.path.dirname(wl.path), wl_file=wl.path, entries=entries)
    return [s.format(**fmt) for s in tool.cmd] + child, out, result


def child_env(tool):
    env = dict(os.environ)
    env.pop("COVERAGE_CORE", None)
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(tool.env)
    return env


def run_once(tool, wl, size, loops, work_root, tag, entries=0, measure_output=False, keep=False,
             timeout=3600):
    run_dir = os.path.join(work_root, f"{wl.name}.{tool.name}.{size}.{tag}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    cmd, out, result = build_cmd(tool, wl, loops, run_dir, entries)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=child_env(tool), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    wall = time.perf_counter() - t0
    rec = dict(workload=wl.name, tool=tool.name, size=size, loops=loops, tag=tag, wall=wall,
               rc=p.returncode, ts=time.time())
    if p.returncode != 0 or not os.path.exists(result):
        rec["error"] = (p.stderr.decode(errors="replace")[-2000:])
        sys.stderr.write(f"!! {wl.name}/{tool.name}: rc={p.returncode}\n{rec['error']}\n")
    else:
        rec.update(json.load(open(result)))
        files = out_files(run_dir)
        rec["out_bytes"] = sum(os.path.getsize(f) for f in files)
        if tool.count_out and files:
            rec["out_events"] = count_lines(files) if tool.count_out == "lines" else count_viztracer(files)
        if measure_output and files:
            rec["out_gz_bytes"] = gz_size(files)
            # keep a small sample of the output for eyeballing
            sample_dir = os.path.join(RESULTS_DIR, "samples")
            os.makedirs(sample_dir, exist_ok=True)
            with open(files[0], "rb") as f:
                head = f.read(20000)
            with open(os.path.join(sample_dir, f"{wl.name}.{tool.name}.{size}.head"), "wb") as f:
                f.write(head)
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return rec


def get_counts(wl, size, loops, work_root, cache):
    key = (wl.name, size, loops)
    if key in cache:
        return cache[key]
    rec = run_once(COUNT_TOOL, wl, size, loops, work_root, "count")
    c = rec.get("info", {}).get("counts", {})
    cache[key] = c
    return c


def total_events(c):
    return sum(c.values()) if c else 0


def sizes_for(tool, size_opt):
    if size_opt == "auto":
        return [tool.size]
    if size_opt == "both":
        return ["small", "full"]
    if size_opt == "auto+small":
        return [tool.size] + (["small"] if tool.size != "small" else [])
    return [size_opt]


def cmd_run(a):
    tools = select(TOOLS, a.tools, lambda t: t.name, lambda t: t.default)
    tools = [t for t in tools if t.name != "untraced"]
    wls = select(discover_workloads(), a.workloads, lambda w: w.name)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    raw_path = a.raw or os.path.join(RESULTS_DIR, f"raw_{stamp}.jsonl")
    work_root = a.workdir or os.path.join(HERE, "tmp_runs")
    os.makedirs(work_root, exist_ok=True)
    base = TOOLS_BY_NAME["untraced"]
    counts_cache = {}
    raw = open(raw_path, "a")

    def emit(rec):
        raw.write(json.dumps(rec) + "\n")
        raw.flush()

    # canonical event counts (deterministic; once per workload x size)
    for wl in wls:
        for size in sorted({s for t in tools for s in sizes_for(t, a.size)}):
            c = get_counts(wl, size, wl.loops[size], work_root, counts_cache)
            emit(dict(workload=wl.name, tool="count", size=size, loops=wl.loops[size], counts=c))
            print(f"[count] {wl.name:14s} {size:5s} loops={wl.loops[size]:<5d} events={total_events(c):>11,d} {c}",
                  flush=True)

    for r in range(a.runs):
        for wl in wls:
            by_size = {}
            for t in tools:
                for s in sizes_for(t, a.size):
                    by_size.setdefault(s, []).append(t)
            for size, ts in sorted(by_size.items()):
                loops = wl.loops[size]
                c = counts_cache[(wl.name, size, loops)]
                entries = int(1.2 * (c.get("PY_START", 0) + c.get("PY_RESUME", 0))) + 100_000
                seq = []
                for t in ts:
                    seq += [base, t]
                seq.append(base)
                for i, t in enumerate(seq):
                    rec = run_once(t, wl, size, loops, work_root, f"r{r}i{i}", entries=entries,
                                   measure_output=(r == 0 and t is not base), keep=a.keep)
                    rec["round"] = r
                    rec["seq"] = i
                    emit(rec)
                    tm = rec.get("t_main")
                    print(f"[r{r}] {wl.name:14s} {size:5s} {t.name:16s} t_main={tm if tm is None else round(tm, 4)} "
                          f"t_total={rec.get('t_total') and round(rec['t_total'], 4)} out={rec.get('out_bytes')}",
                          flush=True)
    raw.close()
    print(f"raw results: {raw_path}")
    report([raw_path], a.out_prefix or os.path.join(RESULTS_DIR, f"summary_{stamp}"))


# =============================================================================
# Reporting
# =============================================================================
def load_raw(paths):
    recs = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line:
                    recs.append(json.loads(line))
    return recs


def q(xs, fn):
    xs = [x for x in xs if x is not None]
    return fn(xs) if xs else None


def fmt(x, nd=2):
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,d}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{nd}f}"


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def summarize(recs):
    """Pair each tool run with the untraced runs adjacent to it in the same sequence."""
    counts = {}
    for r in recs:
        if r["tool"] == "count":
            counts[(r["workload"], r["size"], r["loops"])] = r["counts"]
    # group sequence records: key (workload,size,round) -> {seq: rec}
    seqs = {}
    for r in recs:
        if r["tool"] == "count" or "round" not in r:
            continue
        seqs.setdefault((r["workload"], r["size"], r["round"], r.get("session", 0)), {})[r["seq"]] = r
    rows = {}
    for key, s in seqs.items():
        for i, rec in s.items():
            if rec["tool"] == "untraced" or "t_main" not in rec:
                continue
            nb = [s.get(i - 1), s.get(i + 1)]
            nb = [b for b in nb if b and b["tool"] == "untraced" and "t_main" in b]
            if not nb:
                continue
            bmain = statistics.mean(b["t_main"] for b in nb)
            bwall = statistics.mean(b["wall"] for b in nb)
            row = rows.setdefault((rec["workload"], rec["tool"], rec["size"]), dict(
                workload=rec["workload"], tool=rec["tool"], size=rec["size"], loops=rec["loops"],
                base=[], tmain=[], ttotal=[], ratio=[], ratio_total=[], ratio_wall=[], extra=[], extra_main=[],
                extra_wall=[], out_bytes=[], out_gz=[], out_events=[], maxrss=[], info=rec.get("info")))
            row["base"].append(bmain)
            row["tmain"].append(rec["t_main"])
            row["ttotal"].append(rec["t_total"])
            row["ratio"].append(rec["t_main"] / bmain)
            row["ratio_total"].append(rec["t_total"] / bmain)
            row["extra"].append(rec["t_total"] - bmain)
            row["extra_main"].append(rec["t_main"] - bmain)
            row["extra_wall"].append(rec["wall"] - bwall)
            row["ratio_wall"].append((rec["wall"] - bwall + bmain) / bmain)
            row["out_bytes"].append(rec.get("out_bytes"))
            row["out_events"].append(rec.get("out_events"))
            row["maxrss"].append(rec.get("maxrss_kb"))
            if rec.get("out_gz_bytes") is not None:
                row["out_gz"].append(rec["out_gz_bytes"])
    out = []
    for (wl, tool, size), row in sorted(rows.items()):
        c = counts.get((wl, size, row["loops"]), {})
        ev = total_events(c)
        med = statistics.median
        kind = TOOLS_BY_NAME[tool].kind if tool in TOOLS_BY_NAME else "inproc"
        extra = med(row["extra_wall"]) if kind == "cli" else med(row["extra"])
        ob = q(row["out_bytes"], med)
        og = q(row["out_gz"], med)
        oe = q(row["out_events"], med)
        out.append(dict(
            workload=wl, tool=tool, size=size, loops=row["loops"], n=len(row["ratio"]),
            base_s=med(row["base"]), tool_main_s=med(row["tmain"]), tool_total_s=med(row["ttotal"]),
            ratio_med=med(row["ratio"]), ratio_min=min(row["ratio"]), ratio_max=max(row["ratio"]),
            ratio_total_med=(med(row["ratio_wall"]) if kind == "cli" else med(row["ratio_total"])),
            events=ev, calls=c.get("PY_START"), lines=c.get("LINE"),
            exc_events=sum(c.get(k, 0) for k in ("RAISE", "RERAISE", "EXCEPTION_HANDLED", "PY_UNWIND", "PY_THROW")),
            ns_per_event=(extra / ev * 1e9 if ev else None),
            ns_per_event_main=(med(row["extra_main"]) / ev * 1e9 if ev else None),
            out_bytes=ob, out_gz_bytes=og, out_events=oe,
            bytes_per_event=(ob / ev if ob is not None and ev else None),
            gz_bytes_per_event=(og / ev if og is not None and ev else None),
            bytes_per_out_event=(ob / oe if ob and oe else None),
            maxrss_mb=(q(row["maxrss"], max) or 0) / 1024,
            info=json.dumps(row["info"]) if row["info"] else "",
        ))
    return out


def report(raw_paths, prefix):
    recs = load_raw(raw_paths)
    rows = summarize(recs)
    if not rows:
        print("no paired results")
        return
    cols = list(rows[0].keys())
    with open(prefix + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    wls = sorted({r["workload"] for r in rows})
    tools = [t.name for t in TOOLS if any(r["tool"] == t.name for r in rows)]
    idx = {(r["workload"], r["tool"], r["size"]): r for r in rows}
    md = io.StringIO()
    md.write(f"# Tracer overhead benchmark\n\nraw: {', '.join(os.path.basename(p) for p in raw_paths)}  \n")
    md.write(f"python: {VENV_PY}  \ngenerated: {datetime.datetime.now().isoformat(timespec='seconds')}\n\n")
    md.write("Tools (default size in parentheses):\n\n")
    for t in TOOLS:
        if t.name in tools:
            md.write(f"* **{t.name}** ({t.size}): {t.desc}\n")

    def pivot(title, field_fn, note="", size=None):
        sel = [t for t in tools if any(k[1] == t and k[2] == (size or TOOLS_BY_NAME[t].size) for k in idx)]
        if not sel:
            return
        md.write(f"\n## {title}\n\n{note}\n\n| workload | " + " | ".join(sel) + " |\n")
        md.write("|---" * (len(sel) + 1) + "|\n")
        per_tool = {t: [] for t in sel}
        for wl in wls:
            cells = []
            for t in sel:
                r = idx.get((wl, t, size or TOOLS_BY_NAME[t].size))
                v = field_fn(r) if r else None
                if isinstance(v, tuple):
                    per_tool[t].append(v[0])
                    cells.append(v[1])
                else:
                    per_tool[t].append(v)
                    cells.append(fmt(v))
            md.write(f"| {wl} | " + " | ".join(cells) + " |\n")
        md.write("| **geomean** | " + " | ".join(fmt(geomean(per_tool[t])) for t in sel) + " |\n")

    rng = lambda r: (r["ratio_med"], f"{fmt(r['ratio_med'])} [{fmt(r['ratio_min'])}-{fmt(r['ratio_max'])}]")
    pivot("Slowdown of the traced code, each tool at its default size (median of paired ratios [min-max])", rng,
          "t_main(tool) / t_main(untraced, adjacent runs), same size.  size=full (~0.2-0.3 s untraced) for the "
          "fast tools; size=small (~1-7 ms, ~80-160k events) for viztracer_args/hunter/PySnooper/snoop.")
    pivot("Slowdown, all tools at size=small (same work for every tool)", rng, "", size="small")
    pivot("Slowdown including setup + stop + writing output (median), default size", lambda r: r["ratio_total_med"])
    pivot("Overhead ns per canonical event while tracing (t_main only), default size", lambda r: r["ns_per_event_main"],
          "(t_main(tool) - t_main(untraced)) / canonical events")
    pivot("Overhead ns per canonical event (setup+trace+save), default size", lambda r: r["ns_per_event"],
          "(t_total(tool) - t_main(untraced)) / canonical events (calls+lines+returns+resumes+yields+exception events)")
    pivot("Overhead ns per canonical event, size=small", lambda r: r["ns_per_event"], "", size="small")
    pivot("Output bytes per canonical event, default size", lambda r: r["bytes_per_event"])
    pivot("Output bytes per canonical event after zlib-6, default size", lambda r: r["gz_bytes_per_event"])
    pivot("Events written by the tool (output lines / viztracer X events), default size", lambda r: r["out_events"])

    md.write("\n## Canonical event counts (sys.monitoring, workload code only)\n\n")
    md.write("| workload | size | loops | untraced s | calls | lines | exc events | total events |\n|---|---|---|---|---|---|---|---|\n")
    seen = set()
    for r in rows:
        k = (r["workload"], r["size"])
        if k in seen:
            continue
        seen.add(k)
        base = statistics.median([x["base_s"] for x in rows if (x["workload"], x["size"]) == k])
        md.write(f"| {r['workload']} | {r['size']} | {r['loops']} | {base:.4f} | {fmt(r['calls'])} | "
                 f"{fmt(r['lines'])} | {fmt(r['exc_events'])} | {fmt(r['events'])} |\n")
    md.write("\n## Long table\n\n")
    keys = ["workload", "tool", "size", "n", "base_s", "tool_main_s", "ratio_med", "ratio_min", "ratio_max",
            "ratio_total_med", "events", "ns_per_event_main", "ns_per_event", "out_bytes", "bytes_per_event", "gz_bytes_per_event",
            "out_events", "maxrss_mb"]
    md.write("| " + " | ".join(keys) + " |\n" + "|---" * len(keys) + "|\n")
    for r in rows:
        md.write("| " + " | ".join(str(r[k]) if isinstance(r[k], str) else fmt(r[k], 3) for k in keys) + " |\n")
    infos = {(r["tool"]): r["info"] for r in rows if r["info"]}
    if infos:
        md.write("\n## Tool self-reports\n\n")
        for t, i in infos.items():
            md.write(f"* {t}: `{i}`\n")
    with open(prefix + ".md", "w") as f:
        f.write(md.getvalue())
    print(f"wrote {prefix}.md and {prefix}.csv")


# =============================================================================
# Instruction counts (valgrind)
# =============================================================================
def valgrind_ir(tool, wl, loops, work_root, tag, entries, skip_main=False):
    run_dir = os.path.join(work_root, f"ir.{wl.name}.{tool.name}.{tag}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    cmd, out, result = build_cmd(tool, wl, loops, run_dir, entries, skip_main=skip_main)
    vg = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--branch-sim=no",
          "--cachegrind-out-file=/dev/null"]
    if tool.kind == "cli":
        vg.append("--trace-children=yes")
    t0 = time.perf_counter()
    p = subprocess.run(vg + cmd, env=child_env(tool), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    m = re.findall(rb"I\s+refs:\s+([\d,]+)", p.stderr)
    shutil.rmtree(run_dir, ignore_errors=True)
    if p.returncode != 0 or not m:
        sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
        return None, wall
    return sum(int(x.replace(b",", b"")) for x in m), wall


def cmd_ir(a):
    tools = select(TOOLS, a.tools, lambda t: t.name, lambda t: t.default)
    if "untraced" not in [t.name for t in tools]:
        tools = [TOOLS_BY_NAME["untraced"]] + tools
    wls = select(discover_workloads(), a.workloads, lambda w: w.name)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(RESULTS_DIR, exist_ok=True)
    raw_path = a.raw or os.path.join(RESULTS_DIR, f"ir_{stamp}.jsonl")
    work_root = a.workdir or os.path.join(HERE, "tmp_runs")
    os.makedirs(work_root, exist_ok=True)
    counts_cache = {}
    with open(raw_path, "a") as raw:
        for wl in wls:
            loops = wl.loops[a.size]
            c = get_counts(wl, a.size, loops, work_root, counts_cache)
            entries = int(1.2 * (c.get("PY_START", 0) + c.get("PY_RESUME", 0))) + 100_000
            for t in tools:
                ir_l, w1 = valgrind_ir(t, wl, loops, work_root, "L", entries)
                # same process minus the harness_main() call: startup, imports, tool setup and teardown
                ir_0, w0 = valgrind_ir(t, wl, loops, work_root, "0", entries, skip_main=True)
                rec = dict(workload=wl.name, tool=t.name, size=a.size, loops=loops, ir_loops=ir_l, ir_zero=ir_0,
                           ir_delta=(ir_l - ir_0) if ir_l and ir_0 else None, events=total_events(c),
                           vg_wall=w1 + w0)
                raw.write(json.dumps(rec) + "\n")
                raw.flush()
                print(f"[ir] {wl.name:14s} {t.name:16s} delta={rec['ir_delta']} ({rec['vg_wall']:.1f}s)", flush=True)
    report_ir([raw_path], a.out_prefix or os.path.join(RESULTS_DIR, f"ir_summary_{stamp}"))


def report_ir(paths, prefix):
    last = {}
    for r in load_raw(paths):       # a later record for the same (workload, tool, size) supersedes earlier ones
        last[(r["workload"], r["tool"], r["size"])] = r
    recs = list(last.values())
    base = {(r["workload"], r["size"]): r["ir_delta"] for r in recs if r["tool"] == "untraced" and r["ir_delta"]}
    rows = []
    for r in recs:
        b = base.get((r["workload"], r["size"]))
        if not b or not r["ir_delta"]:
            continue
        rows.append(dict(workload=r["workload"], tool=r["tool"], size=r["size"], loops=r["loops"],
                         ir_untraced=b, ir_tool=r["ir_delta"], ir_ratio=r["ir_delta"] / b,
                         events=r["events"],
                         ir_per_event=((r["ir_delta"] - b) / r["events"]) if r["events"] else None))
    if not rows:
        print("no ir rows")
        return
    with open(prefix + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    wls = sorted({r["workload"] for r in rows})
    tools = [t.name for t in TOOLS if any(r["tool"] == t.name for r in rows) and t.name != "untraced"]
    idx = {(r["workload"], r["tool"]): r for r in rows}
    md = io.StringIO()
    md.write("# Instruction-count ratios (valgrind cachegrind, Ir(run) - Ir(same run without harness_main))\n\n")
    for title, key in [("Ir ratio vs untraced", "ir_ratio"), ("extra instructions per canonical event", "ir_per_event")]:
        md.write(f"\n## {title}\n\n| workload | " + " | ".join(tools) + " |\n" + "|---" * (len(tools) + 1) + "|\n")
        for wl in wls:
            md.write(f"| {wl} | " + " | ".join(fmt(idx[(wl, t)][key]) if (wl, t) in idx else "-" for t in tools) + " |\n")
        md.write("| **geomean** | " + " | ".join(
            fmt(geomean([idx[(wl, t)][key] for wl in wls if (wl, t) in idx])) for t in tools) + " |\n")
    with open(prefix + ".md", "w") as f:
        f.write(md.getvalue())
    print(f"wrote {prefix}.md and {prefix}.csv")


# =============================================================================
# Calibration / listing
# =============================================================================
def cmd_calibrate(a):
    wls = select(discover_workloads(), a.workloads, lambda w: w.name)
    base = TOOLS_BY_NAME["untraced"]
    work_root = os.path.join(HERE, "tmp_runs")
    os.makedirs(work_root, exist_ok=True)
    cache = {}
    for wl in wls:
        for size in ("tiny", "small", "full"):
            if size not in wl.loops:
                continue
            ts = [run_once(base, wl, size, wl.loops[size], work_root, f"cal{i}").get("t_main") for i in range(a.runs)]
            c = get_counts(wl, size, wl.loops[size], work_root, cache)
            ts = [t for t in ts if t]
            print(f"{wl.name:14s} {size:5s} loops={wl.loops[size]:<5d} untraced min={min(ts):.4f}s "
                  f"med={statistics.median(ts):.4f}s events={total_events(c):>11,d} "
                  f"({total_events(c) / statistics.median(ts) / 1e6:.1f} M ev/s) {c}", flush=True)


def cmd_list(a):
    for t in TOOLS:
        print(f"{t.name:18s} {t.kind:6s} {t.size:5s} {'default' if t.default else 'optional':8s} {t.desc}")
    print()
    for w in discover_workloads():
        print(f"{w.name:14s} {w.loops}  {os.path.relpath(w.path, HERE)}")


# =============================================================================
# Workload extraction from pyperformance
# =============================================================================
# Each entry: source benchmark dir(s) inside pyperformance/data-files/benchmarks,
# text substitutions (to drop pyperf and shrink the unit of work), and a footer
# defining harness_main(loops) and LOOPS.  The benchmark code itself is verbatim.
PYPERF_BENCH = {
    "richards": dict(src="bm_richards", subs=[
        ("        self.count = 10000", "        self.count = 300"),   # 3% of the original schedule length
        ("taskWorkArea.holdCount == 9297 and taskWorkArea.qpktCount == 23246",
         "taskWorkArea.holdCount == 287 and taskWorkArea.qpktCount == 719"),
    ], footer='''
def harness_main(loops):
    richard = Richards()
    for _ in range(loops):
        assert richard.run(1)
''', loops=dict(full=200, small=1, tiny=1)),
    "nbody": dict(src="bm_nbody", subs=[], footer='''
def harness_main(loops):
    bench_nbody(loops, DEFAULT_REFERENCE, 500)   # 500 advance() steps per loop
''', loops=dict(full=120, small=1, tiny=1)),
    "chaos": dict(src="bm_chaos", subs=[
        ("def main(runner, args):", "def make_chaos():"),
        ("    runner.metadata['chaos_thickness']", "    return Chaosgame(splines, DEFAULT_THICKNESS)\n    runner.metadata['chaos_thickness']"),
    ], footer='''
# as in pyperformance, the Chaosgame is built outside the measured part (module import is untraced)
CHAOS = make_chaos()


def harness_main(loops):
    chaos = CHAOS
    for _ in range(loops):
        chaos.create_image_chaos(DEFAULT_WIDTH, DEFAULT_HEIGHT, 50, None, DEFAULT_RNG_SEED)
''', loops=dict(full=350, small=4, tiny=2)),
    "deltablue": dict(src="bm_deltablue", subs=[], footer='''
def harness_main(loops):
    for _ in range(loops):
        delta_blue(20)
''', loops=dict(full=350, small=2, tiny=1)),
    "raytrace": dict(src="bm_raytrace", subs=[], footer='''
def harness_main(loops):
    bench_raytrace(loops, 8, 8, None)   # 8x8 image per loop
''', loops=dict(full=96, small=1, tiny=1)),
    "fannkuch": dict(src="bm_fannkuch", subs=[], footer='''
def harness_main(loops):
    for _ in range(loops):
        fannkuch(7)
''', loops=dict(full=60, small=1, tiny=1)),
    "spectral_norm": dict(src="bm_spectral_norm", subs=[("DEFAULT_N = 130", "DEFAULT_N = 20")], footer='''
def harness_main(loops):
    bench_spectral_norm(loops)
''', loops=dict(full=100, small=1, tiny=1)),
    "go": dict(src="bm_go", subs=[("GAMES = 200", "GAMES = 3")], footer='''
def harness_main(loops):
    for _ in range(loops):
        versus_cpu()
''', loops=dict(full=130, small=1, tiny=1)),
    "hexiom": dict(src="bm_hexiom", subs=[], footer='''
def harness_main(loops):
    main(loops, 10)
''', loops=dict(full=200, small=3, tiny=1)),
    "json_dumps": dict(src="bm_json_dumps", subs=[], footer='''
def harness_main(loops):
    data = [(EMPTY[0], range(200)), (SIMPLE[0], range(100)), (NESTED[0], range(100)), (HUGE[0], range(1))]
    for _ in range(loops):
        bench_json_dumps(data)
''', loops=dict(full=70, small=2, tiny=1)),
}

GEN_ASYNC_FOOTER = '''
import asyncio


def harness_main(loops):
    """generators (bm_generators) + coroutines (bm_coroutines) + async generators
    under asyncio (bm_async_generators), one small unit each per loop."""
    gtree = tree(range(2000))
    atree = atree_build(range(1000))
    for _ in range(loops):
        for _ in gtree:
            pass
        coro = fibonacci(14)
        try:
            while True:
                coro.send(None)
        except StopIteration:
            pass
        asyncio.run(_drain(atree))


async def _drain(t):
    async for _ in t:
        pass
'''


def strip_bench(src):
    """Drop pyperf import, everything from add_cmdline_args / __main__ on."""
    src = src.replace("import pyperf\n", "import time\n").replace("pyperf.perf_counter", "time.perf_counter")
    cut = len(src)
    for pat in (r"^def add_cmdline_args", r"^if __name__ == ['\"]__main__['\"]:"):
        m = re.search(pat, src, re.M)
        if m:
            cut = min(cut, m.start())
    return src[:cut].rstrip() + "\n"


def find_pyperformance_benchmarks(dl_dir):
    root = os.path.join(dl_dir, "pp", "pyperformance", "data-files", "benchmarks")
    if os.path.isdir(root):
        return root
    os.makedirs(dl_dir, exist_ok=True)
    whl = glob.glob(os.path.join(dl_dir, "pyperformance-*.whl"))
    if not whl:
        subprocess.check_call([VENV_PY, "-m", "pip", "download", "--no-deps", "-d", dl_dir, "pyperformance"])
        whl = glob.glob(os.path.join(dl_dir, "pyperformance-*.whl"))
    import zipfile
    zipfile.ZipFile(sorted(whl)[-1]).extractall(os.path.join(dl_dir, "pp"))
    return root


def cmd_extract(a):
    root = find_pyperformance_benchmarks(a.dl)
    os.makedirs(WORKLOAD_DIR, exist_ok=True)
    for name, spec in PYPERF_BENCH.items():
        src = open(os.path.join(root, spec["src"], "run_benchmark.py"), encoding="utf-8").read()
        for old, new in spec["subs"]:
            assert old in src, (name, old)
            src = src.replace(old, new, 1)
        src = strip_bench(src)
        hdr = (f"# Extracted from pyperformance {spec['src']}/run_benchmark.py by peers.py extract.\n"
               f"# Benchmark code verbatim except: pyperf removed; {spec['subs'] or 'no substitutions'}.\n")
        body = hdr + src + "\n" + spec["footer"] + f"\nLOOPS = {spec['loops']!r}\n" + \
            "\nif __name__ == '__main__':\n    import sys\n    harness_main(int(sys.argv[1]) if len(sys.argv) > 1 else LOOPS['full'])\n"
        with open(os.path.join(WORKLOAD_DIR, f"bm_{name}.py"), "w") as f:
            f.write(body)
        print("wrote", f"bm_{name}.py")
    # generator/async composite
    g = strip_bench(open(os.path.join(root, "bm_generators", "run_benchmark.py")).read())
    c = strip_bench(open(os.path.join(root, "bm_coroutines", "run_benchmark.py")).read())
    ag = strip_bench(open(os.path.join(root, "bm_async_generators", "run_benchmark.py")).read())
    ag = ag.replace("class Tree:", "class ATree:").replace("-> Tree | None", "-> ATree | None") \
           .replace("def tree(input", "def atree_build(input").replace("return Tree(tree(input[:i]), input[i], tree(input[i + 1:]))",
                                                                    "return ATree(atree_build(input[:i]), input[i], atree_build(input[i + 1:]))") \
           .replace("left: Tree | None", "left: ATree | None").replace("right: Tree | None", "right: ATree | None")
    ag = re.sub(r"^from __future__ import annotations\n", "", ag, flags=re.M)
    body = ("# Composite of pyperformance bm_generators, bm_coroutines, bm_async_generators (verbatim bodies).\n"
            + g + "\n\n# ---- bm_coroutines ----\n" + c + "\n\n# ---- bm_async_generators ----\n" + ag
            + GEN_ASYNC_FOOTER + "\nLOOPS = {'full': 80, 'small': 1, 'tiny': 1}\n"
            + "\nif __name__ == '__main__':\n    import sys\n    harness_main(int(sys.argv[1]) if len(sys.argv) > 1 else LOOPS['full'])\n")
    with open(os.path.join(WORKLOAD_DIR, "bm_gen_async.py"), "w") as f:
        f.write(body)
    print("wrote bm_gen_async.py")


# =============================================================================
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv = ["run"] + argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)

    c = sp.add_parser("child", help="(internal) run one workload under one tool")
    c.add_argument("--tool", required=True)
    c.add_argument("--workload", required=True)
    c.add_argument("--loops", type=int, required=True)
    c.add_argument("--out", default=os.devnull)
    c.add_argument("--result")
    c.add_argument("--entries", type=int, default=1_000_000)
    c.add_argument("--skip-main", action="store_true")

    for name in ("run", "ir"):
        r = sp.add_parser(name)
        r.add_argument("--tools", default="all", help="comma list or 'all' (see `list`)")
        r.add_argument("--workloads", default="all")
        r.add_argument("--raw", help="append raw JSONL here")
        r.add_argument("--out-prefix", help="summary prefix (default results/summary_<ts>)")
        r.add_argument("--workdir", help="scratch dir for tool outputs (deleted after each run)")
        if name == "run":
            r.add_argument("--runs", type=int, default=5)
            r.add_argument("--size", default="auto", choices=["auto", "auto+small", "small", "full", "both", "tiny"])
            r.add_argument("--keep", action="store_true", help="keep tool outputs")
        else:
            r.add_argument("--size", default="tiny", choices=["small", "full", "tiny"])

    r = sp.add_parser("report")
    r.add_argument("raw", nargs="+")
    r.add_argument("--out-prefix", required=True)
    r.add_argument("--ir", action="store_true")

    r = sp.add_parser("calibrate")
    r.add_argument("--workloads", default="all")
    r.add_argument("--runs", type=int, default=3)

    r = sp.add_parser("extract")
    r.add_argument("--dl", default=os.path.join(HERE, "dl"))

    sp.add_parser("list")
    a = ap.parse_args(argv)
    if a.cmd == "child":
        return child_main(a)
    if a.cmd == "run":
        return cmd_run(a)
    if a.cmd == "ir":
        return cmd_ir(a)
    if a.cmd == "report":
        return (report_ir if a.ir else report)(a.raw, a.out_prefix)
    if a.cmd == "calibrate":
        return cmd_calibrate(a)
    if a.cmd == "extract":
        return cmd_extract(a)
    if a.cmd == "list":
        return cmd_list(a)


if __name__ == "__main__":
    main()
