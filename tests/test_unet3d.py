"""The 3D U-Net workload: the model, its data, its metric, and whole runs under the contract."""

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepspark_workload import ContractError
from workload_runs import converge, load_module, parameters, preset, spec

NAME = "unet3d"
PRESETS = spec(NAME)["configs"]
# MLPerf Training's reference, image_segmentation/pytorch/model/{unet3d,layers}.py, counted with
# its defaults (instance norm, 1 channel in, 3 classes). Not the 19M of Çiçek et al. 2016.
REFERENCE_PARAMETERS = 31_190_243


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_reference_parameters() -> None:
    with torch.device("meta"):
        model = load("model").UNet3D(**PRESETS["full"]["model"])
    assert abs(parameters(model) / REFERENCE_PARAMETERS - 1) < 0.02
    assert parameters(model) == 31_190_243


def test_full_model_forward_backward() -> None:
    """Full width and depth at batch 1, on a 64x32x32 patch rather than 128^3 (which takes minutes
    and gigabytes on a CPU): the smallest whose bottleneck keeps 2 voxels for instance norm."""
    torch.manual_seed(0)
    model = load("model").UNet3D(**PRESETS["full"]["model"])
    logits = model(torch.randn(1, 1, 64, 32, 32))
    assert logits.shape == (1, 3, 64, 32, 32)
    load("metrics").dice_ce_loss(logits, torch.randint(0, 3, (1, 1, 64, 32, 32))).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_case_dice_by_hand() -> None:
    metrics = load("metrics")
    truth = torch.tensor([[0, 1, 1, 1, 2, 2, 0, 0]])
    guess = torch.tensor([[0, 1, 1, 0, 2, 0, 2, 0]])
    # kidney: guessed {1, 2}, true {1, 2, 3}: 2 * 2 / (2 + 3) = 0.8
    # tumour: guessed {4, 6}, true {4, 5}: 2 * 1 / (2 + 2) = 0.5
    assert metrics.case_dice(guess, truth, 3)[0].tolist() == pytest.approx([0.8, 0.5])
    # a class absent from both truth and guess scores 1 (the reference's smoothing)
    empty = torch.zeros(1, 8, dtype=torch.long)
    assert metrics.case_dice(empty, empty, 3).tolist() == [[1.0, 1.0]]


def test_dice_ce_loss_by_hand() -> None:
    metrics = load("metrics")
    labels = torch.tensor([0, 1, 1, 1, 2, 2, 0, 0]).view(1, 1, 8, 1, 1)
    # uniform logits: p = 1/3 everywhere. Cross-entropy ln 3. Soft Dice: kidney
    # 2 * (3/3) / (8/3 + 3) = 6/17, tumour 2 * (2/3) / (8/3 + 2) = 2/7
    expected = (1 - (6 / 17 + 2 / 7) / 2 + math.log(3)) / 2
    loss = metrics.dice_ce_loss(torch.zeros(1, 3, 8, 1, 1), labels)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    sure = nn.functional.one_hot(labels[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 50
    assert metrics.dice_ce_loss(sure, labels).item() == pytest.approx(0, abs=1e-6)


def test_sliding_window_matches_whole_volume() -> None:
    """A voxel-wise net gives the same logits whichever windows see a voxel: the blend and the
    padding must not change them."""
    metrics = load("metrics")
    assert metrics.starts(20, 8, 4) == [0, 4, 8, 12]
    assert metrics.starts(22, 8, 4) == [0, 4, 8, 12, 14]
    torch.manual_seed(0)
    net = nn.Conv3d(1, 3, 1)
    for shape in ((12, 16, 10), (5, 8, 12), (8, 8, 8)):
        x = torch.randn(2, 1, *shape)
        logits = metrics.sliding_window(net, x, 8)
        assert torch.allclose(logits, net(x), atol=1e-5)


def test_phantoms() -> None:
    data = load("data")
    train = data.phantoms(64, 16, seed=0)
    again, other = data.phantoms(64, 16, seed=0), data.phantoms(64, 16, seed=1)
    x, y = train.tensors
    assert x.shape == y.shape == (64, 1, 16, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x, again.tensors[0]) and torch.equal(y, again.tensors[1])
    assert not torch.equal(y, other.tensors[1])
    counts = torch.stack([(y == c).flatten(1).sum(1) for c in range(3)], 1)
    assert (counts[:, 1:] > 0).all()  # every case has both kidney and tumour
    fractions = counts.sum(0) / counts.sum()
    assert 0.03 < fractions[1] < 0.12 and 0.01 < fractions[2] < 0.05
    # One voxel's intensity alone is a poor guess (classes overlap under the noise); the mean of
    # its 3x3x3 neighbourhood a far better one: the model must learn to use context.
    dice = load("metrics").case_dice
    smooth = nn.functional.avg_pool3d(x, 3, 1, padding=1, count_include_pad=False)
    voxel = dice(torch.bucketize(x, torch.tensor([0.75, 2.25])), y, 3).mean()
    pooled = dice(torch.bucketize(smooth, torch.tensor([0.75, 2.25])), y, 3).mean()
    assert voxel < 0.5 < pooled


def test_untrained_model_is_far_from_target() -> None:
    torch.manual_seed(0)
    model = load("model").UNet3D(**PRESETS["mini"]["model"]).eval()
    x, y = load("data").phantoms(32, 16, seed=1).tensors
    with torch.no_grad():
        dice = load("metrics").case_dice(model(x).argmax(1), y[:, 0], 3)
    assert dice.mean() < 0.2 < PRESETS["mini"]["target"]


def test_full_speed_data_shapes() -> None:
    wl = SimpleNamespace(
        preset=preset(NAME, "full"), converge=False, batch_size=1, device=torch.device("cpu")
    )
    batches, val = load("data").load(wl)
    x, y = next(iter(batches))
    assert val is None
    assert x.shape == y.shape == (1, 1, 128, 128, 128) and y.max() < 3


def test_kits19_layout(tmp_path: Path) -> None:
    data = load("data")
    with pytest.raises(ContractError, match=r"evaluation_cases\.txt"):
        data.kits19(tmp_path, 16)
    (tmp_path / "evaluation_cases.txt").write_text("00002\n")
    with pytest.raises(ContractError, match=r"no case_XXXXX_x\.npy"):
        data.kits19(tmp_path, 16)
    rng = np.random.default_rng(0)
    for case, shape in enumerate(((20, 24, 18), (10, 30, 16), (12, 12, 12))):
        y = rng.integers(0, 3, (1, *shape), dtype=np.uint8)
        np.save(tmp_path / f"case_{case:05}_x.npy", y.astype(np.float32))  # image = its label
        np.save(tmp_path / f"case_{case:05}_y.npy", y)
    train, val = data.kits19(tmp_path, 16, passes=3)
    assert (len(train), len(val)) == (6, 1)
    x, y = val[0]
    assert x.shape == y.shape == (1, 12, 12, 12) and y.dtype == torch.uint8
    for i in range(len(train)):  # crops, padded where a side is short, flipped with the label
        x, y = train[i]
        assert x.shape == y.shape == (1, 16, 16, 16)
        assert torch.equal(x, y.float())
    (tmp_path / "case_00001_y.npy").unlink()
    with pytest.raises(ContractError, match="labels missing"):
        data.kits19(tmp_path, 16)


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 512 for m in stops)


def mini_step_gradients(dtype: torch.dtype | None) -> list[torch.Tensor]:
    """Each parameter's gradient after one mini step from seed 0, under autocast to dtype (None:
    fp32); checks that the logits come in dtype and the loss in fp32."""
    torch.manual_seed(0)
    model = load("model").UNet3D(**PRESETS["mini"]["model"])
    x, y = load("data").phantoms(2, 16, seed=0).tensors
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = model(x)
        loss = load("metrics").dice_ce_loss(logits, y)
    assert logits.dtype == (dtype or torch.float32) and loss.dtype == torch.float32
    loss.backward()
    return [p.grad.double().flatten() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mini_model_under_autocast(dtype: torch.dtype) -> None:
    """One step under autocast points every gradient where fp32's does. fp16 (amp) has no fast 3D
    convolution on a CPU, so a whole amp speed run takes minutes there: this checks the step.
    With a 2^3 bottleneck, torch 2.13's CPU bf16 conv3d gave weight gradients of garbage (cosine
    near 0, some inf): the mini model keeps its bottleneck at 4^3 (README)."""
    for low, full in zip(mini_step_gradients(dtype), mini_step_gradients(None), strict=True):
        assert torch.isfinite(low).all()
        assert F.cosine_similarity(low, full, dim=0) > 0.9
