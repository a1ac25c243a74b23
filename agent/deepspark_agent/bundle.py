"""Offline bundles: a suite and the images it runs, in one tar, for labs without a network.

A bundle is an uncompressed tar holding `suite.toml`, `images/<name>.tar` (one `docker save`
per image) and `manifest.json`, which lists every other member with its size and sha256 and
each image's tag and id. Uncompressed because then every size in a tar header is the size
on disk: there is no decompression ratio for a bomb to exploit, headers can be checked by
seeking before a byte is extracted, and images can be streamed in without a second copy.
The cost: `docker save` writes layers uncompressed, so a bundle is about the images' unpacked
size. Compress it for transport if the link is slow; `verify_bundle` refuses a compressed one.

Verification trusts nothing: every member is checked against the manifest (name, type, size)
before extraction and against its sha256 after; any failure raises `BundleError` and removes
what was written. The manifest is unsigned, so a bundle proves it is intact, not who made it.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal, Self

import docker
from docker.errors import DockerException, ImageNotFound
from docker.models.images import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deepspark_agent import __version__
from deepspark_agent.files import first_error, read_toml
from deepspark_agent.suites import Suite

SCHEMA_VERSION = "deepspark.bundle/v1"
MANIFEST_NAME = "manifest.json"
SUITE_NAME = "suite.toml"
IMAGES_DIR = "images"
DEFAULT_MAX_TOTAL = 64 * 2**30  # bytes extracted, all members together
MAX_MANIFEST_SIZE = 2**20  # a manifest is read into memory; real ones are a few KiB
MAX_META_HEADER = 2**20  # pax and GNU long-name headers, which tarfile reads into memory
MAX_MEMBERS = 10_000  # a bundle has 2 + images; an image tar a few per layer
CHUNK = 2**20
BLOCK = tarfile.BLOCKSIZE

Progress = Callable[[int, int], None]  # (bytes done, total); total is exact once done == total

_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_NAME = 99  # one GNU header holds the name: see _TarWriter
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


class BundleError(ValueError):
    """A bundle that cannot be created, or that is invalid, corrupt or unsafe."""


# --- manifest -------------------------------------------------------------------------------


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
    if len(name) > _MAX_NAME:
        return f"name longer than {_MAX_NAME} characters"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    name: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("name")
    @classmethod
    def _safe(cls, name: str) -> str:
        if problem := name_problem(name):
            raise ValueError(problem)
        if name == MANIFEST_NAME:
            raise ValueError("the manifest cannot list itself")
        return name


class ImageEntry(_Strict):
    # A tag, not a bare name or digest: `docker load` restores exactly this one.
    tag: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
    id: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    file: str


class Manifest(_Strict):
    schema_version: Literal["deepspark.bundle/v1"]
    created: datetime
    agent_version: str
    files: list[FileEntry]
    images: list[ImageEntry]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [f.name for f in self.files]
        if len({n.casefold() for n in names}) != len(names):  # casefold: macOS, Windows
            raise ValueError("a file is listed twice")
        if SUITE_NAME not in names:
            raise ValueError(f"{SUITE_NAME} is not listed")
        tags = [i.tag for i in self.images]
        if len(set(tags)) != len(tags):
            raise ValueError("an image tag is listed twice")
        image_files = [i.file for i in self.images]
        if len(set(image_files)) != len(image_files):
            raise ValueError("two images share a file")
        for image in self.images:
            if not (image.file.startswith(f"{IMAGES_DIR}/") and image.file.endswith(".tar")):
                raise ValueError(f"image {image.tag}: file {image.file!r} is not images/*.tar")
        if set(names) != {SUITE_NAME, *image_files}:
            raise ValueError("files must be exactly suite.toml and one tar per image")
        return self

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, name: str) -> FileEntry:
        return next(f for f in self.files if f.name == name)


def image_file_name(tag: str) -> str:
    """`images/<readable part>-<hash of the tag>.tar`: unique per tag and a safe member name."""
    slug = re.sub(r"[^a-z0-9._-]+", "_", tag.lower()).strip("._-")[:64] or "image"
    return f"{IMAGES_DIR}/{slug}-{hashlib.sha256(tag.encode()).hexdigest()[:12]}.tar"


# --- create ---------------------------------------------------------------------------------


class _TarWriter:
    """Writes a tar whose members' sizes are learnt while their data streams in.

    Each member gets a placeholder block, then its data, then its real header written over the
    placeholder. That needs a header of fixed size: the GNU format's is one block for names
    under 100 bytes at any file size (base-256 above 8 GiB), where PAX adds a variable one.
    """

    def __init__(self, f: IO[bytes], mtime: int) -> None:
        self._f = f
        self._mtime = mtime

    def add(
        self, name: str, chunks: Iterable[bytes], advance: Callable[[int], None] = lambda n: None
    ) -> FileEntry:
        """Append one member; its entry for the manifest, which cannot list itself."""
        size, sha256 = self._add(name, chunks, advance)
        return FileEntry(name=name, size=size, sha256=sha256)

    def add_manifest(self, data: bytes) -> None:
        self._add(MANIFEST_NAME, [data], lambda n: None)

    def _add(
        self, name: str, chunks: Iterable[bytes], advance: Callable[[int], None]
    ) -> tuple[int, str]:
        header_at = self._f.tell()
        self._f.write(bytes(BLOCK))
        digest, size = hashlib.sha256(), 0
        for chunk in chunks:
            self._f.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            advance(len(chunk))
        self._f.write(bytes(-size % BLOCK))
        end = self._f.tell()
        self._f.seek(header_at)
        self._f.write(self.header(name, size, self._mtime))
        self._f.seek(end)
        return size, digest.hexdigest()

    def close(self) -> None:
        """The end-of-archive marker (two zero blocks), padded to a whole record as tar(1) does."""
        self._f.write(bytes(2 * BLOCK))
        self._f.write(bytes(-self._f.tell() % tarfile.RECORDSIZE))

    @staticmethod
    def header(name: str, size: int, mtime: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, mtime, 0o644
        buf = info.tobuf(format=tarfile.GNU_FORMAT)
        if len(buf) != BLOCK:  # a long name would add a block we have no room for
            raise BundleError(f"{name}: does not fit one tar header")
        return buf


@dataclass
class _Counter:
    """Bytes done against an estimated total, passed on to the caller's progress callback."""

    total: int
    report: Progress | None
    done: int = 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.report:
            self.report(self.done, max(self.total, self.done))

    def correct(self, estimate: int, actual: int) -> None:
        self.total += actual - estimate


def _resolve_image(client: docker.DockerClient, ref: str) -> tuple[str, Image]:
    """The tag an image is saved under (a bare name means its `:latest`) and the image."""
    tag = ref if ":" in ref.rsplit("/", 1)[-1] else f"{ref}:latest"
    try:
        image = client.images.get(tag)
    except ImageNotFound:
        raise BundleError(f"image {ref}: not found in the local engine") from None
    except DockerException as exc:
        raise BundleError(f"image {ref}: {exc}") from None
    if "@" in ref or tag not in image.tags:
        raise BundleError(f"image {ref}: not a tag of {image.id} (tags: {image.tags or 'none'})")
    return tag, image


def _save(client: docker.DockerClient, tag: str, image_id: str) -> Iterator[bytes]:
    """`docker save` of one tag, checking the tag still names the image it named before."""
    try:
        yield from client.images.get(tag).save(named=tag)
        moved = client.images.get(tag).id != image_id
    except DockerException as exc:
        raise BundleError(f"image {tag}: saving failed: {exc}") from None
    if moved:
        raise BundleError(f"image {tag}: the tag moved to another image while it was saved")


def create_bundle(
    out: Path,
    suite_file: Path,
    images: list[str],
    client: docker.DockerClient,
    progress: Progress | None = None,
) -> Manifest:
    """Write the bundle to `out` atomically: the old file or a whole new one, never half."""
    read_toml(suite_file, Suite, BundleError)  # a suite the lab cannot read is no use there
    suite = suite_file.read_bytes()
    if len(set(images)) != len(images):
        raise BundleError("an image is listed twice")
    resolved = [_resolve_image(client, ref) for ref in images]
    created = datetime.now(UTC).replace(microsecond=0)
    estimates = [int(image.attrs.get("Size") or 0) for _, image in resolved]
    counter = _Counter(total=len(suite) + sum(estimates), report=progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _TarWriter(f, int(created.timestamp()))
            files = [writer.add(SUITE_NAME, [suite], counter.advance)]
            entries = []
            for (tag, image), estimate in zip(resolved, estimates, strict=True):
                entry = writer.add(
                    image_file_name(tag), _save(client, tag, image.id), counter.advance
                )
                counter.correct(estimate, entry.size)
                files.append(entry)
                entries.append(ImageEntry(tag=tag, id=image.id, file=entry.name))
            manifest = Manifest(
                schema_version=SCHEMA_VERSION,
                created=created,
                agent_version=__version__,
                files=files,
                images=entries,
            )
            # Last, since it needs every hash; a reader seeks to it before extracting anything.
            writer.add_manifest(_manifest_bytes(manifest))
            writer.close()
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if progress:
        progress(counter.done, counter.done)
    return manifest


def _manifest_bytes(manifest: Manifest) -> bytes:
    return (manifest.model_dump_json(indent=2) + "\n").encode()


# --- read -----------------------------------------------------------------------------------


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
        if self.type in self._META and self.size > MAX_META_HEADER:
            raise tarfile.ReadError(f"extended header of {self.size} bytes at offset {self.offset}")
        return super()._proc_member(tarfile_)


@contextmanager
def _open_tar(path: Path, label: str) -> Iterator[tuple[tarfile.TarFile, list[tarfile.TarInfo]]]:
    """An uncompressed tar and its member headers, read by seeking (no data is read yet)."""
    if not path.is_file():
        raise BundleError(f"{label}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise BundleError(f"{label}: empty file")
    with path.open("rb") as f:
        magic = f.read(6)
    for prefix, kind in _COMPRESSED.items():
        if magic.startswith(prefix):
            raise BundleError(f"{label}: compressed ({kind}); a bundle is an uncompressed tar")
    try:
        # Closed by `with tar` below; opening gets its own message, so not in one `with`.
        tar = tarfile.open(path, mode="r:", tarinfo=_BoundedTarInfo)  # noqa: SIM115
    except tarfile.TarError as exc:
        raise BundleError(f"{label}: not a tar archive ({exc})") from None
    with tar:
        members = []
        try:
            while (member := tar.next()) is not None:
                if len(members) == MAX_MEMBERS:
                    raise BundleError(f"{label}: more than {MAX_MEMBERS} members")
                members.append(member)
        except tarfile.TarError as exc:
            raise BundleError(f"{label}: truncated or corrupt tar archive ({exc})") from None
        _check_tail(path, label, tar.offset, size)
        yield tar, members


def _check_tail(path: Path, label: str, end: int, size: int) -> None:
    """The end-of-archive marker, then only zeros: tarfile stops quietly at a corrupt header."""
    if end >= size:
        raise BundleError(f"{label}: truncated (no end-of-archive marker)")
    with path.open("rb") as f:
        f.seek(end)
        while chunk := f.read(CHUNK):
            if chunk.count(0) != len(chunk):
                raise BundleError(
                    f"{label}: truncated or corrupt header, or data after the end, at offset {end}"
                )
            end += len(chunk)
    if end != size:  # the file changed under us
        raise BundleError(f"{label}: changed while being read")


def _member_problem(member: tarfile.TarInfo) -> str | None:
    if problem := name_problem(member.name):
        return problem
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return f"not a regular file ({_KIND.get(member.type, f'type {member.type!r}')})"
    return None


def _check_members(label: str, members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    by_name: dict[str, tarfile.TarInfo] = {}
    seen: set[str] = set()
    for member in members:
        if problem := _member_problem(member):
            raise BundleError(f"{label}: member {member.name!r}: {problem}")
        if member.name.casefold() in seen:
            raise BundleError(f"{label}: member {member.name!r}: duplicate name")
        seen.add(member.name.casefold())
        by_name[member.name] = member
    return by_name


def _read_manifest(
    label: str, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
) -> tuple[Manifest, bytes]:
    member = members.get(MANIFEST_NAME)
    if member is None:
        raise BundleError(f"{label}: no {MANIFEST_NAME}")
    if member.size > MAX_MANIFEST_SIZE:
        raise BundleError(f"{label}: {MANIFEST_NAME}: {member.size} bytes, over the 1 MiB limit")
    raw = _read_small(label, tar, member)
    try:
        return Manifest.model_validate_json(raw), raw
    except ValidationError as exc:
        raise BundleError(first_error(Path(f"{label}: {MANIFEST_NAME}"), exc)) from None


def _read_small(label: str, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    try:
        src = tar.extractfile(member)
        assert src is not None  # a regular file, checked
        raw = src.read(member.size + 1)
    except tarfile.TarError as exc:
        raise BundleError(f"{label}: member {member.name!r}: unreadable ({exc})") from None
    if len(raw) != member.size:
        raise BundleError(f"{label}: member {member.name!r}: truncated")
    return raw


def _check_against_manifest(
    label: str, members: dict[str, tarfile.TarInfo], manifest: Manifest, max_total: int
) -> None:
    listed = {f.name for f in manifest.files}
    for name in members:
        if name != MANIFEST_NAME and name not in listed:
            raise BundleError(f"{label}: member {name!r}: not listed in the manifest")
    for entry in manifest.files:
        member = members.get(entry.name)
        if member is None:
            raise BundleError(
                f"{label}: member {entry.name!r}: in the manifest, not in the archive"
            )
        if member.size != entry.size:
            raise BundleError(
                f"{label}: member {entry.name!r}: {member.size} bytes, "
                f"the manifest declares {entry.size}"
            )
    if manifest.total_size > max_total:
        raise BundleError(
            f"{label}: {manifest.total_size} bytes to extract, over the limit of {max_total}"
        )


# --- extract --------------------------------------------------------------------------------


@dataclass
class _Extraction:
    """What verify_bundle created under dest, so that a failure can remove exactly that."""

    dest: Path
    created: list[Path] = field(default_factory=list)

    def begin(self) -> None:
        """dest must be absent or empty: extraction never overwrites or mixes with other files."""
        if self.dest.is_symlink() or (self.dest.exists() and not self.dest.is_dir()):
            raise BundleError(f"{self.dest}: not a directory")
        if self.dest.is_dir():
            if any(self.dest.iterdir()):
                raise BundleError(f"{self.dest}: not empty")
        else:
            missing = [p for p in (self.dest, *self.dest.parents) if not p.exists()]
            self.dest.mkdir(parents=True)
            self.created.extend(reversed(missing))

    def target(self, name: str) -> Path:
        """dest/name, its parent folders created; refuses any path that leaves dest."""
        root = self.dest.resolve()
        path = root.joinpath(*name.split("/"))
        if root not in path.parents:
            raise BundleError(f"{name}: outside {root}")
        for parent in reversed(path.parents):
            if root not in parent.parents:
                continue
            if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                raise BundleError(f"{name}: {parent} is not a plain directory")
            if not parent.exists():
                parent.mkdir()
                self.created.append(parent)
        return path

    def open_new(self, path: Path) -> IO[bytes]:
        """Create path, failing if anything (a symlink included) is already there."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o644)
        self.created.append(path)
        return os.fdopen(fd, "wb")

    def undo(self) -> None:
        for path in reversed(self.created):
            with suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
        self.created.clear()


def _extract(
    label: str, tar: tarfile.TarFile, member: tarfile.TarInfo, entry: FileEntry, out: _Extraction
) -> None:
    """Copy one member to dest, stopping at the first byte past its declared size."""
    where = f"{label}: member {entry.name!r}"
    digest, size = hashlib.sha256(), 0
    try:
        src = tar.extractfile(member)
        assert src is not None  # a regular file, checked
        with out.open_new(out.target(entry.name)) as dst:
            while chunk := src.read(min(CHUNK, entry.size + 1 - size)):
                size += len(chunk)
                if size > entry.size:
                    raise BundleError(f"{where}: larger than the declared {entry.size} bytes")
                digest.update(chunk)
                dst.write(chunk)
    except tarfile.TarError as exc:
        raise BundleError(f"{where}: unreadable ({exc})") from None
    if size != entry.size:
        raise BundleError(f"{where}: truncated at {size} of {entry.size} bytes")
    if digest.hexdigest() != entry.sha256:
        raise BundleError(f"{where}: sha256 mismatch (corrupt or altered)")


def _check_space(dest: Path, needed: int) -> None:
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise BundleError(f"{dest}: {needed} bytes needed to extract, {free} free")


def _check_suite(label: str, path: Path) -> None:
    try:
        read_toml(path, Suite, BundleError)
    except BundleError as exc:
        raise BundleError(f"{label}: {exc}") from None


def verify_bundle(path: Path, dest: Path, max_total: int = DEFAULT_MAX_TOTAL) -> Manifest:
    """Check everything in the bundle and extract it into dest (absent or empty).

    On success dest holds manifest.json, suite.toml and images/*.tar, each checked against the
    manifest; on any failure, BundleError, and dest is as it was.
    """
    label = str(path)
    out = _Extraction(dest)
    out.begin()
    try:
        with _open_tar(path, label) as (tar, headers):
            members = _check_members(label, headers)
            manifest, raw = _read_manifest(label, tar, members)
            _check_against_manifest(label, members, manifest, max_total)
            _check_space(dest, manifest.total_size)
            for member in headers:  # archive order: one pass forward through the file
                if member.name != MANIFEST_NAME:
                    _extract(label, tar, member, manifest.file(member.name), out)
        with out.open_new(out.target(MANIFEST_NAME)) as f:
            f.write(raw)
        _check_suite(label, dest / SUITE_NAME)
    except BaseException:
        out.undo()
        raise
    return manifest


# --- import ---------------------------------------------------------------------------------


def _qualified(tag: str) -> str:
    """docker.io/library/x:1 for x:1, as containerd names images."""
    first, _, rest = tag.partition("/")
    if not rest:
        return f"docker.io/library/{tag}"
    if "." in first or ":" in first or first == "localhost":
        return tag
    return f"docker.io/{tag}"


def _image_names(label: str, tar: tarfile.TarFile, members: list[tarfile.TarInfo]) -> set[str]:
    """Every name `docker load` would give the images in this `docker save` tar."""
    meta: dict[str, tarfile.TarInfo] = {}
    for member in members:
        name = posixpath.normpath("/" + member.name).lstrip("/")
        if name in (MANIFEST_NAME, "index.json"):
            if name in meta or not member.isreg():
                raise BundleError(f"{label}: {name}: not exactly one regular file")
            if member.size > MAX_MANIFEST_SIZE:
                raise BundleError(f"{label}: {name}: {member.size} bytes, over the 1 MiB limit")
            meta[name] = member
    if MANIFEST_NAME not in meta:
        raise BundleError(f"{label}: no {MANIFEST_NAME}; not a `docker save` archive")
    try:
        docker_manifest = json.loads(_read_small(label, tar, meta[MANIFEST_NAME]))
        if not isinstance(docker_manifest, list) or len(docker_manifest) != 1:
            raise BundleError(f"{label}: {MANIFEST_NAME} must list exactly one image")
        names = set(docker_manifest[0].get("RepoTags") or [])
        if "index.json" in meta:
            index = json.loads(_read_small(label, tar, meta["index.json"]))
            for m in index.get("manifests") or []:
                names.add((m.get("annotations") or {}).get("io.containerd.image.name", ""))
    except (ValueError, TypeError, AttributeError) as exc:
        raise BundleError(f"{label}: unreadable image metadata ({exc})") from None
    return names - {""}


def _check_image_tar(path: Path, image: ImageEntry) -> None:
    """Refuse an image tar that names anything but its manifest tag.

    Loading it would move that other tag on this host. This catches a mix-up or a crude
    forgery; a consistent forgery needs a signed manifest to catch.
    """
    label = f"{path.name} ({image.tag})"
    with _open_tar(path, label) as (tar, members):
        names = _image_names(label, tar, members)
    foreign = names - {image.tag, _qualified(image.tag)}
    if foreign:
        raise BundleError(f"{label}: would also tag {', '.join(sorted(foreign))}")


def _load(client: docker.DockerClient, path: Path, image: ImageEntry) -> None:
    """Load one image tar, streamed from disk, and check the engine got the manifest's image."""
    try:
        with path.open("rb") as f:
            loaded = client.images.load(f)
        ids = {i.id for i in loaded}
        if image.id not in ids:
            got = ", ".join(sorted(ids)) or "nothing"
            raise BundleError(f"image {image.tag}: loaded {got}, the manifest says {image.id}")
        if image.tag not in client.images.get(image.id).tags:  # saved untagged: tag it
            repository, _, tag = image.tag.rpartition(":")
            client.images.get(image.id).tag(repository, tag)
        if client.images.get(image.tag).id != image.id:
            raise BundleError(f"image {image.tag}: names another image after loading")
    except DockerException as exc:
        raise BundleError(f"image {image.tag}: the engine refused it: {exc}") from None


def import_bundle(
    path: Path,
    client: docker.DockerClient,
    workdir: Path | None = None,
    max_total: int = DEFAULT_MAX_TOTAL,
    suite_to: Path | None = None,
) -> Manifest:
    """Verify the whole bundle, then load its images; nothing loads unless everything checks.

    workdir holds the extracted copy while loading (default: the system temp dir); it needs
    room for the bundle's contents. suite_to, if given, receives the bundle's (checked) suite.
    """
    with tempfile.TemporaryDirectory(prefix="deepspark-bundle-", dir=workdir) as tmp:
        dest = Path(tmp) / "bundle"
        manifest = verify_bundle(path, dest, max_total)
        for image in manifest.images:
            _check_image_tar(dest / image.file, image)
        for image in manifest.images:
            _load(client, dest / image.file, image)
        if suite_to is not None:
            shutil.copyfile(dest / SUITE_NAME, suite_to)
    return manifest
