"""Every example of the user guide (docs/guide.md) runs, in order, in a fresh
directory, and prints what the guide shows.

Fenced blocks, by their info string:
- ``python file=NAME`` (or any language with ``file=``): written to NAME;
- ``sh`` (``sh status=N``: expected exit status N, default 0): run by bash
  with the test's Python first on PATH, output and errors interleaved;
- ``python``: run as a script by the test's Python;
- ``python needs=MODULE``: the same, skipped when MODULE is not importable
  (``CHRONOLOG_GUIDE_REQUIRE=MODULE,...`` makes that a failure: `make
  test-spark` sets it);
- ``text`` right after a run block: its expected output, where ``...``
  stands for any text. A ``text`` block anywhere else is an error: nothing
  in the guide is shown without being checked.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "guide.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    language: str
    options: dict[str, str]
    text: str
    line: int
    expected: str | None = None
    needs: list[str] = field(default_factory=list)


def blocks(markdown: str) -> list[Block]:
    """The guide's fenced blocks, each run block with its expected output."""
    found: list[Block] = []
    for match in FENCE.finditer(markdown):
        words = match.group(1).split()
        language = words[0] if words else ""
        options = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        line = markdown.count("\n", 0, match.start()) + 1
        block = Block(language, options, match.group(2), line)
        if language == "text" and "file" not in options:
            previous = found[-1] if found else None
            runs = previous is not None and previous.language in ("sh", "python")
            if not runs or "file" in previous.options or previous.expected is not None:
                raise AssertionError(f"guide.md:{line}: output shown after no example")
            previous.expected = block.text
            continue
        block.needs = [m for m in options.get("needs", "").split(",") if m]
        found.append(block)
    return found


def normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def matches(expected: str, actual: str) -> bool:
    """`...` in `expected` stands for any text (across lines too)."""
    pieces = [re.escape(piece) for piece in normalized(expected).split("...")]
    return re.fullmatch(".*?".join(pieces), normalized(actual), re.DOTALL) is not None


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOLOG_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = "."  # the guide's Python examples import its shop.py
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "80"  # pytest's section rules are as wide as the terminal
    return env


def test_the_guide_lists_only_checked_examples() -> None:
    found = blocks(GUIDE.read_text())
    runs = [b for b in found if b.language in ("sh", "python") and "file" not in b.options]
    assert len(runs) >= 20
    unknown = [b.line for b in found if b.language not in ("sh", "python", "text")]
    assert unknown == [], f"blocks of an unknown kind at guide.md lines {unknown}"


def test_every_example_of_the_guide_runs_as_shown(tmp_path: Path) -> None:
    required = {m for m in os.environ.get("CHRONOLOG_GUIDE_REQUIRE", "").split(",") if m}
    skipped: list[str] = []
    env = environment()
    for block in blocks(GUIDE.read_text()):
        where = f"guide.md:{block.line}"
        if "file" in block.options:
            (tmp_path / block.options["file"]).write_text(block.text)
            continue
        missing = [m for m in block.needs if importlib.util.find_spec(m) is None]
        if missing:
            assert not required & set(missing), f"{where}: {missing} not installed"
            skipped.append(f"{where} (needs {', '.join(missing)})")
            continue
        if block.language == "sh":
            command = ["bash", "-e", "-o", "pipefail", "-c", block.text]
        else:
            command = [sys.executable, "-c", block.text]
        # A shell example shows what a terminal would: output and errors
        # interleaved; a Python example its output.
        errors = subprocess.STDOUT if block.language == "sh" else subprocess.PIPE
        done = subprocess.run(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=errors, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        output = done.stdout
        status = int(block.options.get("status", "0"))
        assert done.returncode == status, f"{where}: exit {done.returncode}\n{output}{done.stderr}"
        if block.expected is not None:
            assert matches(block.expected, output), (
                f"{where}: printed\n{output}\n-- the guide shows --\n{block.expected}"
            )
    if skipped:
        print("not run (module missing):", "; ".join(skipped))


def test_ellipsis_matching() -> None:
    assert matches("a ... c", "a b c")
    assert matches("x\n...\nz", "x\n1\n2\nz\n")
    assert not matches("a ... c", "a b d")
    assert not matches("exact", "exact and more")


@pytest.mark.parametrize(
    "bad", ["```text\nshown\n```\n", "```python file=a.py\nx\n```\n```text\ny\n```\n"]
)
def test_output_after_no_example_is_refused(bad: str) -> None:
    with pytest.raises(AssertionError, match="output shown after no example"):
        blocks(bad)
