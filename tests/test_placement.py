"""`--devices`: fake device trees and recorded vendor tool outputs resolved to Placements; what
the runtimes pass for them; doctor's framework check."""

from __future__ import annotations

import json
from pathlib import Path

import pynvml
import pytest
from docker.types import DeviceRequest

from conftest import DATA
from deepspark_agent import devices, placement
from deepspark_agent.placement import DevicesError, Placement, Roots, resolve
from deepspark_agent.runtime.docker import cdi_kinds, container_devices, passes
from deepspark_core.results import Result
from test_devices import H100, FakeNvml

SMI = DATA / "vendor-smi"


def tree(tmp_path: Path, nodes: list[str], pci: dict[str, tuple[str, str]] | None = None) -> Roots:
    """A fake host: empty files for the nodes under dev; per render node its PCI vendor and
    slot under sys/class/drm."""
    roots = Roots(dev=tmp_path / "dev", sysfs=tmp_path / "sys", proc=tmp_path / "proc")
    for name in nodes:
        (roots.dev / name).parent.mkdir(parents=True, exist_ok=True)
        (roots.dev / name).write_text("")
    for node, (vendor, slot) in (pci or {}).items():
        device = roots.sysfs / "class/drm" / node / "device"
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
        (device / "uevent").write_text(f"DRIVER=x\nPCI_SLOT_NAME={slot}\n")
    return roots


def recorded(tool: str, file: str):
    """A tool runner that answers `tool` with a recorded output, and nothing else."""
    text = (SMI / file).read_text()
    return lambda command: text if command[0] == tool else None


def renders(first: int, n: int, vendor: str) -> dict[str, tuple[str, str]]:
    return {f"renderD{first + i}": (vendor, f"0000:{0x18 + i:02x}:00.0") for i in range(n)}


def render_nodes(first: int, n: int) -> list[str]:
    return [f"dri/renderD{first + i}" for i in range(n)]


# Per vendor: the device tree, the tool and its recorded output, then what auto must find.
VENDORS = {
    "amd": (
        ["kfd", *render_nodes(128, 4)], renders(128, 4, "0x1002"),
        ("rocm-smi", "rocm-smi__json-telegraf-fullset__telegraf-mi100x4-rocm6.0.2.json.txt"),
        4, "rocm-smi", {"ROCR_VISIBLE_DEVICES": "0,1,2,3"}, ["kfd"],
    ),
    "hygon": (  # no sysfs in this tree: /dev/mkfd says Hygon
        ["kfd", "mkfd", *render_nodes(128, 4)], None,
        ("hy-smi", "hy-smi__default-table__paddlenlp-k100ai-dtk24.04.1.txt"),
        4, "hy-smi", {"HIP_VISIBLE_DEVICES": "0,1,2,3"}, ["kfd", "mkfd"],
    ),
    "iluvatar": (
        [f"iluvatar{i}" for i in range(16)], None,
        ("ixsmi", "ixsmi__default-table__paddlenlp-bi-v150x16-ixml4.1.0.txt"),
        16, "ixsmi", {"CUDA_VISIBLE_DEVICES": ",".join(map(str, range(16)))}, [],
    ),
    "ascend": (
        [*(f"davinci{i}" for i in range(8)), "davinci_manager", "devmm_svm", "hisi_hdc"], None,
        ("npu-smi", "npu-smi__info-table__gpustack-atlas800-9010-910A-npusmi22.0.3.1.txt"),
        8, "npu-smi", {"ASCEND_RT_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"},
        ["davinci_manager", "devmm_svm", "hisi_hdc"],
    ),
    "cambricon": (
        [*(f"cambricon_dev{i}" for i in range(8)), "cambricon_ctl", "cambricon_ipcm0"], None,
        ("cnmon", "cnmon__default-table__paddlenlp-mlu-cnmon5.10.31.txt"),
        8, "cnmon", {"MLU_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"},
        ["cambricon_ctl", "cambricon_ipcm0"],
    ),
    "metax": (
        ["mxcd", *render_nodes(128, 8)], renders(128, 8, "0x9999"),
        ("mx-smi", "mx-smi__default-table__paddlenlp-c550x8-mxsmi2.1.6.txt"),
        8, "mx-smi", {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, ["mxcd"],
    ),
    "mthreads": (
        [f"mtgpu.{i}" for i in range(8)], None,
        ("mthreads-gmi", "mthreads-gmi__default-table__paddlefleet-musa-mtt-s5000x8-gmi2.4.1.txt"),
        8, "mthreads-gmi", {"MUSA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, [],
    ),
    "kunlunxin": (
        [*(f"xpu{i}" for i in range(8)), "xpuctrl"], None,
        ("xpu_smi", "xpu_smi__default-table__paddlefleet-kunlunxin-p800x8.txt"),
        8, "xpu_smi", {"XPU_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, ["xpuctrl"],
    ),
    "intel": (  # renderD128 is the integrated GPU at 00:02.0: not one
        render_nodes(128, 7),
        {"renderD128": ("0x8086", "0000:00:02.0"), **renders(129, 6, "0x8086")},
        ("xpu-smi", "xpu-smi__dump-csv__alcf-aurora-max1550x6.txt"),
        6, "xpu-smi", {"ZE_AFFINITY_MASK": "0,1,2,3,4,5"}, [],
    ),
}  # fmt: skip


@pytest.mark.parametrize("vendor", VENDORS)
def test_auto_resolves_each_vendors_tree_and_tool(vendor, tmp_path):
    nodes, pci, (tool, output), count, source, env, control = VENDORS[vendor]
    roots = tree(tmp_path, nodes, pci)
    found = resolve("auto", roots, recorded(tool, output))
    assert (found.vendor, found.count, found.source) == (vendor, count, source)
    assert found.env() == env
    assert list(found.control) == control
    assert len(found.nodes) == count and found.note == ""
    # Without the tool, the device nodes alone give the same count.
    alone = resolve("auto", roots, lambda command: None)
    assert (alone.vendor, alone.count, alone.source) == (vendor, count, "device nodes")


def test_the_tools_count_wins_over_the_nodes(tmp_path):
    # An Atlas 300 with 4 chips numbered 3..6 by npu-smi, and a fifth davinci node: the
    # runtime numbers what npu-smi lists 0..3.
    roots = tree(tmp_path, [f"davinci{i}" for i in range(3, 8)])
    tool = recorded("npu-smi", "npu-smi__info-table__gpustack-atlas800-3000-310-npusmi21.0.4.txt")
    found = resolve("auto", roots, tool)
    assert (found.count, found.nodes) == (4, ("davinci3", "davinci4", "davinci5", "davinci6"))
    assert found.env() == {"ASCEND_RT_VISIBLE_DEVICES": "0,1,2,3"}


def test_nvidia_through_nvml(monkeypatch, tmp_path):
    monkeypatch.setattr(placement, "nvidia_accelerators", devices.nvidia_accelerators)
    monkeypatch.setattr(devices, "pynvml", FakeNvml([H100] * 8))
    roots = tree(tmp_path, [f"nvidia{i}" for i in range(8)])
    found = resolve("auto", roots)
    assert (found.vendor, found.count, found.source) == ("nvidia", 8, "NVML")
    assert found.first(2).env() == {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    assert found.env_words() == "CUDA_VISIBLE_DEVICES=0..7"


def test_nvidia_without_nvml_by_proc_then_nodes(monkeypatch, tmp_path):
    monkeypatch.setattr(placement, "nvidia_accelerators", devices.nvidia_accelerators)
    monkeypatch.setattr(devices, "pynvml", FakeNvml([], init=pynvml.NVMLError_LibraryNotFound))
    roots = tree(tmp_path, ["nvidia0", "nvidia1", "nvidiactl"])
    assert (resolve("auto", roots).count, resolve("auto", roots).source) == (2, "device nodes")
    for bus in ("0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0"):
        (roots.proc / "driver/nvidia/gpus" / bus).mkdir(parents=True)
    assert (resolve("auto", roots).count, resolve("auto", roots).source) == (
        3, "/proc/driver/nvidia"
    )  # fmt: skip


def test_nothing_found_is_a_cpu_run_and_a_mixed_host_takes_the_larger(tmp_path):
    empty = resolve("auto", tree(tmp_path / "a", []))
    assert (empty.vendor, empty.count, empty.env(), empty.found()) == (None, 0, {}, "none found")
    mixed = resolve("auto", tree(tmp_path / "b", ["davinci0", "xpu0", "xpu1"]))
    assert (mixed.vendor, mixed.count) == ("kunlunxin", 2)
    assert (
        mixed.found() == "2 kunlunxin (device nodes); also 1 ascend: --devices VENDOR to use those"
    )


def test_explicit_forms(tmp_path):
    roots = tree(tmp_path, [f"davinci{i}" for i in range(4)] + ["davinci_manager"])
    assert resolve("none", roots) == Placement()
    some = resolve("ascend:1,3", roots)
    assert (some.indices, some.nodes, some.source) == (
        (1, 3),
        ("davinci1", "davinci3"),
        "--devices",
    )
    assert some.env() == {"ASCEND_RT_VISIBLE_DEVICES": "1,3"}
    assert resolve("ascend", roots).count == 4
    gpus = resolve("nvidia:0,1", roots)  # a GPU request: no nodes needed
    assert (gpus.vendor, gpus.indices) == ("nvidia", (0, 1))
    nodes = resolve("/dev/kfd,/dev/dri/renderD128,/dev/dri/renderD129", roots)
    assert (nodes.vendor, nodes.count, nodes.control) == ("amd", 2, ("kfd",))
    cdi = resolve("cdi:nvidia.com/gpu=0,nvidia.com/gpu=1", roots)
    assert (cdi.vendor, cdi.count, cdi.cdi) == (
        "nvidia",
        2,
        ("nvidia.com/gpu=0", "nvidia.com/gpu=1"),
    )
    for bad, message in [
        ("tpu", "expected auto, none"),
        ("ascend:one", "device ids are numbers"),
        ("ascend:7", "this host has 4"),
        ("cambricon", "no cambricon device found"),
        ("cdi:gpu0", "vendor.com/class=NAME"),
    ]:
        with pytest.raises(DevicesError, match=message):
            resolve(bad, roots)


def test_container_devices_for_each_way_in(tmp_path):
    ascend = resolve("auto", tree(tmp_path, ["davinci4", "davinci5", "davinci_manager"]))
    options, env = container_devices(ascend.first(1), None)
    dev = tmp_path / "dev"
    assert options == {
        "devices": [
            f"{dev}/davinci4:/dev/davinci4:rwm",
            f"{dev}/davinci_manager:/dev/davinci_manager:rwm",
        ]
    }
    assert env == {"ASCEND_RT_VISIBLE_DEVICES": "0"}  # numbered as the container sees it
    assert passes(options, env) == (
        "docker /dev/davinci4, /dev/davinci_manager, ASCEND_RT_VISIBLE_DEVICES=0"
    )
    gpus, env = container_devices(Placement("nvidia", (0, 1, 2)), {"nvidia.com/gpu"})
    assert gpus == {
        "device_requests": [
            DeviceRequest(driver="nvidia", device_ids=["0", "1", "2"], capabilities=[["gpu"]])
        ]
    }
    assert env == {} and passes(gpus, env) == "docker --gpus device=0..2"
    # A vendor whose CDI spec the engine has: its CDI names, not nodes.
    amd = resolve("/dev/kfd,/dev/dri/renderD128", tree(tmp_path, []))
    options, env = container_devices(amd, {"amd.com/gpu", "nvidia.com/gpu"})
    assert options["device_requests"][0]["DeviceIDs"] == ["amd.com/gpu=0"] and env == {}
    asked = container_devices(resolve("cdi:vendor.example/npu=all", tree(tmp_path, [])), set())
    assert asked[0]["device_requests"][0]["DeviceIDs"] == ["vendor.example/npu=all"]
    assert container_devices(Placement(), None) == ({}, {})


class EngineInfo:
    def __init__(self, info: dict) -> None:
        self._info = info

    def info(self) -> dict:
        return self._info


def test_cdi_kinds_come_from_the_engines_spec_dirs(tmp_path):
    (tmp_path / "nvidia.yaml").write_text('cdiVersion: 0.5.0\nkind: "nvidia.com/gpu"\ndevices:\n')
    (tmp_path / "amd.json").write_text('{"cdiVersion":"0.6.0","kind":"amd.com/gpu","devices":[]}')
    (tmp_path / "notes.txt").write_text("kind: other.com/x")
    assert cdi_kinds(EngineInfo({"CDISpecDirs": [str(tmp_path)]})) == {
        "nvidia.com/gpu",
        "amd.com/gpu",
    }
    assert cdi_kinds(EngineInfo({"ServerVersion": "20.10"})) is None  # an engine without CDI


def test_the_rank_sees_the_visible_devices_variable(cli, sleeper, monkeypatch, tmp_path):
    roots = tree(tmp_path / "host", [f"davinci{i}" for i in range(4)])
    monkeypatch.setattr(placement, "HOST", roots)
    monkeypatch.setenv("SLEEPER_BEHAVIOUR", "devices")
    code, out, err = cli(
        "run", "sleeper", "--runtime", "process", "-o", str(tmp_path / "o"), "--json"
    )
    assert code == 0, err
    assert "devices: 4 ascend (device nodes) -> ASCEND_RT_VISIBLE_DEVICES=0..3" in err
    (run_set,) = (tmp_path / "o").iterdir()
    seen = json.loads((run_set / "run-1" / "devices.json").read_text())
    assert seen["env"]["ASCEND_RT_VISIBLE_DEVICES"] == "0"  # nproc 1: the first device
    assert Result.model_validate_json(out).runs[0].status == "success"
    code, _, err = cli("run", "sleeper", "--nproc", "5", "-o", str(tmp_path / "o"))
    assert code == 1 and "--nproc 5: this node has 4 ascend" in err


def test_doctor_fails_when_torch_cannot_see_the_gpus(cli, monkeypatch, tmp_path):
    # A fake NVIDIA host (NVML not starting, two GPU nodes) and this host's CPU build of torch.
    monkeypatch.setattr(placement, "HOST", tree(tmp_path, ["nvidia0", "nvidia1", "nvidiactl"]))
    code, out, _ = cli("doctor")
    assert code == 1
    (line,) = [line for line in out.splitlines() if "framework" in line]
    assert "missing" in line and "sees 0 of 2 nvidia device(s)" in line
    assert "pip install torch==" in line and "download.pytorch.org/whl/cu126" in line
    assert "2 nvidia (device nodes)" in out


def test_doctor_passes_without_accelerators(cli):
    code, out, _ = cli("doctor")
    assert code == 0, out
    assert "accelerators: none found: CPU only" in out


def test_up_sizes_the_node_by_the_devices_found(cli, sleeper, monkeypatch, tmp_path):
    monkeypatch.setattr(placement, "HOST", tree(tmp_path, [f"davinci{i}" for i in range(4)]))
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\n[[workloads]]\nmodel = "sleeper"\ndevices = [8]\n')
    args = ("up", "--suite", str(suite), "--runtime", "process", "--out", str(tmp_path / "o"))
    code, _, err = cli(*args)
    assert code == 1 and "devices 8 asked, this node has 4" in err
    code, _, err = cli(*args, "--devices", "none")
    assert code == 1 and "this node has 1" in err
