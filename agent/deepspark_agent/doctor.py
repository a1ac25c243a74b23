"""What this host has for running workloads, and what is missing: one check per line."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from deepspark_agent.devices import node_counts
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


def _devices() -> Check:
    found = node_counts()
    if not found:
        return Check("accelerators", "warn", "no accelerator device nodes: CPU only")
    return Check("accelerators", "ok", ", ".join(f"{n} {vendor}" for vendor, n in found.items()))


def _workloads(extra: Sequence[Path]) -> Check:
    try:
        names = [w.name for w in list_workloads(extra)]
        roots = ", ".join(map(str, workload_roots(extra)))
    except WorkloadError as exc:
        return Check("workloads", "missing", str(exc), required=True)
    return Check("workloads", "ok", f"{len(names)} in {roots}: {', '.join(names)}", True)


def run_checks(extra_workloads: Sequence[Path] = ()) -> list[Check]:
    return [_python(), _workloads(extra_workloads), _torch(), _docker(), _devices()]
