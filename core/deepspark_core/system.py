"""The system description stored with every result: the host and its accelerators, as the
fields of MLPerf's system description that can be read automatically. The agent's `devices`
module probes a machine for it; the collector only reads it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Accelerator(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vendor: str  # a key of the agent's devices.VISIBLE_DEVICES
    index: int  # NVIDIA: the NVML (nvidia-smi) index; others: the order of the device nodes
    source: Literal["nvml", "device-node"]
    name: str | None = None
    memory_bytes: int | None = None
    bus_id: str | None = None
    uuid: str | None = None
    driver_version: str | None = None
    sdk_version: str | None = None  # NVIDIA: the newest CUDA the driver supports


class Host(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hostname: str
    os: str  # the distribution's name when readable
    kernel: str
    arch: str
    cpu_model: str
    cpu_sockets: int | None  # None where /proc/cpuinfo has no physical ids (many ARM hosts)
    cpu_cores: int | None  # physical cores, all sockets
    cpu_threads: int  # logical CPUs
    cpu_max_mhz: float | None
    memory_bytes: int
    python: str


class SystemDescription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: Host
    accelerators: list[Accelerator]
    docker_version: str | None = None  # the engine's, when one answers
