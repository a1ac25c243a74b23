"""Container telemetry from the container's cgroup (v1 or v2), the figures `docker stats` shows.

The cgroup is found from the container's init process (`/proc/<pid>/cgroup`), so the sampler
needs no Docker API call per tick. Memory is usage minus inactive file cache, as Docker
reports it; CPU is the cgroup's CPU time over wall time (100 = one core).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

CGROUP_ROOT, PROC_ROOT = Path("/sys/fs/cgroup"), Path("/proc")


def cgroup_dirs(pid: int, root: Path = CGROUP_ROOT, proc: Path = PROC_ROOT) -> dict[str, Path]:
    """The process's cgroup directories: {"memory": ..., "cpu": ...}, v1 or v2 alike."""
    lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    if (root / "cgroup.controllers").exists():  # v2: one unified hierarchy
        path = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
        unified = root / path.lstrip("/")
        return {"memory": unified, "cpu": unified}
    dirs = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",")
        mount = root / controllers  # e.g. "cpu,cpuacct" is mounted under that joint name
        if not mount.is_dir() and names:
            mount = root / names[0]
        if "memory" in names:
            dirs["memory"] = mount / path.lstrip("/")
        if "cpuacct" in names:
            dirs["cpu"] = mount / path.lstrip("/")
    return dirs


def _stat(path: Path) -> dict[str, int]:
    """A `key value` per line file such as memory.stat or cpu.stat."""
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


class CgroupSampler:
    scope = "container"

    def __init__(self, pid: int, root: Path = CGROUP_ROOT, proc: Path = PROC_ROOT) -> None:
        self._dirs = cgroup_dirs(pid, root, proc)
        self._v2 = (root / "cgroup.controllers").exists()
        self._last: tuple[int, float] | None = None  # (t_ns, CPU seconds) of the previous tick

    def _memory(self) -> float:
        d = self._dirs["memory"]
        if self._v2:
            return (
                int((d / "memory.current").read_text()) - _stat(d / "memory.stat")["inactive_file"]
            )
        usage = int((d / "memory.usage_in_bytes").read_text())
        return usage - _stat(d / "memory.stat").get("total_inactive_file", 0)

    def _cpu_seconds(self) -> float:
        d = self._dirs["cpu"]
        if self._v2:
            return _stat(d / "cpu.stat")["usage_usec"] / 1e6
        return int((d / "cpuacct.usage").read_text()) / 1e9

    def read(self) -> dict[str, dict[str, float]]:
        metrics: dict[str, float] = {}
        unreadable = (OSError, KeyError, ValueError)  # the cgroup is gone once the container ends
        with contextlib.suppress(*unreadable):
            metrics["mem_used_bytes"] = self._memory()
        with contextlib.suppress(*unreadable):
            now, cpu = time.monotonic_ns(), self._cpu_seconds()
            if self._last is not None and now > self._last[0]:
                metrics["cpu_percent"] = 100 * (cpu - self._last[1]) / ((now - self._last[0]) / 1e9)
            self._last = (now, cpu)
        return {"container": metrics} if metrics else {}

    def close(self) -> None:
        pass  # nothing held open between ticks
