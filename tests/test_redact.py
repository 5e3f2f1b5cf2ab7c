"""Secret-looking variables are recorded as `<redacted>` (contract §3):
by default, with `--redact PATTERN` added, and not at all with `--no-redact`."""

from __future__ import annotations

from pathlib import Path

import chronolog
from conftest import run_cli

# The secret is computed, so it appears in no source line the trace stores.
PROGRAM = """
import sys

SECRET_VALUE = "".join(reversed("2retnuh"))
API_KEY = SECRET_VALUE + "-key"


def login(user, password):
    auth_header = "Basic " + password
    session_token = password.upper()
    pin_code = 1234
    author = user
    password = password + "!"
    del password
    return len(auth_header) + len(session_token) + pin_code + len(author)


print(login("bob", SECRET_VALUE), file=sys.stderr)
"""


def record(tmp_path: Path, *options: str) -> chronolog.Trace:
    program = tmp_path / "secrets.py"
    program.write_text(PROGRAM)
    trace = tmp_path / "secrets.clog"
    done = run_cli("record", "-o", trace, *options, program)
    assert done.code == 0, done.err
    return chronolog.open(trace)


def values(trace: chronolog.Trace) -> dict[str, list[tuple[str, str | None]]]:
    rows = trace.sql("SELECT name, change, repr FROM vars ORDER BY seq").to_pylist()
    seen: dict[str, list[tuple[str, str | None]]] = {}
    for row in rows:
        seen.setdefault(row["name"], []).append((row["change"], row["repr"]))
    return seen


def test_secret_looking_names_are_redacted_by_default(tmp_path: Path) -> None:
    trace = record(tmp_path)
    seen = values(trace)
    for name in ("SECRET_VALUE", "API_KEY", "password", "auth_header", "session_token", "author"):
        assert {repr_ for _, repr_ in seen[name] if repr_ is not None} == {"<redacted>"}, name
    # Bound, rebound (no `modified`: nothing shows), deleted.
    assert seen["password"] == [("start", "<redacted>"), ("deleted", None)]
    assert seen["user"] == [("start", "'bob'")]
    assert seen["pin_code"] == [("new", "1234")]
    text = "".join(trace.dump())
    assert "hunter2" not in text and "HUNTER2" not in text
    calls = trace.sql("SELECT args FROM calls WHERE function = 'login'").column(0)[0].as_py()
    assert calls == "user='bob', password=<redacted>"


def test_redact_adds_patterns(tmp_path: Path) -> None:
    seen = values(record(tmp_path, "--redact", "pin", "--redact", "US?R"))
    assert seen["pin_code"] == [("new", "<redacted>")]
    assert seen["user"] == [("start", "<redacted>")]
    assert seen["password"][0] == ("start", "<redacted>")


def test_no_redact_records_everything(tmp_path: Path) -> None:
    seen = values(record(tmp_path, "--no-redact"))
    assert seen["password"][0] == ("start", "'hunter2'")
    assert ("modified", "'hunter2!'") in seen["password"]
    assert seen["SECRET_VALUE"] == [("new", "'hunter2'")]


def test_python_api_takes_the_same_choices(tmp_path: Path) -> None:
    def work() -> int:
        apikey = "abc" * 2
        visible = apikey.upper()
        return len(visible)

    for redact, expected in [(True, "<redacted>"), (False, "'abcabc'"), (["vis*"], "<redacted>")]:
        path = tmp_path / f"api-{redact}.clog"
        with chronolog.record(path, include=[__file__], redact=redact):
            work()
        seen = values(chronolog.open(path))
        assert seen["apikey"] == [("new", expected)]
        assert (seen["visible"][0][1] == "<redacted>") is isinstance(redact, list)
