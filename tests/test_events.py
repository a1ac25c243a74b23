"""The event parser: tolerant of noise, strict about what it reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deepspark_agent.events import EventLogError, parse_lines, read_events
from deepspark_agent.metrics import Window


def line(key: str, value=None, prefix: str = "", time_ms: float = 0.0, **metadata) -> str:
    body = {"namespace": "", "time_ms": time_ms, "event_type": "POINT_IN_TIME", "key": key,
            "value": value, "metadata": metadata}  # fmt: skip
    return f"{prefix}:::MLLOG {json.dumps(body)}"


def test_reads_events_through_rank_prefixes_noise_and_malformed_lines():
    lines = [
        "Loading model...",
        line("run_start", prefix="[rank0]: ", mono_ns=1),
        line("block_start", prefix="[default0]:", window=0, mono_ns=1_000),
        ":::MLLOG {broken json",
        line("block_stop", window=0, samples_count=10, mono_ns=2_000) + " trailing garbage",
        ':::MLLOG {"key": "no time"}',
        ':::MLLOG {"key": "x", "time_ms": 1, "metadata": [1, 2]}',
        line("run_stop", status="success", mono_ns=3_000),
    ]
    log = parse_lines(lines)
    assert [e.key for e in log.events] == ["run_start", "block_start", "block_stop", "run_stop"]
    assert log.lines == 8
    assert log.malformed == 3  # broken json, missing time_ms, non-object metadata
    assert log.noise == 1
    assert log.status == ("success", None)
    assert log.windows() == [Window(start_ns=1_000, stop_ns=2_000, samples=10)]


def test_truncated_log_is_an_aborted_run_and_keeps_its_finished_windows():
    log = parse_lines(
        [
            line("run_start"),
            line("block_start", window=0, mono_ns=10),
            line("block_stop", window=0, samples_count=5, mono_ns=20),
            line("block_start", window=1, mono_ns=30),  # killed here
        ]
    )
    status, reason = log.status
    assert status == "aborted"
    assert "without run_stop" in reason
    assert log.windows() == [Window(10, 20, 5)]


def test_aborted_run_stop_carries_the_workload_reason():
    log = parse_lines([line("run_stop", status="aborted", reason="CUDA out of memory")])
    assert log.status == ("aborted", "CUDA out of memory")


def test_epoch_events_serve_as_windows_and_wall_time_is_shifted_to_the_monotonic_clock():
    # A third-party log without mono_ns and with epoch_* instead of block_* events.
    log = parse_lines(
        [
            line("epoch_start", time_ms=1000.0),
            line("epoch_stop", time_ms=1500.0, samples_count=50),
        ]
    )
    # 1000 ms = 1e9 ns, then + offset 7
    assert log.windows(mono_offset_ns=7) == [Window(1_000_000_007, 1_500_000_007, 50)]


def test_a_stop_without_samples_count_is_not_a_window():
    log = parse_lines([line("block_start", mono_ns=1), line("block_stop", mono_ns=2)])
    assert log.windows() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "event log is empty"),
        ("just text\nmore text\n", "no MLLOG events (lines read: 2, malformed: 0)"),
        (":::MLLOG {oops\n", "no MLLOG events (lines read: 1, malformed: 1)"),
        ("\x00\xff\xfe binary \x00\n", "no MLLOG events (lines read: 1,"),
    ],
)
def test_files_without_events_give_one_clear_error(tmp_path: Path, content: str, message: str):
    path = tmp_path / "mllog.log"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(EventLogError, match=re.escape(message)):
        read_events(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(EventLogError, match="no such event log"):
        read_events(tmp_path / "nope.log")
