"""The CPM workload: the model, its data, the metric, and whole runs under the contract."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from deepspark_workload import ContractError
from workload_runs import SETUP, converge, events, load_module, parameters, run, spec

NAME = "cpm"
PRESETS = spec(NAME)["configs"]
MINI = PRESETS["mini"]


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_cpm_large_parameters() -> None:
    with torch.device("meta"):
        model = load("model").CPM(**PRESETS["full"]["model"])
    n = parameters(model)
    assert n == 2_597_073_920  # 30,000 x 2,560 + 1,024 x 2,560 + 32 x 78,676,480 + 5,120
    assert abs(n / 2.6e9 - 1) < 0.02  # the paper's Table 1: CPM-Large, 2.6B


def test_full_width_forward_backward_on_a_slice() -> None:
    """CPM-Large at full width (2,560, 32 heads, the 30,000-token vocabulary and 1,024
    positions) but 2 of its 32 layers, on 16 tokens at batch 1: the whole model would need
    about 21 GB for weights and gradients in fp32 on CPU."""
    torch.manual_seed(0)
    model = load("model").CPM(**{**PRESETS["full"]["model"], "n_layers": 2})
    idx = torch.randint(0, 30_000, (1, 16))
    logits = model(idx)
    assert logits.shape == (1, 16, 30_000)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.flatten()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_model_is_causal() -> None:
    torch.manual_seed(0)
    model = load("model").CPM(**MINI["model"]).eval()
    idx = torch.randint(0, 64, (2, 20))
    changed = idx.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % 64  # the future changes ...
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-5)  # ... the past's predictions don't
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_next_token_hits() -> None:
    logits = torch.tensor(
        [[[0.1, 0.2, 0.9, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.7]],
         [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0], [0.0, 4.0, 0.0, 0.0]]]
    )  # fmt: skip
    # argmax per position: [2, 0, 3] and [0, 3, 1]; targets hit 2 of 3, then 1 of 3
    targets = torch.tensor([[2, 1, 3], [0, 2, 2]])
    assert load("metrics").next_token_hits(logits, targets) == (3, 6)


def test_mini_language() -> None:
    data = load("data")
    assert MINI["model"]["vocab_size"] == data.VOCAB == 64
    train = data.sentences(MINI["train_sequences"], MINI["seq_len"], seed=1)
    val = data.sentences(MINI["val_sequences"], MINI["seq_len"], seed=2)
    assert train.shape == (2048, 65) and val.shape == (256, 65)
    assert torch.equal(val, data.sentences(256, 64, seed=2))  # fixed, not drawn by the run's seed
    assert int(train.min()) >= 0 and int(train.max()) < data.VOCAB
    starts = {tpl[0] for tpl in data.templates()}  # every sequence begins a sentence
    assert set(train[:, 0].tolist()) <= starts
    assert not any(torch.equal(row, val[0]) for row in train)  # held-out text


def test_mini_slots_repeat_their_bound_word() -> None:
    """In every sequence a class has one word, and its marker comes before it, only there."""
    data = load("data")
    rows = data.sentences(64, MINI["seq_len"], seed=3).tolist()
    for row in rows:
        bound: dict[int, int] = {}
        for before, token in itertools.pairwise(row):
            if (c := data.word_class(token)) is not None:
                assert bound.setdefault(c, token) == token and before == 1 + c
            else:
                assert not 1 <= before <= data.CLASSES  # a marker is followed by its word
    assert len({t for row in rows for t in row if data.word_class(t) == 0}) > 1  # bound per row


def test_mini_target_below_the_ceiling() -> None:
    """The Bayes-optimal predictor (knows the grammar, recalls each class's word) scores 0.835;
    an untrained model 0.05. tests/test_mini_baselines.py checks the n-grams."""
    data, target = load("data"), MINI["target"]
    val = data.sentences(MINI["val_sequences"], MINI["seq_len"], seed=2)
    ceiling = data.best_accuracy(val)
    assert ceiling == pytest.approx(0.8354, abs=1e-4) and ceiling > target + 0.05
    torch.manual_seed(0)
    with torch.no_grad():
        logits = load("model").CPM(**MINI["model"])(val[:, :-1])
    hits, total = load("metrics").next_token_hits(logits, val[:, 1:])
    assert hits / total < 0.1


def test_token_blocks(tmp_path: Path) -> None:
    data = load("data")
    np.arange(21, dtype="<u2").tofile(tmp_path / "train.bin")
    blocks = data.TokenBlocks(tmp_path / "train.bin", 4)
    assert len(blocks) == 5  # 21 ids: 5 blocks of 4 inputs, each with its next token
    x, y = blocks[4]
    assert x.tolist() == [16, 17, 18, 19] and y.tolist() == [17, 18, 19, 20]
    assert x.dtype == torch.int64
    np.array([70_000, 1, 2], dtype="<i4").tofile(tmp_path / "wide.bin")
    x, y = data.TokenBlocks(tmp_path / "wide.bin", 2, "int32")[0]
    assert x.tolist() == [70_000, 1] and y.tolist() == [1, 2]
    with pytest.raises(ContractError, match="missing"):
        data.TokenBlocks(tmp_path / "val.bin", 4)
    (tmp_path / "odd.bin").write_bytes(b"\0" * 11)
    with pytest.raises(ContractError, match="whole number"):
        data.TokenBlocks(tmp_path / "odd.bin", 4)


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 2048 for m in stops)  # 64 full batches of 32 sequences


@pytest.mark.slow
def test_full_converge_needs_a_dataset(tmp_path: Path) -> None:
    result = run(NAME, tmp_path, DS_CONFIG="full", DS_MODE="converge")  # no DS_DATA_DIR
    assert result.returncode != 0
    log = events(tmp_path)
    assert [e["key"] for e in log] == [*SETUP[:4], "run_stop"]
    assert "needs DS_DATA_DIR" in log[-1]["metadata"]["reason"]
