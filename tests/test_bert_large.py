"""The BERT-large workload: the model, its metric, and whole runs under the contract.

Its data (the grammar, BERT's masking, the shards) is the library's: tests/test_workload_data.py.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from workload_runs import converge, final, infer, load_module, parameters, spec

NAME = "bert_large"
PRESETS = spec(NAME)["configs"]
# HuggingFace's BertModel of bert-large-uncased (embeddings, 24 layers, pooler), as KerasHub's
# bert_large_en_uncased preset states it too: 31,782,912 + 24 x 12,596,224 + 1,049,600.
REFERENCE = 335_141_888


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_bert_large_parameters() -> None:
    with torch.device("meta"):
        model = load("model").Bert(**PRESETS["full"]["model"])
    # The reference less the pooler (1024 x 1024 + 1024) plus the MLM head (transform
    # 1024 x 1024 + 1024, LayerNorm 2048, decoder bias 30,522; the decoder weight is tied):
    # HuggingFace's BertForMaskedLM of bert-large-uncased, to the parameter.
    assert parameters(model) == REFERENCE - 1_049_600 + 1_082_170 == 335_174_458
    assert abs(parameters(model) / REFERENCE - 1) < 0.02
    assert model.transform[0].weight.shape == (1024, 1024)


def test_full_model_forward_backward() -> None:
    """Full width and depth (24 layers, hidden 1024, the whole vocabulary) at batch 1, on a
    128-token sequence rather than 512 to keep CPU time and memory small; padding masked."""
    cfg = PRESETS["full"]
    torch.manual_seed(0)
    model = load("model").Bert(**cfg["model"])
    ids = torch.randint(1000, cfg["model"]["vocab_size"], (1, 128))
    types = (torch.arange(128) >= 64).long()[None]
    padding = torch.arange(128)[None] >= 120
    positions = torch.arange(0, 2 * cfg["predictions"], 2)[None] % 120
    logits = model(ids, types, padding, positions)
    assert logits.shape == (1, cfg["predictions"], cfg["model"]["vocab_size"])
    logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_padding_is_ignored() -> None:
    """What follows [PAD] changes no prediction: padded keys are masked out of attention."""
    torch.manual_seed(0)
    model = load("model").Bert(**PRESETS["mini"]["model"]).eval()
    ids = torch.randint(4, 96, (2, 24))
    ids[1, 16:] = torch.randint(4, 96, (8,))  # row 1: other tokens where row 0 is padded
    padding = torch.zeros(2, 24, dtype=torch.bool)
    padding[:, 16:] = True
    types, positions = torch.zeros(2, 24, dtype=torch.long), torch.tensor([[1, 5], [1, 5]])
    with torch.no_grad():
        logits = model(ids[[0, 0]], types, padding, positions)
        other = model(
            torch.cat([ids[:1, :16], ids[1:, 16:]], 1).expand(2, -1), types, padding, positions
        )
    torch.testing.assert_close(logits, other)


def test_mlm_accuracy_counts_selected_positions_only() -> None:
    metrics = load("metrics")
    logits = torch.zeros(2, 3, 5)
    logits[0, 0, 4] = logits[0, 1, 2] = logits[0, 2, 1] = 1.0  # predicts 4, 2, 1
    logits[1, 0, 3] = logits[1, 1, 3] = logits[1, 2, 0] = 1.0  # predicts 3, 3, 0
    labels = torch.tensor([[4, 0, -100], [3, 3, -100]])
    # selected: 4 slots (the two -100 are unused); right: 4 (yes), 0 (no: 2), 3, 3 (yes, yes)
    assert metrics.mlm_accuracy(logits, labels) == (3, 4)
    # the loss averages over the 4 selected slots alone: each has a logit 1 against four 0s,
    # -log(e / (e + 4)) when right (3 slots) and -log(1 / (e + 4)) when wrong (1 slot)
    e = torch.e
    expected = (3 * -np.log(e / (e + 4)) - np.log(1 / (e + 4))) / 4
    assert metrics.mlm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A mini converge run (seed 1), checked: its checkpoint.pt and its events."""
    out = tmp_path_factory.mktemp("converge")
    return out / "checkpoint.pt", converge(NAME, out)


@pytest.mark.slow
def test_mini_converge(trained) -> None:
    checkpoint, log = trained
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 16384 for m in stops)  # 256 full batches of 64
    assert final(log, "checkpoint")["metadata"]["sha256"] and checkpoint.is_file()


@pytest.mark.slow
@pytest.mark.parametrize("scenario, queries", [("offline", 20), ("latency", 20 * 64)])
def test_infer_scores_the_converge_runs_final_evaluation_of_its_weights(
    trained, tmp_path: Path, scenario: str, queries: int
) -> None:
    """Same weights, same masked eval set in the same batches of 64 (a latency run evaluates
    in the run's batch too), eager fp32 on the CPU: the accuracy is equal, exactly. Windows of
    20 batches of 64 offline, of 20 x 64 single-sequence queries in the latency scenario,
    drawn from the eval set (its digest the converge run's: the same generated data)."""
    checkpoint, trained_log = trained
    log = infer(NAME, tmp_path, checkpoint, DS_SCENARIO=scenario, DS_WINDOWS="2")
    assert final(log)["value"] == final(trained_log)["value"] >= PRESETS["mini"]["target"]
    assert (
        final(log, "weights")["metadata"]["sha256"]
        == (final(trained_log, "checkpoint")["metadata"]["sha256"])
    )
    sha256 = [final(run_, "dataset")["metadata"]["sha256"] for run_ in (log, trained_log)]
    assert sha256[0] == sha256[1]
    assert final(log, "global_batch_size")["value"] == (64 if scenario == "offline" else 1)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert [m["samples_count"] for m in stops] == [20 * 64] * 3  # a warm-up and 2 windows
    latencies = [e["metadata"] for e in log if e["key"] == "infer_latency"]
    per_window = {
        w: sum(len(m["latency_ms"]) for m in latencies if m["window"] == w) for w in range(3)
    }
    assert per_window == {w: queries for w in range(3)}
    assert all(len(m["latency_ms"]) <= 1000 for m in latencies)
