"""Host telemetry of a process tree: what a CPU-only run has, local or in a container."""

from __future__ import annotations

import psutil


def tree_pids(pid: int) -> set[int]:
    """A process and its descendants now (empty once it has ended)."""
    try:
        root = psutil.Process(pid)
        return {pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.Error:
        return set()


class ProcessTreeSampler:
    """Memory (RSS) and CPU use of a process and all its descendants: a CPU-only run's telemetry."""

    scope = "process-tree"

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._procs: dict[int, psutil.Process] = {}

    def read(self) -> dict[str, dict[str, float]]:
        try:
            root = self._procs.get(self._pid) or psutil.Process(self._pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:  # not started yet, or ended between two ticks
            return {}
        rss = cpu = 0.0
        for proc in tree:
            # Keep Process objects across ticks: cpu_percent measures since the previous call.
            proc = self._procs.setdefault(proc.pid, proc)
            try:
                rss += proc.memory_info().rss
                cpu += proc.cpu_percent(None)
            except psutil.Error:
                continue
        return {"process-tree": {"mem_used_bytes": rss, "cpu_percent": cpu}}

    def close(self) -> None:
        pass  # psutil holds nothing open between ticks
