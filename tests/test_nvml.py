"""NvmlSampler against a recorded fake of the pynvml calls: no GPU needed."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from deepspark_agent.telemetry import nvml
from deepspark_agent.telemetry.nvml import NvmlSampler

GiB = 1 << 30


def fields(instant_mw: int | None, average_mw: int | None) -> dict[int, int | None]:
    """nvmlDeviceGetFieldValues answers by field id; None: the field is not supported."""
    return {
        pynvml.NVML_FI_DEV_POWER_INSTANT: instant_mw,
        pynvml.NVML_FI_DEV_POWER_AVERAGE: average_mw,
    }


def proc(pid: int, used: int | None) -> SimpleNamespace:
    return SimpleNamespace(pid=pid, usedGpuMemory=used)


# One healthy H100's answers, as recorded; a list is answered in turn, its last item repeated.
H100: dict[str, list[Any]] = {
    "nvmlDeviceGetFieldValues": [fields(instant_mw=312_456, average_mw=298_000)],
    "nvmlDeviceGetPowerUsage": [298_000],
    "nvmlDeviceGetTotalEnergyConsumption": [1_234_567_890],  # mJ
    "nvmlDeviceGetMemoryInfo_v2": [SimpleNamespace(used=40 * GiB, total=80 * GiB, reserved=GiB)],
    "nvmlDeviceGetMemoryInfo": [SimpleNamespace(used=41 * GiB, total=80 * GiB)],
    "nvmlDeviceGetUtilizationRates": [SimpleNamespace(gpu=97, memory=41)],
    "nvmlDeviceGetTemperatureV": [64],
    "nvmlDeviceGetTemperature": [63],
    "nvmlDeviceGetClockInfo": [1980],
    "nvmlDeviceGetComputeRunningProcesses": [
        [proc(1234, 30 * GiB), proc(1240, 2 * GiB), proc(999, 5 * GiB)]
    ],
}
H100_READING = {
    "power_w": 312.456,
    "power_avg_w": 298.0,
    "energy_j": 1_234_567.89,
    "mem_used_bytes": 40 * GiB,
    "mem_total_bytes": 80 * GiB,
    "util_percent": 97,
    "temp_c": 64,
    "sm_clock_mhz": 1980,
}


class FakeNvml:
    """Stands in for the pynvml module: scripted answers per (function, device), calls logged.

    Handles are the device indices. Constants and the NVMLError classes are the real ones;
    a function not defined here is absent, as in an older binding, so nothing reaches the
    real library.
    """

    def __init__(self, *devices: dict[str, list[Any]]) -> None:
        self.devices = [{name: list(answers) for name, answers in d.items()} for d in devices]
        self.calls: list[tuple[str, int | None]] = []
        self.count = defaultdict(int)

    def __getattr__(self, name: str) -> Any:
        real = getattr(pynvml, name)
        if name.startswith("nvml") and callable(real):
            raise AttributeError(name)
        return real

    def _log(self, name: str, handle: int | None = None) -> None:
        self.calls.append((name, handle))
        self.count[name] += 1

    def _answer(self, name: str, handle: int) -> Any:
        self._log(name, handle)
        answers = self.devices[handle].get(name)
        if not answers:
            raise pynvml.NVMLError_NotSupported()
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException) or (
            isinstance(answer, type) and issubclass(answer, BaseException)
        ):
            raise answer()
        return answer

    def calls_for(self, handle: int) -> list[str]:
        return [name for name, h in self.calls if h == handle]

    # -- the functions nvml.py calls --------------------------------------------------------
    def nvmlInit(self) -> None:
        self._log("nvmlInit")

    def nvmlShutdown(self) -> None:
        self._log("nvmlShutdown")

    def nvmlDeviceGetCount(self) -> int:
        self._log("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._log("nvmlDeviceGetHandleByIndex", index)
        if index >= len(self.devices):
            raise pynvml.NVMLError_InvalidArgument()
        return index

    def nvmlDeviceGetFieldValues(self, handle: int, field_ids: list[int]) -> list[Any]:
        by_id = self._answer("nvmlDeviceGetFieldValues", handle)
        return [_field_value(f, by_id.get(f)) for f in field_ids]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return self._answer("nvmlDeviceGetPowerUsage", handle)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        return self._answer("nvmlDeviceGetTotalEnergyConsumption", handle)

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: int | None = None) -> Any:
        if version is None:
            return self._answer("nvmlDeviceGetMemoryInfo", handle)
        assert version == pynvml.nvmlMemory_v2
        return self._answer("nvmlDeviceGetMemoryInfo_v2", handle)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return self._answer("nvmlDeviceGetUtilizationRates", handle)

    def nvmlDeviceGetTemperatureV(self, handle: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._answer("nvmlDeviceGetTemperatureV", handle)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._answer("nvmlDeviceGetTemperature", handle)

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        assert clock == pynvml.NVML_CLOCK_SM
        return self._answer("nvmlDeviceGetClockInfo", handle)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        return self._answer("nvmlDeviceGetComputeRunningProcesses", handle)


def _field_value(field_id: int, mw: int | None) -> SimpleNamespace:
    """An nvmlFieldValue_t: an unsigned int in mW, or a per-field NotSupported."""
    if mw is None:
        return SimpleNamespace(fieldId=field_id, nvmlReturn=pynvml.NVML_ERROR_NOT_SUPPORTED)
    return SimpleNamespace(
        fieldId=field_id,
        nvmlReturn=pynvml.NVML_SUCCESS,
        valueType=pynvml.NVML_VALUE_TYPE_UNSIGNED_INT,
        value=SimpleNamespace(uiVal=mw),
    )


def with_answers(base: dict[str, list[Any]], **answers: list[Any]) -> dict[str, list[Any]]:
    return {**base, **answers}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """Install a FakeNvml where nvml.py looks up pynvml; call it with the devices' scripts."""

    def install(*devices: dict[str, list[Any]]) -> FakeNvml:
        module = FakeNvml(*devices)
        monkeypatch.setattr(nvml, "pynvml", module)
        return module

    return install


def test_all_metrics_with_exact_units(fake):
    fake(H100)
    sampler = NvmlSampler()
    assert sampler.scope == "accelerator"
    assert sampler.read() == {"nvidia:0": H100_READING}


def test_not_supported_power_and_energy_on_one_device_only(fake):
    unsupported = pynvml.NVMLError_NotSupported
    old = with_answers(
        H100,
        nvmlDeviceGetFieldValues=[unsupported],
        nvmlDeviceGetPowerUsage=[unsupported],
        nvmlDeviceGetTotalEnergyConsumption=[unsupported],
    )
    nv = fake(H100, old)
    sampler = NvmlSampler()
    for _ in range(3):
        reading = sampler.read()
        assert reading["nvidia:0"] == H100_READING
        assert reading["nvidia:1"] == {
            k: v for k, v in H100_READING.items() if k not in {"power_w", "power_avg_w", "energy_j"}
        }
    # Asked once, then remembered: a 10 Hz tick does not retry what the device lacks.
    asked = nv.calls_for(1)
    for name in (
        "nvmlDeviceGetFieldValues",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetTotalEnergyConsumption",
    ):
        assert asked.count(name) == 1
    assert asked.count("nvmlDeviceGetTemperatureV") == 3


def test_no_energy_counter_keeps_power_from_power_usage(fake):
    # A pre-Volta GPU on an older driver: no energy counter, neither power field.
    pascal = with_answers(
        H100,
        nvmlDeviceGetFieldValues=[fields(instant_mw=None, average_mw=None)],
        nvmlDeviceGetPowerUsage=[187_250],
        nvmlDeviceGetTotalEnergyConsumption=[pynvml.NVMLError_NotSupported],
    )
    nv = fake(pascal)
    sampler = NvmlSampler()
    first, second = sampler.read()["nvidia:0"], sampler.read()["nvidia:0"]
    assert first == second
    assert "energy_j" not in first and "power_avg_w" not in first
    assert first["power_w"] == 187.25
    # Both fields were refused per field: the call is not made again.
    assert nv.calls_for(0).count("nvmlDeviceGetFieldValues") == 1


def test_average_field_alone_leaves_power_w_to_power_usage(fake):
    ampere_r525 = with_answers(H100, nvmlDeviceGetFieldValues=[fields(None, 250_000)])
    fake(ampere_r525)
    reading = NvmlSampler().read()["nvidia:0"]
    assert reading["power_w"] == 298.0  # nvmlDeviceGetPowerUsage
    assert reading["power_avg_w"] == 250.0


def test_memory_v2_failing_falls_back_to_v1(fake):
    old_driver = with_answers(H100, nvmlDeviceGetMemoryInfo_v2=[pynvml.NVMLError_FunctionNotFound])
    nv = fake(old_driver)
    sampler = NvmlSampler()
    for _ in range(3):
        reading = sampler.read()["nvidia:0"]
        assert reading["mem_used_bytes"] == 41 * GiB
        assert reading["mem_total_bytes"] == 80 * GiB
    assert nv.calls_for(0).count("nvmlDeviceGetMemoryInfo_v2") == 1
    assert nv.calls_for(0).count("nvmlDeviceGetMemoryInfo") == 3


def test_transient_error_drops_the_metric_for_one_tick_only(fake):
    flaky = with_answers(H100, nvmlDeviceGetTemperatureV=[pynvml.NVMLError_Unknown, 65])
    fake(flaky)
    sampler = NvmlSampler()
    assert "temp_c" not in sampler.read()["nvidia:0"]
    assert sampler.read()["nvidia:0"]["temp_c"] == 65


def test_gpu_lost_mid_run_disappears_and_the_other_stays(fake):
    lost = pynvml.NVMLError_GpuIsLost
    falling = with_answers(H100, nvmlDeviceGetFieldValues=[fields(300_000, 290_000), lost])
    nv = fake(H100, falling)
    sampler = NvmlSampler()
    assert set(sampler.read()) == {"nvidia:0", "nvidia:1"}
    calls_before = len(nv.calls_for(1))
    for _ in range(3):
        assert sampler.read() == {"nvidia:0": H100_READING}
    assert len(nv.calls_for(1)) == calls_before + 1  # the call that found it lost, no more


def test_gpu_lost_in_any_metric_drops_the_whole_reading(fake):
    falling = with_answers(H100, nvmlDeviceGetClockInfo=[1980, pynvml.NVMLError_GpuIsLost])
    fake(falling)
    sampler = NvmlSampler()
    assert sampler.read() == {"nvidia:0": H100_READING}
    assert sampler.read() == {}  # no half reading from the tick that found it lost
    assert sampler.read() == {}


def test_init_once_across_reads_and_shutdown_on_close(fake):
    nv = fake(H100, H100)
    sampler = NvmlSampler()
    for _ in range(50):
        sampler.read()
    assert nv.count["nvmlInit"] == 1
    assert nv.count["nvmlShutdown"] == 0
    sampler.close()
    sampler.close()  # the recorder may close twice on error paths: one shutdown
    assert nv.count["nvmlShutdown"] == 1
    assert nv.count["nvmlInit"] == 1


def test_indices_select_devices_and_a_bad_index_shuts_nvml_down(fake):
    nv = fake(H100, H100, H100)
    assert set(NvmlSampler(indices=[2]).read()) == {"nvidia:2"}
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        NvmlSampler(indices=[0, 7])
    assert nv.count["nvmlInit"] == nv.count["nvmlShutdown"] + 1  # the failed one released


def test_process_memory_counts_only_the_workload_pids(fake):
    fake(H100, H100)
    workload = {1234, 1240}
    reading = NvmlSampler(pids=lambda: workload).read()
    assert reading["nvidia:0"]["proc_mem_bytes"] == 32 * GiB
    workload.clear()  # the tree is asked every tick; no process of it on the GPU is a 0
    assert NvmlSampler(pids=lambda: workload).read()["nvidia:1"]["proc_mem_bytes"] == 0


def test_process_memory_unknown_for_a_process_counts_as_zero(fake):
    mig = with_answers(
        H100, nvmlDeviceGetComputeRunningProcesses=[[proc(1234, None), proc(1240, GiB)]]
    )
    fake(mig)
    assert NvmlSampler(pids=lambda: {1234, 1240}).read()["nvidia:0"]["proc_mem_bytes"] == GiB


def test_no_pids_no_process_query(fake):
    nv = fake(H100)
    reading = NvmlSampler().read()["nvidia:0"]
    assert "proc_mem_bytes" not in reading
    assert "nvmlDeviceGetComputeRunningProcesses" not in nv.calls_for(0)


def test_a_failing_pid_source_drops_only_process_memory(fake):
    fake(H100)

    def pids() -> set[int]:
        raise ProcessLookupError("workload ended")

    assert NvmlSampler(pids=pids).read() == {"nvidia:0": H100_READING}


def test_temperature_falls_back_to_the_deprecated_call(fake, monkeypatch):
    old_driver = with_answers(H100, nvmlDeviceGetTemperatureV=[pynvml.NVMLError_FunctionNotFound])
    nv = fake(old_driver)
    sampler = NvmlSampler()
    assert [sampler.read()["nvidia:0"]["temp_c"] for _ in range(3)] == [63, 63, 63]
    assert nv.calls_for(0).count("nvmlDeviceGetTemperatureV") == 1
    # An older binding has no nvmlDeviceGetTemperatureV at all.
    monkeypatch.delattr(FakeNvml, "nvmlDeviceGetTemperatureV")
    assert NvmlSampler().read()["nvidia:0"]["temp_c"] == 63


def test_a_missing_versioned_process_query_is_not_retried(fake):
    # Recent bindings raise NVMLLibraryMismatchError (not an NVMLError) for it on old drivers.
    mismatch = getattr(pynvml, "NVMLLibraryMismatchError", pynvml.NVMLError_FunctionNotFound)
    old_driver = with_answers(H100, nvmlDeviceGetComputeRunningProcesses=[mismatch])
    nv = fake(old_driver)
    sampler = NvmlSampler(pids=lambda: {1234})
    assert sampler.read() == sampler.read() == {"nvidia:0": H100_READING}
    assert nv.calls_for(0).count("nvmlDeviceGetComputeRunningProcesses") == 1
