"""The Python API over real trace files."""

from __future__ import annotations

from pathlib import Path

import pytest

import chronolog
import chronolog._native as native
from conftest import COMPAT


def test_info_reports_what_the_writer_wrote(tmp_path: Path) -> None:
    path = tmp_path / "t.clog"
    written = native.write_synthetic(path, events=20_000, seed=5, threads=2)
    info = chronolog.open(path).info()
    assert info["events"] == written["events"] == sum(info["events_by_kind"].values())
    assert info["var_changes"] == written["var_changes"]
    assert info["file_bytes"] == written["bytes"] == path.stat().st_size
    assert info["footer"] == "intact" and info["damage"] == []
    assert [t["name"] for t in info["threads"]] == ["MainThread", "worker-1"]
    assert info["files"] == ["shop/orders.py", "shop/pricing.py", "shop/util.py"]
    assert info["format_version"] == chronolog.FORMAT_VERSION
    assert info["meta"]["exit_status"] == "0"
    assert info["events_by_kind"]["call"] >= info["events_by_kind"]["return"] > 0
    assert info["compression_ratio"] > 1


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.clog", tmp_path / "b.clog"
    native.write_synthetic(a, events=5_000, seed=9)
    native.write_synthetic(b, events=5_000, seed=9)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("name", ["synth-small", "synth-crashed", "empty"])
def test_dump_matches_the_golden_text(name: str) -> None:
    trace = chronolog.open(COMPAT / "v1" / f"{name}.clog")
    expected = (COMPAT / "v1" / f"{name}.dump").read_text()
    assert "".join(trace.dump()) == expected


def test_a_crashed_trace_is_read_up_to_the_damage() -> None:
    trace = chronolog.open(COMPAT / "v1" / "synth-crashed.clog")
    report = trace.check()
    assert not report["clean"]
    assert report["footer"] == "missing"
    assert report["events"] == trace.info()["events"] > 0
    assert len(report["damage"]) == 1 and "ends inside a block" in report["damage"][0]


def test_check_repair_writes_a_complete_trace(tmp_path: Path) -> None:
    out = tmp_path / "fixed.clog"
    report = chronolog.open(COMPAT / "v1" / "synth-crashed.clog").check(repair=out)
    assert Path(report["repaired"]) == out
    fixed = chronolog.open(out).check()
    assert fixed["clean"] and fixed["events"] == report["events"]


def test_errors_are_trace_errors_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "text.clog").write_text("hello, not a trace\n")
    for path, words in [
        (tmp_path / "missing.clog", "No such file"),
        (tmp_path / "text.clog", "not a chronolog trace"),
        (tmp_path, "is a directory"),
    ]:
        with pytest.raises(chronolog.TraceError) as caught:
            chronolog.open(path)
        message = str(caught.value)
        assert words in message and str(path) in message and "\n" not in message


def test_repair_refuses_to_overwrite_its_input(synthetic_trace: Path) -> None:
    before = synthetic_trace.read_bytes()
    with pytest.raises(chronolog.TraceError, match="refusing to overwrite"):
        chronolog.open(synthetic_trace).check(repair=synthetic_trace)
    assert synthetic_trace.read_bytes() == before
