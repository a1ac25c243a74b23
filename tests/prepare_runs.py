"""Running a workload's data converter (its prepare.py) as `deepspark-agent data prepare` does:
convert the official layout, then write the SHA256SUMS manifest the full config verifies."""

import hashlib
import json
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


def tiny_preset(data: str, model: dict, optim: dict, **keys: object) -> str:
    """A `[configs.tiny]` table for train_on: the full preset's data, a CPU-sized model, and
    one epoch of batch 4 unless keys say otherwise (TOML's values are JSON's here)."""

    def table(name: str, values: dict) -> list[str]:
        return [f"[configs.{name}]", *(f"{k} = {json.dumps(v)}" for k, v in values.items())]

    head = dict(target=0.0, batch_size=4, epochs=1, steps_per_window=2, max_seconds=120)
    return "\n".join(
        table("tiny", {**head, "data": data, **keys})
        + table("tiny.model", model)
        + table("tiny.optim", optim)
    )
