"""The PaddlePaddle ResNet-50: the PyTorch twin's model, presets, data and target, in paddle."""

from pathlib import Path

import numpy as np
import pytest

from conftest import require
from workload_runs import converge, events, load_module, parameters, run, spec, twin_presets

NAME, TWIN = "resnet50_paddle", "resnet50"
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


def test_full_model_has_resnet50_parameters() -> None:
    import torch

    model = load("model").ResNet(**PRESETS["full"]["model"])
    with torch.device("meta"):
        twin = load_module(TWIN, "model").ResNet(**PRESETS["full"]["model"])
    assert parameters(model) == parameters(twin) == 25_557_032  # torchvision's resnet50()


def test_full_model_forward_backward_224() -> None:
    model = load("model").ResNet(**PRESETS["full"]["model"])
    logits = model(paddle.randn([1, 3, 224, 224]))
    assert logits.shape == [1, 1000]
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.trainable)


def test_same_function_as_the_twin() -> None:
    """The twin's weights (BatchNorm statistics included) in our mini model: the same logits."""
    import torch

    torch.manual_seed(0)
    twin = load_module(TWIN, "model").ResNet(**PRESETS["mini"]["model"])
    for m in twin.modules():  # non-trivial statistics and scales, so that BatchNorm is checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    twin.eval()
    model = load("model").ResNet(**PRESETS["mini"]["model"])
    state = {}
    for key, value in twin.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        key = key.replace("running_mean", "_mean").replace("running_var", "_variance")
        value = value.numpy()
        state[key] = value.T if key == "fc.weight" else value  # paddle's Linear: (in, out)
    model.set_state_dict(state)
    model.eval()
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(paddle.to_tensor(x)).numpy(), expected, atol=1e-4)


def test_bf16_on_a_cpu_is_refused(tmp_path: Path) -> None:
    """paddle's auto_cast has no effect on a CPU: the run says so rather than time fp32."""
    result = run(NAME, tmp_path, DS_PRECISION="bf16")
    assert result.returncode != 0
    (run_stop,) = events(tmp_path)
    assert run_stop["metadata"]["status"] == "aborted"
    assert "auto_cast has no effect on a CPU" in run_stop["metadata"]["reason"]


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    from deepspark_workload import images
    from deepspark_workload.datasets import arrays_sha256

    log = converge(NAME, tmp_path)
    by_key = {e["key"]: e for e in log}
    assert by_key["framework"]["value"].startswith("paddlepaddle 3.")
    assert by_key["framework"]["metadata"]["device"] == "cpu"
    # the twin's data to the byte: it logs this digest too
    assert by_key["dataset"]["metadata"]["sha256"] == arrays_sha256(*images.glyph_splits())
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 1536 for m in stops)  # 48 full batches of the scenes
