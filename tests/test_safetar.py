"""One tar reader for every archive: the same hostile archives are refused, in one line and
before anything is written, by each way in: `bundle verify` and `bundle import` with no Docker
engine, `result_bundle.unpack`, `submit FILE`, and the collector's POST (400, never 5xx)."""

from __future__ import annotations

import functools
import gzip
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import TOKEN, emptied
from deepspark_agent.submit import outbox_dir
from deepspark_collector.app import create_app
from deepspark_collector.settings import RateLimit, Settings
from deepspark_core.result_bundle import Limits, ResultBundleError, unpack
from deepspark_core.safetar import META_HEADER_LIMIT
from test_bundle import Member, reg, special, valid_members

NO_ENGINE = "unix:///nonexistent/docker.sock"
RESULT_MEMBERS = [reg("plan.json", b"{}"), reg("statement.dsse.json", b"{}")]
Base = list[Member]


def tar_bytes(members: Base) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def truncated(base: Base) -> bytes:
    """Cut inside the last member's data."""
    raw = tar_bytes(base)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        last = tar.getmembers()[-1]
    return raw[: last.offset_data + last.size // 2]


def declared(size: int) -> bytes:
    """A 2 KiB file whose one header declares `size` bytes: a bomb on paper."""
    info = tarfile.TarInfo("plan.json")
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT) + bytes(2048)


def huge_pax(base: Base) -> bytes:
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, META_HEADER_LIMIT + 1
    return pax.tobuf(tarfile.USTAR_FORMAT) + bytes(META_HEADER_LIMIT + 2048)


def too_many(base: Base) -> bytes:
    """The default limit of every reader is 10,000 members: one more, each empty."""
    return tar_bytes([*base, *(reg(f"m{i:05}", b"") for i in range(10_001))])


# Each case: the archive, from a valid one (an offline bundle's or a result bundle's members),
# and what the one-line error says.
HOSTILE: dict[str, tuple[Callable[[Base], bytes], str]] = {
    "path traversal": (lambda b: tar_bytes([*b, reg("../escape", b"x")]), "unsafe name"),
    "absolute name": (lambda b: tar_bytes([*b, reg("/tmp/abs-x", b"x")]), "absolute path"),
    "symlink": (
        lambda b: tar_bytes([*b, special("link", tarfile.SYMTYPE, "/etc/passwd")]),
        r"'link': not a regular file \(symlink\)",
    ),
    "hard link": (
        lambda b: tar_bytes([*b, special("hard", tarfile.LNKTYPE, b[0][0].name)]),
        r"not a regular file \(hard link\)",
    ),
    "character device": (
        lambda b: tar_bytes([*b, special("null", tarfile.CHRTYPE)]),
        r"\(character device\)",
    ),
    "block device": (
        lambda b: tar_bytes([*b, special("sda", tarfile.BLKTYPE)]),
        r"\(block device\)",
    ),
    "duplicate name": (lambda b: tar_bytes([*b, b[0]]), "duplicate name"),
    "duplicate up to case": (
        lambda b: tar_bytes([*b, reg(b[0][0].name.upper(), b"x")]),
        "duplicate name",
    ),
    "huge pax header": (huge_pax, "extended header of 1048577 bytes"),
    "bomb of declared sizes": (lambda b: declared(2**40), "1099511627776 bytes, over the limit"),
    "too many members": (too_many, "more than 10000 members"),
    "truncated": (truncated, "truncated"),
    "trailing garbage": (lambda b: tar_bytes(b) + b"hidden", "data after the end"),
    "compressed": (lambda b: gzip.compress(tar_bytes(b)), r"compressed \(gzip\)"),
}


@functools.cache
def archive(case: str, result: bool) -> bytes:
    make, _ = HOSTILE[case]
    return make(RESULT_MEMBERS if result else valid_members())


def one_line_error(err: str, match: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(match, err), err


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


@pytest.mark.parametrize("command", ["verify", "import"])
@pytest.mark.parametrize("case", HOSTILE)
def test_offline_bundle_refuses_with_no_engine(cli, no_engine, tmp_path, case, command):
    bundle, work = tmp_path / "bundle.tar", tmp_path / "work"
    bundle.write_bytes(archive(case, result=False))
    work.mkdir()
    code, out, err = cli("bundle", command, str(bundle), "--workdir", str(work))
    assert code == 1 and "verified" not in out
    one_line_error(err, HOSTILE[case][1])
    assert "Docker" not in err  # the bundle's problem, not the missing engine
    assert list(work.iterdir()) == []
    assert not (tmp_path / "escape").exists() and not Path("/tmp/abs-x").exists()


@pytest.mark.parametrize("case", HOSTILE)
def test_result_bundle_unpack_refuses(tmp_path, case):
    bundle, dest = tmp_path / "result.tar", tmp_path / "dest"
    bundle.write_bytes(archive(case, result=True))
    with pytest.raises(ResultBundleError, match=HOSTILE[case][1]) as info:
        unpack(bundle, dest)
    assert "\n" not in str(info.value)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escape").exists() and not Path("/tmp/abs-x").exists()


@pytest.mark.parametrize("case", HOSTILE)
def test_submit_file_refuses_before_queueing(cli, tmp_path, case):
    bundle = tmp_path / "result.tar"
    bundle.write_bytes(archive(case, result=True))
    code, out, _ = cli("submit", str(bundle), "--collector", "http://127.0.0.1:9", "--json")
    (answer,) = json.loads(out)
    assert code == 1 and answer["status"] == "refused"
    assert re.search(HOSTILE[case][1], answer["detail"])
    assert "\n" not in answer["detail"]
    assert not outbox_dir().exists() or list(outbox_dir().glob("*.tar")) == []


@pytest.fixture(scope="module")
def collector(tmp_path_factory) -> Iterator[tuple[Settings, TestClient]]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("collector"),
        admin_token=TOKEN,
        rate_limit=RateLimit(burst=len(HOSTILE)),  # one app for every case
    )
    with TestClient(create_app(settings)) as client:
        yield settings, client


@pytest.mark.parametrize("case", HOSTILE)
def test_collector_answers_400(collector, case):
    settings, client = collector
    answer = client.post(
        "/api/v1/submissions",
        content=archive(case, result=True),
        headers={"Content-Type": "application/x-tar"},
    )
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("not a valid result bundle: ") and "\n" not in detail
    assert re.search(HOSTILE[case][1], detail)
    assert emptied(settings.spool_dir)  # nothing left behind


# --- the policies each caller keeps ---------------------------------------------------------


def test_total_cap_counts_every_header(tmp_path):
    bundle = tmp_path / "r.tar"
    members = [reg(f"{i}.log", b"x" * 100) for i in range(3)]
    bundle.write_bytes(tar_bytes([*RESULT_MEMBERS, *members]))
    with pytest.raises(ResultBundleError, match="more than 250 bytes in all"):
        unpack(bundle, tmp_path / "d", Limits(member_size=100, total=250))
    assert list((tmp_path / "d").iterdir()) == []


def test_a_sparse_bomb_is_refused_by_the_space_check(tmp_path):
    """Headers 4 TiB apart in a sparse file: sound, within generous limits, too big to land."""
    size = 4 * 2**40
    bundle = tmp_path / "sparse.tar"
    with bundle.open("wb") as f:
        for name in ("statement.dsse.json", "a.log", "b.log"):
            info = tarfile.TarInfo(name)
            info.size = size
            f.write(info.tobuf(tarfile.GNU_FORMAT))
            f.seek(size, io.SEEK_CUR)
        f.write(bytes(2 * tarfile.BLOCKSIZE))
    limits = Limits(member_size=size, total=2**50)
    with pytest.raises(ResultBundleError, match=r"bytes needed to extract, \d+ free"):
        unpack(bundle, tmp_path / "d", limits)
    assert list((tmp_path / "d").iterdir()) == []
