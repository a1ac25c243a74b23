"""The DLRM workload: the model, its data, its metric, and whole runs under the contract."""

import itertools
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from deepspark_workload import ContractError
from workload_runs import MODEL_IMAGES, converge, load_module, parameters, preset, spec

NAME = "dlrm"
PRESETS = spec(NAME)["configs"]


def load(name: str):
    return load_module(NAME, name)


def mlp_parameters(sizes: list[int]) -> int:
    return sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))


def test_full_model_has_mlperf_dlrm_parameters() -> None:
    """MLPerf DLRM v1: 26 tables x 128 of its Criteo 1TB sizes (--max-ind-range=40000000), MLPs
    13-512-256-128 and 479-...-1; the count the README states."""
    full = PRESETS["full"]["model"]
    assert tuple(full["table_sizes"]) == load("model").CRITEO_1TB_TABLES
    assert sum(full["table_sizes"]) == 187_767_399
    reference = (  # the reference's shapes, counted by hand
        187_767_399 * 128
        + mlp_parameters([13, 512, 256, 128])
        + mlp_parameters([128 + 27 * 26 // 2, 1024, 1024, 512, 256, 1])
    )
    with torch.device("meta"):
        model = load("model").DLRM(**full)
    assert parameters(model) == reference == 24_036_595_969
    assert model.top[0].in_features == 479
    assert f"**{reference:,}**" in (MODEL_IMAGES / NAME / "README.md").read_text()


def test_full_model_forward_backward_slice() -> None:
    """The full config at full width (dim 128, both MLPs, 26 tables, sparse gradients) on a slice:
    each table capped at 1,000 rows, as the real ones (96 GB in fp32) do not fit here."""
    full = PRESETS["full"]["model"]
    tables = [min(n, 1000) for n in full["table_sizes"]]
    model = load("model").DLRM(**{**full, "table_sizes": tables})
    dense, sparse = torch.randn(1, 13), torch.tensor([[n - 1 for n in tables]])
    logits = model(dense, sparse)
    assert logits.shape == (1,)
    F.binary_cross_entropy_with_logits(logits, torch.ones(1)).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(t.weight.grad.is_sparse for t in model.tables)
    before = model.tables[0].weight[998:].clone()
    torch.optim.SGD(model.parameters(), 1.0).step()  # plain SGD takes the row-sparse gradients
    changed = (model.tables[0].weight[998:] != before).any(1)
    assert changed.tolist() == [False, True]  # only the row looked up


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mini_model_under_autocast(dtype: torch.dtype) -> None:
    mini = PRESETS["mini"]["model"]
    model = load("model").DLRM(**mini)
    dense, sparse = torch.randn(4, 13), torch.zeros(4, 26, dtype=torch.long)
    with torch.autocast("cpu", dtype=dtype):
        logits = model(dense, sparse)
    assert logits.shape == (4,) and logits.dtype == dtype
    F.binary_cross_entropy_with_logits(logits.float(), torch.ones(4)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_dot_interaction_is_the_lower_triangle() -> None:
    """The top MLP sees [x, <z_i, z_j> for i > j] with z = (x, e_1, ..., e_26), as in DLRM."""
    model = load("model").DLRM(**PRESETS["mini"]["model"])
    seen = []
    model.top.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    dense, sparse = torch.randn(2, 13), torch.randint(0, 3, (2, 26))
    model(dense, sparse)
    x = model.bottom(dense)
    z = [x] + [t(sparse[:, k]) for k, t in enumerate(model.tables)]
    dots = [(z[i] * z[j]).sum(1) for i in range(27) for j in range(i)]
    assert torch.allclose(seen[0], torch.cat([x, torch.stack(dots, 1)], 1), atol=1e-6)


def test_roc_auc_hand_checked() -> None:
    roc_auc = load("metrics").roc_auc
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 pairs are ordered
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    # positives 0.5 and 0.9, negatives 0.5 and 0.2: 0.5 vs 0.5 is a tie (1/2), the rest ordered
    assert roc_auc(torch.tensor([0.5, 0.5, 0.2, 0.9]), torch.tensor([1, 0, 0, 1])) == 3.5 / 4
    assert roc_auc(torch.tensor([0.3, 0.3, 0.3]), torch.tensor([1, 0, 1])) == 0.5
    with pytest.raises(ValueError, match="both"):
        roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))


def test_roc_auc_matches_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (5000,), generator=g)
    scores = (torch.randn(5000, generator=g) + labels).mul(4).round()  # many ties
    auc = load("metrics").roc_auc(scores, labels)
    assert auc == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)


def test_click_log_is_fixed_and_learnable() -> None:
    data, metrics = load("data"), load("metrics")
    mini = PRESETS["mini"]
    tables = mini["model"]["table_sizes"]
    n_train, n = mini["train_samples"], mini["train_samples"] + mini["val_samples"]
    torch.manual_seed(123)  # the run's seed must not matter
    dense, sparse, labels, prob = data.click_log(n, tables)
    torch.manual_seed(7)
    again = data.click_log(n, tables)
    assert all(torch.equal(a, b) for a, b in zip((dense, sparse, labels, prob), again, strict=True))
    assert dense.shape == (n, 13) and sparse.shape == (n, 26) and labels.shape == (n,)
    assert (sparse >= 0).all() and (sparse < torch.tensor(tables)).all()
    assert set(labels.unique().tolist()) == {0.0, 1.0} and 0.2 < labels.mean() < 0.5
    bayes = metrics.roc_auc(prob[n_train:], labels[n_train:])  # the best any model can score
    assert bayes == pytest.approx(0.9558, abs=1e-4) and bayes > mini["target"] + 0.05
    torch.manual_seed(0)
    model = load("model").DLRM(**mini["model"])
    with torch.no_grad():
        untrained = metrics.roc_auc(model(dense[n_train:], sparse[n_train:]), labels[n_train:])
    assert abs(untrained - 0.5) < 0.1 < mini["target"] - untrained


def test_full_speed_batches_have_the_real_shapes() -> None:
    full = PRESETS["full"]
    wl = SimpleNamespace(
        preset=preset(NAME, "full"), converge=False, batch_size=8, device=torch.device("cpu")
    )
    batches, val = load("data").load(wl)
    dense, sparse, labels = next(iter(batches))
    assert val is None and dense.shape == (8, 13) and sparse.shape == (8, 26)
    assert (sparse < torch.tensor(full["model"]["table_sizes"])).all() and labels.shape == (8,)


def test_criteo_days(tmp_path: Path) -> None:
    """Day files as torchrec writes them: ranks take contiguous shares across day boundaries."""
    rows = {0: 5, 1: 4, 23: 6}
    start = {0: 0, 1: 5, 23: 100}
    for day, n in rows.items():
        ids = np.arange(start[day], start[day] + n)
        np.save(
            tmp_path / f"day_{day}_dense.npy", np.repeat(ids[:, None], 13, 1).astype(np.float32)
        )
        sparse = np.repeat(ids[:, None], 26, 1).astype(np.int32)
        sparse[:, 5] = -1  # an int32 of a large hex id: table 5 has 3 rows, -1 % 3 = 2
        np.save(tmp_path / f"day_{day}_sparse.npy", sparse)
        np.save(tmp_path / f"day_{day}_labels.npy", (ids[:, None] % 2).astype(np.int32))
    tables = PRESETS["full"]["model"]["table_sizes"]
    batches = load("data").CriteoBatches
    ranks = [batches(tmp_path, [0, 1], tables, 2, rank, 2, train=True) for rank in range(2)]
    assert [len(r) for r in ranks] == [2, 2]  # 9 rows: 4 each, the ninth dropped
    dense, sparse, labels = ranks[1][0]  # rows 4 and 5: the last of day 0, the first of day 1
    assert dense[:, 0].tolist() == [4, 5] and labels.tolist() == [0, 1]
    assert sparse[:, 0].tolist() == [4, 5] and sparse[:, 5].tolist() == [2, 2]
    assert sparse.dtype == torch.long and dense.dtype == labels.dtype == torch.float32
    val = [batches(tmp_path, [23], tables, 2, rank, 2, train=False) for rank in range(2)]
    seen = [int(x) for v in val for i in range(len(v)) for x in v[i][0][:, 0]]
    assert seen == [100, 101, 102]  # the first half of day 23, each row once over the ranks
    os.remove(tmp_path / "day_1_labels.npy")
    with pytest.raises(ContractError, match=r"day_1_labels\.npy is missing"):
        batches(tmp_path, [0, 1], tables, 2, 0, 1, train=True)


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == PRESETS["mini"]["train_samples"] for m in stops)
