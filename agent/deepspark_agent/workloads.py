"""The workload catalog: each `<folder>/<name>/workload.toml` describes one workload.

The built-in catalog is `model_images/` (the project's reference implementations); a vendor adds
folders of its own with `--workloads DIR` or `DEEPSPARK_WORKLOADS` (an os.pathsep list), never
replacing the built-in ones.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Generic

from deepspark_core.signing import sha256_file
from deepspark_core.workload_spec import (
    SPEC_FILE,
    P,
    Preset,
    WorkloadError,
    WorkloadSpec,
    read_spec,
)

WORKLOADS_ENV = "DEEPSPARK_WORKLOADS"
IMAGE_NAMESPACE = "deepspark"
BUILT_IN = Path(__file__).resolve().parents[2] / "model_images"
# Not part of an implementation: caches and the output of runs started in the folder.
_NOT_HASHED = {"__pycache__", "runs", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


class Workload(WorkloadSpec[P], Generic[P]):
    """A catalog entry: the core's workload.toml schema, and the folder it is in."""

    path: Path = Path()

    @property
    def image(self) -> str:
        return f"{IMAGE_NAMESPACE}/{self.name}:{self.version}"

    @property
    def reference(self) -> bool:
        """The project's own implementation: a folder of the built-in catalog."""
        return self.path.parent == BUILT_IN

    def preset(self, config: str) -> Preset:
        try:
            return self.configs[config]
        except KeyError:
            known = ", ".join(sorted(self.configs))
            raise WorkloadError(f"{self.name} has no config {config!r} (known: {known})") from None


def workload_roots(extra: Sequence[Path] = ()) -> list[Path]:
    """The built-in catalog, then DEEPSPARK_WORKLOADS's folders, then extra (--workloads)."""
    from_env = [Path(p) for p in os.environ.get(WORKLOADS_ENV, "").split(os.pathsep) if p]
    roots: list[Path] = []
    for root in (BUILT_IN, *from_env, *extra):
        if not root.is_dir():
            raise WorkloadError(f"workloads folder {root} not found")
        if root.resolve() not in roots:  # the same folder twice adds nothing
            roots.append(root.resolve())
    return roots


def python_path(workload: Workload) -> str:
    """PYTHONPATH for a workload's process: its own folder's parent (its siblings), the
    built-in folder (the helper library, deepspark_workload, for a workload added from
    elsewhere too), then the agent's own."""
    folders = dict.fromkeys((str(workload.path.parent), str(BUILT_IN)))
    return os.pathsep.join(p for p in (*folders, os.environ.get("PYTHONPATH")) if p)


def load_workload(path: Path) -> Workload:
    """Read one workload folder's workload.toml, its presets of the folder's own Preset."""
    workload = read_spec(path, Workload, {"path": path})
    if workload.name != path.name:  # images and lookups go by name: the folder must match
        raise WorkloadError(f"{path / SPEC_FILE} names {workload.name!r}, not {path.name!r}")
    return workload


def list_workloads(extra: Sequence[Path] = ()) -> list[Workload]:
    """Every workload of the catalog and the added folders, by name; a name in two folders is
    an error naming both."""
    found: dict[str, Workload] = {}
    for root in workload_roots(extra):
        for toml in sorted(root.glob(f"*/{SPEC_FILE}")):
            workload = load_workload(toml.parent)
            if workload.name in found:
                both = f"{found[workload.name].path} and {workload.path}"
                raise WorkloadError(f"workload {workload.name!r} is in both {both}")
            found[workload.name] = workload
    return sorted(found.values(), key=lambda w: w.name)


def find_implementation(model: str, framework: str | None, extra: Sequence[Path] = ()) -> Workload:
    """The workload that implements model in framework; without a framework, the workload
    named model."""
    if framework is None:
        return find_workload(model, extra)
    implementations: dict[str, Workload] = {}  # the first in name order, per framework
    for w in list_workloads(extra):
        if w.model == model:
            implementations.setdefault(w.framework, w)
    if framework not in implementations:
        raise WorkloadError(
            f"no {framework} workload implements {model!r} "
            f"(it has: {', '.join(implementations) or 'no workload at all'})"
        )
    return implementations[framework]


def find_workload(name: str, extra: Sequence[Path] = ()) -> Workload:
    workloads = list_workloads(extra)
    for workload in workloads:
        if workload.name == name:
            return workload
    known = ", ".join(w.name for w in workloads) or "none"
    raise WorkloadError(f"unknown workload {name!r} (known: {known})")


def folder_digest(path: Path) -> str:
    """sha256 of a workload folder: over its files' relative paths and sha256s, sorted, in
    `sha256sum`'s format (caches and runs/ left out), so equal folders give equal digests."""
    files = {f.relative_to(path).as_posix(): f for f in path.rglob("*") if f.is_file()}
    lines = [
        f"{sha256_file(file)}  {name}\n"
        for name, file in sorted(files.items())
        if not _NOT_HASHED.intersection(name.split("/"))
    ]
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()
