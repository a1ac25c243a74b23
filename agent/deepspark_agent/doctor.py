"""What this host has for running workloads, and what is missing: one check per line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from deepspark_agent.placement import Placement, resolve
from deepspark_agent.telemetry.node import NodePowerChoice, probe
from deepspark_agent.workloads import WorkloadError, list_workloads, workload_roots

Status = Literal["ok", "missing", "warn"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    required: bool = False


def _python() -> Check:
    ok = sys.version_info >= (3, 11)
    return Check("python", "ok" if ok else "missing", sys.version.split()[0], required=True)


def _torch() -> Check:
    # Read the installed version without importing torch: the agent never imports it.
    try:
        return Check("torch (process runtime)", "ok", version("torch"))
    except PackageNotFoundError:
        return Check("torch (process runtime)", "missing", "pip install 'deepspark[workloads]'")


def _docker() -> Check:
    try:
        import docker

        client = docker.from_env(timeout=3)
        info = client.version()
        return Check("docker engine", "ok", f"{info.get('Version', '?')} at {client.api.base_url}")
    except Exception as exc:  # any failure means "no usable engine"; say which in one line
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check("docker engine", "missing", detail[:160])


def _devices(placement: Placement) -> Check:
    if not placement.count:
        return Check("accelerators", "warn", f"{placement.found()}: CPU only")
    return Check("accelerators", "ok", placement.found())


# How torch counts each vendor's devices (the module that adds them, the call), and how to get
# a build that can. NVIDIA's and AMD's fixes name the installed torch's version.
_TORCH_INDEX = "pip install torch=={version} --index-url https://download.pytorch.org/whl/"
_FRAMEWORK: dict[str, tuple[str, str, str]] = {
    "nvidia": ("torch", "torch.cuda", _TORCH_INDEX + "cu126 (or the cuXYZ the driver supports)"),
    "amd": ("torch", "torch.cuda", _TORCH_INDEX + "rocm6.4 (the ROCm release installed)"),
    "intel": ("torch", "torch.xpu", _TORCH_INDEX + "xpu"),
    "hygon": ("torch", "torch.cuda", "install the torch build of Hygon's DTK"),
    "iluvatar": ("torch", "torch.cuda", "install the torch build of Iluvatar's CoreX SDK"),
    "metax": ("torch", "torch.cuda", "install the torch build of MetaX's MACA SDK"),
    "ascend": ("torch_npu", "torch.npu", "pip install torch_npu (the release for your CANN)"),
    "cambricon": ("torch_mlu", "torch.mlu", "install torch_mlu from Cambricon's PyTorch release"),
    "mthreads": ("torch_musa", "torch.musa", "install torch_musa from Moore Threads' MUSA SDK"),
}
FRAMEWORK_TIMEOUT_S = 120.0  # a cold import of torch and a vendor plugin


def _framework(placement: Placement, python: str = sys.executable) -> Check:
    """Whether the workloads' framework (torch, in the interpreter local ranks run with) sees
    the devices found. Run in a subprocess: the agent never imports torch."""
    name = "framework sees the accelerators"
    vendor = placement.vendor
    if not placement.count or vendor is None:
        return Check(name, "ok", "no accelerator: nothing to see")
    if vendor not in _FRAMEWORK:
        return Check(name, "warn", f"no check for {vendor}: see its SDK's torch")
    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # the torch check says so; containers bring their own
        return Check(name, "warn", "torch is not installed: only container runs")
    module, devices, fix = _FRAMEWORK[vendor]
    probe = f"import torch, {module}; print({devices}.device_count())"
    seen, error = _probe(python, probe)
    fix = fix.format(version=torch_version.split("+")[0])
    if seen is None:
        return Check(name, "missing", f"{module} does not load ({error}): {fix}", required=True)
    if seen < placement.count:
        what = f"torch {torch_version} sees {seen} of {placement.count} {vendor} device(s)"
        return Check(name, "missing", f"{what}: {fix}", required=True)
    return Check(name, "ok", f"torch {torch_version} sees {seen} {vendor} device(s)", True)


def _probe(python: str, code: str) -> tuple[int | None, str]:
    """The count a probe prints, or None and the last line of why it failed."""
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=FRAMEWORK_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, type(exc).__name__
    lines = done.stdout.split()
    if done.returncode or not lines or not lines[-1].isdigit():
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return None, why[:160]
    return int(lines[-1]), ""


def _workloads(extra: Sequence[Path]) -> Check:
    try:
        names = [w.name for w in list_workloads(extra)]
        roots = ", ".join(map(str, workload_roots(extra)))
    except WorkloadError as exc:
        return Check("workloads", "missing", str(exc), required=True)
    return Check("workloads", "ok", f"{len(names)} in {roots}: {', '.join(names)}", True)


def node_power_checks() -> list[Check]:
    """Which node power sources answer, one line each (a warning when one does not: a run
    goes on without it, its node power N/A)."""
    return [
        Check(f"node power: {s.name}", "ok" if s.answers else "warn", s.detail)
        for s in probe(NodePowerChoice())
    ]


def run_checks(
    extra_workloads: Sequence[Path] = (),
    placement: Placement | None = None,
    local_ranks: bool = True,
) -> list[Check]:
    """Every check; the devices are `--devices auto`'s unless a command resolved its own.
    local_ranks False (a container run): the host's torch does not matter."""
    placement = resolve("auto") if placement is None else placement
    checks = [_python(), _workloads(extra_workloads), _torch(), _docker(), _devices(placement)]
    return [*checks, _framework(placement)] if local_ranks else checks
