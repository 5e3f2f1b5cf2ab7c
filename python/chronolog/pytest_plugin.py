"""The pytest plugin: ``pytest --chronolog[=DIR]`` records each test into its
own trace, named after the test id, and keeps the traces of failing tests
(every one with ``--chronolog-keep=all``). A failure report ends with the
trace's path and the command that replays the test.

Each test is recorded from its setup to its teardown, with chronolog's
default scope (the project's own code, not pytest nor other installed
packages). While another recording runs in the process (``chronolog record
-m pytest``), tests are not recorded separately.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from chronolog import _record

TRACES = pytest.StashKey[Path]()
FAILED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chronolog", "record tests with chronolog")
    group.addoption(
        "--chronolog",
        nargs="?",
        const=".chronolog",
        default=None,
        metavar="DIR",
        help="record each test into DIR/<test id>.clog (default DIR: .chronolog)",
    )
    group.addoption(
        "--chronolog-keep",
        choices=("failed", "all"),
        default="failed",
        help="keep the traces of failing tests only (default) or of every test",
    )


def pytest_configure(config: pytest.Config) -> None:
    # `--chronolog` takes an optional value: `pytest --chronolog test_x.py`
    # reads `test_x.py` as the directory (pytest-cov's `--cov` does the same).
    directory = config.getoption("chronolog")
    if directory is None:
        return
    test_like = directory.endswith(".py") or "::" in directory
    if test_like or (Path(directory).exists() and not Path(directory).is_dir()):
        raise pytest.UsageError(
            f"--chronolog: '{directory}' is not a directory for traces "
            "(write --chronolog=DIR, or put --chronolog after the test paths)"
        )


def trace_name(nodeid: str) -> str:
    """A file name for a test id: `tests/test_a.py::test_b[x-1]` becomes
    `tests_test_a.py__test_b[x-1].clog`."""
    name = re.sub(r"[^\w.\[\]=,+-]+", "_", nodeid.replace("::", "__")).strip("_")
    return (name or "test")[:200] + ".clog"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    directory = item.config.getoption("chronolog")
    if directory is None or _record._active is not None:
        yield
        return
    path = Path(directory) / trace_name(item.nodeid)
    path.parent.mkdir(parents=True, exist_ok=True)
    item.stash[TRACES] = path
    item.stash[FAILED] = False
    recording = _record.start(path)
    try:
        yield
    finally:
        recording.stop()
        keep = item.config.getoption("chronolog_keep") == "all" or item.stash[FAILED]
        if not keep:
            path.unlink(missing_ok=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    path = item.stash.get(TRACES, None)
    if path is None or not report.failed:
        return
    item.stash[FAILED] = True
    function = getattr(getattr(item, "function", None), "__qualname__", None)
    replay = f"chronolog replay {path}" + (f" --function {function}" if function else "")
    report.sections.append(("chronolog", f"trace: {path}\nreplay: {replay}"))
