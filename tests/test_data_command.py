"""`deepspark-agent data list|prepare|verify`, and the runner verifying a run's data once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deepspark_agent.workloads import WORKLOADS_ENV
from deepspark_core.datasets import MANIFEST, PARTIAL, manifest_digest, write_manifest
from deepspark_core.results import STDOUT_FILE

DATA = Path(__file__).parent / "data"
CONVERTER = """
import json, os, signal
from deepspark_workload.prepare import PrepareError, done, write_atomic

def convert(src, dst, progress):
    names = sorted(p.name for p in src.iterdir())
    if not names:
        raise PrepareError(f"{src}: empty")
    progress.total(len(names))
    for name in names:
        if not done(dst / name):
            write_atomic(dst / name, lambda tmp, n=name: tmp.write_text((src / n).read_text() * 2))
            if os.environ.get("CUT_AFTER") == name:  # the signal of a user's Ctrl-C
                os.kill(os.getpid(), signal.SIGKILL)
        progress.advance()
"""


@pytest.fixture
def doubler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workload folder `doubler` whose converter writes each source file twice over, beside
    `sleeper`, whose presets generate their data (every built-in workload has a dataset)."""
    root = tmp_path / "workloads"
    shutil.copytree(DATA / "workloads" / "sleeper", root / "doubler")
    shutil.copytree(DATA / "workloads" / "sleeper", root / "sleeper")
    toml = root / "doubler" / "workload.toml"
    toml.write_text(
        toml.read_text().replace('name = "sleeper"', 'name = "doubler"')
        + '\n[dataset]\nname = "Doubles"\nurl = "https://example.org"\nlicence = "CC0"\n'
        'size = "1 kB"\nofficial = "<name>"\nstand_in = "no public corpus doubles"\n'
    )
    (root / "doubler" / "prepare.py").write_text(CONVERTER)
    monkeypatch.setenv(WORKLOADS_ENV, str(root))
    return root


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in "abc":
        (src / name).write_text(name)
    return src


def test_data_list_says_each_workloads_dataset(cli, doubler: Path) -> None:
    code, out, _ = cli("data", "list", "--json")
    rows = {row["workload"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["doubler"]["dataset"]["stand_in"] == "no public corpus doubles"
    assert rows["doubler"]["converter"] is True
    assert rows["resnet50"]["dataset"]["name"] == "ImageNet-1k (ILSVRC2012)"
    assert rows["bert_large"]["dataset"] is None or rows["bert_large"]["converter"]
    assert rows["sleeper"] == {"workload": "sleeper", "dataset": None, "converter": False}
    code, out, _ = cli("data", "list")
    assert code == 0 and "Doubles" in out and "stand-in: no public corpus doubles" in out
    assert "generated only" in out


def test_prepare_converts_writes_the_manifest_and_resumes(cli, doubler, tmp_path, monkeypatch):
    src, dst = source(tmp_path), tmp_path / "dst"
    monkeypatch.setenv("CUT_AFTER", "b")
    code, _, err = cli("data", "prepare", "doubler", "--from", str(src), "--to", str(dst))
    assert code == 1 and "doubler's converter: exit -9" in err
    assert sorted(p.name for p in dst.iterdir()) == ["a", "b"]  # no half-written name
    (dst / "a").write_text("kept")  # a kept output is not converted again
    monkeypatch.delenv("CUT_AFTER")
    code, out, _ = cli("data", "prepare", "doubler", "--from", str(src), "--to", str(dst))
    assert code == 0
    assert [(dst / n).read_text() for n in "abc"] == ["kept", "bb", "cc"]
    digest = manifest_digest(dst)
    assert f"sha256 {digest}" in out
    code, out, _ = cli("data", "verify", str(dst))
    assert code == 0 and f"3 files verified; DS_DATA_VERIFIED={digest}" in out


def test_prepare_refuses_a_bad_source_in_one_line(cli, doubler: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, message in [
        (["--from", str(empty)], f"doubler's converter: {empty}: empty"),
        (["--from", str(tmp_path / "none")], "is not a directory"),
        (["--from", str(empty), "--to", str(empty / "out")], "is inside --from"),
    ]:
        args = args if "--to" in args else [*args, "--to", str(tmp_path / "dst")]
        code, _, err = cli("data", "prepare", "doubler", *args)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("data", "prepare", "sleeper", "--from", str(empty), "--to", "x")
    assert code == 1 and "sleeper has no prepare.py: its presets generate their data" in err


def test_verify_names_the_first_bad_file(cli, tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    write_manifest(tmp_path)
    assert not (tmp_path / PARTIAL).exists()
    assert cli("data", "verify", str(tmp_path))[0] == 0
    (tmp_path / "b").write_text("B")
    code, _, err = cli("data", "verify", str(tmp_path), "--no-cache")
    bad = tmp_path / "b"
    assert code == 1 and err.strip() == f"error: {bad} does not match its sha256 in {MANIFEST}"


def test_run_verifies_the_data_once_and_tells_the_workload(cli, tmp_path, monkeypatch) -> None:
    """The agent hashes the data before the ranks start and passes the manifest's digest
    (DS_DATA_VERIFIED); data that does not match its manifest starts no run."""
    root = tmp_path / "workloads"
    shutil.copytree(DATA / "workloads" / "sleeper", root / "sleeper")
    train = root / "sleeper" / "train.py"
    train.write_text(
        train.read_text() + '\nprint("verified:", os.environ["DS_DATA_VERIFIED"], flush=True)\n'
    )
    monkeypatch.setenv(WORKLOADS_ENV, str(root))
    data = tmp_path / "data"
    data.mkdir()
    (data / "behaviour").write_text("ok")
    digest = write_manifest(data)
    code, _, err = cli("run", "sleeper", "--runtime", "process", "--data-dir", str(data),
                         "--out", str(tmp_path / "out"), "--json")  # fmt: skip
    assert code == 0, err
    (stdout,) = (tmp_path / "out").glob(f"*/*/{STDOUT_FILE}")
    assert f"verified: {digest}" in stdout.read_text()
    (data / "behaviour").write_text("no")
    code, _, err = cli("run", "sleeper", "--runtime", "process", "--data-dir", str(data),
                       "--out", str(tmp_path / "bad"))  # fmt: skip
    assert code == 1 and "behaviour does not match its sha256" in err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("run.json"))
