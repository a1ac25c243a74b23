"""`deepspark-agent data`: which dataset each workload trains on, turning its official layout
into the workload's (the workload's prepare.py, run in a subprocess), and checking a dataset
against its manifest.

The agent never imports a converter: like the process runtime it runs this interpreter with the
workloads' folder on PYTHONPATH (`python -m deepspark_workload.prepare`), and reads the
converter's progress from the JSON lines it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deepspark_agent.workloads import Workload, list_workloads, python_path
from deepspark_core.datasets import DatasetError, Progress, write_manifest

CONVERTER = "prepare.py"


def catalog(extra: Sequence[Path] = ()) -> list[dict[str, Any]]:
    """Per workload: its dataset's name, size, licence, url and stand-in note (None without a
    [dataset] table: its presets generate their data)."""
    return [
        {
            "workload": w.name,
            "dataset": w.dataset.model_dump() if w.dataset else None,
            "converter": (w.path / CONVERTER).is_file(),
        }
        for w in list_workloads(extra)
    ]


def prepare(
    workload: Workload, src: Path, dst: Path, converting: Progress, hashing: Progress
) -> str:
    """Convert src (the official layout) into dst with the workload's prepare.py, then write
    dst's SHA256SUMS; return its digest. Both steps resume where an interrupted run stopped."""
    if not (workload.path / CONVERTER).is_file():
        what = "its presets generate their data" if workload.dataset is None else "no converter"
        raise DatasetError(f"{workload.name} has no {CONVERTER}: {what}")
    if not src.is_dir():
        raise DatasetError(f"--from {src} is not a directory")
    if dst.resolve() == src.resolve() or dst.resolve().is_relative_to(src.resolve()):
        raise DatasetError(f"--to {dst} is inside --from {src}: the source is read-only")
    _convert(workload, src, dst, converting)
    return write_manifest(dst, hashing)


def _convert(workload: Workload, src: Path, dst: Path, progress: Progress) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": python_path(workload),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "deepspark_workload.prepare", str(workload.path)]
    # stderr to a file: a pipe left unread while stdout is followed could fill and block it.
    with tempfile.TemporaryFile("w+") as stderr:
        with subprocess.Popen(
            [*command, str(src.resolve()), str(dst.resolve())], cwd=workload.path, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True,
        ) as proc:  # fmt: skip
            assert proc.stdout is not None
            for line in proc.stdout:
                _report(line, progress)
        stderr.seek(0)
        errors = stderr.read()
    if proc.returncode != 0:
        last = errors.strip().splitlines()[-1] if errors.strip() else f"exit {proc.returncode}"
        raise DatasetError(f"{workload.name}'s converter: {last.removeprefix('error: ')}")


def _report(line: str, progress: Progress) -> None:
    """A converter's progress line ({"total": n} or {"advance": n}); other output is ignored."""
    try:
        message = json.loads(line)
    except ValueError:
        return
    if isinstance(message, dict):
        if isinstance(message.get("total"), int):
            progress.total(message["total"])
        elif isinstance(message.get("advance"), int):
            progress.advance(message["advance"])
