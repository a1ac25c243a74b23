"""Offline bundles: a suite and the images it runs, in one tar, for labs without a network.

A bundle is an uncompressed tar holding `suite.toml`, `images/<name>.tar` (one `docker save`
per image) and `manifest.json`, which lists every other member with its size and sha256 and
each image's tag and id. Uncompressed because then every size in a tar header is the size
on disk: there is no decompression ratio for a bomb to exploit, headers can be checked by
seeking before a byte is extracted, and images can be streamed in without a second copy.
The cost: `docker save` writes layers uncompressed, so a bundle is about the images' unpacked
size. Compress it for transport if the link is slow; `verify_bundle` refuses a compressed one.

Verification trusts nothing: the archive goes through `safetar` (headers, names, types, sizes,
tail), every member is checked against the manifest (name, size) before extraction and
against its sha256 after, each image tar's structure and tags before any engine is asked;
any failure raises `BundleError` and removes what was written. `check_bundle` does all of
that with no engine at all. The manifest is unsigned, so a bundle proves it is intact, not
who made it.
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
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal, Self

import docker
from docker.errors import DockerException, ImageNotFound
from docker.models.images import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from rich.console import Console

from deepspark_agent import __version__
from deepspark_agent.images import engine
from deepspark_agent.suites import Suite
from deepspark_core.errors import DeepSparkError
from deepspark_core.files import first_error, read_toml
from deepspark_core.safetar import Archive, Limits, extraction, name_problem, read_archive

SCHEMA_VERSION = "deepspark.bundle/v1"
MANIFEST_NAME = "manifest.json"
SUITE_NAME = "suite.toml"
IMAGES_DIR = "images"
DEFAULT_MAX_TOTAL = 64 * 2**30  # bytes extracted, all members together
MAX_MANIFEST_SIZE = 2**20  # a manifest is read into memory; real ones are a few KiB
MAX_MEMBERS = 10_000  # a bundle has 2 + images; an image tar a few per layer
BLOCK = tarfile.BLOCKSIZE

Progress = Callable[[int, int], None]  # (bytes done, total); total is exact once done == total


class BundleError(DeepSparkError):
    """A bundle that cannot be created, or that is invalid, corrupt or unsafe."""


# --- manifest -------------------------------------------------------------------------------


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


def _limits(max_total: int) -> Limits:
    return Limits(members=MAX_MEMBERS, member_size=max_total, total=max_total)


def _read_manifest(archive: Archive) -> tuple[Manifest, bytes]:
    member = archive.member(MANIFEST_NAME)
    if member is None:
        raise BundleError(f"{archive.label}: no {MANIFEST_NAME}")
    raw = archive.read_small(member, MAX_MANIFEST_SIZE)
    try:
        return Manifest.model_validate_json(raw), raw
    except ValidationError as exc:
        raise BundleError(first_error(Path(f"{archive.label}: {MANIFEST_NAME}"), exc)) from None


def _check_against_manifest(archive: Archive, manifest: Manifest) -> None:
    """The archive holds exactly the manifest's files, each of its declared size."""
    listed = {f.name for f in manifest.files}
    for member in archive.members:
        if member.name != MANIFEST_NAME and member.name not in listed:
            raise BundleError(
                f"{archive.label}: member {member.name!r}: not listed in the manifest"
            )
    for entry in manifest.files:
        where = f"{archive.label}: member {entry.name!r}"
        member = archive.member(entry.name)
        if member is None:
            raise BundleError(f"{where}: in the manifest, not in the archive")
        if member.size != entry.size:
            raise BundleError(f"{where}: {member.size} bytes, the manifest declares {entry.size}")


def _check_suite(label: str, path: Path) -> Suite:
    try:
        return read_toml(path, Suite, BundleError)
    except BundleError as exc:
        raise BundleError(f"{label}: {exc}") from None


def verify_bundle(path: Path, dest: Path, max_total: int = DEFAULT_MAX_TOTAL) -> Manifest:
    """Check everything in the bundle and extract it into dest (absent or empty).

    On success dest holds manifest.json, suite.toml and images/*.tar, each checked against the
    manifest; on any failure, BundleError, and dest is as it was.
    """
    label = str(path)
    with extraction(dest, BundleError) as out:
        with read_archive(path, label, _limits(max_total), BundleError) as archive:
            manifest, raw = _read_manifest(archive)
            _check_against_manifest(archive, manifest)
            out.check_space(manifest.total_size)
            for member in archive.members:  # archive order: one pass forward through the file
                if member.name == MANIFEST_NAME:
                    continue
                if archive.extract(member, out) != manifest.file(member.name).sha256:
                    raise BundleError(
                        f"{label}: member {member.name!r}: sha256 mismatch (corrupt or altered)"
                    )
        with out.open_new(out.target(MANIFEST_NAME)) as f:
            f.write(raw)
        _check_suite(label, dest / SUITE_NAME)
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


def _image_names(archive: Archive) -> set[str]:
    """Every name `docker load` would give the images in this `docker save` tar."""
    label = archive.label
    meta: dict[str, tarfile.TarInfo] = {}
    for member in archive.members:
        name = posixpath.normpath("/" + member.name).lstrip("/")
        if name in (MANIFEST_NAME, "index.json"):
            if name in meta:
                raise BundleError(f"{label}: {name}: given twice")
            meta[name] = member
    if MANIFEST_NAME not in meta:
        raise BundleError(f"{label}: no {MANIFEST_NAME}; not a `docker save` archive")
    try:
        docker_manifest = json.loads(archive.read_small(meta[MANIFEST_NAME], MAX_MANIFEST_SIZE))
        if not isinstance(docker_manifest, list) or len(docker_manifest) != 1:
            raise BundleError(f"{label}: {MANIFEST_NAME} must list exactly one image")
        names = set(docker_manifest[0].get("RepoTags") or [])
        if "index.json" in meta:
            index = json.loads(archive.read_small(meta["index.json"], MAX_MANIFEST_SIZE))
            for m in index.get("manifests") or []:
                names.add((m.get("annotations") or {}).get("io.containerd.image.name", ""))
    except (ValueError, TypeError, AttributeError) as exc:
        raise BundleError(f"{label}: unreadable image metadata ({exc})") from None
    return names - {""}


def _check_image_tar(path: Path, image: ImageEntry, max_total: int) -> None:
    """Refuse an image tar that is not a sound tar, or names anything but its manifest tag.

    Its members may be links and folders (`docker save` writes both): the engine, not the
    agent, unpacks it. Loading a tar naming another tag would move that tag on this host.
    This catches a mix-up or a crude forgery; a consistent forgery needs a signed manifest.
    """
    label = f"{path.name} ({image.tag})"
    with read_archive(path, label, _limits(max_total), BundleError, plain=False) as archive:
        names = _image_names(archive)
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


@contextmanager
def _verified(path: Path, workdir: Path | None, max_total: int) -> Iterator[tuple[Manifest, Path]]:
    """The bundle checked (all but loading) and extracted into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="deepspark-bundle-", dir=workdir) as tmp:
        dest = Path(tmp) / "bundle"
        manifest = verify_bundle(path, dest, max_total)
        for image in manifest.images:
            _check_image_tar(dest / image.file, image, max_total)
        yield manifest, dest


def check_bundle(
    path: Path, workdir: Path | None = None, max_total: int = DEFAULT_MAX_TOTAL
) -> tuple[Manifest, Suite]:
    """Everything `import_bundle` checks before it loads, with no engine: manifest, every
    file's sha256, the image tars, the suite. workdir (default: the system temp dir) holds
    the extracted copy meanwhile and needs room for the bundle's contents."""
    with _verified(path, workdir, max_total) as (manifest, dest):
        return manifest, _check_suite(str(path), dest / SUITE_NAME)


def import_bundle(
    path: Path,
    connect: Callable[[Manifest], docker.DockerClient],
    workdir: Path | None = None,
    max_total: int = DEFAULT_MAX_TOTAL,
    suite_to: Path | None = None,
) -> Manifest:
    """Verify the whole bundle, then connect to the engine and load its images.

    Nothing loads unless everything checks, and no engine is asked before: a lab without
    one learns first whether the bundle is sound. `connect` gets the verified manifest and
    returns the engine's client. suite_to, if given, receives the bundle's (checked) suite.
    """
    with _verified(path, workdir, max_total) as (manifest, dest):
        client = connect(manifest)
        for image in manifest.images:
            _load(client, dest / image.file, image)
        if suite_to is not None:
            shutil.copyfile(dest / SUITE_NAME, suite_to)
    return manifest


def summary(manifest: Manifest) -> str:
    """A verified bundle in a few words."""
    return (
        f"{len(manifest.files)} files, {len(manifest.images)} image(s), "
        f"{manifest.total_size / 1e6:.1f} MB, every sha256 checked"
    )


def import_offline(
    bundle: Path,
    out: Console,
    status: Console,
    workdir: Path | None = None,
    suite_to: Path | None = None,
) -> Manifest:
    """`import_bundle`, saying so: verified with no engine (a spinner on `status` meanwhile),
    only then the engine connected and each image loaded, one line each on `out`."""
    with status.status(f"verifying {bundle}") as spinner:

        def connect(manifest: Manifest) -> docker.DockerClient:
            out.print(f"verified {bundle}: {summary(manifest)}", highlight=False)
            spinner.update(f"loading {len(manifest.images)} image(s)")
            return engine()

        manifest = import_bundle(bundle, connect, workdir, suite_to=suite_to)
    for image in manifest.images:
        out.print(f"loaded {image.tag} {image.id}", highlight=False)
    return manifest
