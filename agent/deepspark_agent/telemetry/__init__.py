"""Telemetry: samplers per source, and the recorder that runs them beside a workload.
Reading a recording back is the core's (`deepspark_core.series`)."""

from deepspark_agent.telemetry.process import ProcessTreeSampler
from deepspark_agent.telemetry.recorder import (
    DEFAULT_HZ,
    Recorder,
    Sampler,
    SamplerFactory,
    no_samplers,
)

__all__ = [
    "DEFAULT_HZ",
    "ProcessTreeSampler",
    "Recorder",
    "Sampler",
    "SamplerFactory",
    "no_samplers",
]
