"""The recorder: samplers called at a fixed rate, one JSON line per device per tick.

Telemetry is sampled beside a run on the host's monotonic clock (the clock events use too).

A sampler reads one tick of metrics per device; the recorder calls every sampler at a fixed
rate in a background thread and appends one JSON line per device per tick:
`{"t_ns": ..., "scope": "container", "device": "container", "mem_used_bytes": ...}`.
The metrics engine later keeps only the readings inside the measured windows.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Protocol

from deepspark_agent.metrics import Sample

DEFAULT_HZ = 10.0
SCOPES = ("accelerator", "container", "process-tree")  # most specific first


class Sampler(Protocol):
    scope: str  # what the figures cover: "accelerator", "process-tree", ...

    def read(self) -> dict[str, dict[str, float]]:
        """One tick: {device id: {metric: value}}; a metric that cannot be read is left out."""
        ...

    def close(self) -> None:
        """Release what the sampler holds (a library handle, a streaming process)."""
        ...


class Recorder:
    """Runs samplers at `hz` in a daemon thread, writing JSON lines to `path`."""

    def __init__(self, samplers: list[Sampler], path: Path, hz: float = DEFAULT_HZ) -> None:
        self._samplers = samplers
        self._path = path
        self._period_ns = int(1e9 / hz)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="telemetry", daemon=True)
        self.cpu_s = 0.0  # CPU time the sampling thread used: its cost, for the benchmark

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for sampler in self._samplers:
            sampler.close()

    def _loop(self) -> None:
        next_ns = time.monotonic_ns()
        with self._path.open("a") as out:
            while not self._stop.is_set():
                for sampler in self._samplers:
                    t_ns = time.monotonic_ns()
                    for device, metrics in sampler.read().items():
                        row = {"t_ns": t_ns, "scope": sampler.scope, "device": device, **metrics}
                        out.write(json.dumps(row) + "\n")
                out.flush()
                # Fixed-rate schedule: a slow tick does not shift every later one.
                next_ns += self._period_ns
                self._stop.wait(max(0.0, (next_ns - time.monotonic_ns()) / 1e9))
        self.cpu_s = time.thread_time()


def load_series(path: Path, metric: str) -> tuple[str, dict[str, list[Sample]]] | None:
    """One metric's readings per device, in time order, from the most specific scope that
    recorded it (accelerator before container before process tree); None if none did.
    Unreadable lines are skipped."""
    by_scope: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    if not path.exists():
        return None
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                row = json.loads(line)
                value = row.get(metric)
                if value is not None:
                    sample = Sample(int(row["t_ns"]), float(value))
                    by_scope[str(row["scope"])][str(row["device"])].append(sample)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    if not by_scope:
        return None
    scope = min(by_scope, key=lambda s: SCOPES.index(s) if s in SCOPES else len(SCOPES))
    return scope, {d: sorted(s, key=lambda x: x.t_ns) for d, s in by_scope[scope].items()}


def sample_rate_hz(series: list[Sample]) -> float | None:
    """The achieved sampling rate of one device's series."""
    if len(series) < 2 or series[-1].t_ns <= series[0].t_ns:
        return None
    return (len(series) - 1) / ((series[-1].t_ns - series[0].t_ns) / 1e9)
