"""NVIDIA GPU telemetry through NVML (the `pynvml` module of nvidia-ml-py).

One reading per GPU per tick, device id `nvidia:<NVML index>`. Every metric is read on its
own, so an NVML error drops that metric only. What a device does not offer (NotSupported,
NoPermission, a function the driver lacks) is remembered and not asked again, which keeps a
10 Hz tick cheap; a GPU that falls off the bus (GpuIsLost) gives no readings from then on.

Metrics: power_w, power_avg_w, energy_j (cumulative), mem_used_bytes, mem_total_bytes,
util_percent, temp_c, sm_clock_mhz, and proc_mem_bytes when the workload's pids are given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml

# Answers that will not change during a run: stop asking for that metric on that device.
# Recent bindings turn a missing unversioned function into NVMLLibraryMismatchError, which is
# not an NVMLError.
_PERMANENT: tuple[type[Exception], ...] = (
    pynvml.NVMLError_NotSupported,
    pynvml.NVMLError_NoPermission,
    pynvml.NVMLError_FunctionNotFound,
    getattr(pynvml, "NVMLLibraryMismatchError", pynvml.NVMLError_FunctionNotFound),
)
# The same, as the per-field return codes of nvmlDeviceGetFieldValues (an unknown field id
# on an older driver is an invalid argument).
_PERMANENT_CODES = {
    pynvml.NVML_ERROR_NOT_SUPPORTED,
    pynvml.NVML_ERROR_NO_PERMISSION,
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
    pynvml.NVML_ERROR_INVALID_ARGUMENT,
}

# nvmlDeviceGetPowerUsage is a 1 s average on Ampere (except GA100) and newer, instantaneous
# on older GPUs; the INSTANT field (recent drivers) is instantaneous everywhere, so power_w
# prefers it and falls back to nvmlDeviceGetPowerUsage. Both fields are in mW.
_POWER_FIELDS = {
    pynvml.NVML_FI_DEV_POWER_INSTANT: "power_w",
    pynvml.NVML_FI_DEV_POWER_AVERAGE: "power_avg_w",
}
# nvmlFieldValue_t.value is a union; valueType says which member holds the number.
_VALUE_MEMBER = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")

Readings = dict[str, float]


@dataclass
class _Gpu:
    id: str  # "nvidia:<index>"
    handle: Any
    skip: set[str] = field(default_factory=set)  # metric groups the device does not offer
    skip_fields: set[int] = field(default_factory=set)  # field ids it does not offer
    legacy: set[str] = field(default_factory=set)  # groups read by their older call


class NvmlSampler:
    """Per-GPU power, energy, memory, utilisation, temperature and SM clock, read through NVML.

    indices: NVML indices to read (default: all). pids: returns the host PIDs of the
    workload's processes each tick, for proc_mem_bytes; a container's processes have host
    PIDs too. Raises pynvml.NVMLError when NVML cannot start (no driver) or an index is bad.
    """

    scope = "accelerator"

    def __init__(
        self, indices: list[int] | None = None, pids: Callable[[], set[int]] | None = None
    ) -> None:
        pynvml.nvmlInit()  # once: an init per tick would cost milliseconds
        try:
            if indices is None:
                indices = list(range(pynvml.nvmlDeviceGetCount()))
            self._gpus = [
                _Gpu(f"nvidia:{i}", pynvml.nvmlDeviceGetHandleByIndex(i)) for i in indices
            ]
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            raise
        self._pids = pids
        self._open = True

    def read(self) -> dict[str, Readings]:
        pids = self._workload_pids()
        out: dict[str, Readings] = {}
        for gpu in list(self._gpus):
            try:
                out[gpu.id] = self._read_gpu(gpu, pids)
            except pynvml.NVMLError_GpuIsLost:
                self._gpus.remove(gpu)  # gone until a reset; the other GPUs go on
        return out

    def close(self) -> None:
        if self._open:
            self._open = False
            # The driver may already be gone at the end of a failed run; nothing to release then.
            with contextlib.suppress(pynvml.NVMLError):
                pynvml.nvmlShutdown()

    def _workload_pids(self) -> set[int] | None:
        if self._pids is None:
            return None
        try:
            return self._pids()
        except Exception:  # a failing pid source must not stop the recorder's thread
            return None

    def _read_gpu(self, gpu: _Gpu, pids: set[int] | None) -> Readings:
        values = _guard(gpu, "power_fields", _power_fields)
        if "power_w" not in values:
            values |= _guard(gpu, "power", _power_usage)
        for group, read in _READERS:
            values |= _guard(gpu, group, read)
        if pids is not None:
            values |= _guard(gpu, "procs", lambda g: _proc_mem(g, pids))
        return values


def _guard(gpu: _Gpu, group: str, read: Callable[[_Gpu], Readings]) -> Readings:
    """One metric group's readings, or none when NVML cannot give them now."""
    if group in gpu.skip:
        return {}
    try:
        return read(gpu)
    except pynvml.NVMLError_GpuIsLost:
        raise
    except _PERMANENT:
        gpu.skip.add(group)
    except pynvml.NVMLError:
        pass  # transient (Unknown, Timeout, ...): ask again next tick
    return {}


def _power_fields(gpu: _Gpu) -> Readings:
    wanted = [f for f in _POWER_FIELDS if f not in gpu.skip_fields]
    if not wanted:
        return {}
    values: Readings = {}
    for fv in pynvml.nvmlDeviceGetFieldValues(gpu.handle, wanted):
        if fv.nvmlReturn == pynvml.NVML_SUCCESS:
            mw = getattr(fv.value, _VALUE_MEMBER[fv.valueType])
            values[_POWER_FIELDS[fv.fieldId]] = mw / 1e3
        elif fv.nvmlReturn in _PERMANENT_CODES:
            gpu.skip_fields.add(fv.fieldId)
    return values


def _power_usage(gpu: _Gpu) -> Readings:
    return {"power_w": pynvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1e3}


def _energy(gpu: _Gpu) -> Readings:
    # Volta and newer; mJ since the driver was loaded.
    return {"energy_j": pynvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle) / 1e3}


def _memory(gpu: _Gpu) -> Readings:
    # v2 counts driver-reserved memory apart, so `used` is what allocations take; drivers or
    # bindings without v2 get v1, whose `used` includes the reserved part.
    if "memory" not in gpu.legacy:
        try:
            info = pynvml.nvmlDeviceGetMemoryInfo(gpu.handle, version=pynvml.nvmlMemory_v2)
            return {"mem_used_bytes": info.used, "mem_total_bytes": info.total}
        except (*_PERMANENT, TypeError, AttributeError):
            gpu.legacy.add("memory")
    info = pynvml.nvmlDeviceGetMemoryInfo(gpu.handle)
    return {"mem_used_bytes": info.used, "mem_total_bytes": info.total}


def _util(gpu: _Gpu) -> Readings:
    return {"util_percent": pynvml.nvmlDeviceGetUtilizationRates(gpu.handle).gpu}


def _temp(gpu: _Gpu) -> Readings:
    # nvmlDeviceGetTemperature is deprecated (to be removed with CUDA 14); its successor is
    # in recent bindings and drivers only.
    sensor = pynvml.NVML_TEMPERATURE_GPU
    read_v = getattr(pynvml, "nvmlDeviceGetTemperatureV", None)
    if read_v is not None and "temp" not in gpu.legacy:
        try:
            return {"temp_c": read_v(gpu.handle, sensor)}
        except _PERMANENT:
            gpu.legacy.add("temp")
    return {"temp_c": pynvml.nvmlDeviceGetTemperature(gpu.handle, sensor)}


def _sm_clock(gpu: _Gpu) -> Readings:
    return {"sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(gpu.handle, pynvml.NVML_CLOCK_SM)}


_READERS: tuple[tuple[str, Callable[[_Gpu], Readings]], ...] = (
    ("energy", _energy),
    ("memory", _memory),
    ("util", _util),
    ("temp", _temp),
    ("clock", _sm_clock),
)


def _proc_mem(gpu: _Gpu, pids: set[int]) -> Readings:
    """GPU memory used by the given processes. NVML gives None for a process whose memory it
    cannot attribute (e.g. under MIG without privileges); that process counts as 0."""
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle)
    return {"proc_mem_bytes": sum(p.usedGpuMemory or 0 for p in procs if p.pid in pids)}
