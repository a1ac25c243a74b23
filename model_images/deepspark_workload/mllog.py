"""MLPerf-style event lines, `:::MLLOG {json}`, as docs/workload-contract.md defines them.

Written here rather than taken from mlperf_logging so that a workload image needs nothing
beyond the standard library for logging; MLCommons' parser reads the lines unchanged.
"""

import json
import sys
import time
from pathlib import Path
from typing import Any

POINT_IN_TIME = "POINT_IN_TIME"
INTERVAL_START = "INTERVAL_START"
INTERVAL_END = "INTERVAL_END"


class MLLogger:
    """Prints events to stdout and appends them to `path`; silent unless rank is 0."""

    def __init__(self, path: Path | None = None, rank: int = 0, namespace: str = "") -> None:
        self.path, self.rank, self.namespace = path, rank, namespace
        if path is not None and rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)

    def event(
        self,
        key: str,
        value: Any = None,
        metadata: dict[str, Any] | None = None,
        event_type: str = POINT_IN_TIME,
    ) -> None:
        if self.rank != 0:
            return
        mono_ns, time_ms = time.monotonic_ns(), int(time.time() * 1000)
        record = {
            "namespace": self.namespace,
            "time_ms": time_ms,
            "event_type": event_type,
            "key": key,
            "value": value,
            "metadata": {**(metadata or {}), "mono_ns": mono_ns, "rank": self.rank},
        }
        line = ":::MLLOG " + json.dumps(record) + "\n"
        sys.stdout.write(line)
        sys.stdout.flush()
        if self.path is not None:  # reopened per event: every line is on disk if we are killed
            with self.path.open("a") as f:
                f.write(line)

    def start(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> None:
        self.event(key, value, metadata, INTERVAL_START)

    def end(self, key: str, value: Any = None, metadata: dict[str, Any] | None = None) -> None:
        self.event(key, value, metadata, INTERVAL_END)
