"""The event parser: tolerant of noise, strict about what it reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deepspark_core.events import EventLogError, parse_lines, read_events
from deepspark_core.metrics import Window


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


SECOND = 1_000_000_000


def window_events(windows: int = 4, samples: object = 100) -> list[tuple[str, dict]]:
    """A good log as (key, metadata) pairs: run_start on line 1, window w's block_start on line
    2w + 2 (at 2w + 1 s) and its block_stop on line 2w + 3 (one second later), run_stop last."""
    events = [("run_start", {"mono_ns": 0})]
    for w in range(windows):
        events.append(("block_start", {"window": w, "mono_ns": (2 * w + 1) * SECOND}))
        stop = {"window": w, "samples_count": samples, "mono_ns": (2 * w + 2) * SECOND}
        events.append(("block_stop", stop))
    events.append(("run_stop", {"status": "success", "mono_ns": (2 * windows + 2) * SECOND}))
    return events


def render(events: list[tuple[str, dict]]) -> list[str]:
    return [line(key, **metadata) for key, metadata in events]


def _set(index: int, **metadata):
    return lambda events: events[index][1].update(metadata)


def _insert(index: int, key: str, **metadata):
    return lambda events: events.insert(index, (key, metadata))


# Event logs that would lie, each edited from window_events() (window 1: lines 4 and 5), with
# the reason it gives. Each makes the run's speed N/A with that reason.
BAD_LOGS = {
    "negative samples": (
        _set(4, samples_count=-50),
        "line 5: block_stop samples_count -50 is not positive",
    ),
    "zero samples": (
        _set(4, samples_count=0),
        "line 5: block_stop samples_count 0 is not positive",
    ),
    "string samples": (
        _set(4, samples_count="100"),
        "line 5: block_stop samples_count '100' is not an integer",
    ),
    "float samples": (
        _set(4, samples_count=12.5),
        "line 5: block_stop samples_count 12.5 is not an integer",
    ),
    "NaN samples": (
        _set(4, samples_count=float("nan")),
        "line 5: block_stop samples_count nan is not an integer",
    ),
    "no samples": (
        lambda e: e[4][1].pop("samples_count"),
        "line 5: block_stop has no samples_count",
    ),
    "backwards clock": (
        _set(4, mono_ns=int(2.5 * SECOND)),
        "line 5: block_stop is not after its start at line 4 "
        "(-500000000 ns: a clock that went backwards)",
    ),
    "duplicate block_start": (
        _insert(4, "block_start", window=1, mono_ns=int(3.5 * SECOND)),
        "line 5: duplicate block_start (the one at line 4 has not stopped)",
    ),
    "stop without start": (
        _insert(5, "block_stop", window=1, samples_count=100, mono_ns=int(4.5 * SECOND)),
        "line 6: block_stop without block_start",
    ),
    "overlapping windows": (
        _set(5, mono_ns=int(3.5 * SECOND)),
        "line 6: block window starts before the previous one stops (overlapping windows, "
        "or a clock that went backwards)",
    ),
    "repeated window": (_set(5, window=1), "line 6: block window 1 repeats the one at line 4"),
    "string mono_ns": (
        _set(3, mono_ns="soon"),
        "line 4: block_start mono_ns 'soon' is not a number",
    ),
    "NaN mono_ns": (_set(0, mono_ns=float("nan")), "line 1: run_start mono_ns nan is not a number"),
}


def bad_log(name: str) -> list[str]:
    edit, _ = BAD_LOGS[name]
    events = window_events()
    edit(events)
    return render(events)


@pytest.mark.parametrize("name", BAD_LOGS)
def test_a_log_that_would_lie_names_its_reason(name: str):
    with pytest.raises(EventLogError) as raised:
        parse_lines(bad_log(name)).windows()
    assert str(raised.value) == BAD_LOGS[name][1]


def test_the_good_log_the_bad_ones_are_edited_from():
    windows = parse_lines(render(window_events())).windows()
    assert windows == [Window((2 * w + 1) * SECOND, (2 * w + 2) * SECOND, 100) for w in range(4)]


def test_numbers_written_as_strings_or_integral_floats_are_read_as_numbers():
    """JSON writers differ: mono_ns "2000000000" or 2e9, samples_count 100.0, are the numbers,
    and never send the event to the wall clock (time_ms is 0 in every line here)."""
    events = window_events(samples=100.0)
    for i, (_, metadata) in enumerate(events):
        metadata["mono_ns"] = str(metadata["mono_ns"]) if i % 2 else float(metadata["mono_ns"])
    events[3][1]["mono_ns"] = "3e9"
    assert parse_lines(render(events)).windows() == parse_lines(render(window_events())).windows()


def test_a_non_finite_time_ms_is_a_malformed_line():
    log = parse_lines([':::MLLOG {"key": "run_start", "time_ms": NaN}', line("run_stop")])
    assert (log.malformed, [e.key for e in log.events]) == (1, ["run_stop"])


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
