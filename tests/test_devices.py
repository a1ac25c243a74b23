"""Accelerator and host detection: NVML through a fake, device nodes in a tmp /dev."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from deepspark_agent import devices
from deepspark_agent.devices import (
    describe_system,
    detect_accelerators,
    node_counts,
    visible_devices_env,
)
from deepspark_core.system import Accelerator, SystemDescription

GiB = 1 << 30


class FakeNvml:
    """The pynvml calls devices.py makes, answered from a recorded two-GPU machine.

    gpus: per index, the answers by function name; an exception class is raised instead.
    Constants and NVMLError classes are the real binding's; a function not defined here is
    absent, so nothing reaches the real library.
    """

    def __init__(self, gpus: list[dict[str, Any]], init: type[Exception] | None = None) -> None:
        self.gpus, self.init_error = gpus, init
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(pynvml, name)
        if name.startswith("nvml") and callable(real):
            raise AttributeError(name)
        return real

    def _answer(self, value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, Exception):
            raise value()
        return value

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error:
            raise self.init_error()

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return self._answer(self.gpus[index].get("handle", index))

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._answer(self.gpus[handle]["name"])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return self._answer(SimpleNamespace(total=self.gpus[handle]["memory"], used=0))

    def nvmlDeviceGetPciInfo(self, handle: int) -> Any:
        return SimpleNamespace(busId=self.gpus[handle]["bus_id"])  # bytes, as in the struct

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._answer(self.gpus[handle]["uuid"])


H100 = {
    "name": "NVIDIA H100 80GB HBM3",
    "memory": 81559 * (1 << 20),
    "bus_id": b"00000000:18:00.0",
    "uuid": "GPU-8d3a2c1e-0000-1111-2222-333344445555",
}


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch):
    def install(gpus: list[dict[str, Any]], init: type[Exception] | None = None) -> FakeNvml:
        fake = FakeNvml(gpus, init)
        monkeypatch.setattr(devices, "pynvml", fake)
        return fake

    return install


def touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def test_nvidia_through_nvml(nvml, tmp_path):
    fake = nvml([H100, {**H100, "bus_id": b"00000000:2A:00.0", "uuid": pynvml.NVMLError_Unknown}])
    found = detect_accelerators(dev=tmp_path, sysfs=tmp_path)
    assert found[0] == Accelerator(
        vendor="nvidia",
        index=0,
        source="nvml",
        name="NVIDIA H100 80GB HBM3",
        memory_bytes=81559 * (1 << 20),
        bus_id="00000000:18:00.0",
        uuid="GPU-8d3a2c1e-0000-1111-2222-333344445555",
        driver_version="550.54.15",
        sdk_version="12.4",
    )
    assert (found[1].index, found[1].bus_id, found[1].uuid) == (1, "00000000:2A:00.0", None)
    assert fake.calls == ["nvmlInit", "nvmlShutdown"]


def test_a_gpu_nvml_cannot_open_is_left_out(nvml, tmp_path):
    nvml([{"handle": pynvml.NVMLError_GpuIsLost}, H100])
    found = detect_accelerators(dev=tmp_path, sysfs=tmp_path)
    assert [a.index for a in found] == [1]


def test_no_nvml_means_no_nvidia_details_but_nodes_still_count(nvml, tmp_path):
    nvml([H100], init=pynvml.NVMLError_LibraryNotFound)
    dev = touch(tmp_path / "dev", "nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm")
    found = detect_accelerators(dev=dev, sysfs=tmp_path / "sys")
    assert found == [
        Accelerator(vendor="nvidia", index=0, source="device-node"),
        Accelerator(vendor="nvidia", index=1, source="device-node"),
    ]


def test_nvml_devices_are_not_counted_again_by_node(nvml, tmp_path):
    nvml([H100])
    dev = touch(tmp_path / "dev", "nvidia0", "nvidiactl", "davinci0")
    found = detect_accelerators(dev=dev, sysfs=tmp_path / "sys")
    assert [(a.vendor, a.source) for a in found] == [("nvidia", "nvml"), ("ascend", "device-node")]


def test_device_nodes_by_vendor(tmp_path):
    dev = touch(
        tmp_path / "dev",
        *[f"davinci{i}" for i in range(8)],
        "davinci_manager",
        "devmm_svm",
        "hisi_hdc",
        "xpu0",
        "xpu1",
        "xpuctrl",
        "cambricon_dev0",
        "cambricon_ctl",
        "cambricon_ipcm0",
        "iluvatar0",
        "iluvatar1",
        "itrctl",
        "mtgpu.0",
        "gcu0",
    )
    assert node_counts(dev, sysfs=tmp_path / "sys") == {
        "ascend": 8,
        "kunlunxin": 2,
        "cambricon": 1,
        "iluvatar": 2,
        "mthreads": 1,
        "enflame": 1,
    }
    assert node_counts(tmp_path / "empty", tmp_path / "sys") == {}


def test_amd_render_nodes_are_told_apart_by_pci_vendor(tmp_path):
    dev = touch(tmp_path / "dev", "kfd", "dri/renderD128", "dri/renderD129", "dri/renderD130")
    sysfs = tmp_path / "sys"
    for node, vendor in (
        ("renderD128", "0x1002"),
        ("renderD129", "0x1002"),
        ("renderD130", "0x8086"),
    ):
        (sysfs / "class/drm" / node / "device").mkdir(parents=True)
        (sysfs / "class/drm" / node / "device/vendor").write_text(vendor + "\n")
    assert node_counts(dev, sysfs) == {"amd": 2}  # the Intel iGPU is not one


def test_hygon_without_sysfs_by_its_mkfd(tmp_path):
    dev = touch(tmp_path / "dev", "kfd", "mkfd", "dri/renderD128", "dri/renderD129")
    assert node_counts(dev, tmp_path / "no-sys") == {"hygon": 2}
    (dev / "mkfd").unlink()
    assert node_counts(dev, tmp_path / "no-sys") == {"amd": 2}


def test_render_nodes_without_kfd_are_not_accelerators(tmp_path):
    dev = touch(tmp_path / "dev", "dri/renderD128", "dri/card0")
    assert node_counts(dev, tmp_path / "sys") == {}


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("nvidia", {"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}),
        ("amd", {"ROCR_VISIBLE_DEVICES": "2,3"}),
        ("hygon", {"HIP_VISIBLE_DEVICES": "2,3"}),
        ("ascend", {"ASCEND_RT_VISIBLE_DEVICES": "2,3"}),
        ("cambricon", {"MLU_VISIBLE_DEVICES": "2,3"}),
        ("kunlunxin", {"XPU_VISIBLE_DEVICES": "2,3"}),
        ("iluvatar", {"CUDA_VISIBLE_DEVICES": "2,3"}),
        ("mthreads", {"MUSA_VISIBLE_DEVICES": "2,3"}),
        ("enflame", {"TOPS_VISIBLE_DEVICES": "2,3"}),
        ("intel", {"ZE_AFFINITY_MASK": "2,3"}),
        ("gaudi", {"HABANA_VISIBLE_MODULES": "2,3"}),
    ],
)
def test_visible_devices_env(vendor, expected):
    assert visible_devices_env(vendor, [2, 3]) == expected


def test_visible_devices_env_rejects_unknown_vendor_and_negative_index():
    with pytest.raises(ValueError, match="vendor 'tpu'"):
        visible_devices_env("tpu", [0])
    with pytest.raises(ValueError, match=">= 0"):
        visible_devices_env("nvidia", [-1])
    # No indices hides every device, as the variable itself does.
    assert visible_devices_env("ascend", []) == {"ASCEND_RT_VISIBLE_DEVICES": ""}


def test_every_node_vendor_has_a_visible_devices_variable():
    render = {"amd", "hygon", "metax", "intel"}  # by DRM render node
    assert set(devices.DEVICE_NODES) | render <= set(devices.VISIBLE_DEVICES)


def test_describe_system_on_this_host_never_raises(tmp_path):
    system = describe_system(dev=tmp_path, sysfs=tmp_path)  # a GPU-less /dev
    host = system.host
    assert host.hostname and host.os and host.kernel and host.arch and host.cpu_model
    assert host.cpu_threads >= 1 and host.memory_bytes > 0
    if not list(Path("/dev").glob("nvidia[0-9]*")):  # this machine has no GPU
        assert system.accelerators == []
    # The result file embeds it: a JSON round trip gives the same description.
    assert SystemDescription.model_validate_json(system.model_dump_json()) == system


def test_describe_system_without_nvml_or_docker(monkeypatch, nvml, tmp_path):
    nvml([H100], init=pynvml.NVMLError_LibraryNotFound)

    def no_engine(**_: Any) -> None:
        raise ConnectionError("no docker socket")

    monkeypatch.setattr(devices.docker, "from_env", no_engine)
    system = describe_system(dev=tmp_path, sysfs=tmp_path)
    assert system.accelerators == [] and system.docker_version is None
    assert system.host.cpu_threads >= 1


def test_cpu_sockets_and_model_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: 0\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: 1\n"
    )
    assert devices.cpu_model(cpuinfo) == "Intel(R) Xeon(R) Platinum 8480+"
    assert devices.cpu_sockets(cpuinfo) == 2
    assert devices.cpu_sockets(tmp_path / "missing") is None
