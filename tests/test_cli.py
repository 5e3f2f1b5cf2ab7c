"""The `chronolog` command: output, exit codes and its error rules
(one line on stderr, no traceback, non-zero exit)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COMPAT, Run, run_cli


def assert_clean_error(run: Run, *words: str) -> None:
    assert run.code == 2, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("chronolog: error: ")
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in run.err and "panicked" not in run.err


@pytest.mark.parametrize("entry", ["module", "script"])
def test_info_on_a_trace(synthetic_trace: Path, entry: str) -> None:
    run = run_cli("info", synthetic_trace, entry=entry)
    assert run.code == 0, run.err
    assert re.search(r"^events +200,000 \(call [0-9,]+, line", run.out, re.M), run.out
    for label in ("duration", "threads", "files", "size", "footer", "meta python"):
        assert label in run.out
    assert "3: MainThread" in run.out


def test_check_of_an_intact_trace(synthetic_trace: Path) -> None:
    run = run_cli("check", synthetic_trace)
    assert run.code == 0
    assert run.out.startswith(f"{synthetic_trace}: OK,")
    assert "4 of 4 chunks intact, 200,000 events" in run.out


def test_dump_is_the_golden_text() -> None:
    trace = COMPAT / "v1" / "synth-small.clog"
    run = run_cli("dump", trace)
    assert run.code == 0
    assert run.out == (COMPAT / "v1" / "synth-small.dump").read_text()


def test_missing_file(tmp_path: Path) -> None:
    assert_clean_error(run_cli("info", tmp_path / "nope.clog"), "nope.clog", "No such file")


def test_not_a_trace(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just text\n" * 100)
    for command in ("info", "check", "dump"):
        assert_clean_error(run_cli(command, path), "notes.txt", "not a chronolog trace")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.clog"
    path.write_bytes(b"")
    assert_clean_error(run_cli("info", path), "not a chronolog trace")


def test_truncated_inside_the_header(tmp_path: Path, trace_bytes: bytes) -> None:
    path = tmp_path / "cut.clog"
    path.write_bytes(trace_bytes[:40])
    assert_clean_error(run_cli("info", path), "cut.clog", "truncated")


def test_truncated_mid_trace_reads_the_intact_prefix(tmp_path: Path, trace_bytes: bytes) -> None:
    path = tmp_path / "cut.clog"
    path.write_bytes(trace_bytes[: len(trace_bytes) * 2 // 3])
    info = run_cli("info", path)
    assert info.code == 0 and re.search(r"^footer +missing$", info.out, re.M), info.out
    check = run_cli("check", path)
    assert check.code == 1
    assert "INCOMPLETE" in check.out and "ends inside a block" in check.out
    assert "--repair" in check.err and "Traceback" not in check.err


def test_corrupted_chunk_is_reported_and_skipped(tmp_path: Path, trace_bytes: bytes) -> None:
    damaged = bytearray(trace_bytes)
    damaged[len(damaged) // 3] ^= 0xFF
    path = tmp_path / "flipped.clog"
    path.write_bytes(bytes(damaged))
    check = run_cli("check", path)
    assert check.code == 1
    assert "DAMAGED" in check.out and "checksum mismatch" in check.out
    info = run_cli("info", path)
    assert info.code == 0 and "damage" in info.out
    dump = run_cli("dump", path)
    assert dump.code == 0 and "unreadable" in dump.out

    fixed = tmp_path / "fixed.clog"
    repaired = run_cli("check", path, "--repair", fixed)
    assert repaired.code == 0 and f"wrote {fixed}" in repaired.out
    again = run_cli("check", fixed)
    assert again.code == 0 and "OK" in again.out


def test_newer_format_version(tmp_path: Path, trace_bytes: bytes) -> None:
    newer = bytearray(trace_bytes)
    newer[8:10] = (2).to_bytes(2, "little")
    path = tmp_path / "v2.clog"
    path.write_bytes(bytes(newer))
    assert_clean_error(run_cli("info", path), "v2.clog", "format v2.", "upgrade chronolog")


def test_usage_errors_exit_2() -> None:
    run = run_cli("frobnicate")
    assert run.code == 2 and "invalid choice" in run.err and "Traceback" not in run.err


def test_version() -> None:
    # The version compiled into the extension is the installed wheel's.
    run = run_cli("--version")
    installed = importlib.metadata.version("chronolog")
    assert run.code == 0 and run.out.strip() == f"chronolog {installed}"


def test_dump_into_a_closed_pipe_is_quiet(synthetic_trace: Path) -> None:
    # `chronolog dump big.clog | head -1`
    proc = subprocess.Popen(
        [sys.executable, "-m", "chronolog", "dump", str(synthetic_trace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert first.startswith(b"chronolog trace v1.1")
    assert "Traceback" not in err, err
