"""The shared image-classification data: digits, an ImageNet-style folder, crops."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from deepspark_workload import ContractError, vision


def test_digits_split_is_fixed_and_stratified() -> None:
    train, val = vision.digits()
    again, _ = vision.digits()
    assert (len(train), len(val)) == (1437, 360)
    assert torch.equal(train.tensors[0], again.tensors[0])  # the split does not follow a seed
    x, y = val.tensors
    assert x.shape == (360, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert torch.bincount(y).min() >= 35  # stratified: every digit about 36 times


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
