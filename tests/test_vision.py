"""The shared image-classification data: digits, an ImageNet-style folder, crops, decoders."""

import hashlib
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from deepspark_workload import ContractError, images, vision
from test_workload_lib import tiny_workload
from workload_runs import MODEL_IMAGES, train_on


def test_glyph_scenes_are_fixed_tensors() -> None:
    train, val = vision.glyphs()
    again, _ = vision.glyphs()
    assert (len(train), len(val)) == (1536, 512)
    assert torch.equal(train.tensors[0], again.tensors[0])  # the scenes do not follow a seed
    x, y = val.tensors
    assert x.shape == (512, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert y.dtype == torch.int64 and torch.bincount(y).min() >= 35  # every glyph, about 51 times


def test_image_folder(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("val", 1)):
        for c, name in enumerate(("cat", "dog", "fish")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                image = Image.new("RGB", (40 + 10 * i, 30), (80 * c, 40 * i, 200))
                image.save(tmp_path / split / name / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    train, val = vision.image_folder(tmp_path, 32)
    assert (len(train), len(val)) == (9, 3)
    assert [label for _, label in val.samples] == [0, 1, 2]
    x, label = train[4]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and label == 1
    x, label = val[2]  # uniform colour (160, 0, 200), normalised with ImageNet statistics
    expected = (torch.tensor([160, 0, 200]) / 255 - vision.MEAN.flatten()) / vision.STD.flatten()
    assert torch.allclose(x.mean((1, 2)), expected, atol=1e-2) and label == 2
    with pytest.raises(ContractError, match="no class folders"):
        vision.image_folder(tmp_path / "missing", 32)
    (tmp_path / "val" / "bird").mkdir()
    with pytest.raises(ContractError, match="classes the training set lacks"):
        vision.image_folder(tmp_path, 32)


def test_center_crop_takes_the_central_fraction() -> None:
    image = Image.new("RGB", (50, 50), (0, 0, 0))
    image.paste((255, 255, 255), (20, 20, 30, 30))  # a white square in the middle
    crop = vision.center_crop(image, 10, fraction=0.1)  # the central 5x5: inside the square
    assert crop.size == (10, 10) and crop.getextrema() == ((255, 255),) * 3
    whole = vision.center_crop(image, 10, fraction=1.0, resample=Image.Resampling.BICUBIC)
    assert whole.getpixel((0, 0)) == (0, 0, 0) and whole.getpixel((5, 5))[0] > 128


@pytest.fixture
def imports(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make modules importable (a stand-in module) or not (None in sys.modules blocks them)."""

    def set_modules(**present: bool) -> None:
        for name, importable in present.items():
            module = types.ModuleType(name.replace("_", ".")) if importable else None
            monkeypatch.setitem(sys.modules, name.replace("_", "."), module)

    return set_modules


def test_decoder_on_the_gpu_where_the_framework_can(imports: Callable[..., None]) -> None:
    imports(torchvision_io=True, nvidia_dali=True)
    assert vision.choose_decoder("cuda") == "gpu-nvjpeg"
    assert vision.choose_decoder("cpu") == "pillow"  # no CUDA device: nothing to decode on
    imports(torchvision_io=False)
    assert vision.choose_decoder("cuda") == "dali"
    imports(nvidia_dali=False)
    assert vision.choose_decoder("cuda") == "pillow"


def write_jpeg_folder(root: Path, per_class: int) -> None:
    """Two classes of JPEGs of several sizes in train/ and val/, with their SHA256SUMS."""
    for split in ("train", "val"):
        for c, name in enumerate(("n01", "n02")):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                image = Image.new("RGB", (48 + 8 * i, 40), (200 * c, 60 + 20 * i, 120))
                image.save(root / split / name / f"{i}.JPEG", quality=90)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    lines = (f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root)}" for p in files)
    (root / "SHA256SUMS").write_text("".join(f"{line}\n" for line in lines))


TINY_RESNET = """
[configs.tiny]
target = 0.0
batch_size = 4
epochs = 2
steps_per_window = 1
max_seconds = 120
data = "imagefolder"
image_size = 16

[configs.tiny.model]
layers = [1, 1, 1, 1]
width = 4
in_channels = 3
num_classes = 2
small_stem = true

[configs.tiny.optim]
lr = 0.1
lr_batch = 4
momentum = 0.9
weight_decay = 1e-4
warmup = 0.1
label_smoothing = 0.0
"""


def test_converge_on_jpegs_logs_the_decoder_and_the_wait(tmp_path: Path) -> None:
    """ResNet-50's train.py on an image folder, on this CPU: Pillow in every worker the rank
    has, said once; each epoch's window carries the time the loop waited for its batches."""
    write_jpeg_folder(tmp_path / "data", per_class=4)
    log = train_on("resnet50", TINY_RESNET, tmp_path / "data", tmp_path / "out")
    (loader,) = [e for e in log if e["key"] == "data_loader"]
    workers = max(1, len(os.sched_getaffinity(0)) - 1)
    assert loader["value"] == f"pillow x{workers} workers"
    assert loader["metadata"]["workers"] == workers
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert len(stops) == 2 and all(m["data_wait_ms"] > 0 for m in stops)


def test_gpu_batches_are_the_files_bytes_drawn_by_the_run_s_sampler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU paths' plumbing, on the CPU: workers read whole files, a batch stays a list of
    them until the decoder takes it, and the windows reshuffle it every epoch (its sampler)."""
    from deepspark_workload import gpu_decode

    write_jpeg_folder(tmp_path / "data", per_class=4)
    toml = (MODEL_IMAGES / "resnet50" / "workload.toml").read_text() + TINY_RESNET
    monkeypatch.setenv("DS_CONFIG", "tiny")
    monkeypatch.setenv("DS_MODE", "converge")
    train, _ = images.image_folder(tmp_path / "data", 16)
    seen: list[list[bytes]] = []

    def decode(data: list[torch.Tensor]) -> torch.Tensor:
        seen.append([bytes(d.tolist()) for d in data])
        return torch.zeros(len(data), 3, 16, 16)

    with tiny_workload(tmp_path, monkeypatch, toml=toml) as wl:
        loader = wl.loader(gpu_decode.Encoded(train), True, collate_fn=gpu_decode.collate)
        batches = gpu_decode.Decoded(loader, decode)
        assert len(batches) == 2 and batches.sampler is loader.sampler
        wl.start()
        for window in wl.windows(batches):
            for x, y in window:
                assert x.shape == (4, 3, 16, 16) and y.dtype == torch.int64
    files = {path.read_bytes() for path, _ in train.samples}
    assert all(set(batch) <= files for batch in seen) and len(seen) == 4  # 2 epochs
    epochs = [seen[0] + seen[1], seen[2] + seen[3]]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(files)  # every file once an epoch
    assert epochs[0] != epochs[1]  # in another order
