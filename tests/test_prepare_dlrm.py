"""DLRM's data converter: Criteo 1TB day files (a miniature generated here) -> the day_<d>_*.npy
files data.py reads, checked against torchrec's row-by-row preprocessing, then trained on."""

import gzip

import numpy as np
import pytest

from deepspark_workload.prepare import PrepareError
from workload_runs import Counted, convert, load_module, prepare, tiny_preset, train_on

DAYS, ROWS = 24, 40
TINY = tiny_preset(
    data="criteo-1tb",
    batch_size=4,
    steps_per_window=2,
    model=dict(
        num_dense=13,
        table_sizes=[2 + k % 9 for k in range(26)],
        embedding_dim=4,
        bottom_mlp=[8, 4],
        top_mlp=[8, 1],
        sparse=False,
    ),
    optim=dict(lr=0.1, lr_batch=4, decay_start=0.5),
)


def click_line(rng: np.random.Generator) -> str:
    """A line as Criteo's logs have them: some features empty, counts from -2, 32-bit hashes."""
    dense = [str(rng.integers(-2, 5000)) if rng.random() > 0.2 else "" for _ in range(13)]
    sparse = [f"{rng.integers(2**32):08x}" if rng.random() > 0.1 else "" for _ in range(26)]
    return "\t".join([str(rng.integers(2)), *dense, *sparse])


def criteo_days(root, rows=ROWS):
    """day_0 .. day_23, the odd days gzipped, the last line of day 0 without its newline;
    returns every day's lines."""
    rng = np.random.default_rng(0)
    root.mkdir()
    days = []
    for day in range(DAYS):
        lines = [click_line(rng) for _ in range(rows)]
        text = "\n".join(lines) + ("" if day == 0 else "\n")
        if day % 2:
            (root / f"day_{day}.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (root / f"day_{day}").write_text(text)
        days.append(lines)
    return days


def torchrec_rows(lines):
    """torchrec's tsv_to_npys, row by row: empty fields 0, log(x + 3), hex hashes as int32."""
    fields = [line.split("\t") for line in lines]
    dense = np.array([[int(x or 0) for x in f[1:14]] for f in fields]) + 3
    sparse = np.array([[int(x or "0", 16) for x in f[14:]] for f in fields], np.uint32)
    labels = np.array([[int(f[0])] for f in fields], np.int32)
    return np.log(dense.astype(np.float32)), sparse.view(np.int32), labels


def test_days_convert_as_torchrec_preprocesses_them_and_train(tmp_path):
    days = criteo_days(tmp_path / "criteo")
    data = tmp_path / "data"
    prepare("dlrm", tmp_path / "criteo", data)
    for day in (0, 1, 23):
        for kind, want in zip(("dense", "sparse", "labels"), torchrec_rows(days[day]), strict=True):
            got = np.load(data / f"day_{day}_{kind}.npy")
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
    train_on("dlrm", TINY, data, tmp_path / "run")


def test_an_interrupted_prepare_resumes_at_the_first_missing_day(tmp_path):
    criteo_days(tmp_path / "criteo", rows=5)
    convert("dlrm", tmp_path / "criteo", tmp_path / "data")
    kept, lost = tmp_path / "data" / "day_3_dense.npy", tmp_path / "data" / "day_5_sparse.npy"
    before, whole = kept.stat().st_mtime_ns, lost.read_bytes()
    lost.unlink()
    (tmp_path / "criteo" / "day_3.gz").write_bytes(b"not gzip")  # done: never read again
    progress = convert("dlrm", tmp_path / "criteo", tmp_path / "data")
    assert kept.stat().st_mtime_ns == before and lost.read_bytes() == whole
    assert progress.expected == sum(f.stat().st_size for f in (tmp_path / "criteo").iterdir())


def test_the_streamed_header_holds_the_row_count_past_one_block(tmp_path, monkeypatch):
    prepare_module = load_module("dlrm", "prepare")
    monkeypatch.setattr(prepare_module, "BLOCK", 64)  # a line is longer: blocks join lines
    criteo_days(tmp_path / "criteo", rows=7)
    prepare_module.convert(tmp_path / "criteo", tmp_path / "data", Counted())
    assert np.load(tmp_path / "data" / "day_2_sparse.npy").shape == (7, 26)


def first_line(root, edit):
    """day_4's first line edited."""
    first, rest = (root / "day_4").read_text().split("\n", 1)
    (root / "day_4").write_text(edit(first) + "\n" + rest)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "day_8").unlink(), "day_8 \\(or day_8.gz\\) is missing"),
        (lambda root: first_line(root, lambda s: s + "\t1"), "without 40 tab-separated"),
        (lambda root: first_line(root, lambda s: s.replace("\t", "\t-x", 1)), "not a number"),
        (lambda root: first_line(root, lambda s: s.replace("\t", "\tab", 1)), "in base 10"),
        (lambda root: first_line(root, lambda s: s + "-"), "not a number"),
        (
            lambda root: first_line(root, lambda s: s.rsplit("\t", 1)[0] + "\t123456789"),
            "over 8 digits in base 16",
        ),
        (lambda root: first_line(root, lambda s: "2" + s[1:]), "not 0 or 1"),
        (lambda root: (root / "day_4").write_text(""), "holds no clicks"),
        (lambda root: (root / "day_5.gz").write_bytes(b"\x1f\x8b\x08junk"), "day_5.gz"),
    ],
)
def test_a_damaged_source_is_a_one_line_error(tmp_path, damage, message):
    criteo_days(tmp_path / "criteo", rows=3)
    damage(tmp_path / "criteo")
    with pytest.raises(PrepareError, match=message) as caught:
        convert("dlrm", tmp_path / "criteo", tmp_path / "data")
    assert "\n" not in str(caught.value)
