"""Behaviour unchanged on code no one here wrote: the own test suites of
more-itertools and toolz (from their source distributions, so each library
and its tests are the recorded program's own code) pass, fail and skip the
same tests plain and under `chronolog record -m pytest`, and the traces
read back.

`make test` runs toolz's whole suite and `tests/test_recipes.py` of
more-itertools'; the whole more-itertools suite runs the same way with
CHRONOLOG_FULL_SUITE=1 (docs/hardening.md has the figures).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import chronolog
from conftest import run_cli

FULL = bool(os.environ.get("CHRONOLOG_FULL_SUITE"))

# (requirement, tests to run, a recorded library file, a function it calls)
SUITES = [
    (
        "more-itertools==10.5.0",
        "tests" if FULL else "tests/test_recipes.py",
        "more_itertools/recipes.py",
        "sieve",
    ),
    ("toolz==1.0.0", "toolz/tests", "toolz/itertoolz.py", "groupby"),
]


def unpacked(requirement: str, where: Path) -> Path:
    """The source distribution of `requirement`, downloaded and unpacked."""
    where.mkdir()
    download = ["download", "--quiet", "--no-deps", "--no-binary", ":all:", "--dest", str(where)]
    subprocess.run([sys.executable, "-m", "pip", *download, requirement], check=True, timeout=300)
    (archive,) = where.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(where, filter="data")
    (tree,) = [p for p in where.iterdir() if p.is_dir()]
    return tree


def summary(output: str) -> str:
    """pytest's last line without its timing: `129 passed, 1 skipped, ...`."""
    last = output.strip().splitlines()[-1]
    return re.sub(r" in [\d.]+s.*$", "", last)


@pytest.mark.parametrize(("requirement", "tests", "library", "function"), SUITES, ids=lambda s: s)
def test_the_suite_counts_the_same_under_recording(
    requirement: str, tests: str, library: str, function: str, tmp_path: Path
) -> None:
    source = unpacked(requirement, tmp_path / "sdist")
    pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", tests]
    plain = subprocess.run(
        [sys.executable, *pytest_args], capture_output=True, text=True, cwd=source, timeout=600
    )
    trace = tmp_path / "suite.clog"
    recorded = run_cli("record", "-o", trace, *pytest_args, cwd=source)
    assert plain.returncode == recorded.code == 0, recorded.out[-2000:]
    assert summary(recorded.out) == summary(plain.stdout)
    assert "passed" in summary(plain.stdout)
    opened = chronolog.open(trace)
    assert opened.check()["clean"]
    files = opened.sql("SELECT DISTINCT file FROM code").column(0).to_pylist()
    assert any(f.endswith(library) for f in files)
    calls = opened.sql(f"SELECT count(*) FROM calls WHERE function = '{function}'")
    assert calls.column(0)[0].as_py() > 0
