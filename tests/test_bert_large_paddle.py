"""The PaddlePaddle BERT-large: the PyTorch twin's model, presets, data and target, in paddle."""

from pathlib import Path

import numpy as np
import pytest

from conftest import require
from workload_runs import converge, events, load_module, parameters, run, spec, twin_presets

NAME, TWIN = "bert_large_paddle", "bert_large"
PRESETS = spec(NAME)["configs"]
paddle = require("paddle")  # the `paddle` extra


def load(name: str):
    return load_module(NAME, name)


def test_presets_metric_and_target_are_the_twins() -> None:
    ours, twin = spec(NAME), spec(TWIN)
    assert ours["model"] == TWIN and ours["framework"] == "paddlepaddle"
    names = list(ours["configs"])  # the twin may have more (BERT's full-phase1)
    assert twin_presets(NAME, names) == twin_presets(TWIN, names)
    assert ours["quality"] == twin["quality"]


def test_full_model_forward_backward_has_bert_large_parameters() -> None:
    """335,174,458 parameters as the twin (HuggingFace's BertForMaskedLM of bert-large-uncased);
    then full width and depth at batch 1 on a 128-token sequence, as the twin's test, padded."""
    cfg = PRESETS["full"]
    paddle.seed(0)
    model = load("model").Bert(**cfg["model"])
    assert parameters(model) == 335_174_458
    ids = paddle.randint(1000, cfg["model"]["vocab_size"], [1, 128])
    types = (paddle.arange(128) >= 64).astype("int64")[None]
    padding = paddle.arange(128)[None] >= 120
    positions = paddle.arange(0, 2 * cfg["predictions"], 2)[None] % 120
    logits = model(ids, types, padding, positions)
    assert logits.shape == [1, cfg["predictions"], cfg["model"]["vocab_size"]]
    paddle.logsumexp(logits, -1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_same_function_as_the_twin() -> None:
    """The twin's weights in our mini model: the same logits, padded keys masked alike."""
    import torch

    torch.manual_seed(0)
    twin = load_module(TWIN, "model").Bert(**PRESETS["mini"]["model"]).eval()
    model = load("model").Bert(**PRESETS["mini"]["model"])
    state = {}
    for key, value in twin.state_dict().items():
        linear = value.ndim == 2 and not key.startswith(("tokens", "positions", "types"))
        state[key] = value.numpy().T if linear else value.numpy()  # paddle's Linear: (in, out)
    model.set_state_dict(state)
    model.eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 96, (2, 24))
    types = (np.arange(24) >= 12).astype(np.int64)[None].repeat(2, 0)
    padding = np.zeros((2, 24), dtype=bool)
    padding[1, 16:] = True
    positions = np.array([[1, 5, 13, 20], [2, 3, 14, 15]])
    with torch.no_grad():
        expected = twin(*map(torch.from_numpy, (ids, types, padding, positions))).numpy()
    got = model(*map(paddle.to_tensor, (ids, types, padding, positions))).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_mlm_accuracy_and_loss_count_selected_positions_only() -> None:
    metrics = load("metrics")
    logits = paddle.zeros([2, 3, 5])
    logits[0, 0, 4] = logits[0, 1, 2] = logits[0, 2, 1] = 1.0  # predicts 4, 2, 1
    logits[1, 0, 3] = logits[1, 1, 3] = logits[1, 2, 0] = 1.0  # predicts 3, 3, 0
    labels = paddle.to_tensor([[4, 0, -100], [3, 3, -100]])
    assert metrics.mlm_accuracy(logits, labels) == (3, 4)
    e = np.e  # the mean over the 4 selected slots alone, as the twin's (test_bert_large.py)
    expected = (3 * -np.log(e / (e + 4)) - np.log(1 / (e + 4))) / 4
    assert float(metrics.mlm_loss(logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_bf16_on_a_cpu_is_refused(tmp_path: Path) -> None:
    result = run(NAME, tmp_path, DS_PRECISION="bf16")
    assert result.returncode != 0
    reason = events(tmp_path)[-1]["metadata"]["reason"]
    assert "DS_PRECISION='bf16'" in reason and "GPU, XPU and custom devices only" in reason


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    from deepspark_workload import mlm
    from deepspark_workload.datasets import arrays_sha256

    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 16384 for m in stops)  # 256 full batches of 64
    _, train, val = mlm.grammar_splits(16384, 2048, 24)
    (dataset,) = [e for e in log if e["key"] == "dataset"]
    assert dataset["metadata"]["sha256"] == arrays_sha256(train, val)  # the twin's, too
