"""Read MLPerf-style `:::MLLOG {json}` event lines from a workload's output.

Tolerant of noise, strict about figures: text before the token (rank prefixes, timestamps)
is ignored, lines without the token are counted as noise, and lines whose JSON cannot be read
are counted as malformed. A log that ends without `run_stop` describes an aborted run, not an
error. Windows that would make a figure lie (samples that are not a positive integer, a clock
that goes backwards, windows that repeat or overlap, a `mono_ns` that is not a number) are an
EventLogError naming the line, so the run's speed is N/A with that reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepspark_core.contract import LATENCY_EVENT
from deepspark_core.errors import DeepSparkError
from deepspark_core.metrics import Window
from deepspark_core.nesting import check_depth

TOKEN = ":::MLLOG"
_decoder = json.JSONDecoder()


class EventLogError(DeepSparkError):
    """An event log that holds nothing to measure, or windows that cannot be trusted."""


@dataclass(frozen=True)
class Event:
    key: str
    value: Any
    event_type: str
    time_ms: float
    metadata: dict[str, Any]
    lineno: int

    @property
    def t_ns(self) -> int | None:
        """The event's monotonic time, when the workload logged it (contract v1 does).

        A numeric string or an integral float is read as the number: JSON writers differ.
        """
        mono = self.metadata.get("mono_ns")
        if isinstance(mono, str):
            try:
                mono = float(mono) if any(c in mono for c in ".eE") else int(mono)
            except ValueError:
                return None
        return _integer(mono)

    @property
    def clock_error(self) -> str | None:
        """Why this event's mono_ns cannot be read (it must not fall back to the wall clock)."""
        mono = self.metadata.get("mono_ns")
        if mono is None or self.t_ns is not None:
            return None
        return f"line {self.lineno}: {self.key} mono_ns {mono!r} is not a number"


def _integer(value: object) -> int | None:
    """An int, or a float with an integral value; None for anything else (bool included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _number(value: object) -> float:
    """A JSON number as a float (an integer beyond any float is infinite); NaN otherwise."""
    if not isinstance(value, int | float):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _samples(event: Event) -> int:
    """A stop's samples_count, a positive integer, else an EventLogError naming the line."""
    samples = event.metadata.get("samples_count")
    where = f"line {event.lineno}: {event.key}"
    if samples is None:
        raise EventLogError(f"{where} has no samples_count")
    count = _integer(samples)
    if count is None:
        raise EventLogError(f"{where} samples_count {samples!r} is not an integer")
    if count <= 0:
        raise EventLogError(f"{where} samples_count {count} is not positive")
    return count


def _wait(stop: Event) -> float | None:
    """A stop's optional data_wait_ms: None when absent, NaN when it is not a number (the
    loader figure is N/A with the reason; the window's speed does not depend on it)."""
    wait = stop.metadata.get("data_wait_ms")
    if wait is None:
        return None
    return math.nan if isinstance(wait, bool) else _number(wait)


@dataclass
class EventLog:
    events: list[Event] = field(default_factory=list)
    lines: int = 0  # every line read
    malformed: int = 0  # lines with the token whose event could not be read

    @property
    def noise(self) -> int:
        """Lines that were not events at all (framework output, warnings)."""
        return self.lines - len(self.events) - self.malformed

    def all(self, key: str) -> list[Event]:
        return [e for e in self.events if e.key == key]

    def first(self, key: str) -> Event | None:
        return next((e for e in self.events if e.key == key), None)

    def last(self, key: str) -> Event | None:
        return next((e for e in reversed(self.events) if e.key == key), None)

    @property
    def status(self) -> tuple[str, str | None]:
        """("success" | "aborted", reason). No run_stop means the run was cut short."""
        stop = self.last("run_stop")
        if stop is None:
            return "aborted", "log ends without run_stop (run killed or crashed)"
        status = stop.metadata.get("status", "success")
        if status == "success":
            return "success", None
        return "aborted", str(stop.metadata.get("reason") or f"run_stop status {status!r}")

    def windows(self, mono_offset_ns: int = 0) -> list[Window]:
        """Completed windows in order: block_start/stop pairs, else epoch_start/stop pairs.

        A start left open at the end (a killed run) is dropped. Times come from
        metadata.mono_ns; an event without it falls back to time_ms shifted by `mono_offset_ns`
        (monotonic minus wall clock, measured by the agent), so third-party logs still line up
        with telemetry. A window that cannot be trusted is an EventLogError naming its line:
        samples_count not a positive integer, a start while one is open, a stop without its
        start, a stop not after its start, a window that starts before the previous one
        stops, a window number logged twice, or any event's mono_ns that is not a number.
        """
        clock = next((e.clock_error for e in self.events if e.clock_error), None)
        if clock:
            raise EventLogError(clock)
        kind = "block" if self.first("block_start") else "epoch"
        windows: list[Window] = []
        numbers: dict[int, int] = {}  # window number -> line of its start
        start: Event | None = None
        for event in self.events:
            if event.key == f"{kind}_start":
                if start is not None:
                    raise EventLogError(
                        f"line {event.lineno}: duplicate {kind}_start "
                        f"(the one at line {start.lineno} has not stopped)"
                    )
                start = event
            elif event.key == f"{kind}_stop":
                if start is None:
                    raise EventLogError(f"line {event.lineno}: {kind}_stop without {kind}_start")
                window = self._window(start, event, mono_offset_ns)
                if windows and window.start_ns < windows[-1].stop_ns:
                    raise EventLogError(
                        f"line {start.lineno}: {kind} window starts before the previous one "
                        "stops (overlapping windows, or a clock that went backwards)"
                    )
                number = _integer(start.metadata.get("window"))
                if number is not None:
                    if number in numbers:
                        raise EventLogError(
                            f"line {start.lineno}: {kind} window {number} repeats the one "
                            f"at line {numbers[number]}"
                        )
                    numbers[number] = start.lineno
                windows.append(window)
                start = None
        return windows

    def _window(self, start: Event, stop: Event, mono_offset_ns: int) -> Window:
        samples = _samples(stop)
        start_ns, stop_ns = self._ns(start, mono_offset_ns), self._ns(stop, mono_offset_ns)
        if stop_ns <= start_ns:
            raise EventLogError(
                f"line {stop.lineno}: {stop.key} is not after its start at line {start.lineno} "
                f"({stop_ns - start_ns} ns: a clock that went backwards)"
            )
        return Window(
            start_ns=start_ns,
            stop_ns=stop_ns,
            samples=samples,
            data_wait_ms=_wait(stop),
            number=_integer(start.metadata.get("window")),
        )

    def latencies(self, windows: Iterable[int | None]) -> list[float]:
        """The per-query latencies (ms) that `infer_latency` events record for the windows
        numbered `windows`, in log order. An event that names no window, or a value that is
        not a non-negative time, is an EventLogError naming the line."""
        wanted, values = set(windows), []
        for event in self.all(LATENCY_EVENT):
            where = f"line {event.lineno}: {LATENCY_EVENT}"
            number = _integer(event.metadata.get("window"))
            if number is None:
                raise EventLogError(f"{where} names no window")
            if number not in wanted:  # a warm-up window's
                continue
            found = event.metadata.get("latency_ms")
            if not isinstance(found, list):
                raise EventLogError(f"{where} has no latency_ms list")
            for value in found:
                ms = math.nan if isinstance(value, bool) else _number(value)
                if not (math.isfinite(ms) and ms >= 0):  # NaN fails too
                    raise EventLogError(f"{where} latency {value!r} is not a non-negative time")
                values.append(ms)
        return values

    @staticmethod
    def _ns(event: Event, mono_offset_ns: int) -> int:
        t_ns = event.t_ns
        return t_ns if t_ns is not None else round(event.time_ms * 1e6) + mono_offset_ns


def parse_line(line: str, lineno: int) -> Event | None:
    """One event from a line holding the token, or None when it cannot be read."""
    try:
        check_depth(line)  # a deep line is malformed, not a RecursionError
        # raw_decode stops at the end of the object: text another process wrote after it is
        # ignored instead of spoiling the event.
        obj, _ = _decoder.raw_decode(line, line.index("{", line.find(TOKEN)))
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            return None
        time_ms = float(obj["time_ms"])
        if not math.isfinite(time_ms):
            return None
        return Event(
            key=str(obj["key"]),
            value=obj.get("value"),
            event_type=str(obj.get("event_type", "POINT_IN_TIME")),
            time_ms=time_ms,
            metadata=metadata,
            lineno=lineno,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def parse_lines(lines: Iterable[str]) -> EventLog:
    log = EventLog()
    for lineno, line in enumerate(lines, start=1):
        log.lines += 1
        if TOKEN not in line:
            continue
        event = parse_line(line, lineno)
        if event is None:
            log.malformed += 1
        else:
            log.events.append(event)
    return log


def read_events(path: Path) -> EventLog:
    """Parse an event log file; a file with no events at all is an EventLogError."""
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            log = parse_lines(lines)
    except FileNotFoundError:
        raise EventLogError(f"{path}: no such event log") from None
    if not log.events:
        if log.lines == 0:
            raise EventLogError(f"{path}: event log is empty")
        raise EventLogError(
            f"{path}: no MLLOG events (lines read: {log.lines}, malformed: {log.malformed})"
        )
    return log
