"""Data for the 3D U-Net workload.

mini: generated 16^3 "CT" volumes: a bright ellipsoid kidney (class 1) in noise, with a brighter
tumour (class 2) on its rim. full, speed mode: synthetic 128^3 patches of the real shapes.
full, converge mode: KiTS19 preprocessed as MLPerf Training's reference does
(image_segmentation/pytorch/preprocess_dataset.py), under $DS_DATA_DIR:

    case_00000_x.npy          float32 (1, D, H, W): the CT, resampled and normalised
    case_00000_y.npy          uint8   (1, D, H, W): 0 background, 1 kidney, 2 tumour
    ...                       (210 cases)
    evaluation_cases.txt      the reference's 42 validation case numbers, one a line (00000)
    SHA256SUMS                sha256sum's manifest of every other file

Training reads random 128^3 patches (40% of them centred on foreground, as the reference's
oversampling), flipped at random, 20 passes over the training cases a window; evaluation reads
whole cases, one a batch.
"""

import itertools
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from deepspark_workload import ContractError, Workload


def load(wl: Workload) -> tuple[Iterable, DataLoader | None]:
    """Training batches for wl.windows(), and the validation loader (None when not needed)."""
    side = wl.preset.patch_size
    if wl.preset.data == "phantoms":
        train = phantoms(wl.preset.train_cases, side, seed=0)
        val = phantoms(wl.preset.val_cases, side, seed=1)
        wl.log_generated_data("kidney phantoms", *train.tensors, *val.tensors)
        return wl.loader(train, train=True), wl.loader(val, train=False)
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        shape = (wl.batch_size, 1, side, side, side)
        x = torch.randn(shape, device=wl.device)
        y = torch.randint(0, wl.preset.model["num_classes"], shape, device=wl.device)
        return itertools.repeat((x, y)), None
    train, val = kits19(wl.data_dir(), side, wl.preset.passes_per_window)
    kwargs = dict(num_workers=wl.loader_workers(), pin_memory=wl.device.type == "cuda")
    return (
        wl.loader(train, train=True, persistent_workers=True, **kwargs),
        wl.loader(val, train=False, batch_size=1, **kwargs),  # whole cases differ in shape
    )


def phantoms(n: int, side: int, seed: int) -> TensorDataset:
    """n volumes (1, side^3) and their labels (1, side^3), fixed by seed (not the run's seed).

    Kidney: an axis-aligned ellipsoid, intensity +1.5. Tumour: a ball centred on the kidney's
    rim (part inside, part outside), intensity +3. Over both: a random linear intensity ramp and
    unit Gaussian noise per voxel, so that no single voxel's value tells its class: the model has
    to pool its neighbourhood and find the shapes.
    """
    g = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, 1, 1, 1, generator=g)

    axis = torch.arange(side, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"))  # (3, side, side, side)
    centre = uniform(0.35 * side, 0.65 * side, 3)
    radii = uniform(0.2 * side, 0.32 * side, 3)
    kidney = (((grid - centre) / radii) ** 2).sum(1) <= 1
    direction = torch.randn(n, 3, 1, 1, 1, generator=g)
    direction /= direction.norm(dim=1, keepdim=True)
    rim = centre + direction * radii * uniform(0.7, 1.0, 1)
    tumour = ((grid - rim) ** 2).sum(1) <= uniform(0.14 * side, 0.22 * side) ** 2
    labels = kidney.long().masked_fill(tumour, 2)
    ramp = (uniform(-1, 1, 3) * (grid / side - 0.5)).sum(1)
    noise = torch.randn(n, side, side, side, generator=g)
    images = torch.tensor([0.0, 1.5, 3.0])[labels] + ramp + noise
    return TensorDataset(images.unsqueeze(1), labels.unsqueeze(1))


def kits19(root: Path, patch: int, passes: int = 1) -> tuple["Patches", "Cases"]:
    """The reference's split: the cases evaluation_cases.txt lists validate, the rest train
    (passes times over per window, so that a window is the reference's 20 epochs between
    evaluations rather than one epoch of 168 patches)."""
    listing = root / "evaluation_cases.txt"
    if not listing.is_file():
        raise ContractError(f"{listing} is missing: the validation case numbers, one a line")
    val_ids = set(listing.read_text().split())
    images = sorted(root.glob("case_*_x.npy"))
    if not images:
        raise ContractError(f"{root} holds no case_XXXXX_x.npy (KiTS19, preprocessed by MLPerf)")
    pairs = [(x, x.with_name(x.name.replace("_x.npy", "_y.npy"))) for x in images]
    missing = [str(y) for _, y in pairs if not y.is_file()]
    if missing:
        raise ContractError(f"labels missing: {', '.join(missing[:5])}")
    val = [(x, y) for x, y in pairs if x.name.split("_")[1] in val_ids]
    train = [pair for pair in pairs if pair not in val]
    if not train or len(val) != len(val_ids):
        raise ContractError(f"{root}: {len(val)} of {len(val_ids)} validation cases found")
    return Patches(train, patch, passes), Cases(val)


class Cases(Dataset):
    """Whole cases as (image (1, D, H, W) float32, label (1, D, H, W) uint8)."""

    def __init__(self, pairs: list[tuple[Path, Path]]) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (torch.from_numpy(np.load(p)) for p in self.pairs[i])
        return x, y


class Patches(Cases):
    """passes x every case, each time a random patch^3 crop (padded where the case is smaller;
    with probability oversampling centred on a random foreground voxel), flipped along each
    axis at random: the reference's augmentation, less its brightness and noise jitter."""

    def __init__(
        self, pairs: list[tuple[Path, Path]], patch: int, passes: int = 1, oversampling: float = 0.4
    ) -> None:
        super().__init__(pairs)
        self.patch, self.passes, self.oversampling = patch, passes, oversampling

    def __len__(self) -> int:
        return self.passes * len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = super().__getitem__(i % len(self.pairs))
        p = self.patch
        pad = [m for s in reversed(x.shape[1:]) for m in (0, max(0, p - s))]
        x, y = torch.nn.functional.pad(x, pad), torch.nn.functional.pad(y, pad)
        if random.random() < self.oversampling and (foreground := y[0].nonzero()).numel():
            centre = foreground[random.randrange(len(foreground))].tolist()
            sides = y.shape[1:]
            corner = [min(max(0, c - p // 2), s - p) for c, s in zip(centre, sides, strict=True)]
        else:
            corner = [random.randint(0, s - p) for s in y.shape[1:]]
        crop = (slice(None), *(slice(c, c + p) for c in corner))
        x, y = x[crop], y[crop]
        for dim in (1, 2, 3):
            if random.random() < 0.5:
                x, y = x.flip(dim), y.flip(dim)
        return x.contiguous(), y.contiguous()
