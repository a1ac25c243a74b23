"""Telemetry: samplers per source, and the recorder that runs them beside a workload."""

from deepspark_agent.telemetry.process import ProcessTreeSampler
from deepspark_agent.telemetry.recorder import DEFAULT_HZ, Recorder, Sampler, load_series

__all__ = ["DEFAULT_HZ", "ProcessTreeSampler", "Recorder", "Sampler", "load_series"]
