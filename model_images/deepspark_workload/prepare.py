"""Turning a dataset's official layout into the layout a workload's full config reads.

Each workload with a real dataset has a `prepare.py` beside its workload.toml that defines

    def convert(src: Path, dst: Path, progress: Progress) -> None

reading the official layout under `src` (never writing there) and writing the workload's
layout under `dst`. `deepspark-agent data prepare MODEL --from SRC --to DST` runs it and then
writes `dst/SHA256SUMS`. A converter is resumable: it writes every output file through
`write_atomic` (a temporary name, then a rename) and skips outputs that already exist
(`done`), so a run cut off by a signal or a full disk starts again where it stopped and never
leaves a half-written file under its final name. It reports its work through `progress`
(`total` once the amount is known, then `advance`).
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol


class Progress(Protocol):
    def total(self, n: int) -> None:
        """The amount of work (files, records, samples) once it is known."""

    def advance(self, n: int = 1) -> None:
        """n more units done (skipped outputs count as done)."""


class PrepareError(ValueError):
    """The source is not the official layout the converter expects; one line saying what."""


def done(path: Path) -> bool:
    """An output an earlier, interrupted run already wrote (write_atomic's renames are whole)."""
    return path.is_file()


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """write(tmp) to a temporary name beside path, then rename it to path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic_all(paths: Sequence[Path], write: Callable[[list[Path]], None]) -> None:
    """write_atomic for outputs one pass writes together: write(tmps), then every rename. An
    interruption between renames leaves some outputs whole and others missing: callers check
    `done` on every path."""

    def nest(tmps: list[Path]) -> None:
        if len(tmps) == len(paths):
            write(tmps)
        else:
            write_atomic(paths[len(tmps)], lambda tmp: nest([*tmps, tmp]))

    nest([])
