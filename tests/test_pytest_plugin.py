"""`pytest --chronolog`: each test recorded into its own trace, the failing
ones kept and named in the failure report, on a real pytest run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import chronolog

SAMPLE = """
import pytest


@pytest.fixture
def basket():
    return ["apple", "pear"]


def test_passes(basket):
    assert len(basket) == 2


def test_fails(basket):
    total = 0
    for fruit in basket:
        total += len(fruit)
    assert total == 10


@pytest.mark.parametrize("n", [1, 2, 3])
def test_parametrized(n):
    square = n * n
    assert square != 4
"""


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        cwd=project,
        timeout=120,
    )


def project(tmp_path: Path) -> Path:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    return tmp_path


def test_failing_tests_keep_their_traces_and_say_how_to_replay(tmp_path: Path) -> None:
    done = run_pytest(project(tmp_path), "--chronolog=traces")
    assert done.returncode == 1, done.stdout
    kept = sorted(p.name for p in (tmp_path / "traces").iterdir())
    assert kept == ["test_sample.py__test_fails.clog", "test_sample.py__test_parametrized[2].clog"]
    assert (
        "replay: chronolog replay traces/test_sample.py__test_fails.clog --function test_fails"
        in done.stdout
    )
    trace = chronolog.open(tmp_path / "traces" / "test_sample.py__test_fails.clog")
    history = trace.history("total").column("repr").to_pylist()
    assert history == ["0", "5", "9"]
    fixture = trace.sql("SELECT return_value FROM calls WHERE function = 'basket'").column(0)
    assert fixture.to_pylist() == ["['apple', 'pear']"]
    square = chronolog.open(tmp_path / "traces" / "test_sample.py__test_parametrized[2].clog")
    assert square.history("square").column("repr").to_pylist() == ["4"]


def test_keep_all_filters_and_exit_first(tmp_path: Path) -> None:
    root = project(tmp_path)
    every = run_pytest(root, "--chronolog=all", "--chronolog-keep=all", "-k", "parametrized")
    assert every.returncode == 1
    assert len(list((root / "all").iterdir())) == 3
    first = run_pytest(root, "--chronolog", "-x")
    assert first.returncode == 1 and "stopping after 1 failures" in first.stdout
    assert [p.name for p in (root / ".chronolog").iterdir()] == ["test_sample.py__test_fails.clog"]


def test_without_the_option_nothing_is_recorded(tmp_path: Path) -> None:
    root = project(tmp_path)
    done = run_pytest(root)
    assert done.returncode == 1
    assert not (root / ".chronolog").exists() and "chronolog replay" not in done.stdout


def test_a_test_path_taken_for_the_directory_is_a_usage_error(tmp_path: Path) -> None:
    root = project(tmp_path)
    for value in ("test_sample.py", "test_sample.py::test_fails"):
        done = run_pytest(root, "--chronolog", value)
        assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
        assert "write --chronolog=DIR, or put --chronolog after the test paths" in done.stderr
        assert "INTERNALERROR" not in done.stdout + done.stderr
    assert not (root / ".chronolog").exists()
