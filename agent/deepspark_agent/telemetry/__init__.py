"""Telemetry: samplers per source, and the recorder that runs them beside a workload."""

from deepspark_agent.telemetry.process import ProcessTreeSampler
from deepspark_agent.telemetry.recorder import (
    DEFAULT_HZ,
    SCOPES,
    Recorder,
    Sampler,
    load_series,
    sample_rate_hz,
)

__all__ = [
    "DEFAULT_HZ",
    "SCOPES",
    "ProcessTreeSampler",
    "Recorder",
    "Sampler",
    "load_series",
    "sample_rate_hz",
]
