"""Shared fixtures: real traces on disk and a runner for the real CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import chronolog._native as native

REPO = Path(__file__).resolve().parent.parent
COMPAT = REPO / "fixtures" / "compat"


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(*args: str | Path, entry: str = "module", cwd: Path | None = None) -> Run:
    """Runs chronolog in a fresh process, as `python -m chronolog` or as the
    installed `chronolog` script."""
    if entry == "module":
        argv = [sys.executable, "-m", "chronolog"]
    else:
        argv = [str(Path(sys.executable).parent / "chronolog")]
    done = subprocess.run(
        [*argv, *map(str, args)], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def synthetic_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 200,000-event synthetic trace (four chunks)."""
    path = tmp_path_factory.mktemp("traces") / "synthetic.clog"
    native.write_synthetic(path, events=200_000, seed=3, threads=3)
    return path


@pytest.fixture
def trace_bytes(synthetic_trace: Path) -> bytes:
    return synthetic_trace.read_bytes()
