"""Offline bundles: hostile archives are refused without writing outside dest; round trips."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import random
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import pytest
from docker.errors import DockerException, ImageNotFound

from deepspark_agent.bundle import (
    SCHEMA_VERSION,
    BundleError,
    Manifest,
    _TarWriter,
    check_bundle,
    create_bundle,
    image_file_name,
    import_bundle,
    verify_bundle,
)
from deepspark_core.safetar import META_HEADER_LIMIT

SUITE = b'name = "offline"\n\n[[workloads]]\nmodel = "sleeper"\nstability_runs = 2\n'
TAG = "deepspark-test/tiny:1"
IMAGE_FILE = image_file_name(TAG)


# --- hand-made archives ---------------------------------------------------------------------

Member = tuple[tarfile.TarInfo, bytes | None]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reg(name: str, data: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.devmajor, info.devminor = 1, 3
    return info, None


def manifest_doc(data: dict[str, bytes], /, **changes: Any) -> dict[str, Any]:
    """A valid manifest for `data` (suite.toml plus one image tar), with fields overridden."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created": "2025-01-01T00:00:00Z",
        "agent_version": "test",
        "files": [{"name": n, "size": len(d), "sha256": sha(d)} for n, d in data.items()],
        "images": [{"tag": TAG, "id": "sha256:" + "a" * 64, "file": IMAGE_FILE}],
    }
    return {**doc, **changes}


def manifest_member(doc: dict[str, Any]) -> Member:
    return reg("manifest.json", json.dumps(doc).encode())


def contents() -> dict[str, bytes]:
    return {"suite.toml": SUITE, IMAGE_FILE: b"not really an image, but it has a hash\n" * 50}


def write_tar(path: Path, members: list[Member], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def valid_members(files: dict[str, bytes] | None = None) -> list[Member]:
    files = files or contents()
    return [*(reg(n, d) for n, d in files.items()), manifest_member(manifest_doc(files))]


@dataclass
class Lab:
    """tmp_path/bundle.tar, a dest that does not exist yet, and a snapshot of everything around."""

    root: Path
    bundle: Path = field(init=False)
    dest: Path = field(init=False)

    def __post_init__(self) -> None:
        self.bundle = self.root / "bundle.tar"
        self.dest = self.root / "lab" / "extract" / "dest"
        (self.root / "lab").mkdir()

    def tree(self) -> dict[str, bytes | None]:
        """Every path under root (links not followed) with its bytes, except the bundle."""
        return {
            str(p.relative_to(self.root)): p.read_bytes() if p.is_file() else None
            for p in sorted(self.root.rglob("*"))
            if p != self.bundle
        }

    def refused(self, match: str, **kwargs: Any) -> str:
        """verify_bundle raises a one-line BundleError and leaves the filesystem as it was."""
        before = self.tree()
        with pytest.raises(BundleError, match=match) as info:
            verify_bundle(self.bundle, self.dest, **kwargs)
        assert self.tree() == before
        assert not self.dest.exists()
        message = str(info.value)
        assert "\n" not in message
        return message


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return Lab(tmp_path)


# --- a valid bundle -------------------------------------------------------------------------


def test_hand_made_bundle_verifies_and_extracts(lab: Lab) -> None:
    write_tar(lab.bundle, valid_members())
    manifest = verify_bundle(lab.bundle, lab.dest)
    assert [f.name for f in manifest.files] == ["suite.toml", IMAGE_FILE]
    for name, data in contents().items():
        assert (lab.dest / name).read_bytes() == data
    assert Manifest.model_validate_json((lab.dest / "manifest.json").read_bytes()) == manifest


def test_existing_empty_dest_is_used_and_left_empty_on_failure(lab: Lab) -> None:
    files = contents()
    files[IMAGE_FILE] = b"x" + files[IMAGE_FILE][1:]
    doc = manifest_doc(contents())
    write_tar(lab.bundle, [*(reg(n, d) for n, d in files.items()), manifest_member(doc)])
    lab.dest.mkdir(parents=True)
    with pytest.raises(BundleError, match="sha256 mismatch"):
        verify_bundle(lab.bundle, lab.dest)
    assert lab.dest.is_dir() and not any(lab.dest.iterdir())


def test_dest_with_files_is_refused_and_untouched(lab: Lab) -> None:
    write_tar(lab.bundle, valid_members())
    lab.dest.mkdir(parents=True)
    (lab.dest / "suite.toml").write_text("mine")
    with pytest.raises(BundleError, match="not empty"):
        verify_bundle(lab.bundle, lab.dest)
    assert (lab.dest / "suite.toml").read_text() == "mine"


# --- hostile members ------------------------------------------------------------------------

HOSTILE: dict[str, tuple[Callable[[Path], list[Member]], str]] = {
    "path traversal": (lambda r: [reg("../x", b"evil")], r"member '\.\./x': unsafe name"),
    "traversal inside a folder": (
        lambda r: [reg("images/../../x", b"evil")],
        r"'images/\.\./\.\./x': unsafe name \('\.\.' component\)",
    ),
    "absolute path": (lambda r: [reg(str(r / "abs-x"), b"evil")], "absolute path"),
    "dot component": (lambda r: [reg("./suite.toml", SUITE)], r"unsafe name \('\.' component\)"),
    "backslash": (lambda r: [reg("..\\x", b"evil")], "unsafe name"),
    "pax path override": (lambda r: [reg("../" + "x" * 150, b"evil")], "unsafe name"),
    "symlink outside": (
        lambda r: [special("suite.toml", tarfile.SYMTYPE, str(r / "outside"))],
        r"'suite.toml': not a regular file \(symlink\)",
    ),
    "write through a symlinked folder": (
        lambda r: [special("images", tarfile.SYMTYPE, str(r)), reg(IMAGE_FILE, b"evil")],
        r"'images': not a regular file \(symlink\)",
    ),
    "hard link outside": (
        lambda r: [special("suite.toml", tarfile.LNKTYPE, "../../etc/passwd")],
        r"not a regular file \(hard link\)",
    ),
    "character device": (
        lambda r: [special("dev", tarfile.CHRTYPE)],
        r"'dev': not a regular file \(character device\)",
    ),
    "block device": (lambda r: [special("sda", tarfile.BLKTYPE)], r"\(block device\)"),
    "fifo": (lambda r: [special("pipe", tarfile.FIFOTYPE)], r"\(FIFO\)"),
    "directory": (lambda r: [special("images", tarfile.DIRTYPE)], r"\(directory\)"),
    "directory outside": (lambda r: [special("../out", tarfile.DIRTYPE)], "unsafe name"),
    "duplicate": (lambda r: [reg("suite.toml", b"x")], r"'suite.toml': duplicate name"),
    "duplicate up to case": (lambda r: [reg("SUITE.toml", b"x")], "duplicate name"),
    "extra member": (
        lambda r: [reg("images/extra.tar", b"x")],
        r"'images/extra.tar': not listed in the manifest",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
@pytest.mark.parametrize("where", ["first", "last"])
def test_hostile_member_is_refused(lab: Lab, case: str, where: str) -> None:
    make, match = HOSTILE[case]
    members = valid_members()
    members = [*make(lab.root), *members] if where == "first" else [*members, *make(lab.root)]
    write_tar(lab.bundle, members)
    lab.refused(match)
    assert not (lab.root / "abs-x").exists() and not (lab.root / "x").exists()


def test_gnu_long_name_traversal_is_refused(lab: Lab) -> None:
    write_tar(
        lab.bundle, [*valid_members(), reg("a/" * 60 + "../" * 70 + "x", b"e")], tarfile.GNU_FORMAT
    )
    lab.refused("unsafe name")


def test_member_larger_than_declared(lab: Lab) -> None:
    files = contents()
    declared = {**files, IMAGE_FILE: files[IMAGE_FILE][:10]}
    write_tar(
        lab.bundle,
        [*(reg(n, d) for n, d in files.items()), manifest_member(manifest_doc(declared))],
    )
    lab.refused(rf"'{IMAGE_FILE}': {len(files[IMAGE_FILE])} bytes, the manifest declares 10")


def test_member_smaller_than_declared(lab: Lab) -> None:
    files = contents()
    declared = {**files, IMAGE_FILE: files[IMAGE_FILE] + b"more"}
    write_tar(
        lab.bundle,
        [*(reg(n, d) for n, d in files.items()), manifest_member(manifest_doc(declared))],
    )
    size = len(files[IMAGE_FILE])
    lab.refused(f"{size} bytes, the manifest declares {size + 4}")


def test_manifest_entry_missing_from_archive(lab: Lab) -> None:
    files = contents()
    write_tar(lab.bundle, [reg("suite.toml", SUITE), manifest_member(manifest_doc(files))])
    lab.refused(rf"'{IMAGE_FILE}': in the manifest, not in the archive")


@pytest.mark.parametrize("name", ["suite.toml", IMAGE_FILE])
def test_flipped_byte_is_a_sha_mismatch(lab: Lab, name: str) -> None:
    files = contents()
    tampered = {**files, name: bytes([files[name][0] ^ 1]) + files[name][1:]}
    write_tar(
        lab.bundle,
        [*(reg(n, d) for n, d in tampered.items()), manifest_member(manifest_doc(files))],
    )
    lab.refused(rf"'{name}': sha256 mismatch")


def test_total_size_cap(lab: Lab) -> None:
    write_tar(lab.bundle, valid_members())
    lab.refused("over the limit of 1000", max_total=1000)


def test_oversized_pax_header_is_not_read_into_memory(lab: Lab) -> None:
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, META_HEADER_LIMIT + 1
    lab.bundle.write_bytes(pax.tobuf(tarfile.USTAR_FORMAT) + bytes(META_HEADER_LIMIT + 2048))
    lab.refused(r"extended header of 1048577 bytes")


# --- hostile manifests ----------------------------------------------------------------------

MANIFESTS: dict[str, tuple[Callable[[dict[str, bytes]], bytes], str]] = {
    "not json": (lambda f: b"{nope", r"manifest.json: document: Invalid JSON"),
    "wrong schema": (
        lambda f: json.dumps(manifest_doc(f, schema_version="deepspark.bundle/v9")).encode(),
        "schema_version",
    ),
    "unknown field": (lambda f: json.dumps(manifest_doc(f, extra=1)).encode(), "extra"),
    "lists a traversal": (
        lambda f: json.dumps(
            manifest_doc(f, files=[{"name": "../x", "size": 1, "sha256": "0" * 64}])
        ).encode(),
        r"files.0.name: Value error, unsafe name",
    ),
    "image without its file": (
        lambda f: json.dumps(manifest_doc({"suite.toml": SUITE})).encode(),
        "exactly suite.toml and one tar per image",
    ),
    "bad image id": (
        lambda f: json.dumps(
            manifest_doc(f, images=[{"tag": TAG, "id": "latest", "file": IMAGE_FILE}])
        ).encode(),
        r"images.0.id",
    ),
    "too large": (lambda f: b" " * (2**20 + 1), "1048577 bytes, over the limit of 1048576"),
}


@pytest.mark.parametrize("case", MANIFESTS, ids=list(MANIFESTS))
def test_hostile_manifest_is_refused(lab: Lab, case: str) -> None:
    make, match = MANIFESTS[case]
    files = contents()
    write_tar(
        lab.bundle, [*(reg(n, d) for n, d in files.items()), reg("manifest.json", make(files))]
    )
    lab.refused(match)


def test_missing_manifest(lab: Lab) -> None:
    write_tar(lab.bundle, [reg(n, d) for n, d in contents().items()])
    lab.refused("no manifest.json")


def test_invalid_suite_with_a_consistent_manifest(lab: Lab) -> None:
    write_tar(lab.bundle, valid_members({**contents(), "suite.toml": b"name = \n"}))
    lab.refused(r"suite.toml: invalid TOML")


# --- broken files ---------------------------------------------------------------------------


def test_empty_file(lab: Lab) -> None:
    lab.bundle.write_bytes(b"")
    lab.refused("bundle.tar: empty file")


@pytest.mark.parametrize(
    "data", [b"just some text\n", random.Random(0).randbytes(4096)], ids=["text", "random"]
)
def test_not_a_tar(lab: Lab, data: bytes) -> None:
    lab.bundle.write_bytes(data)
    lab.refused("not a tar archive")


def test_missing_file(lab: Lab) -> None:
    lab.refused("bundle.tar: not a file")


def test_compressed_bundle_is_refused_without_decompressing(lab: Lab) -> None:
    # A bomb: 16 MiB of zeros compressed once, the member repeated to 1 GiB (gzip allows
    # concatenated members); refused on its magic bytes, nothing decompressed.
    lab.bundle.write_bytes(gzip.compress(bytes(16 * 2**20), compresslevel=9) * 64)
    lab.refused(r"compressed \(gzip\); only an uncompressed tar is read")


def _offsets(path: Path) -> dict[str, tuple[int, int]]:
    with tarfile.open(path) as tar:
        return {m.name: (m.offset, m.offset_data) for m in tar.getmembers()}


TRUNCATIONS = {
    "inside data": (lambda header, data: data + 100, "truncated or corrupt tar archive"),
    "inside a header": (lambda header, data: header + 100, "truncated or corrupt header"),
    "between members": (lambda header, data: header, r"truncated \(no end-of-archive marker\)"),
}


@pytest.mark.parametrize("where", TRUNCATIONS)
def test_truncated_archive(lab: Lab, where: str) -> None:
    cut, match = TRUNCATIONS[where]
    write_tar(lab.bundle, valid_members())
    lab.bundle.write_bytes(lab.bundle.read_bytes()[: cut(*_offsets(lab.bundle)[IMAGE_FILE])])
    lab.refused(match)


def test_corrupt_header_midway(lab: Lab) -> None:
    write_tar(lab.bundle, valid_members())
    header, _ = _offsets(lab.bundle)[IMAGE_FILE]
    raw = bytearray(lab.bundle.read_bytes())
    raw[header + 10] ^= 0xFF  # breaks the header checksum: tarfile would stop there quietly
    lab.bundle.write_bytes(bytes(raw))
    lab.refused(rf"corrupt header, or data after the end, at offset {header}")


def test_trailing_data_after_the_end(lab: Lab) -> None:
    write_tar(lab.bundle, valid_members())
    lab.bundle.write_bytes(lab.bundle.read_bytes() + b"hidden")
    lab.refused("data after the end")


# --- create with a fake engine (no Docker needed) -------------------------------------------


def docker_save_tar(tag: str | None, config: bytes, repo_tags: list[str] | None = None) -> bytes:
    """A minimal `docker save` archive: manifest.json naming one config, no layers."""
    config_name = sha(config) + ".json"
    tags = repo_tags if repo_tags is not None else ([tag] if tag else [])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in [
            reg(config_name, config),
            reg("manifest.json", json.dumps([{"Config": config_name, "RepoTags": tags}]).encode()),
        ]:
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakeImage:
    def __init__(self, config: bytes, tags: list[str], save_tags: list[str] | None = None) -> None:
        self.config, self.tags, self._save_tags = config, tags, save_tags
        self.id = "sha256:" + sha(config)
        self.attrs = {"Size": 1000}

    def save(self, named: str) -> Iterator[bytes]:
        assert named in self.tags
        data = docker_save_tar(named, self.config, self._save_tags)
        for i in range(0, len(data), 700):
            yield data[i : i + 700]

    def tag(self, repository: str, tag: str) -> bool:
        self.tags.append(f"{repository}:{tag}")
        return True


class FakeImages:
    """The slice of `client.images` bundles use; load derives the id from the config, as Docker."""

    def __init__(self, *images: FakeImage) -> None:
        self.images = list(images)
        self.loads = 0

    def get(self, ref: str) -> FakeImage:
        for image in self.images:
            if ref == image.id or ref in image.tags:
                return image
        raise ImageNotFound(ref)

    def load(self, f: io.BufferedReader) -> list[FakeImage]:
        self.loads += 1
        with tarfile.open(fileobj=io.BytesIO(f.read())) as tar:
            entry = json.loads(tar.extractfile("manifest.json").read())[0]  # type: ignore[union-attr]
            image = FakeImage(tar.extractfile(entry["Config"]).read(), [])  # type: ignore[union-attr]
        for other in self.images:
            other.tags = [t for t in other.tags if t not in entry["RepoTags"]]
        image.tags = list(entry["RepoTags"])
        self.images.append(image)
        return [image]


def fake_client(*images: FakeImage) -> Any:
    return SimpleNamespace(images=FakeImages(*images))


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "offline.toml"
    path.write_bytes(SUITE)
    return path


def test_create_then_verify_round_trip(tmp_path: Path, suite_file: Path) -> None:
    image = FakeImage(b'{"config": 1}', [TAG, "deepspark-test/other:2"])
    calls: list[tuple[int, int]] = []
    out = tmp_path / "out" / "offline.tar"
    manifest = create_bundle(
        out, suite_file, [TAG], fake_client(image), lambda d, t: calls.append((d, t))
    )

    assert [i.model_dump() for i in manifest.images] == [
        {"tag": TAG, "id": image.id, "file": IMAGE_FILE}
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == ["offline.tar"]  # no temp file left
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1][0] == calls[-1][1] == manifest.total_size
    assert verify_bundle(out, tmp_path / "dest") == manifest
    assert (tmp_path / "dest" / IMAGE_FILE).read_bytes() == docker_save_tar(TAG, image.config)
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["suite.toml", IMAGE_FILE, "manifest.json"]


def test_bare_name_means_latest(tmp_path: Path, suite_file: Path) -> None:
    image = FakeImage(b"{}", ["deepspark-test/tiny:latest"])
    manifest = create_bundle(
        tmp_path / "b.tar", suite_file, ["deepspark-test/tiny"], fake_client(image)
    )
    assert manifest.images[0].tag == "deepspark-test/tiny:latest"


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (["deepspark-test/absent:1"], "not found in the local engine"),
        ([TAG, TAG], "listed twice"),
        (["sha256:" + sha(b"{}")], "not a tag of"),
    ],
)
def test_create_refuses(tmp_path: Path, suite_file: Path, images: list[str], match: str) -> None:
    with pytest.raises(BundleError, match=match):
        create_bundle(tmp_path / "b.tar", suite_file, images, fake_client(FakeImage(b"{}", [TAG])))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offline.toml"]


def test_create_refuses_an_invalid_suite(tmp_path: Path) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text("name = 1\n")
    with pytest.raises(BundleError, match=r"bad\.toml: name"):
        create_bundle(tmp_path / "b.tar", suite, [], fake_client())


def test_failed_save_keeps_the_old_bundle_and_leaves_no_temp(
    tmp_path: Path, suite_file: Path
) -> None:
    out = tmp_path / "b.tar"
    out.write_bytes(b"the previous bundle")

    class Broken(FakeImage):
        def save(self, named: str) -> Iterator[bytes]:
            yield b"partial"
            raise DockerException("engine went away")

    with pytest.raises(BundleError, match="saving failed: engine went away"):
        create_bundle(out, suite_file, [TAG], fake_client(Broken(b"{}", [TAG])))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar", "offline.toml"]
    assert out.read_bytes() == b"the previous bundle"


def test_header_holds_members_over_8_gib() -> None:
    size = 9 * 2**30  # past ustar's 11 octal digits: GNU base-256, still one block
    header = _TarWriter.header(IMAGE_FILE, size, 0)
    assert len(header) == tarfile.BLOCKSIZE
    assert tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape").size == size


# --- import with a fake engine --------------------------------------------------------------


def make_fake_bundle(tmp_path: Path, suite_file: Path, image: FakeImage) -> Path:
    out = tmp_path / "b.tar"
    create_bundle(out, suite_file, [TAG], fake_client(image))
    return out


def test_import_loads_and_checks_the_id(tmp_path: Path, suite_file: Path) -> None:
    bundle = make_fake_bundle(tmp_path, suite_file, FakeImage(b'{"a": 1}', [TAG]))
    client = fake_client()
    manifest = import_bundle(bundle, lambda _: client, tmp_path)
    assert client.images.get(TAG).id == manifest.images[0].id == "sha256:" + sha(b'{"a": 1}')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar", "offline.toml"]  # workdir clean


def test_import_tags_an_untagged_save(tmp_path: Path, suite_file: Path) -> None:
    bundle = make_fake_bundle(tmp_path, suite_file, FakeImage(b"{}", [TAG], save_tags=[]))
    client = fake_client()
    import_bundle(bundle, lambda _: client)
    assert client.images.get(TAG).id == "sha256:" + sha(b"{}")


def test_import_refuses_a_flipped_byte_before_loading(tmp_path: Path, suite_file: Path) -> None:
    bundle = make_fake_bundle(tmp_path, suite_file, FakeImage(b"{}", [TAG]))
    flip_a_byte(bundle)
    client = fake_client()
    with pytest.raises(BundleError, match="sha256 mismatch"):
        import_bundle(bundle, lambda _: client)
    assert client.images.loads == 0


def test_import_refuses_an_image_tar_that_tags_something_else(
    tmp_path: Path, suite_file: Path
) -> None:
    image = FakeImage(b"{}", [TAG], save_tags=[TAG, "ubuntu:latest"])
    bundle = make_fake_bundle(tmp_path, suite_file, image)
    client = fake_client()
    with pytest.raises(BundleError, match="would also tag ubuntu:latest"):
        import_bundle(bundle, lambda _: client)
    assert client.images.loads == 0


def test_import_refuses_an_id_other_than_the_manifests(tmp_path: Path, suite_file: Path) -> None:
    bundle = make_fake_bundle(tmp_path, suite_file, FakeImage(b"{}", [TAG]))
    client = fake_client()
    client.images.load = lambda f: [FakeImage(b"other", [TAG])]
    with pytest.raises(BundleError, match=r"loaded sha256:\w+, the manifest says sha256:"):
        import_bundle(bundle, lambda _: client)


# --- the commands, with no engine -----------------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def flip_a_byte(bundle: Path) -> None:
    _, data = _offsets(bundle)[IMAGE_FILE]
    raw = bytearray(bundle.read_bytes())
    raw[data + 100] ^= 1
    bundle.write_bytes(bytes(raw))


def test_verify_checks_everything_with_no_engine(
    cli: Any, no_engine: None, tmp_path: Path, suite_file: Path
) -> None:
    bundle = make_fake_bundle(tmp_path, suite_file, FakeImage(b"{}", [TAG]))
    code, out, err = cli("bundle", "verify", str(bundle))
    assert code == 0, err
    assert IMAGE_FILE in out and TAG in out
    assert f"verified {bundle}: suite offline, 2 files, 1 image(s)" in out
    code, out, _ = cli("bundle", "verify", str(bundle), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["verified"] and doc["suite"] == "offline"
    assert [i["tag"] for i in doc["images"]] == [TAG]


def test_verify_checks_the_image_tars(cli: Any, no_engine: None, lab: Lab) -> None:
    write_tar(lab.bundle, valid_members())  # a consistent manifest; its image is no tar
    code, out, err = cli("bundle", "verify", str(lab.bundle))
    assert code == 1 and "verified" not in out
    assert f"({TAG}): not a tar archive" in err and err.count("\n") == 1


def test_import_verifies_then_says_no_engine_answers(
    cli: Any, no_engine: None, tmp_path: Path, suite_file: Path
) -> None:
    bundle = make_fake_bundle(tmp_path, suite_file, FakeImage(b"{}", [TAG]))
    code, out, err = cli("bundle", "import", str(bundle))
    assert code == 1
    assert f"verified {bundle}: 2 files, 1 image(s)" in out
    assert err.startswith("error: no Docker engine answers") and err.count("\n") == 1


@pytest.mark.parametrize("command", [["bundle", "import"], ["up", "--offline", "--bundle"]])
def test_a_corrupt_bundle_is_reported_before_the_missing_engine(
    cli: Any, no_engine: None, tmp_path: Path, suite_file: Path, command: list[str]
) -> None:
    bundle = make_fake_bundle(tmp_path, suite_file, FakeImage(b"{}", [TAG]))
    flip_a_byte(bundle)
    code, out, err = cli(*command, str(bundle))
    assert code == 1 and "verified" not in out + err
    assert f"member '{IMAGE_FILE}': sha256 mismatch" in err and "Docker" not in err


# --- with a Docker engine -------------------------------------------------------------------


@pytest.fixture
def tiny_image(docker_client: docker.DockerClient) -> Iterator[tuple[str, str]]:
    """A one-file image built FROM scratch (no base image needed), unique to this test."""
    nonce = uuid.uuid4().hex
    tag = f"deepspark-test/bundle:{nonce[:12]}"
    dockerfile = f"FROM scratch\nCOPY hello.txt /hello.txt\nLABEL org.deepspark.test={nonce}\n"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for info, data in [
            reg("Dockerfile", dockerfile.encode()),
            reg("hello.txt", nonce.encode()),
        ]:
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = docker_client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    yield tag, image.id
    with contextlib.suppress(ImageNotFound):
        docker_client.images.remove(image.id, force=True)


@pytest.mark.docker
def test_docker_round_trip(
    tmp_path: Path,
    suite_file: Path,
    docker_client: docker.DockerClient,
    tiny_image: tuple[str, str],
) -> None:
    tag, image_id = tiny_image
    bundle = tmp_path / "offline.tar"
    manifest = create_bundle(bundle, suite_file, [tag], docker_client)
    assert manifest.images[0].id == image_id

    docker_client.images.remove(image_id, force=True)
    with pytest.raises(ImageNotFound):
        docker_client.images.get(image_id)

    with pytest.MonkeyPatch.context() as env:  # a lab with the bundle and no engine
        env.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        assert check_bundle(bundle, tmp_path)[0] == manifest
    assert import_bundle(bundle, lambda _: docker_client, tmp_path) == manifest
    assert docker_client.images.get(tag).id == image_id


@pytest.mark.docker
def test_docker_flipped_byte_is_refused_and_nothing_loads(
    tmp_path: Path,
    suite_file: Path,
    docker_client: docker.DockerClient,
    tiny_image: tuple[str, str],
) -> None:
    tag, image_id = tiny_image
    bundle = tmp_path / "offline.tar"
    manifest = create_bundle(bundle, suite_file, [tag], docker_client)
    docker_client.images.remove(image_id, force=True)

    _, data = _offsets(bundle)[manifest.images[0].file]
    raw = bytearray(bundle.read_bytes())
    raw[data + manifest.file(manifest.images[0].file).size // 2] ^= 1
    bundle.write_bytes(bytes(raw))

    with pytest.raises(BundleError, match="sha256 mismatch"):
        import_bundle(bundle, lambda _: docker_client, tmp_path)
    for ref in (tag, image_id):
        with pytest.raises(ImageNotFound):
            docker_client.images.get(ref)
