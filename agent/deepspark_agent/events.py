"""Read MLPerf-style `:::MLLOG {json}` event lines from a workload's output.

Tolerant by design: text before the token (rank prefixes, timestamps) is ignored, lines
without the token are counted as noise, and lines whose JSON cannot be read are counted as
malformed. A log that ends without `run_stop` describes an aborted run, not an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepspark_agent.metrics import Window

TOKEN = ":::MLLOG"
_decoder = json.JSONDecoder()


class EventLogError(ValueError):
    """An event log that holds nothing to measure."""


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
        """The event's monotonic time, when the workload logged it (contract v1 does)."""
        mono = self.metadata.get("mono_ns")
        return mono if isinstance(mono, int) else None


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

        A start without its stop (a killed run) is dropped. Times come from metadata.mono_ns;
        an event without it falls back to time_ms shifted by `mono_offset_ns` (monotonic minus
        wall clock, measured by the agent), so third-party logs still line up with telemetry.
        """
        kind = "block" if self.first("block_start") else "epoch"
        windows: list[Window] = []
        start: Event | None = None
        for event in self.events:
            if event.key == f"{kind}_start":
                start = event
            elif event.key == f"{kind}_stop" and start is not None:
                samples = event.metadata.get("samples_count")
                if isinstance(samples, int) and samples >= 0:
                    windows.append(
                        Window(
                            start_ns=self._ns(start, mono_offset_ns),
                            stop_ns=self._ns(event, mono_offset_ns),
                            samples=samples,
                        )
                    )
                start = None
        return windows

    @staticmethod
    def _ns(event: Event, mono_offset_ns: int) -> int:
        t_ns = event.t_ns
        return t_ns if t_ns is not None else round(event.time_ms * 1e6) + mono_offset_ns


def parse_line(line: str, lineno: int) -> Event | None:
    """One event from a line holding the token, or None when it cannot be read."""
    try:
        # raw_decode stops at the end of the object: text another process wrote after it is
        # ignored instead of spoiling the event.
        obj, _ = _decoder.raw_decode(line, line.index("{", line.find(TOKEN)))
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            return None
        return Event(
            key=str(obj["key"]),
            value=obj.get("value"),
            event_type=str(obj.get("event_type", "POINT_IN_TIME")),
            time_ms=float(obj["time_ms"]),
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
