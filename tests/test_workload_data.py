"""The library's framework-free mini and full-config data: numpy arrays that the PyTorch and
PaddlePaddle twins each wrap in their own tensors (images.py, mlm.py, datasets.arrays_sha256)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepspark_workload import ContractError, images, mlm
from deepspark_workload.datasets import arrays_sha256, tensors_sha256

MODEL_IMAGES = Path(__file__).resolve().parents[1] / "model_images"


def test_data_modules_import_no_framework() -> None:
    """Nor, of deepspark_core's dependencies, any but pydantic (workload.toml's schema): the
    images carry no others. The path is the images' /opt/deepspark: the library and the core."""
    code = (
        "import sys; from deepspark_workload import core, images, mlm; "
        "assert not {'torch', 'paddle', 'cryptography', 'jinja2'} & set(sys.modules), "
        "sorted(sys.modules)"
    )
    path = [str(MODEL_IMAGES), str(MODEL_IMAGES.parent / "core")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_glyph_splits_are_fixed_and_disjoint() -> None:
    x_train, y_train, x_val, y_val = images.glyph_splits()
    assert (len(x_train), len(x_val)) == (1536, 512)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_val.shape == (512, 1, 8, 8) and x_val.min() >= 0 and x_val.max() <= 1
    assert np.bincount(y_val, minlength=10).min() >= 35  # every glyph, about 51 times
    assert np.array_equal(x_train, images.glyph_splits()[0])  # the scenes do not follow a seed
    seen = {x.tobytes() for x in x_train}
    assert not any(x.tobytes() in seen for x in x_val)  # no validation scene is a training one


def test_glyph_scene_holds_two_to_four_copies_of_its_glyph() -> None:
    x, y = images.glyphs(200, seed=3)
    shapes = [np.array([[c == "#" for c in row] for row in g.split("|")]) for g in images.GLYPHS]
    for scene, label in zip(x[:, 0], y, strict=True):
        lit = scene > 0
        boxes = [lit[r : r + 3, c : c + 3] for r in range(6) for c in range(6)]
        copies = sum(np.array_equal(box, shapes[label]) for box in boxes)
        assert copies >= 2 and lit.sum() <= 4 * shapes[label].sum()
        assert ((scene == 0) | ((scene >= 0.5) & (scene <= 1))).all()  # each copy 0.5-1 bright


def test_array_digest_is_the_tensor_digest() -> None:
    """The same generated data logs the same sha256 in both frameworks."""
    import torch

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.array([True, False])
    assert arrays_sha256(x, y) == tensors_sha256(torch.from_numpy(x), torch.from_numpy(y))
    assert arrays_sha256(x) != arrays_sha256(x.reshape(3, 2))
    assert arrays_sha256(x) != arrays_sha256(x.astype(np.float64))
    assert arrays_sha256(x[:, ::2]) == arrays_sha256(np.ascontiguousarray(x[:, ::2]))


def test_masking_follows_bert() -> None:
    vocab = mlm.Vocab.of(mlm.WORDS)
    ids = mlm.grammar(4000, 24, np.random.default_rng(0))
    inputs, types, padding, positions, labels = mlm.mask_tokens(
        ids, vocab, 4, np.random.default_rng(0)
    )
    assert {a.dtype for a in (inputs, types, positions, labels)} == {np.dtype(np.int64)}
    selected = labels != mlm.IGNORE
    lengths = (~padding).sum(1)
    # round(15%) of each row's tokens, [CLS] and [SEP] counted: 15 -> 2, 17 to 23 -> 3
    assert selected.sum(1).tolist() == np.round(lengths * 0.15).astype(int).tolist()
    picked = np.take_along_axis(ids, positions, 1)[selected]
    assert not ((picked == vocab.cls) | (picked == vocab.sep) | (picked == vocab.pad)).any()
    assert np.array_equal(labels[selected], picked)
    assert all(len(set(row)) == len(row) for row in positions.tolist())  # no slot twice
    now = np.take_along_axis(inputs, positions, 1)[selected]
    masked, kept = (now == vocab.mask).mean(), (now == picked).mean()
    assert 0.77 < masked < 0.83 and 0.09 < kept < 0.13  # 10% kept, and some random draws hit
    at_selected = np.zeros(ids.shape, dtype=bool)
    np.put_along_axis(at_selected, positions, selected, 1)
    assert not ((inputs != ids) & ~at_selected).any()  # nothing else changes
    # segments: 0 through the first [SEP], 1 after it; padding is segment 0
    first_sep = int(np.flatnonzero(ids[0] == vocab.sep)[0])
    assert (types[0, : first_sep + 1] == 0).all() and (
        types[0, first_sep + 1 : lengths[0]] == 1
    ).all()
    assert (types[padding] == 0).all()


def test_masking_collate_follows_the_global_seed() -> None:
    vocab = mlm.Vocab.of(mlm.WORDS)
    rows = list(mlm.grammar(8, 24, np.random.default_rng(0)))
    masking = mlm.Masking(vocab, 4)
    np.random.seed(3)
    first = masking(rows)
    np.random.seed(3)
    assert all(np.array_equal(a, b) for a, b in zip(first, masking(rows), strict=True))
    assert not np.array_equal(first[0], masking(rows)[0])  # the next batch: another masking
    fixed = mlm.mask_eval(np.stack(rows), vocab, 4)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(fixed, mlm.mask_eval(np.stack(rows), vocab, 4), strict=True)
    )


def test_grammar_sentences() -> None:
    """The generated language: fixed, agreeing, and the passive repeating the active's phrases."""
    vocab, train, _ = mlm.grammar_splits(200, 50, 24)
    assert vocab.size == len(mlm.WORDS) == 96 and train.dtype == np.int64
    assert np.array_equal(train, mlm.grammar_splits(200, 50, 24)[1])  # the same every run
    words = mlm.WORDS
    for row in train.tolist():
        text = [words[i] for i in row if i != vocab.pad]
        assert text[0] == "[CLS]" and text[-1] == "[SEP]" and text.count("[SEP]") == 2
        sep = text.index("[SEP]")
        active, passive = text[1:sep], text[sep + 1 : -1]
        by = passive.index("by")
        np2, aux, participle, np1 = (
            passive[: by - 2],
            passive[by - 2],
            passive[by - 1],
            passive[by + 1 :],
        )
        assert active == [*np1, active[len(np1)], *np2]  # NP1 verb NP2, NP2 aux participle by NP1
        verb = next(v for v in mlm.VERBS if active[len(np1)] in v[:2])
        assert participle == verb[2]
        plural1, plural2 = np1[-1].endswith("s"), np2[-1].endswith("s")
        assert active[len(np1)] == verb[plural1] and aux == ("are" if plural2 else "is")


def test_wikipedia_layout(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    np.save(tmp_path / "train" / "a.npy", np.arange(3 * 8, dtype=np.int32).reshape(3, 8))
    np.save(tmp_path / "train" / "b.npy", np.arange(100, 100 + 2 * 8, dtype=np.int16).reshape(2, 8))
    shards = mlm.Shards(sorted((tmp_path / "train").glob("*.npy")), 8)
    assert len(shards) == 5
    assert shards[2].tolist() == list(range(16, 24)) and shards[3].tolist() == list(range(100, 108))
    assert shards[4].dtype == np.int64
    with pytest.raises(ContractError, match=r"expected \(N, 16\)"):
        mlm.Shards([tmp_path / "train" / "a.npy"], 16)
    with pytest.raises(ContractError, match=r"no \.npy files"):
        mlm.Shards([], 8)
    vocab = mlm.Vocab.of(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"])
    assert vocab == mlm.Vocab(6, 0, 2, 3, 4)
    with pytest.raises(ContractError, match=r"lacks \[MASK\]"):
        mlm.Vocab.of(["[PAD]", "[CLS]", "[SEP]"])
