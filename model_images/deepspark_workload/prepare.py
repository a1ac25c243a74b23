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

`python -m deepspark_workload.prepare WORKLOAD_DIR SRC DST` (the agent's way in, so that it
never imports the converters' numpy or Pillow) runs WORKLOAD_DIR/prepare.py's convert and prints
its progress as JSON lines on stdout (`{"total": n}`, `{"advance": n}`); a PrepareError is one
line on stderr and exit 1.
"""

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepspark_core.datasets import Progress as Progress  # the converters' interface


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


def link_or_copy(source: Path, target: Path) -> None:
    """target as a hard link to source (the same bytes, no space), else a copy."""
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copyfile(source, target)


def link_all(pairs: list[tuple[Path, Path]], progress: Progress) -> None:
    """Each (source, target) linked or copied, those already done skipped; one unit each."""
    progress.total(len(pairs))
    for source, target in pairs:
        if not done(target):
            write_atomic(target, lambda tmp, source=source: link_or_copy(source, tmp))
        progress.advance()


def save_npy(path: Path, array: Any) -> None:
    """A numpy array saved to exactly path (np.save given a name not ending in .npy adds it)."""
    import numpy as np  # here: the interface itself needs only the standard library

    with path.open("wb") as f:
        np.save(f, array)


def write_npy(path: Path, array: Any) -> None:
    """A numpy array saved to path through write_atomic."""
    write_atomic(path, lambda tmp: save_npy(tmp, array))


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


class JsonLines:
    """A Progress printed as JSON lines on stdout, for the agent to read."""

    def total(self, n: int) -> None:
        print(json.dumps({"total": n}), flush=True)

    def advance(self, n: int = 1) -> None:
        print(json.dumps({"advance": n}), flush=True)


def main(workload_dir: str, src: str, dst: str) -> None:
    module_file = Path(workload_dir) / "prepare.py"
    module_spec = importlib.util.spec_from_file_location("workload_prepare", module_file)
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"error: {module_file}: not a Python module")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    source = Path(src)
    if not source.is_dir():
        raise SystemExit(f"error: {source} is not a directory")
    try:
        module.convert(source, Path(dst), JsonLines())
    except (PrepareError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    # Through the module's import name: the converters raise *its* PrepareError, not __main__'s.
    from deepspark_workload.prepare import main as imported_main

    imported_main(*sys.argv[1:])
