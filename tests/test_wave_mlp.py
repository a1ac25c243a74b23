"""The Wave-MLP workload: the model, its data, its metric, and whole runs under the contract."""

import math
from pathlib import Path

import pytest
import torch

from deepspark_workload import vision
from workload_runs import converge, load_module, parameters, spec

NAME = "wave_mlp"
PRESETS = spec(NAME)["configs"]


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_wave_mlp_t_parameters() -> None:
    with torch.device("meta"):
        model = load("model").WaveMLP(**PRESETS["full"]["model"])
    n = parameters(model)
    assert abs(n - 17e6) / 17e6 < 0.02  # the paper's and the official README's 17M
    assert n == 17_193_160  # the official WaveMLP_T, counted layer by layer in the README


def test_full_model_forward_backward_224() -> None:
    """The whole full config (Wave-MLP-T at 224x224) on the CPU, at batch 2, not 1: in training
    mode the final BatchNorm makes every channel's 7x7 map zero-mean within the batch, so at
    batch 1 global pooling leaves only its bias, and no gradient reaches the layers before."""
    model = load("model").WaveMLP(**PRESETS["full"]["model"])
    logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 1000) and logits.std() > 0.01
    logits.logsumexp(1).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()] == []


def test_unfold_wave() -> None:
    amplitude = torch.tensor([2.0, 1.0]).view(1, 2, 1, 1)
    theta = torch.tensor([math.pi / 3, math.pi]).view(1, 2, 1, 1)
    # 2 e^{i pi/3} = 1 + i sqrt(3); 1 e^{i pi} = -1 + 0i: cos parts first, then sin parts
    expected = torch.tensor([1.0, -1.0, math.sqrt(3), 0.0]).view(1, 4, 1, 1)
    assert torch.allclose(load("model").unfold_wave(amplitude, theta), expected, atol=1e-6)


def test_phase_steers_token_mixing() -> None:
    """Same amplitudes, another phase: another output (the phase is not a no-op)."""
    patm = load("model").PATM(8).eval()
    x = torch.randn(2, 8, 5, 5)
    out = patm(x)
    assert out.shape == x.shape
    with torch.no_grad():
        patm.theta_h_conv[1].bias += 1.0  # shifts the phases along H only
    assert not torch.allclose(patm(x), out, atol=1e-4)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mix_targets_match_pixels(mixup: float, cutmix: float) -> None:
    """Image i is filled with the value i: each mixed image's pixels show how much of it came
    from its mirror image, and its target must weigh the two labels the same way."""
    torch.manual_seed(0)
    for _ in range(5):
        x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 8, 8)
        labels = torch.tensor([3, 1, 4, 0])
        mixed, targets = load("metrics").mix(x, labels, 5, mixup, cutmix)
        assert mixed.shape == x.shape and torch.allclose(targets.sum(1), torch.ones(4))
        own = targets[0, 3]  # image 0 (value 0) mixed with image 3 (value 3, label 0)
        assert torch.isclose(mixed[0].mean(), 3 * (1 - own), atol=1e-5)
        assert torch.isclose(targets[0, 0], 1 - own)
        if mixup == 0:  # CutMix: every pixel comes whole from one of the two images
            assert set(mixed[0].unique().tolist()) <= {0.0, 3.0}


def test_untrained_model_is_far_from_the_mini_target() -> None:
    _, val = vision.glyphs()
    x, y = val.tensors
    torch.manual_seed(1)
    model = load("model").WaveMLP(**PRESETS["mini"]["model"]).eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy < 0.3 < PRESETS["mini"]["target"]


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 1536 for m in stops)  # 12 full batches of the scenes
