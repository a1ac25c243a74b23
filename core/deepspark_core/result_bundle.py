"""Result bundles: one signed run set in one tar, to carry out of an air-gapped site.

A result bundle holds a run set's raw artifacts and its `statement.dsse.json`, under their
names relative to the run set; nothing else (the derived `result.json` and `report.md` are
recomputed by whoever verifies). The statement's subjects are its manifest of sha256s, so
the bundle carries no manifest of its own: `signing.verify_subjects` checks every byte
(against the digests `unpack` computes as it writes).

Reading trusts nothing: `safetar` checks every header (regular files with safe relative
names, each once, within `Limits`) and the archive's end before a byte is written. `unpack`
writes only into a fresh directory it creates under `dest`, and removes it on any failure.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deepspark_core import safetar
from deepspark_core.errors import DeepSparkError
from deepspark_core.runset import STATEMENT_FILE, raw_files
from deepspark_core.safetar import Archive, name_problem, read_archive

MAX_MEMBERS = 10_000
MAX_MEMBER_SIZE = 256 * 2**20
MAX_TOTAL = 1 * 2**30
MAX_STATEMENT_SIZE = 64 * 2**20  # read into memory to hash it


class ResultBundleError(DeepSparkError):
    """A result bundle that cannot be written, or that is invalid, corrupt or unsafe."""


@dataclass(frozen=True)
class Limits(safetar.Limits):
    """What `unpack` accepts: members, bytes per member, bytes in all."""

    members: int = MAX_MEMBERS
    member_size: int = MAX_MEMBER_SIZE
    total: int = MAX_TOTAL


def pack_run_set(run_set: Path, out: Path) -> Path:
    """Write `run_set`'s artifacts and statement to the tar `out`, atomically; returns `out`."""
    statement = run_set / STATEMENT_FILE
    if not statement.is_file():
        raise ResultBundleError(f"{run_set}: not signed (no {STATEMENT_FILE})")
    members = {path.relative_to(run_set).as_posix(): path for path in raw_files(run_set)}
    members[STATEMENT_FILE] = statement
    for name in members:
        if problem := name_problem(name):
            raise ResultBundleError(f"{run_set}: {name!r}: {problem}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as f,
            tarfile.open(fileobj=f, mode="w:", format=tarfile.USTAR_FORMAT) as tar,
        ):
            for name in sorted(members):
                _add(tar, name, members[name])
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _add(tar: tarfile.TarFile, name: str, path: Path) -> None:
    """One regular file, with fixed owner, mode and time: the same run set, the same bytes."""
    with path.open("rb") as file:
        info = tarfile.TarInfo(name)
        info.size = os.fstat(file.fileno()).st_size
        info.mode, info.mtime = 0o644, 0
        tar.addfile(info, file)


@contextmanager
def _read(bundle: Path, limits: Limits) -> Iterator[Archive]:
    """The bundle's archive, every header checked, with its statement."""
    with read_archive(bundle, bundle.name, limits, ResultBundleError) as archive:
        if archive.member(STATEMENT_FILE) is None:
            raise ResultBundleError(f"{bundle.name}: no {STATEMENT_FILE}: not a result bundle")
        yield archive


def read_statement(bundle: Path, limits: Limits = Limits()) -> bytes:
    """The statement of a result bundle whose every header checks; nothing is extracted."""
    with _read(bundle, limits) as archive:
        member = archive.member(STATEMENT_FILE)
        assert member is not None  # checked by _read
        return archive.read_small(member, MAX_STATEMENT_SIZE)


@dataclass(frozen=True)
class Unpacked:
    """An extracted run set, and every file in it (its name there) with the sha256 of the
    bytes written: a verifier checks the signed digests against these, reading nothing again."""

    run_set: Path
    digests: dict[str, str]


def unpack(bundle: Path, dest: Path, limits: Limits = Limits()) -> Unpacked:
    """Extract `bundle` into a new directory under `dest`: the run set and its files' digests."""
    dest.mkdir(parents=True, exist_ok=True)
    run_set = Path(tempfile.mkdtemp(prefix="run-set-", dir=dest))
    try:
        with (
            _read(bundle, limits) as archive,
            safetar.extraction(run_set, ResultBundleError) as out,
        ):
            out.check_space(archive.total_size)
            digests = {member.name: archive.extract(member, out) for member in archive.members}
    except BaseException:
        shutil.rmtree(run_set, ignore_errors=True)  # ours, fresh: nothing else is in it
        raise
    return Unpacked(run_set, digests)
