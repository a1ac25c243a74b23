"""The idle floor: every power source a run is sampled with, recorded with nothing running
before the first run (`idle.jsonl`, telemetry lines like a run's), so that the row can show
the power during the windows above it. The core reads it (`node_power.idle_floor`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from deepspark_agent.telemetry.node import NodeFactory
from deepspark_agent.telemetry.recorder import DEFAULT_HZ, Recorder, Sampler, SamplerFactory

DEFAULT_IDLE_S = 30.0


def idle_samplers(accelerators: SamplerFactory, node: NodeFactory) -> list[Sampler]:
    """The accelerators' samplers (no workload: the agent's own process stands for it, so
    that per-process readings cover nothing of a run) and the node's power sources."""
    return [*accelerators(os.getpid()), *node()]


def record_idle(path: Path, samplers: list[Sampler], seconds: float, hz: float = DEFAULT_HZ) -> str:
    """Sample for `seconds` into path (created, empty when no sampler answers: nothing to
    wait for then); one line of what was done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    if not samplers:
        return "idle floor: no power source to sample"
    with Recorder(samplers, path, hz):
        time.sleep(seconds)
    scopes = ", ".join(sorted({s.scope for s in samplers}))
    return f"idle floor: {seconds:g} s with nothing running ({scopes})"
