"""Image classification data for PyTorch, shared by the ResNet-50 and Wave-MLP workloads.

mini: generated 8x8 glyph scenes (images.glyphs), fixed. full, speed mode: synthetic batches of
the real shape, made once on the device. full, converge mode: an ImageNet-style folder,
checked against its manifest and decoded on the GPU where the framework can (gpu_decode.py),
otherwise with Pillow in the loader's workers. The data itself (the split, the folder
layout, the crops) is framework-free in images.py; this wraps it in torch tensors and loaders.
"""

import importlib
import itertools
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from . import images
from .images import EXTENSIONS, Transform, center_crop, random_resized_crop
from .workload import Workload

__all__ = [
    "EXTENSIONS", "MEAN", "STD", "ImageFolder", "Transform", "center_crop", "glyphs",
    "image_folder", "load", "random_resized_crop",
]  # fmt: skip
MEAN = torch.from_numpy(images.MEAN)  # ImageNet statistics
STD = torch.from_numpy(images.STD)


def load(
    wl: Workload,
    crop_fraction: float = 0.875,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> tuple[Iterable, DataLoader | None]:
    """Batches for wl.windows() (training batches; in infer mode, full batches of the
    validation split, shuffled), and the validation loader (None when not needed).

    The preset names its data ("glyphs" or "imagefolder") and image_size; its model table
    gives in_channels and num_classes. crop_fraction and resample are the recipe's evaluation
    crop (224 of 256 is 0.875) and interpolation.
    """
    if wl.preset.data == "glyphs":
        train, val = glyphs(wl.preset.image_size)
        wl.log_generated_data("glyph scenes", *train.tensors, *val.tensors)
        timed = val if wl.infer else train
        return wl.loader(timed, train=True), wl.loader(val, train=False)
    if not wl.reads_data:  # made once on the device and reused: the model's time alone
        size, model = wl.preset.image_size, wl.preset.model
        x = torch.randn(wl.batch_size, model["in_channels"], size, size, device=wl.device)
        y = torch.randint(0, model["num_classes"], (wl.batch_size,), device=wl.device)
        return itertools.repeat((x, y)), None
    size, decode = wl.preset.image_size, choose_decoder(wl.device.type)
    folders = images.image_folder(wl.data_dir(), size, crop_fraction, resample)
    options = wl.loader_options()
    wl.log_data_loader(decode, options["num_workers"])
    if decode != "pillow":  # torchvision or DALI is importable: only then import them
        from . import gpu_decode

        return gpu_decode.loaders(wl, decode, folders, size, crop_fraction, resample, options)
    train, val = (ImageFolder(folder) for folder in folders)
    timed = val if wl.infer else train
    return wl.loader(timed, train=True, **options), wl.loader(val, train=False, **options)


def choose_decoder(device_type: str) -> str:
    """Where a run decodes its images, chosen once: on a CUDA device with torchvision's nvJPEG
    decode ("gpu-nvjpeg"), else DALI's ("dali"), when the package imports; otherwise Pillow in
    the loader's workers ("pillow"; Pillow decodes a few hundred ImageNet JPEGs a second per
    core, less than a GPU trains on, so the workers get every core the rank has)."""
    if device_type == "cuda":
        for decode, module in (("gpu-nvjpeg", "torchvision.io"), ("dali", "nvidia.dali")):
            try:
                importlib.import_module(module)
            except (ImportError, RuntimeError):  # absent, or built for another torch
                continue
            return decode
    return "pillow"


def glyphs(size: int = 8) -> tuple[TensorDataset, TensorDataset]:
    """The mini's glyph scenes (images.glyph_splits), 1 x size x size in [0, 1]; fixed, not
    drawn by the run's seed."""
    x_train, y_train, x_val, y_val = (torch.from_numpy(a) for a in images.glyph_splits(size))
    return TensorDataset(x_train, y_train), TensorDataset(x_val, y_val)


def image_folder(
    root: Path,
    size: int,
    crop_fraction: float = 0.875,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> tuple["ImageFolder", "ImageFolder"]:
    """root/train and root/val, with the classes of root/train indexed in name order."""
    train, val = images.image_folder(root, size, crop_fraction, resample)
    return ImageFolder(train), ImageFolder(val)


class ImageFolder(Dataset):
    """An images.ImageFolder whose samples are (normalised CHW float tensor, class index)."""

    def __init__(self, folder: images.ImageFolder) -> None:
        self.folder, self.samples = folder, folder.samples

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, label = self.folder[i]
        return torch.from_numpy(x), label
