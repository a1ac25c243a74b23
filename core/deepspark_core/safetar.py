"""The one tar reader for every archive the project opens: it trusts nothing in the file.

Offline bundles, the image tars inside them, and result bundles (on the agent and in the
collector) all go through `read_archive`. It takes uncompressed tars only: every size in a
header is then the size on disk, so there is no decompression ratio for a bomb to exploit
and every header can be checked, by seeking, before a byte is extracted. It refuses
compressed files, pax and GNU long-name headers over 1 MiB (tarfile reads them whole into
memory), a corrupt or truncated header and data after the end (tarfile stops quietly at
both), and too many members or bytes. With `plain` (any archive that is extracted) every
member must also be a regular file with a safe relative name, given once. `extraction`
writes new files only, under one directory, and removes them all on any failure.

Each caller keeps its policy: the `Limits`, the names it expects, and its error class,
which every message here is raised as (one line, naming the archive).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

META_HEADER_LIMIT = 2**20  # pax and GNU long-name headers, which tarfile reads into memory
CHUNK = 2**20
MAX_NAME = 99  # one tar header holds the name; longer needs a pax or GNU header
_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
_KIND = {
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.DIRTYPE: "directory",
    tarfile.CONTTYPE: "contiguous file",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}
Error = type[Exception]  # the caller's error class, raised with a one-line message


@dataclass(frozen=True)
class Limits:
    """What an archive may hold: members, bytes per member, bytes in all (header sizes)."""

    members: int
    member_size: int
    total: int


def name_problem(name: str) -> str | None:
    """Why `name` is not a safe member name (relative, plain parts, no `.` or `..`), or None."""
    if not name:
        return "empty name"
    if name.startswith("/"):
        return "absolute path"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return f"unsafe name ({part or 'empty'!r} component)"
        if not _NAME_PART.fullmatch(part):
            return f"unsafe name ({part!r}: only letters, digits, '.', '_', '-')"
    if len(name) > MAX_NAME:
        return f"name longer than {MAX_NAME} characters"
    return None


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses oversized pax and long-name headers, which tarfile would read whole into memory."""

    _META = (
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
    )

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in self._META and self.size > META_HEADER_LIMIT:
            raise tarfile.ReadError(f"extended header of {self.size} bytes at offset {self.offset}")
        return super()._proc_member(tarfile_)


@dataclass
class Archive:
    """An open, checked archive: its members' headers in archive order; no data read yet."""

    tar: tarfile.TarFile
    label: str
    members: list[tarfile.TarInfo]
    error: Error

    def member(self, name: str) -> tarfile.TarInfo | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def total_size(self) -> int:
        return sum(m.size for m in self.members)

    def read_small(self, member: tarfile.TarInfo, limit: int) -> bytes:
        """A regular member read into memory, refused over `limit` bytes."""
        where = self._where(member)
        if not member.isreg():  # extractfile would follow a link
            raise self.error(f"{where}: not a regular file")
        if member.size > limit:
            raise self.error(f"{where}: {member.size} bytes, over the limit of {limit}")
        try:
            src = self.tar.extractfile(member)
            raw = src.read(member.size + 1) if src else b""
        except (OSError, tarfile.TarError) as exc:
            raise self.error(f"{where}: unreadable ({exc})") from None
        if len(raw) != member.size:
            raise self.error(f"{where}: truncated")
        return raw

    def extract(self, member: tarfile.TarInfo, out: Extraction) -> str:
        """Copy one member under out.dest, at most its header's size; its sha256."""
        if not member.isreg():  # extractfile would follow a link
            raise self.error(f"{self._where(member)}: not a regular file")
        digest, size = hashlib.sha256(), 0
        try:
            src = self.tar.extractfile(member)
            assert src is not None  # a regular file
            with out.open_new(out.target(member.name)) as dst:
                while chunk := src.read(min(CHUNK, member.size - size)):
                    size += len(chunk)
                    digest.update(chunk)
                    dst.write(chunk)
        except (OSError, tarfile.TarError) as exc:
            raise self.error(f"{self._where(member)}: cannot extract ({exc})") from None
        if size != member.size:
            raise self.error(f"{self._where(member)}: truncated at {size} of {member.size} bytes")
        return digest.hexdigest()

    def _where(self, member: tarfile.TarInfo) -> str:
        return f"{self.label}: member {member.name!r}"


@contextmanager
def read_archive(
    path: Path, label: str, limits: Limits, error: Error, plain: bool = True
) -> Iterator[Archive]:
    """The archive at `path` with every header checked, refused with `error` otherwise.

    plain: every member is a regular file with a safe name, given once (up to case, for
    macOS and Windows). Without it (an archive only handed on, as an image tar to the
    engine) the structure, counts and sizes are still checked.
    """
    _check_file(path, label, error)
    try:
        # Closed by `with tar` below; opening gets its own message, so not in one `with`.
        tar = tarfile.open(path, mode="r:", tarinfo=_BoundedTarInfo)  # noqa: SIM115
    except tarfile.TarError as exc:
        raise error(f"{label}: not a tar archive ({exc})") from None
    with tar:
        members: list[tarfile.TarInfo] = []
        seen: set[str] = set()
        total = 0
        try:
            # Each header is checked as it is read, before tarfile seeks past its data.
            while (member := tar.next()) is not None:
                if len(members) == limits.members:
                    raise error(f"{label}: more than {limits.members} members")
                where = f"{label}: member {member.name!r}"
                if plain and (problem := _member_problem(member)):
                    raise error(f"{where}: {problem}")
                if plain and member.name.casefold() in seen:
                    raise error(f"{where}: duplicate name")
                if member.size > limits.member_size:
                    raise error(
                        f"{where}: {member.size} bytes, over the limit of {limits.member_size}"
                    )
                total += member.size
                if total > limits.total:
                    raise error(f"{label}: more than {limits.total} bytes in all")
                seen.add(member.name.casefold())
                members.append(member)
        except tarfile.TarError as exc:
            raise error(f"{label}: truncated or corrupt tar archive ({exc})") from None
        _check_tail(path, label, tar.offset, error)
        yield Archive(tar, label, members, error)


def _check_file(path: Path, label: str, error: Error) -> None:
    try:
        if not path.is_file():
            raise error(f"{label}: not a file")
        with path.open("rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise error(f"{label}: {exc.strerror}") from None
    if not magic:
        raise error(f"{label}: empty file")
    for prefix, kind in _COMPRESSED.items():
        if magic.startswith(prefix):
            raise error(f"{label}: compressed ({kind}); only an uncompressed tar is read")


def _member_problem(member: tarfile.TarInfo) -> str | None:
    if problem := name_problem(member.name):
        return problem
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return f"not a regular file ({_KIND.get(member.type, f'type {member.type!r}')})"
    return None


def _check_tail(path: Path, label: str, end: int, error: Error) -> None:
    """The end-of-archive marker, then only zeros: tarfile stops quietly at a corrupt header."""
    size = path.stat().st_size
    if end >= size:
        raise error(f"{label}: truncated (no end-of-archive marker)")
    with path.open("rb") as f:
        f.seek(end)
        while chunk := f.read(CHUNK):
            if chunk.count(0) != len(chunk):
                raise error(
                    f"{label}: truncated or corrupt header, or data after the end, at offset {end}"
                )
            end += len(chunk)
    if end != size:
        raise error(f"{label}: changed while being read")


@dataclass
class Extraction:
    """What was created under dest, so that a failure can remove exactly that."""

    dest: Path
    error: Error
    created: list[Path] = field(default_factory=list)
    root: Path = field(init=False)  # dest resolved, once: names are then joined lexically
    _folders: set[Path] = field(default_factory=set, init=False)  # made under root by us

    def begin(self) -> None:
        """dest must be absent or empty: extraction never overwrites or mixes with other files."""
        if self.dest.is_symlink() or (self.dest.exists() and not self.dest.is_dir()):
            raise self.error(f"{self.dest}: not a directory")
        if self.dest.is_dir():
            if any(self.dest.iterdir()):
                raise self.error(f"{self.dest}: not empty")
        else:
            missing = [p for p in (self.dest, *self.dest.parents) if not p.exists()]
            self.dest.mkdir(parents=True)
            self.created.extend(reversed(missing))
        self.root = self.dest.resolve()

    def target(self, name: str) -> Path:
        """dest/name, its parent folders created; refuses any path that leaves dest.

        Checked lexically, with no lookup per member: dest began empty, and everything in it
        was made here (folders by mkdir, files by `open_new`, neither following a link), so a
        name of plain parts stays under it; a part that names one of its files is refused."""
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise self.error(f"{name}: outside {self.root}")
        parent = self.root
        for part in parts[:-1]:
            parent = parent / part
            if parent in self._folders:
                continue
            try:
                parent.mkdir()
            except OSError:  # a file of this extraction, or something put there since
                raise self.error(f"{name}: {parent} is not a plain directory") from None
            self.created.append(parent)
            self._folders.add(parent)
        return parent / parts[-1]

    def open_new(self, path: Path) -> IO[bytes]:
        """Create path, failing if anything (a symlink included) is already there."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        self.created.append(path)
        return os.fdopen(fd, "wb")

    def check_space(self, needed: int) -> None:
        free = shutil.disk_usage(self.dest).free
        if needed > free:
            raise self.error(f"{self.dest}: {needed} bytes needed to extract, {free} free")

    def undo(self) -> None:
        for path in reversed(self.created):
            with suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
        self.created.clear()


@contextmanager
def extraction(dest: Path, error: Error) -> Iterator[Extraction]:
    """An Extraction into dest (absent or empty); on any failure, dest is left as it was."""
    out = Extraction(dest, error)
    out.begin()
    try:
        yield out
    except BaseException:
        out.undo()
        raise
