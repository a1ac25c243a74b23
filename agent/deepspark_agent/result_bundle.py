"""Result bundles: one signed run set in one tar, to carry out of an air-gapped site.

A result bundle holds a run set's raw artifacts and its `statement.dsse.json`, under their
names relative to the run set; nothing else (the derived `result.json` and `report.md` are
recomputed by whoever verifies). The statement's subjects are its manifest of sha256s, so
the bundle carries no manifest of its own: `signing.verify_subjects` checks every byte.

Reading trusts nothing. `unpack` takes an uncompressed tar only (every header size is then
the real size), refuses any member that is not a regular file with a safe relative name
(`bundle.name_problem`: no absolute paths, `..`, links, devices, FIFOs, directories), a name
given twice, too many members, or more bytes than the caps, before a byte is written; it
writes only into a fresh directory it creates under `dest`, and removes it on any failure.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deepspark_agent.bundle import name_problem
from deepspark_agent.runset import STATEMENT_FILE, raw_files

MAX_MEMBERS = 10_000
MAX_MEMBER_SIZE = 256 * 2**20
MAX_TOTAL = 1 * 2**30
CHUNK = 2**20


class ResultBundleError(ValueError):
    """A result bundle that cannot be written, or that is invalid, corrupt or unsafe."""


@dataclass(frozen=True)
class Limits:
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


def unpack(bundle: Path, dest: Path, limits: Limits = Limits()) -> Path:
    """Extract `bundle` into a new directory under `dest`; returns it (the run set)."""
    label = bundle.name
    members = _checked_members(bundle, label, limits)
    dest.mkdir(parents=True, exist_ok=True)
    run_set = Path(tempfile.mkdtemp(prefix="run-set-", dir=dest))
    try:
        with tarfile.open(bundle, mode="r:") as tar:
            for member in members:
                _extract(tar, member, run_set, label)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(run_set, ignore_errors=True)
        raise ResultBundleError(f"{label}: cannot extract: {exc}") from None
    except BaseException:
        shutil.rmtree(run_set, ignore_errors=True)
        raise
    return run_set


def _checked_members(bundle: Path, label: str, limits: Limits) -> list[tarfile.TarInfo]:
    """Every member's header, each checked, before anything is extracted."""
    try:
        size = bundle.stat().st_size
    except OSError as exc:
        raise ResultBundleError(f"{label}: {exc.strerror}") from None
    if size == 0:
        raise ResultBundleError(f"{label}: empty")
    if size > limits.total + limits.members * 3 * tarfile.BLOCKSIZE:
        raise ResultBundleError(f"{label}: larger than {limits.total} bytes")
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    total = 0
    try:
        # "r:" reads uncompressed tars only: a compressed one fails to open.
        with tarfile.open(bundle, mode="r:") as tar:
            while (member := tar.next()) is not None:
                if len(members) == limits.members:
                    raise ResultBundleError(f"{label}: more than {limits.members} members")
                if problem := _member_problem(member, limits):
                    raise ResultBundleError(f"{label}: {member.name!r}: {problem}")
                if member.name.casefold() in seen:  # casefold: macOS, Windows
                    raise ResultBundleError(f"{label}: {member.name!r}: given twice")
                seen.add(member.name.casefold())
                total += member.size
                if total > limits.total:
                    raise ResultBundleError(f"{label}: more than {limits.total} bytes in all")
                members.append(member)
    except tarfile.TarError as exc:
        raise ResultBundleError(f"{label}: not an uncompressed tar archive ({exc})") from None
    if STATEMENT_FILE not in seen:
        raise ResultBundleError(f"{label}: no {STATEMENT_FILE}: not a result bundle")
    return members


def _member_problem(member: tarfile.TarInfo, limits: Limits) -> str | None:
    if problem := name_problem(member.name):
        return problem
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return "not a regular file"
    if member.size > limits.member_size:
        return f"larger than {limits.member_size} bytes"
    return None


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, label: str) -> None:
    """Write one checked member under `root`: new files only, never through a link."""
    path = root.joinpath(*member.name.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:  # checked already; an extra guard costs nothing
        raise ResultBundleError(f"{label}: {member.name!r}: not a regular file")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    written = 0
    with source, os.fdopen(os.open(path, flags, 0o644), "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            out.write(chunk)
    if written != member.size:
        raise ResultBundleError(f"{label}: {member.name!r}: truncated")
