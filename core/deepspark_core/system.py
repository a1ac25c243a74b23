"""The system description stored with every result: the host and its accelerators, as the
fields of MLPerf's system description that can be read automatically. The agent's `devices`
module probes a machine for it; the collector only reads it."""

from __future__ import annotations

from collections.abc import Iterable
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

    def mlperf(self) -> dict[str, str | int]:
        """The MLPerf system-description fields (mlperf_logging's names) this fills; the
        others (submitter, interconnects, storage, cooling, framework...) are the
        submitter's to write."""
        host, accs = self.host, self.accelerators
        fields: dict[str, str | int | None] = {
            "number_of_nodes": 1,
            "host_processors_per_node": host.cpu_sockets,
            "host_processor_model_name": host.cpu_model,
            "host_processor_core_count": (
                host.cpu_cores // host.cpu_sockets if host.cpu_cores and host.cpu_sockets else None
            ),
            "host_processor_vcpu_count": host.cpu_threads,
            "host_processor_frequency": f"{host.cpu_max_mhz:.0f} MHz" if host.cpu_max_mhz else None,
            "host_memory_capacity": _gib(host.memory_bytes),
            "accelerators_per_node": len(accs),
            "accelerator_model_name": _joined(a.name for a in accs),
            "accelerator_memory_capacity": _joined(_gib(a.memory_bytes) for a in accs),
            "operating_system": f"{host.os} (kernel {host.kernel})",
            "other_software_stack": _software(self),
        }
        return {k: v for k, v in fields.items() if v not in (None, "")}


def _gib(n: int | None) -> str | None:
    return None if n is None else f"{n / 2**30:.0f} GiB"


def _joined(values: Iterable[str | None]) -> str:
    """Distinct values in first-seen order: one name for a homogeneous node."""
    return ", ".join(dict.fromkeys(v for v in values if v))


def _software(system: SystemDescription) -> str:
    parts = [
        f"{vendor} driver {a.driver_version}" + (f", CUDA {a.sdk_version}" if a.sdk_version else "")
        for vendor, a in {a.vendor: a for a in system.accelerators if a.driver_version}.items()
    ]
    if system.docker_version:
        parts.append(f"Docker {system.docker_version}")
    return ", ".join(parts)
