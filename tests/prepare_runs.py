"""Running a workload's data converter (its prepare.py) as `deepspark-agent data prepare` does:
convert the official layout, then write the SHA256SUMS manifest the full config verifies."""

import hashlib
from pathlib import Path

from deepspark_workload.datasets import MANIFEST
from workload_runs import load_module


class Counted:
    """A Progress that keeps what it was told."""

    def __init__(self) -> None:
        self.expected: int | None = None
        self.count = 0

    def total(self, n: int) -> None:
        self.expected = n

    def advance(self, n: int = 1) -> None:
        self.count += n


def convert(workload: str, src: Path, dst: Path) -> Counted:
    """The workload's convert(src, dst): every unit of work it announced reported done."""
    progress = Counted()
    load_module(workload, "prepare").convert(src, dst, progress)
    assert progress.count == progress.expected
    return progress


def prepare(workload: str, src: Path, dst: Path) -> Path:
    """convert, then dst's manifest (sha256sum's format: `<hex>  <relative path>`); dst."""
    convert(workload, src, dst)
    files = sorted(p for p in dst.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(dst)}" for p in files]
    (dst / MANIFEST).write_text("".join(line + "\n" for line in lines))
    return dst
