"""What this machine has for training: the host and its accelerators (the system description).

`describe_system()` is what `deepspark-agent devices` shows and what is stored with every
result: the fields of MLPerf's system description that can be read automatically. NVIDIA
GPUs are read through NVML; other vendors are found by their device nodes (vendor and count
only). Each part degrades on its own, so nothing here raises for a missing driver, library
or Docker engine: without NVML there are no NVIDIA details, without an engine no version.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import docker
import psutil
import pynvml

from deepspark_core.system import Accelerator, Host, SystemDescription

DEV, SYSFS, CPUINFO = Path("/dev"), Path("/sys"), Path("/proc/cpuinfo")

# --- visible devices ---------------------------------------------------------------------

# The variable that restricts a process to some of a vendor's devices. These act inside the
# process's runtime; container toolkits have their own variable saying which devices to
# mount (NVIDIA_VISIBLE_DEVICES, ASCEND_VISIBLE_DEVICES for the Ascend Docker Runtime,
# AMD_VISIBLE_DEVICES, ILUVATAR_VISIBLE_DEVICES, HABANA_VISIBLE_DEVICES), not set here.
VISIBLE_DEVICES: dict[str, str] = {
    "nvidia": "CUDA_VISIBLE_DEVICES",
    # ROCm recommends ROCR on Linux. HIP_VISIBLE_DEVICES then indexes into what ROCR left
    # visible, so setting both to the same physical indices would select the wrong devices.
    "amd": "ROCR_VISIBLE_DEVICES",
    "hygon": "HIP_VISIBLE_DEVICES",  # DTK, ROCm-derived
    "ascend": "ASCEND_RT_VISIBLE_DEVICES",  # CANN runtime; logical ids, ascending order
    "cambricon": "MLU_VISIBLE_DEVICES",
    "kunlunxin": "XPU_VISIBLE_DEVICES",
    "iluvatar": "CUDA_VISIBLE_DEVICES",  # CoreX implements the CUDA runtime API
    "metax": "CUDA_VISIBLE_DEVICES",  # MACA, CUDA-compatible
    "mthreads": "MUSA_VISIBLE_DEVICES",
    "enflame": "TOPS_VISIBLE_DEVICES",
    "intel": "ZE_AFFINITY_MASK",  # Level Zero GPUs
    "gaudi": "HABANA_VISIBLE_MODULES",  # module ids (hl-smi), stable across reboots
}


def visible_devices_env(vendor: str, indices: Sequence[int]) -> dict[str, str]:
    """The environment that shows a workload only these devices of a vendor."""
    if vendor not in VISIBLE_DEVICES:
        known = ", ".join(VISIBLE_DEVICES)
        raise ValueError(f"no visible-devices variable for vendor {vendor!r} (known: {known})")
    if any(i < 0 for i in indices):
        raise ValueError(f"device indices must be >= 0, got {list(indices)}")
    env = {VISIBLE_DEVICES[vendor]: ",".join(str(i) for i in indices)}
    if vendor == "nvidia":
        # CUDA numbers GPUs fastest first by default; PCI bus order is NVML's and nvidia-smi's,
        # so index i is the GPU the NVML sampler reports as nvidia:i.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


# --- NVIDIA through NVML -----------------------------------------------------------------

_NVML_ERRORS: tuple[type[Exception], ...] = (
    pynvml.NVMLError,
    getattr(pynvml, "NVMLLibraryMismatchError", pynvml.NVMLError),
)


def _nvml(call: Callable[..., Any], *args: Any) -> Any:
    """One NVML query, or None when this driver or device cannot answer it."""
    try:
        return call(*args)
    except _NVML_ERRORS:
        return None


def _text(value: Any) -> str | None:
    # Struct fields such as the PCI bus id come back as bytes; older bindings return bytes
    # for strings too.
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def _cuda_version(v: int | None) -> str | None:
    return None if not v else f"{v // 1000}.{v % 1000 // 10}"  # 12040 -> "12.4"


def nvidia_accelerators() -> list[Accelerator]:
    """NVIDIA GPUs as NVML sees them; none when NVML cannot start (no driver or library)."""
    try:
        pynvml.nvmlInit()
    except _NVML_ERRORS:
        return []
    try:
        driver = _text(_nvml(pynvml.nvmlSystemGetDriverVersion))
        cuda = _cuda_version(_nvml(pynvml.nvmlSystemGetCudaDriverVersion_v2))
        count = _nvml(pynvml.nvmlDeviceGetCount) or 0
        gpus = (_nvidia_gpu(i, driver, cuda) for i in range(count))
        return [gpu for gpu in gpus if gpu is not None]
    finally:
        with contextlib.suppress(*_NVML_ERRORS):
            pynvml.nvmlShutdown()


def _nvidia_gpu(index: int, driver: str | None, cuda: str | None) -> Accelerator | None:
    handle = _nvml(pynvml.nvmlDeviceGetHandleByIndex, index)
    if handle is None:  # lost or inaccessible: not one we can run on
        return None
    memory = _nvml(pynvml.nvmlDeviceGetMemoryInfo, handle)
    pci = _nvml(pynvml.nvmlDeviceGetPciInfo, handle)
    return Accelerator(
        vendor="nvidia",
        index=index,
        source="nvml",
        name=_text(_nvml(pynvml.nvmlDeviceGetName, handle)),
        memory_bytes=None if memory is None else int(memory.total),
        bus_id=None if pci is None else _text(pci.busId),
        uuid=_text(_nvml(pynvml.nvmlDeviceGetUUID, handle)),
        driver_version=driver,
        sdk_version=cuda,
    )


# --- other vendors by device node --------------------------------------------------------

# One node per device, globbed under /dev; control nodes (nvidiactl, davinci_manager, xpuctrl,
# cambricon_ctl) do not match.
DEVICE_NODES: dict[str, tuple[str, ...]] = {
    "nvidia": ("nvidia[0-9]*",),
    "ascend": ("davinci[0-9]*",),
    "iluvatar": ("iluvatar[0-9]*",),
    "cambricon": ("cambricon_dev[0-9]*",),
    "kunlunxin": ("xpu[0-9]*",),
    "mthreads": ("mtgpu.[0-9]*", "mtgpu[0-9]*"),
    "enflame": ("gcu[0-9]*",),
}
# The nodes a vendor's devices need beside their own (globs under /dev): a container given
# only the per-device nodes cannot open them. Those present are passed.
CONTROL_NODES: dict[str, tuple[str, ...]] = {
    "ascend": ("davinci_manager", "devmm_svm", "hisi_hdc"),
    "amd": ("kfd",),
    "hygon": ("kfd", "mkfd"),
    "metax": ("mxcd",),
    "cambricon": ("cambricon_ctl", "cambricon_ipcm[0-9]*"),
    "kunlunxin": ("xpuctrl",),
}
# GPUs behind DRM render nodes (dri/renderD*): the node's PCI vendor in sysfs says whose it is.
# ROCm, DTK and MACA GPUs also need the vendor's compute node (/dev/kfd, /dev/mxcd).
_RENDER_VENDORS = {"0x1002": "amd", "0x1d94": "hygon", "0x9999": "metax", "0x8086": "intel"}
_COMPUTE_NODE = {"amd": "kfd", "hygon": "kfd", "metax": "mxcd"}
# Intel's integrated graphics always sits at this PCI address; its discrete GPUs never do.
_INTEL_IGPU_SLOT = "0000:00:02.0"


def _number(name: str) -> int:
    """The device number a node name ends with (davinci7 -> 7, dri/renderD129 -> 129)."""
    match = re.search(r"(\d+)$", name)
    return int(match[1]) if match else -1


def vendor_nodes(dev: Path = DEV, sysfs: Path = SYSFS) -> dict[str, list[str]]:
    """Each vendor's per-device nodes, as paths relative to `dev`, in device order."""
    found: dict[str, list[str]] = {}
    for vendor, patterns in DEVICE_NODES.items():
        names = {node.name for pattern in patterns for node in dev.glob(pattern)}
        if names:
            found[vendor] = sorted(names, key=_number)
    for node in sorted((dev / "dri").glob("renderD*"), key=lambda n: _number(n.name)):
        vendor = _render_vendor(node.name, dev, sysfs)
        compute = _COMPUTE_NODE.get(vendor or "")
        if vendor and (compute is None or (dev / compute).exists()):
            found.setdefault(vendor, []).append(f"dri/{node.name}")
    return found


def _render_vendor(node: str, dev: Path, sysfs: Path) -> str | None:
    device = sysfs / "class/drm" / node / "device"
    try:
        pci = (device / "vendor").read_text().strip()
    except OSError:
        # Without sysfs (some containers) trust the compute node; Hygon's driver adds /dev/mkfd.
        fallback = (("mkfd", "hygon"), ("kfd", "amd"), ("mxcd", "metax"))
        return next((vendor for name, vendor in fallback if (dev / name).exists()), None)
    vendor = _RENDER_VENDORS.get(pci)
    if vendor == "intel" and _pci_slot(device) in (None, _INTEL_IGPU_SLOT):
        return None  # integrated graphics, or a card we cannot tell from it
    return vendor


def _pci_slot(device: Path) -> str | None:
    try:
        lines = (device / "uevent").read_text().splitlines()
    except OSError:
        return None
    return next(
        (line.partition("=")[2] for line in lines if line.startswith("PCI_SLOT_NAME=")), None
    )


def control_nodes(vendor: str, dev: Path = DEV) -> list[str]:
    """The vendor's control nodes present under `dev`, relative to it."""
    names = {node.name for pattern in CONTROL_NODES.get(vendor, ()) for node in dev.glob(pattern)}
    return sorted(names)


def node_counts(dev: Path = DEV, sysfs: Path = SYSFS) -> dict[str, int]:
    """Devices per vendor, by their device nodes."""
    return {vendor: len(nodes) for vendor, nodes in vendor_nodes(dev, sysfs).items()}


def detect_accelerators(dev: Path = DEV, sysfs: Path = SYSFS) -> list[Accelerator]:
    """NVIDIA GPUs through NVML, other vendors by device node; NVIDIA by node only when NVML
    cannot start (e.g. a container without libnvidia-ml)."""
    nvidia = nvidia_accelerators()
    counts = node_counts(dev, sysfs)
    if nvidia:
        counts.pop("nvidia", None)
    by_node = [
        Accelerator(vendor=vendor, index=i, source="device-node")
        for vendor, n in counts.items()
        for i in range(n)
    ]
    return nvidia + by_node


# --- the host ----------------------------------------------------------------------------


def _cpuinfo(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return [(key.strip(), value.strip()) for key, value in pairs]


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's marketing name; platform.processor() is often empty on Linux."""
    for key, value in _cpuinfo(cpuinfo):
        if key == "model name":
            return value
    return platform.processor() or platform.machine()


def cpu_sockets(cpuinfo: Path = CPUINFO) -> int | None:
    ids = {value for key, value in _cpuinfo(cpuinfo) if key == "physical id"}
    return len(ids) or None


def _cpu_max_mhz() -> float | None:
    # psutil.cpu_freq is missing on some platforms and reports 0 where the kernel does not say
    # (most VMs).
    with contextlib.suppress(AttributeError, NotImplementedError, OSError):
        freq = psutil.cpu_freq()
        if freq is not None and freq.max > 0:
            return float(freq.max)
    return None


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release()["PRETTY_NAME"]
    except (OSError, KeyError):
        return platform.platform(terse=True)


def detect_host(cpuinfo: Path = CPUINFO) -> Host:
    return Host(
        hostname=platform.node(),
        os=_os_name(),
        kernel=platform.release(),
        arch=platform.machine(),
        cpu_model=cpu_model(cpuinfo),
        cpu_sockets=cpu_sockets(cpuinfo),
        cpu_cores=psutil.cpu_count(logical=False),
        cpu_threads=os.cpu_count() or 0,
        cpu_max_mhz=_cpu_max_mhz(),
        memory_bytes=psutil.virtual_memory().total,
        python=platform.python_version(),
    )


def docker_version() -> str | None:
    """The Docker engine's version, or None when no engine answers."""
    try:
        with contextlib.closing(docker.from_env(timeout=3)) as client:
            return _text(client.version().get("Version"))
    except Exception:  # no socket, no permission, a hung or odd engine: no version
        return None


def describe_system(dev: Path = DEV, sysfs: Path = SYSFS) -> SystemDescription:
    return SystemDescription(
        host=detect_host(),
        accelerators=detect_accelerators(dev, sysfs),
        docker_version=docker_version(),
    )
