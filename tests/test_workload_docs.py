"""Each workload's README agrees with its workload.toml and model.py: the parameter counts it
states (its `## Parameters` section) are those of the models built from the presets (on
torch's meta device, under paddle.LazyGuard: nothing is allocated or trained), and it names
its presets' variants and unvalidated targets as the rows do."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from workload_runs import MODEL_IMAGES, load_module, parameters, preset, spec

# The class train.py builds (wl.build_model) for each workload.
TORCH = {
    "bert_large": "Bert", "conformer": "Conformer", "cpm": "CPM", "dlrm": "DLRM",
    "fairmot": "FairMOT", "ngp_nerf": "InstantNGP", "resnet50": "ResNet", "satrn": "SATRN",
    "tacotron2": "Tacotron2", "unet3d": "UNet3D", "wave_mlp": "WaveMLP", "yolov5": "YOLOv5",
}  # fmt: skip
PADDLE = {"bert_large_paddle": "Bert", "resnet50_paddle": "ResNet"}
STATED = re.compile(r"^mini ([\d,]+); full ([\d,]+) \(trainable", re.M)
HAVE_PADDLE = importlib.util.find_spec("paddle") is not None


def built(workload: str, config: str) -> int:
    """Trainable parameters of the workload's model at the preset, allocating nothing. A
    Paddle twin without paddle installed: its PyTorch twin's (the model it implements)."""
    if workload in PADDLE and not HAVE_PADDLE:
        return built(spec(workload)["model"], config)
    p = preset(workload, config)
    extra = {"image_size": p.image_size} if workload == "yolov5" else {}  # its anchors' grid
    if workload in PADDLE:
        import paddle

        place, name = paddle.LazyGuard(), PADDLE[workload]
    else:
        place, name = torch.device("meta"), TORCH[workload]
    with place:
        model = getattr(load_module(workload, "model"), name)(**p.model, **extra)
    return parameters(model)


def readme(workload: str) -> str:
    return (MODEL_IMAGES / workload / "README.md").read_text()


@pytest.mark.parametrize("workload", [*TORCH, *PADDLE])
def test_the_readme_states_the_models_parameter_counts(workload: str) -> None:
    stated = STATED.findall(readme(workload))
    assert len(stated) == 1, f"{workload}/README.md: one '## Parameters' line, mini and full"
    mini, full = (int(n.replace(",", "")) for n in stated[0])
    assert (mini, full) == (built(workload, "mini"), built(workload, "full"))


@pytest.mark.parametrize("workload", [*TORCH, *PADDLE])
def test_the_readme_names_each_variant_and_unvalidated_target(workload: str) -> None:
    text = " ".join(readme(workload).split())
    for name in ("mini", "full"):
        p = preset(workload, name)
        if p.variant:
            assert f"`{name} ({p.variant})`" in text, f"{workload}: the {name} row's variant"
        if not p.target_validated:
            assert "unvalidated" in text, f"{workload}: the {name} target is unvalidated"
