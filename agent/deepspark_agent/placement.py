"""`--devices`: the accelerators a command runs on, resolved once into a Placement.

`auto` (the default of `run` and `up`) finds them: NVIDIA GPUs through NVML (by
/proc/driver/nvidia or device node where NVML does not start), the other vendors by device node
(sysfs telling DRM render nodes apart), counted by the vendor's own tool where it is installed:
the tool lists what the vendor's runtime will see, so its count wins over the nodes'. Explicit
forms: `none` (a CPU run), `VENDOR[:IDS]` (nvidia:0,1, ascend, ...), `cdi:NAME[,NAME]`,
`/dev/A,/dev/B`. The runtimes turn a Placement into what they pass: the visible-devices
variable for local ranks, a GPU request, CDI names or device nodes for a container.

The host's roots (`Roots`) and the vendor tools (`ToolRunner`) are parameters, so a fake
/dev, /sys and /proc tree and recorded tool outputs stand in for a real node in tests.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from functools import partial
from pathlib import Path

from deepspark_agent.devices import (
    CONTROL_NODES,
    DEVICE_NODES,
    VISIBLE_DEVICES,
    control_nodes,
    nvidia_accelerators,
    vendor_nodes,
    visible_devices_env,
)
from deepspark_agent.telemetry.smi import (
    TOOLS,
    Parser,
    parse_box_table,
    parse_xpu_smi_dump,
)
from deepspark_core.errors import DeepSparkError

FORMS = "auto, none, VENDOR[:IDS] (nvidia, amd, ascend, ...), cdi:NAMES or /dev/A,/dev/B"
TOOL_TIMEOUT_S = 20.0  # npu-smi can hang on a wedged device

# Runs one vendor tool: its stdout, or None when it is missing or fails.
ToolRunner = Callable[[Sequence[str]], str | None]


class DevicesError(DeepSparkError):
    """A --devices value this host cannot honour."""


@dataclass(frozen=True)
class Roots:
    """Where the host's device tree is: tests point these at a fake one."""

    dev: Path = Path("/dev")
    sysfs: Path = Path("/sys")
    proc: Path = Path("/proc")


HOST = Roots()


def run_tool(command: Sequence[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(
            list(command), capture_output=True, text=True, errors="replace",
            timeout=TOOL_TIMEOUT_S, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


# Per vendor, the tool that lists its devices in one call, and telemetry's parser for its
# output (device ids "<prefix>:<index>").
_LISTING: dict[str, tuple[tuple[str, ...], Parser, str]] = {
    "amd": (TOOLS["rocm-smi"].command, TOOLS["rocm-smi"].parse, "amd"),
    "hygon": (TOOLS["hy-smi"].command, TOOLS["hy-smi"].parse, "hygon"),
    "ascend": (TOOLS["npu-smi"].command, TOOLS["npu-smi"].parse, "ascend"),
    "cambricon": (TOOLS["cnmon"].command, TOOLS["cnmon"].parse, "cambricon"),
    "metax": (TOOLS["mx-smi"].command, TOOLS["mx-smi"].parse, "metax"),
    "mthreads": (TOOLS["mthreads-gmi"].command, TOOLS["mthreads-gmi"].parse, "mthreads"),
    "kunlunxin": (TOOLS["xpu_smi"].command, TOOLS["xpu_smi"].parse, "kunlunxin"),
    # ixsmi's default table (telemetry streams its --query-gpu loop instead).
    "iluvatar": (("ixsmi",), partial(parse_box_table, vendor="iluvatar"), "iluvatar"),
    # One sample of every device (telemetry's dump loops).
    "intel": (
        ("xpu-smi", "dump", "-d", "-1", "-m", "0", "-n", "1"),
        parse_xpu_smi_dump,
        "intel-xpu",
    ),
}


@dataclass(frozen=True)
class Placement:
    """The devices a command runs on, and how they were found."""

    vendor: str | None = None  # None: no accelerator, a CPU run
    indices: tuple[int, ...] = ()  # as the vendor's runtime numbers them on this host
    source: str = "--devices none"  # NVML, npu-smi, device nodes, --devices ...
    nodes: tuple[str, ...] = ()  # each device's node, relative to dev, in index order
    control: tuple[str, ...] = ()  # the vendor's control nodes, relative to dev
    cdi: tuple[str, ...] = ()  # CDI device names asked for (cdi:NAMES)
    dev: Path = Path("/dev")  # where the nodes are on this host
    note: str = ""  # what else was found and not used

    @property
    def count(self) -> int:
        return len(self.indices)

    def first(self, n: int) -> Placement:
        """The first n devices: a run with nproc n gets these."""
        return dataclasses.replace(self, indices=self.indices[:n], nodes=self.nodes[:n])

    def env(self) -> dict[str, str]:
        """The visible-devices variable that shows a local process these devices."""
        return visible_devices_env(self.vendor, self.indices) if self.vendor else {}

    def found(self) -> str:
        """What was found, in words: `8 nvidia (NVML)`."""
        if self.vendor is None and not (self.control or self.cdi):
            return "none found" if self.source == "auto" else f"none ({self.source})"
        what = f"{self.count} {self.vendor or 'unknown vendor'} ({self.source})"
        return f"{what}; {self.note}" if self.note else what

    def env_words(self, indices: Sequence[int] | None = None) -> str:
        """The visible-devices variable for the one line: CUDA_VISIBLE_DEVICES=0..7."""
        if self.vendor is None:
            return ""
        return (
            f"{VISIBLE_DEVICES[self.vendor]}={span(self.indices if indices is None else indices)}"
        )


CPU = Placement()  # --devices none


def span(values: Sequence[int]) -> str:
    """0,1,2,3 as 0..3; anything else comma-joined."""
    values = list(values)
    if len(values) > 2 and values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}..{values[-1]}"
    return ",".join(str(v) for v in values)


def resolve(devices: str, roots: Roots | None = None, tools: ToolRunner | None = None) -> Placement:
    """A --devices value as the devices it means on this host."""
    roots, tools = roots or HOST, tools or run_tool
    if devices == "none":
        return Placement()
    if devices == "auto":
        return _auto(roots, tools)
    if devices.startswith("cdi:"):
        return _cdi(devices.removeprefix("cdi:"), roots, tools)
    if devices.startswith("/dev/"):
        return _nodes(devices.split(","))
    vendor, _, ids = devices.partition(":")
    if vendor not in VISIBLE_DEVICES:
        raise DevicesError(f"--devices {devices!r}: expected {FORMS}")
    return _vendor(vendor, _ids(devices, ids) if ids else None, roots, tools)


def _ids(devices: str, text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not all(part.isdigit() for part in parts):
        raise DevicesError(f"--devices {devices!r}: device ids are numbers, e.g. nvidia:0,1")
    return tuple(int(part) for part in parts)


def detect(roots: Roots, tools: ToolRunner) -> list[Placement]:
    """Every vendor's devices on this host, one Placement each."""
    found: list[Placement] = []
    nvml = nvidia_accelerators()
    if nvml:
        found.append(Placement("nvidia", tuple(a.index for a in nvml), "NVML"))
    for vendor, nodes in vendor_nodes(roots.dev, roots.sysfs).items():
        if vendor == "nvidia" and nvml:
            continue
        count, source = _count(vendor, nodes, roots, tools)
        control = tuple(control_nodes(vendor, roots.dev))
        placement = Placement(vendor, tuple(range(count)), source, tuple(nodes[:count]), control)
        found.append(dataclasses.replace(placement, dev=roots.dev))
    return found


def _count(vendor: str, nodes: list[str], roots: Roots, tools: ToolRunner) -> tuple[int, str]:
    """How many of a vendor's devices its runtime will see, and who said so."""
    if vendor == "nvidia":  # NVML did not start: the driver's own list, else the nodes
        gpus = roots.proc / "driver/nvidia/gpus"
        if gpus.is_dir():
            return len(list(gpus.iterdir())), "/proc/driver/nvidia"
    if vendor in _LISTING:
        command, parse, prefix = _LISTING[vendor]
        output = tools(command)
        listed = parse(output) if output else {}
        count = sum(device.startswith(f"{prefix}:") for device in listed)
        if count:
            return count, command[0]
    return len(nodes), "device nodes"


def _auto(roots: Roots, tools: ToolRunner) -> Placement:
    found = detect(roots, tools)
    if not found:
        return Placement(source="auto")
    best = max(found, key=lambda p: p.count)  # the first of the largest, on a mixed host
    others = [f"{p.count} {p.vendor}" for p in found if p is not best]
    note = f"also {', '.join(others)}: --devices VENDOR to use those" if others else ""
    return dataclasses.replace(best, note=note)


def _vendor(vendor: str, ids: tuple[int, ...] | None, roots: Roots, tools: ToolRunner) -> Placement:
    """VENDOR: all of its devices here; VENDOR:IDS: those (and their nodes, where found)."""
    here = next((p for p in detect(roots, tools) if p.vendor == vendor), None)
    if ids is None:
        if here is None:
            raise DevicesError(f"--devices {vendor}: no {vendor} device found on this host")
        return here
    if here is None or not here.nodes:  # e.g. NVIDIA (a GPU request needs no nodes)
        return Placement(vendor, ids, "--devices")
    missing = [i for i in ids if i >= len(here.nodes)]
    if missing:
        raise DevicesError(f"--devices {vendor}:{span(ids)}: this host has {here.count}")
    nodes = tuple(here.nodes[i] for i in ids)
    return dataclasses.replace(here, indices=ids, nodes=nodes, source="--devices")


# CDI kinds' domains whose vendor's toolkit generates CDI specs (nvidia-ctk, amd-ctk, Intel's
# cdi-specs-generator): the vendor a CDI name is for.
CDI_DOMAINS = {"nvidia.com": "nvidia", "amd.com": "amd", "intel.com": "intel"}


def _cdi(names: str, roots: Roots, tools: ToolRunner) -> Placement:
    """cdi:NAME[,NAME]: the engine injects them; a `=all` name counts the vendor's devices."""
    cdi = tuple(names.split(","))
    if not all("/" in name and "=" in name for name in cdi):
        raise DevicesError(f"--devices cdi:{names}: CDI names are vendor.com/class=NAME")
    vendor = CDI_DOMAINS.get(cdi[0].partition("/")[0])
    count = len(cdi)
    if vendor and any(name.endswith("=all") for name in cdi):
        count = next((p.count for p in detect(roots, tools) if p.vendor == vendor), 1)
    return Placement(vendor, tuple(range(count)), "--devices cdi", cdi=cdi)


def _nodes(paths: list[str]) -> Placement:
    """/dev/A,/dev/B: exactly these nodes; the vendor and count from the per-device names."""
    names = [path.removeprefix("/dev/") for path in paths]
    vendor = next(
        (v for v, globs in {**CONTROL_NODES, **DEVICE_NODES}.items()
         for name in names for pattern in globs if fnmatch(name, pattern)),
        None,
    )  # fmt: skip
    globs = DEVICE_NODES.get(vendor or "", ("dri/renderD[0-9]*",))  # ROCm, DTK, MACA, Intel
    per_device = [n for n in names if any(fnmatch(n, glob) for glob in globs)]
    control = tuple(n for n in names if n not in per_device)
    return Placement(
        vendor, tuple(range(len(per_device))), "--devices", nodes=tuple(per_device),
        control=control,
    )  # fmt: skip
