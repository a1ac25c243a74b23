"""Which bytes a dataset holds: its `SHA256SUMS` manifest, written, read and verified, and the
host's cache of verifications.

A dataset carries `SHA256SUMS` at its root in the format `sha256sum` writes and `sha256sum -c`
checks (`<64 hex>  <relative path>` per line, sorted). The manifest's own sha256 names the
dataset: two runs saw the same bytes exactly when they log the same digest.

Hashing a large dataset takes minutes (Criteo's ~700 GB: ~10 min a core), so a verification is
recorded in a cache, `$DEEPSPARK_CACHE_DIR/datasets/<manifest sha256>.json` (default
`~/.cache/deepspark`), holding the root and each file's size and mtime_ns: verifying the same
manifest at the same root again is a stat of each file. The agent verifies a run's data once
and tells its ranks so through `DS_DATA_VERIFIED=<manifest sha256>` (`check_present`).

Standard library and deepspark_core only: workload images carry this module.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Protocol

from deepspark_core.errors import DeepSparkError
from deepspark_core.files import write_atomic

MANIFEST = "SHA256SUMS"
PARTIAL = f".{MANIFEST}.partial"  # the files hashed so far by an interrupted write_manifest
VERIFIED_ENV = "DS_DATA_VERIFIED"
CACHE_ENV = "DEEPSPARK_CACHE_DIR"
_CHUNK = 1 << 20
Stats = dict[str, tuple[int, int]]  # relative path: (size, mtime_ns)


class DatasetError(DeepSparkError):
    """A dataset that is missing, malformed or does not match its manifest."""


class Progress(Protocol):
    def total(self, n: int) -> None:
        """The amount of work (bytes, files, records) once it is known."""

    def advance(self, n: int = 1) -> None:
        """n more units done (skipped work counts as done)."""


class _Silent:
    """A Progress that shows nothing."""

    def total(self, n: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


SILENT = _Silent()


def file_sha256(path: Path, progress: Progress = SILENT) -> str:
    """The file's sha256, advancing progress by each chunk's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            progress.advance(len(chunk))
    return digest.hexdigest()


def read_manifest(root: Path) -> dict[str, str]:
    """root/SHA256SUMS as {relative path: sha256}; a malformed or escaping entry is an error."""
    path = _manifest(root)
    entries: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        name = name.removeprefix("./")
        if name.startswith("*"):  # sha256sum's binary-mode marker
            name = name[1:]
        parts = PurePosixPath(name).parts
        valid = len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
        if not (sep and valid and parts) or parts[0] == "/" or ".." in parts:
            raise DatasetError(f"{path}:{lineno}: expected '<sha256>  <relative path>'")
        entries[name] = digest
    if not entries:
        raise DatasetError(f"{path} lists no files")
    return entries


def manifest_digest(root: Path) -> str:
    """The dataset's identity: the sha256 of its manifest file."""
    return file_sha256(_manifest(root))


def _manifest(root: Path) -> Path:
    path = root / MANIFEST
    if not path.is_file():
        raise DatasetError(f"{path} is missing: a dataset carries a sha256sum manifest")
    return path


def verify_manifest(root: Path, progress: Progress = SILENT, cache: bool = True) -> tuple[str, int]:
    """Check every file root/SHA256SUMS lists; return the manifest's sha256 and its file count.

    With cache, a manifest verified before at this root whose files kept their sizes and
    mtimes is not hashed again; a full verification is recorded for the next one."""
    entries = read_manifest(root)
    digest = manifest_digest(root)
    stats = _stats(root, entries)
    if cache and _cached(digest, root) == stats:
        return digest, len(entries)
    progress.total(sum(size for size, _ in stats.values()))
    for name, want in entries.items():
        if file_sha256(root / name, progress) != want:
            raise DatasetError(f"{root / name} does not match its sha256 in {MANIFEST}")
    if cache:  # the stats from before hashing: a file changed meanwhile is hashed next time
        record = {"root": str(root.resolve()), "files": stats}
        write_atomic(_cache_file(digest), json.dumps(record).encode())
    return digest, len(entries)


def check_present(root: Path) -> tuple[str, int]:
    """The manifest's sha256 and file count, for data verified before (DS_DATA_VERIFIED): every
    listed file present, with the size the host's cache recorded where this process sees that
    cache (a container does not: presence only)."""
    entries = read_manifest(root)
    digest = manifest_digest(root)
    cached = _cached(digest, root) or {}
    for name, (size, _) in _stats(root, entries).items():
        if name in cached and cached[name][0] != size:
            raise DatasetError(f"{root / name} changed size since it was verified")
    return digest, len(entries)


def write_manifest(root: Path, progress: Progress = SILENT) -> str:
    """Write root/SHA256SUMS over every file under root (sorted, sha256sum's format, atomically)
    and return its digest. Resumable: each file hashed is appended to root/.SHA256SUMS.partial
    with its size and mtime, and a re-run after an interruption hashes only the others."""
    names = sorted(_files(root))
    stats = _stats(root, dict.fromkeys(names, ""))
    partial = root / PARTIAL
    done = _hashed_before(partial, stats)
    progress.total(sum(size for size, _ in stats.values()))
    progress.advance(sum(stats[name][0] for name in done))
    with partial.open("a") as log:
        for name in names:
            if name not in done:
                done[name] = file_sha256(root / name, progress)
                size, mtime_ns = stats[name]
                log.write(json.dumps([name, size, mtime_ns, done[name]]) + "\n")
                log.flush()
    lines = "".join(f"{done[name]}  {name}\n" for name in names)
    write_atomic(root / MANIFEST, lines.encode())
    partial.unlink()
    return manifest_digest(root)


def cache_dir() -> Path:
    """Where this host keeps its verifications."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "deepspark"
    return Path(base) / "datasets"


def _cache_file(digest: str) -> Path:
    return cache_dir() / f"{digest}.json"


def _cached(digest: str, root: Path) -> Stats | None:
    """The stats recorded when this manifest was last verified at root, if it was."""
    try:
        record = json.loads(_cache_file(digest).read_text())
        if record["root"] != str(root.resolve()):
            return None
        return {name: (size, mtime) for name, (size, mtime) in record["files"].items()}
    except (OSError, ValueError, KeyError, TypeError):  # none, or unreadable: verify in full
        return None


def _stats(root: Path, entries: dict[str, str]) -> Stats:
    stats: Stats = {}
    for name in entries:
        try:
            st = (root / name).stat()
        except FileNotFoundError:
            raise DatasetError(f"{root / name} is listed in {MANIFEST} but missing") from None
        stats[name] = (st.st_size, st.st_mtime_ns)
    return stats


def _files(root: Path) -> list[str]:
    """Every file under root, as sha256sum lists it, but the manifest and partial outputs."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory")
    names = []
    for path in root.rglob("*"):
        if not path.is_file() or path.name == MANIFEST or _partial(path.name):
            continue
        name = path.relative_to(root).as_posix()
        if "\n" in name or "\\" in name:  # sha256sum would escape them; readers would not
            raise DatasetError(f"{path}: a newline or backslash in a file name")
        names.append(name)
    if not names:
        raise DatasetError(f"{root} holds no files")
    return names


def _partial(name: str) -> bool:
    """A temporary file of write_atomic's or ours, left by an interrupted run."""
    return name.startswith(".") and name.endswith(".partial")


def _hashed_before(partial: Path, stats: Stats) -> dict[str, str]:
    """The sha256s an interrupted run recorded, for files whose size and mtime are unchanged."""
    done: dict[str, str] = {}
    if not partial.is_file():
        return done
    for line in partial.read_text().splitlines():
        try:
            name, size, mtime_ns, digest = json.loads(line)
        except ValueError:  # the last line, cut off mid-write
            continue
        if stats.get(name) == (size, mtime_ns):
            done[name] = digest
    return done
