"""Dataset manifests (deepspark_core.datasets): written as sha256sum writes them, resumable,
verified once per host and manifest, and what the library does with DS_DATA_VERIFIED."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepspark_core import datasets
from deepspark_core.datasets import (
    MANIFEST,
    PARTIAL,
    DatasetError,
    check_present,
    verify_manifest,
    write_manifest,
)
from deepspark_workload.core import BaseWorkload


def write_dataset(root: Path) -> None:
    (root / "train").mkdir(parents=True)
    (root / "train" / "a.bin").write_bytes(b"alpha")
    (root / "labels.txt").write_text("beta\n")
    (root / "B upper.txt").write_text("gamma")  # sorts before the lower-case names
    subprocess.run(
        "find . -type f ! -name SHA256SUMS -printf '%P\\0' | LC_ALL=C sort -z"
        " | xargs -0 sha256sum > SHA256SUMS",
        shell=True, cwd=root, check=True,
    )  # fmt: skip


class Counter:
    def __init__(self) -> None:
        self.of, self.done = None, 0

    def total(self, n: int) -> None:
        self.of = n

    def advance(self, n: int = 1) -> None:
        self.done += n


def keep_stat(path: Path, data: bytes) -> None:
    """Rewrite a file's bytes (same length) and put its mtime back: only a hash tells."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_manifest_made_by_sha256sum_verifies(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    digest, files = verify_manifest(tmp_path)
    assert files == 3
    assert digest == hashlib.sha256((tmp_path / MANIFEST).read_bytes()).hexdigest()


def test_write_manifest_is_what_sha256sum_writes(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    by_sha256sum = (tmp_path / MANIFEST).read_bytes()
    (tmp_path / MANIFEST).unlink()
    progress = Counter()
    digest = write_manifest(tmp_path, progress)
    assert (tmp_path / MANIFEST).read_bytes() == by_sha256sum
    assert digest == hashlib.sha256(by_sha256sum).hexdigest()
    assert progress.of == progress.done == len(b"alpha") + len(b"beta\n") + len(b"gamma")
    assert not (tmp_path / PARTIAL).exists()


def test_write_manifest_resumes_without_rehashing(tmp_path: Path) -> None:
    """An interrupted run's partial manifest is trusted for files whose size and mtime it
    recorded (a planted digest shows it was not recomputed), and not for a file changed since."""
    write_dataset(tmp_path)
    (tmp_path / MANIFEST).unlink()
    a, labels = tmp_path / "train" / "a.bin", tmp_path / "labels.txt"
    planted = "f" * 64
    lines = [
        [name, p.stat().st_size, p.stat().st_mtime_ns, planted]
        for name, p in (("train/a.bin", a), ("labels.txt", labels))
    ]
    lines[1][2] -= 1  # labels.txt changed after it was hashed
    (tmp_path / PARTIAL).write_text("".join(json.dumps(x) + "\n" for x in lines) + '["cut')
    (tmp_path / "train" / ".b.bin.partial").write_bytes(b"a converter's leftover")
    progress = Counter()
    write_manifest(tmp_path, progress)
    manifest = datasets.read_manifest(tmp_path)
    assert manifest["train/a.bin"] == planted
    assert manifest["labels.txt"] == hashlib.sha256(b"beta\n").hexdigest()
    assert list(manifest) == ["B upper.txt", "labels.txt", "train/a.bin"]
    assert progress.of == progress.done


def test_a_second_verification_is_a_stat(tmp_path: Path, own_cache_dir: Path) -> None:
    write_dataset(tmp_path)
    digest, _ = verify_manifest(tmp_path)
    assert (own_cache_dir / "datasets" / f"{digest}.json").is_file()
    keep_stat(tmp_path / "train" / "a.bin", b"alphX")  # same size and mtime: not seen ...
    progress = Counter()
    assert verify_manifest(tmp_path, progress) == (digest, 3)
    assert progress.done == 0
    with pytest.raises(DatasetError, match=r"a\.bin does not match"):  # ... unless asked
        verify_manifest(tmp_path, cache=False)


def test_a_changed_file_or_another_root_is_hashed_again(tmp_path: Path) -> None:
    write_dataset(tmp_path / "one")
    verify_manifest(tmp_path / "one")
    (tmp_path / "one" / "labels.txt").write_text("BETA\n")  # a new mtime
    with pytest.raises(DatasetError, match=r"labels\.txt does not match"):
        verify_manifest(tmp_path / "one")
    write_dataset(tmp_path / "two")
    verify_manifest(tmp_path / "two")
    keep_stat(tmp_path / "two" / "labels.txt", b"BETA\n")
    os.rename(tmp_path / "two", tmp_path / "moved")  # the cache knew it elsewhere
    with pytest.raises(DatasetError, match=r"labels\.txt does not match"):
        verify_manifest(tmp_path / "moved")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "train" / "a.bin").write_bytes(b"alpha!"), "does not match"),
        (lambda root: (root / "labels.txt").unlink(), "listed in SHA256SUMS but missing"),
        (lambda root: (root / "SHA256SUMS").unlink(), "SHA256SUMS is missing"),
        (lambda root: (root / "SHA256SUMS").write_text(""), "lists no files"),
        (lambda root: (root / "SHA256SUMS").write_text("abc  x\n"), "SHA256SUMS:1: expected"),
        (lambda root: (root / "SHA256SUMS").write_text("0" * 64 + "  ../x\n"), "expected"),
        (lambda root: (root / "SHA256SUMS").write_text("0" * 64 + "  /etc/x\n"), "expected"),
    ],
)
def test_a_damaged_dataset_is_refused(tmp_path: Path, damage, message: str) -> None:
    write_dataset(tmp_path)
    damage(tmp_path)
    with pytest.raises(DatasetError, match=re.escape(message)):
        verify_manifest(tmp_path)


def test_verified_data_is_checked_for_presence_and_cached_size(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    digest, _ = verify_manifest(tmp_path)
    keep_stat(tmp_path / "labels.txt", b"BETA\n")
    assert check_present(tmp_path) == (digest, 3)  # the agent verified it: no hash
    (tmp_path / "labels.txt").write_text("longer\n")
    with pytest.raises(DatasetError, match=r"labels\.txt changed size since it was verified"):
        check_present(tmp_path)
    (tmp_path / "labels.txt").unlink()
    with pytest.raises(DatasetError, match=r"labels\.txt is listed in SHA256SUMS but missing"):
        check_present(tmp_path)


@pytest.mark.parametrize("rank, verified, hashed", [(0, "", True), (0, "digest", False),
                                                    (1, "", False)])  # fmt: skip
def test_the_library_hashes_unless_the_agent_did(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank: int, verified: str, hashed: bool
) -> None:
    """A run by hand hashes on rank 0 alone; DS_DATA_VERIFIED set to the manifest's digest
    (by the agent) skips the hash: a planted bad file shows which way it went."""
    write_dataset(tmp_path)
    digest = datasets.manifest_digest(tmp_path)
    monkeypatch.setenv("DS_DATA_VERIFIED", digest if verified else "")
    keep_stat(tmp_path / "labels.txt", b"BETA\n")
    workload = SimpleNamespace(rank=rank)
    if hashed:
        with pytest.raises(DatasetError, match="does not match"):
            BaseWorkload._verified(workload, tmp_path)
    else:
        assert BaseWorkload._verified(workload, tmp_path) == (digest, 3)
