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
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

DEFAULT_HZ = 10.0


class Sampler(Protocol):
    scope: str  # what the figures cover: "accelerator", "process-tree", ...

    def read(self) -> dict[str, dict[str, float]]:
        """One tick: {device id: {metric: value}}; a metric that cannot be read is left out."""
        ...

    def close(self) -> None:
        """Release what the sampler holds (a library handle, a streaming process)."""
        ...


# Accelerator telemetry for a run, given the workload's root process id on the host.
SamplerFactory = Callable[[int], list[Sampler]]


def no_samplers(pid: int) -> list[Sampler]:
    return []


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
