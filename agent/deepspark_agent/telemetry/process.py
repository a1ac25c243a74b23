"""Host telemetry of a process tree: what a CPU-only run has, local or in a container."""

from __future__ import annotations

import time

import psutil


def tree_pids(pid: int) -> set[int]:
    """A process and its descendants now (empty once it has ended)."""
    try:
        root = psutil.Process(pid)
        return {pid, *(p.pid for p in root.children(recursive=True))}
    except psutil.Error:
        return set()


class ProcessTreeSampler:
    """Memory (RSS) and CPU use of a process and all its descendants: a CPU-only run's telemetry.

    Finding descendants scans all of /proc (about 1.5 ms here), so the tree is refreshed once
    a second; reading the known processes each tick costs a few microseconds each. A rank
    that starts between refreshes is counted from the next one.
    """

    scope = "process-tree"
    REFRESH_NS = 1_000_000_000

    def __init__(self, pid: int) -> None:
        self._pid = pid
        # Kept across ticks: cpu_percent measures since the previous call on the same object.
        self._procs: dict[int, psutil.Process] = {}
        self._refreshed_ns = 0

    def _refresh(self) -> None:
        now = time.monotonic_ns()
        if self._procs and now - self._refreshed_ns < self.REFRESH_NS:
            return
        root = self._procs.get(self._pid) or psutil.Process(self._pid)
        tree = [root, *root.children(recursive=True)]
        self._procs = {p.pid: self._procs.get(p.pid, p) for p in tree}
        self._refreshed_ns = now

    def read(self) -> dict[str, dict[str, float]]:
        try:
            self._refresh()
        except psutil.Error:  # not started yet, or ended between two ticks
            return {}
        rss = cpu = 0.0
        for proc in list(self._procs.values()):
            try:
                rss += proc.memory_info().rss
                cpu += proc.cpu_percent(None)
            except psutil.Error:  # exited since the last refresh
                del self._procs[proc.pid]
        if self._pid not in self._procs:
            return {}
        return {"process-tree": {"mem_used_bytes": rss, "cpu_percent": cpu}}

    def close(self) -> None:
        pass  # psutil holds nothing open between ticks
