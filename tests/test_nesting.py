"""JSON nested deeper than the core reads: bad input to the strict readers, a malformed line
to the tolerant ones, never a RecursionError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepspark_core import nesting
from deepspark_core.events import parse_lines
from deepspark_core.series import load_series
from deepspark_core.signing import VerificationError, verify_envelope

DEEP = "[" * 200_000 + "]" * 200_000


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_the_limit_counts_levels_not_brackets_in_strings():
    assert nesting.loads(nested(nesting.MAX_DEPTH))["a"]
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        nesting.loads(nested(nesting.MAX_DEPTH + 1))
    with pytest.raises(ValueError, match="nested deeper"):
        nesting.loads(DEEP)
    brackets = json.dumps({"s": "[{" * 1000 + '\\"[', "t": ["]"] * 100})  # many, all shallow
    assert nesting.loads(brackets)["t"] == ["]"] * 100
    wide = json.dumps([[i] for i in range(1000)])
    assert len(nesting.loads(wide)) == 1000


def test_an_event_line_nested_deep_is_malformed():
    log = parse_lines(
        [
            ':::MLLOG {"key": "run_start", "time_ms": 1, "metadata": {}}',
            f":::MLLOG {DEEP}",
            ':::MLLOG {"key": "x", "time_ms": 2, "metadata": ' + nested(70) + "}",
        ]
    )
    assert [e.key for e in log.events] == ["run_start"] and log.malformed == 2


def test_a_telemetry_line_nested_deep_is_skipped(tmp_path: Path):
    path = tmp_path / "telemetry.jsonl"
    good = {"t_ns": 1, "scope": "accelerator", "device": "0", "power_w": 5.0}
    deep = json.dumps({**good, "t_ns": 2, "power_w": 6.0})[:-1] + f', "x": {nested(70)}}}'
    path.write_text(f"{DEEP}\n{json.dumps(good)}\n{deep}\n")
    scope, series = load_series(path, "power_w")
    assert scope == "accelerator" and [s.value for s in series["0"]] == [5.0]


def test_an_envelope_nested_deep_does_not_verify():
    with pytest.raises(VerificationError, match="envelope is not valid JSON: nested deeper"):
        verify_envelope(DEEP.encode(), {})
