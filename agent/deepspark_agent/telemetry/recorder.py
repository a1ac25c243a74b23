"""The recorder: samplers called at a fixed rate, one JSON line per device per tick.

Telemetry is sampled beside a run on the host's monotonic clock (the clock events use too).

A sampler reads one tick of metrics per device; the recorder calls every sampler at a fixed
rate in a background thread and appends one JSON line per device per tick:
`{"t_ns": ..., "scope": "container", "device": "container", "mem_used_bytes": ...}`.
The metrics engine later keeps only the readings inside the measured windows.

A sampler with its own `hz` (a node power source: IPMI and Redfish 1 Hz, RAPL 10 Hz) is read
at that rate; the others at the recorder's. Each rate is one thread, so a slow source (an
ipmitool process, a BMC's HTTP answer, up to seconds) never delays the accelerator's ticks;
a recorder without such samplers runs one thread, as before.
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
    """Runs samplers in daemon threads, one per rate (`hz`, or a sampler's own), writing JSON
    lines to `path`."""

    def __init__(self, samplers: list[Sampler], path: Path, hz: float = DEFAULT_HZ) -> None:
        self._samplers = samplers
        self._path = path
        rates: dict[float, list[Sampler]] = {}
        for sampler in samplers:
            rates.setdefault(getattr(sampler, "hz", None) or hz, []).append(sampler)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one line at a time into the file the threads share
        self._threads = [
            threading.Thread(
                target=self._loop, args=(group, int(1e9 / rate)), name="telemetry", daemon=True
            )
            for rate, group in rates.items()
        ]
        self.cpu_s = 0.0  # CPU time the sampling threads used: their cost, for the benchmark

    def __enter__(self) -> Recorder:
        self._out = self._path.open("a")
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._out.close()
        for sampler in self._samplers:
            sampler.close()

    def _loop(self, samplers: list[Sampler], period_ns: int) -> None:
        next_ns = time.monotonic_ns()
        while not self._stop.is_set():
            lines = []
            for sampler in samplers:
                t_ns = time.monotonic_ns()
                for device, metrics in sampler.read().items():
                    row = {"t_ns": t_ns, "scope": sampler.scope, "device": device, **metrics}
                    lines.append(json.dumps(row) + "\n")
            with self._lock:
                self._out.write("".join(lines))
                self._out.flush()
            # Fixed-rate schedule: a slow tick does not shift every later one.
            next_ns += period_ns
            self._stop.wait(max(0.0, (next_ns - time.monotonic_ns()) / 1e9))
        with self._lock:
            self.cpu_s += time.thread_time()
