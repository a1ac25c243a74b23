"""Which data a run saw: a checksum manifest for a dataset on disk, a digest for generated data.

A dataset under DS_DATA_DIR carries `SHA256SUMS` at its root, in the format `sha256sum` writes
and `sha256sum -c` checks (`<64 hex>  <relative path>` per line), made once with

    cd $DATA && find . -type f ! -name SHA256SUMS -printf '%P\\0' | sort -z \\
        | xargs -0 sha256sum > SHA256SUMS

Before training, every listed file is hashed and compared; the run logs the manifest's own
sha256, so two runs saw the same bytes exactly when they log the same digest. Generated (mini)
data logs the sha256 of its arrays instead (arrays_sha256), the same in every framework.
"""

import hashlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from .env import ContractError

MANIFEST = "SHA256SUMS"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(root: Path) -> dict[str, str]:
    """root/SHA256SUMS as {relative path: sha256}; a malformed or escaping entry is an error."""
    path = root / MANIFEST
    if not path.is_file():
        raise ContractError(f"{path} is missing: a dataset carries a sha256sum manifest")
    entries: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        name = name.removeprefix("./")
        if name.startswith("*"):  # sha256sum's binary-mode marker
            name = name[1:]
        parts = PurePosixPath(name).parts
        valid = len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
        if not (sep and valid and parts) or parts[0] == "/" or ".." in parts:
            raise ContractError(f"{path}:{lineno}: expected '<sha256>  <relative path>'")
        entries[name] = digest
    if not entries:
        raise ContractError(f"{path} lists no files")
    return entries


def verify_manifest(root: Path) -> tuple[str, int]:
    """Check every file root/SHA256SUMS lists; return the manifest's sha256 and its file count."""
    for name, want in read_manifest(root).items():
        path = root / name
        if not path.is_file():
            raise ContractError(f"{path} is listed in {MANIFEST} but missing")
        if file_sha256(path) != want:
            raise ContractError(f"{path} does not match its sha256 in {MANIFEST}")
    return file_sha256(root / MANIFEST), len(read_manifest(root))


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
