"""Which generated data a run saw: the digest of its arrays, the same in every framework.

A dataset on disk is identified by its SHA256SUMS manifest instead: deepspark_core.datasets
reads, writes and verifies it (the workload's `data_dir()` uses it).
"""

import hashlib
from collections.abc import Iterable
from typing import Any


def arrays_sha256(*arrays: Any) -> str:
    """sha256 over numpy arrays' shapes, dtypes and bytes, in order (generated data's identity).

    The same data gives the same digest whichever framework holds it: tensors_sha256 (torch)
    and the Paddle workload's log_generated_data hash (shape, dtype name, bytes) alike."""
    import numpy as np  # here, so that manifests need only the standard library

    arrays = [np.ascontiguousarray(a) for a in arrays]
    return _digest((a.shape, a.dtype.name, a.tobytes()) for a in arrays)


def tensors_sha256(*tensors: Any) -> str:
    """arrays_sha256 of torch tensors (bfloat16 included, which numpy lacks)."""
    import torch  # here, so that a workload in another framework can check manifests without it

    def item(t: "torch.Tensor") -> tuple[tuple[int, ...], str, bytes]:
        t = t.detach().cpu().contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        return tuple(t.shape), str(t.dtype).removeprefix("torch."), data

    return _digest(item(t) for t in tensors)


def _digest(items: Iterable[tuple[tuple[int, ...], str, bytes]]) -> str:
    digest = hashlib.sha256()
    for shape, dtype, data in items:
        digest.update(f"{tuple(shape)} {dtype};".encode())
        digest.update(data)
    return digest.hexdigest()
