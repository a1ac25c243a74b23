"""Every workload in the catalog, mini config in speed mode: two ranks through its launcher
(torchrun, or the one its workload.toml names), and each low precision its framework's CPU
build can run. `workload_runs.speed` checks the events and every window's samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepspark_agent.workloads import list_workloads
from workload_runs import spec, speed

pytestmark = pytest.mark.slow
WORKLOADS = list_workloads()

# Paddle's auto_cast does nothing on a CPU, so its workloads refuse amp and bf16 there.
CPU_PRECISIONS = {"pytorch": ("bf16", "amp"), "paddlepaddle": ()}
# fp16 3D convolutions take minutes on a CPU: test_unet3d checks one amp step instead.
TOO_SLOW = {("unet3d", "amp")}
# fp16 and bf16 are emulated on a CPU: smaller batches keep those runs short.
SMALL_BATCH = {"conformer": 8, "cpm": 8, "dlrm": 64, "fairmot": 4, "tacotron2": 8, "wave_mlp": 16}
SMALL_BATCH |= {"yolov5": 8}


def batch_env(name: str) -> dict[str, str]:
    return {"DS_BATCH_SIZE": str(SMALL_BATCH[name])} if name in SMALL_BATCH else {}


@pytest.mark.parametrize("name", [w.name for w in WORKLOADS])
def test_two_ranks(name: str, tmp_path: Path) -> None:
    log = speed(name, tmp_path, ranks=2, windows=1, **batch_env(name))
    assert all(e["metadata"]["rank"] == 0 for e in log)  # rank 0 alone logs
    per_rank = SMALL_BATCH.get(name, spec(name)["configs"]["mini"]["batch_size"])
    assert {e["key"]: e for e in log}["global_batch_size"]["value"] == 2 * per_rank


@pytest.mark.parametrize(
    "name,precision",
    [
        (w.name, p)
        for w in WORKLOADS
        for p in CPU_PRECISIONS[w.framework]
        if (w.name, p) not in TOO_SLOW
    ],
)
def test_low_precision(name: str, precision: str, tmp_path: Path) -> None:
    speed(name, tmp_path, windows=1, DS_PRECISION=precision, **batch_env(name))
