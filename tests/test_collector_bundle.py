"""Result bundles: round trip and caps (hostile archives, on every way in: test_safetar.py)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from deepspark_core.result_bundle import Limits, ResultBundleError, pack_run_set, unpack
from deepspark_core.signing import sha256_file


def make_tar(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_pack_and_unpack_round_trip(tmp_path):
    run_set = tmp_path / "set"
    (run_set / "run-1").mkdir(parents=True)
    (run_set / "plan.json").write_text("{}")
    (run_set / "run-1" / "mllog.log").write_text("x")
    (run_set / "result.json").write_text("derived, not packed")
    (run_set / "statement.dsse.json").write_text("{}")
    unpacked = unpack(pack_run_set(run_set, tmp_path / "b.tar"), tmp_path / "dest")
    out = unpacked.run_set
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["plan.json", "run-1/mllog.log", "statement.dsse.json"]
    # The digests of the bytes written, which the collector checks the signed ones against.
    assert unpacked.digests == {name: sha256_file(out / name) for name in files}


def test_an_unsigned_run_set_is_not_packed(tmp_path):
    (tmp_path / "set").mkdir()
    with pytest.raises(ResultBundleError, match="not signed"):
        pack_run_set(tmp_path / "set", tmp_path / "b.tar")


STATEMENT = (member("statement.dsse.json"), b"{}")


def test_size_caps_and_missing_statement(tmp_path):
    big = make_tar(tmp_path / "big.tar", STATEMENT, (member("a"), b"x" * 100))
    with pytest.raises(ResultBundleError, match="100 bytes, over the limit of 10"):
        unpack(big, tmp_path / "d", Limits(member_size=10))
    bare = make_tar(tmp_path / "bare.tar", (member("a"), b"x"))
    with pytest.raises(ResultBundleError, match="not a result bundle"):
        unpack(bare, tmp_path / "d")
