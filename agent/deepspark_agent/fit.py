"""Before any run starts: can this preset run here? Its memory on one device, its dataset.

A full DLRM builds 104.5 GB of tables before it reads a byte of data, and a converge run
builds its model before its data loader opens the dataset: both would fail minutes in with a
raw allocator or file error. These checks refuse such a run up front, in one line that names
the figure and the way out.
"""

from __future__ import annotations

import math
from pathlib import Path

import psutil

from deepspark_agent.placement import Placement
from deepspark_core.datasets import MANIFEST
from deepspark_core.errors import DeepSparkError
from deepspark_core.system import SystemDescription
from deepspark_core.workload_spec import Memory, Preset

GB = 1e9


class FitError(DeepSparkError):
    """A run that cannot fit the device's memory, or lacks its dataset."""


def device_memory_bytes(system: SystemDescription, placement: Placement) -> int | None:
    """The memory of one device the run will use: the smallest of the placement's
    accelerators, the host's available memory for a CPU run; None when it is not known."""
    if placement.vendor is None:
        return psutil.virtual_memory().available
    chosen = [
        a for a in system.accelerators
        if a.vendor == placement.vendor and a.index in placement.indices
    ]  # fmt: skip
    sizes = [a.memory_bytes for a in chosen if a.memory_bytes]
    return min(sizes) if sizes else None


def fit_error(
    name: str, memory: Memory, batch_size: int, have_bytes: int, device: str
) -> str | None:
    """Why `name` at batch_size cannot fit a device of have_bytes; None when it fits."""
    need, have = memory.need_gb(batch_size), have_bytes / GB
    available = " available" if device == "host" else ""
    if need <= have:
        return None
    per_sample = memory.per_sample_gb
    largest = math.floor((have - memory.fixed_gb) / per_sample) if per_sample else 0
    ways = [f"--batch-size {largest} or less"] if largest >= 1 else []
    ways += ["a sharded variant on more devices (this one holds the whole model on every "
             "rank)", "a smaller preset"]  # fmt: skip
    return (
        f"{name} needs ~{need:.3g} GB per device at batch {batch_size} ({memory.fixed_gb:g} GB "
        f"weights, gradients, optimizer state and workspace + {per_sample * batch_size:.3g} GB "
        f"activations), this {device} has {have:.3g} GB{available}: use "
        + ", ".join(ways[:-1])
        + f" or {ways[-1]}"
    )


def check_fit(
    name: str,
    preset: Preset,
    batch_size: int | None,
    system: SystemDescription,
    placement: Placement,
) -> None:
    """FitError when the preset states its memory and one device of the run has less."""
    if preset.memory is None:
        return
    have = device_memory_bytes(system, placement)
    if have is None:
        return
    device = "host" if placement.vendor is None else "device"
    if why := fit_error(name, preset.memory, batch_size or preset.batch_size, have, device):
        raise FitError(why)


def check_data_dir(name: str, preset: Preset, data_dir: Path | None) -> None:
    """FitError unless a converge run of a preset with a real dataset has one on disk: the
    directory given, present, and carrying its SHA256SUMS manifest."""
    if not preset.real_data:
        return
    if data_dir is None:
        raise FitError(
            f"{name} trains on a real dataset in converge mode: give --data-dir, a directory "
            f"with a {MANIFEST} manifest (docs/workload-contract.md), or use --mode speed"
        )
    if not data_dir.is_dir():
        raise FitError(f"--data-dir {data_dir}: no such directory")
    if not (data_dir / MANIFEST).is_file():
        raise FitError(
            f"--data-dir {data_dir}: no {MANIFEST} manifest (sha256sum's format: "
            "docs/workload-contract.md)"
        )
