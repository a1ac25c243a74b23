"""The vision datasets' converters: a few files generated in each official layout, converted
(through `data prepare` for ImageNet), and trained on for one epoch by the workload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepspark_core.datasets import MANIFEST, verify_manifest
from deepspark_workload import imagenet
from deepspark_workload.prepare import PrepareError
from workload_runs import train_on

WNIDS = ("n01440764", "n02102040")


def jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(len(path.name)).integers(0, 30, (size[1], size[0], 3))
    Image.fromarray((np.array(colour) + noise).clip(0, 255).astype(np.uint8)).save(path)


def kaggle_imagenet(src: Path) -> None:
    """Kaggle's ILSVRC2012: ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/}, LOC_val_solution.csv."""
    images = src / imagenet.KAGGLE
    rows = ["ImageId,PredictionString"]
    for c, wnid in enumerate(WNIDS):
        colour = (200, 40, 40) if c == 0 else (40, 40, 200)
        for i in range(8):
            jpeg(images / "train" / wnid / f"{wnid}_{i}.JPEG", colour)
        for i in range(2):
            name = f"ILSVRC2012_val_{c * 2 + i + 1:08d}"
            jpeg(images / "val" / f"{name}.JPEG", colour)
            rows.append(f"{name},{wnid} 1 1 10 10 {wnid} 2 2 8 8")
    (src / imagenet.SOLUTION).write_text("\n".join(rows) + "\n")


RESNET_TINY = """
[configs.tiny]
target = 0.0
batch_size = 4
epochs = 1
steps_per_window = 1
max_seconds = 120
data = "imagefolder"      # the full preset's
image_size = 16

[configs.tiny.model]
layers = [1, 1, 1, 1]
width = 4
in_channels = 3
num_classes = 2
small_stem = true

[configs.tiny.optim]
lr = 0.1
"""


def test_imagenet_through_data_prepare_trains_resnet50(cli, tmp_path: Path) -> None:
    src, dst = tmp_path / "kaggle", tmp_path / "imagenet"
    kaggle_imagenet(src)
    code, out, err = cli("data", "prepare", "resnet50", "--from", str(src), "--to", str(dst))
    assert code == 0, err
    assert sorted(p.name for p in (dst / "val" / WNIDS[1]).iterdir()) == [
        "ILSVRC2012_val_00000003.JPEG", "ILSVRC2012_val_00000004.JPEG",
    ]  # fmt: skip
    assert len(list((dst / "train").glob("*/*.JPEG"))) == 16
    source = src / imagenet.KAGGLE / "train" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG"
    assert (dst / "train" / WNIDS[0] / source.name).samefile(source)  # a hard link
    digest, files = verify_manifest(dst)
    assert files == 20 and f"sha256 {digest}" in out
    log = train_on("resnet50", RESNET_TINY, dst, tmp_path / "run")
    (dataset,) = [e for e in log if e["key"] == "dataset"]
    assert dataset["metadata"]["sha256"] == digest


def test_imagenet_devkit_labels(tmp_path: Path) -> None:
    """The devkit's ground truth numbers classes by ILSVRC2012_ID, not in wnid order."""
    from scipy.io import savemat

    data = tmp_path / imagenet.DEVKIT
    data.mkdir(parents=True)
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O")]
    synsets = np.array([(1, WNIDS[1]), (2, WNIDS[0])], dtype=fields)
    savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n1\n")
    assert imagenet.val_labels(tmp_path) == {
        "ILSVRC2012_val_00000001": WNIDS[0], "ILSVRC2012_val_00000002": WNIDS[1],
    }  # fmt: skip


def test_imagenet_without_its_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="no train/<wnid>/"):
        imagenet.convert(tmp_path, tmp_path / "out", None)
    jpeg(tmp_path / "train" / WNIDS[0] / "a.JPEG", (0, 0, 0))
    with pytest.raises(PrepareError, match="no validation labels"):
        imagenet.convert(tmp_path, tmp_path / "out", None)
    assert not (tmp_path / "out" / MANIFEST).exists()
