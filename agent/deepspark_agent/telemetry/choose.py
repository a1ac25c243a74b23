"""Which accelerator samplers a run gets, from `--telemetry`."""

from __future__ import annotations

import shutil

import pynvml

from deepspark_agent.devices import node_counts
from deepspark_agent.telemetry.nvml import NvmlSampler
from deepspark_agent.telemetry.process import tree_pids
from deepspark_agent.telemetry.recorder import SamplerFactory, no_samplers
from deepspark_agent.telemetry.smi import TOOLS, SmiSampler, TelemetryError
from deepspark_core.errors import DeepSparkError

CHOICES = "auto, nvml, smi:<tool>, none"


class TelemetryChoiceError(DeepSparkError):
    """A --telemetry choice this host cannot honour."""


def nvml_available() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver library, or no GPU
        return False
    pynvml.nvmlShutdown()
    return True


def _nvml() -> SamplerFactory:
    # The workload's processes, looked up at every tick: ranks start after the sampler.
    return lambda pid: [NvmlSampler(pids=lambda: tree_pids(pid))]


def _smi(tool: str) -> SamplerFactory:
    if tool not in TOOLS:
        raise TelemetryChoiceError(f"--telemetry smi:{tool}: known tools: {', '.join(TOOLS)}")
    if shutil.which(TOOLS[tool].binary) is None:
        raise TelemetryChoiceError(f"--telemetry smi:{tool}: {TOOLS[tool].binary} not on PATH")

    def factory(pid: int) -> list[SmiSampler]:
        try:
            return [SmiSampler(tool)]
        except TelemetryError:  # the tool vanished since the check: run without it
            return []

    return factory


def accelerator_samplers(choice: str) -> tuple[str, SamplerFactory]:
    """(what was chosen, in words; the factory).

    auto: NVML when an NVIDIA driver answers, else the monitoring tool of a vendor whose
    devices are present and whose tool is on PATH, else none.
    """
    if choice == "none":
        return "none", no_samplers
    if choice == "nvml":
        if not nvml_available():
            raise TelemetryChoiceError("--telemetry nvml: NVML does not start (no driver or GPU)")
        return "nvml", _nvml()
    if choice.startswith("smi:"):
        tool = choice.removeprefix("smi:")
        return tool, _smi(tool)
    if choice != "auto":
        raise TelemetryChoiceError(f"--telemetry {choice!r}: expected {CHOICES}")
    if nvml_available():
        return "nvml", _nvml()
    vendors = set(node_counts())
    for name, tool in TOOLS.items():
        if tool.vendor in vendors and shutil.which(tool.binary):
            return name, _smi(name)
    return "none (no accelerator sensor found)", no_samplers
