"""Image classification data as numpy arrays (and Pillow), for a workload in any framework.

mini: generated glyph scenes (`glyphs`), the same arrays in every run. full, converge mode:
an ImageNet-style folder, checked against its manifest and decoded with Pillow:

    $DS_DATA_DIR/SHA256SUMS                  every file's sha256 (`sha256sum` format)
    $DS_DATA_DIR/train/<class>/<image>       ImageNet-1k: 1,281,167 images in 1,000 folders
    $DS_DATA_DIR/val/<class>/<image>         50,000 images, the same class folder names

Classes are indexed by the sorted folder names of train/. Training images get an
Inception-style random crop and a flip, validation images a centre crop. A framework wraps
these in its own tensors and loaders: vision.py for PyTorch, the Paddle workloads' data code.
"""

import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .env import ContractError

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)  # ImageNet's
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
Transform = Callable[[Image.Image], Image.Image]
EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}


# Ten 3x3 glyphs, one per class ('#' on, '.' off, rows split by '|'). Bars are parts of the
# plus, the T and the L: the class is in which strokes are present, and in which are absent.
GLYPHS = (
    ".#.|###|.#.", "#.#|.#.|#.#", "...|###|...", ".#.|.#.|.#.", "..#|.#.|#..",
    "#..|.#.|..#", "#..|#..|###", "###|.#.|.#.", "###|#.#|###", "##.|##.|...",
)  # fmt: skip


def glyph_splits(size: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mini's (train x, train y, val x, val y): 1,536 and 512 scenes (48 and 16 batches of
    32) from two fixed seeds, so no validation scene is a training one by construction."""
    return *glyphs(1536, seed=0, size=size), *glyphs(512, seed=1, size=size)


def glyphs(
    n: int, seed: int, size: int = 8, count: tuple[int, int] = (2, 4)
) -> tuple[np.ndarray, np.ndarray]:
    """n scenes of size x size, each 2-4 copies of one glyph at random places (boxes never
    overlap), each copy at its own brightness in [0.5, 1]; the label is the glyph.

    The place of a copy is random, so every class has about the same mean image: logistic
    regression on the pixels stays near 0.5 and 1-nearest-neighbour near 0.8
    (tests/test_mini_baselines.py), while a convolution finds a glyph wherever it is. x float32
    (n, 1, size, size) in [0, 1], y int64; fixed by seed (a split's, never the run's).
    """
    shapes = np.array(
        [[[c == "#" for c in row] for row in g.split("|")] for g in GLYPHS], np.float32
    )
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(GLYPHS), n)
    x = np.zeros((n, 1, size, size), np.float32)
    for scene, label in zip(x[:, 0], y, strict=True):
        taken, want = np.zeros((size, size), bool), rng.integers(count[0], count[1] + 1)
        for _ in range(50):  # a place whose box is free; a crowded scene keeps fewer copies
            r, c = rng.integers(0, size - 2, 2)
            if not taken[r : r + 3, c : c + 3].any():
                taken[r : r + 3, c : c + 3] = True
                scene[r : r + 3, c : c + 3] = rng.uniform(0.5, 1.0) * shapes[label]
                want -= 1
            if want == 0:
                break
    return x, y


def image_folder(
    root: Path,
    size: int,
    crop_fraction: float = 0.875,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> tuple["ImageFolder", "ImageFolder"]:
    """root/train and root/val, with the classes of root/train indexed in name order."""
    train_root = root / "train"
    classes = sorted(d.name for d in train_root.iterdir()) if train_root.is_dir() else []
    if not classes:
        raise ContractError(f"{train_root} has no class folders: expected {{train,val}}/<class>/")
    return (
        ImageFolder(train_root, classes, lambda img: random_resized_crop(img, size, resample)),
        ImageFolder(
            root / "val", classes, lambda img: center_crop(img, size, crop_fraction, resample)
        ),
    )


class ImageFolder:
    """Images under root/<class>/, as (normalised CHW float32 array, class index): a dataset
    that torch's and paddle's DataLoaders both take (len and indexing)."""

    def __init__(self, root: Path, classes: list[str], transform: Transform) -> None:
        if not root.is_dir():
            raise ContractError(f"{root} is missing: expected {{train,val}}/<class>/<image>")
        unknown = sorted({d.name for d in root.iterdir()} - set(classes))
        if unknown:
            raise ContractError(f"{root} has classes the training set lacks: {unknown[:5]}")
        self.samples = [
            (path, label)
            for label, name in enumerate(classes)
            if (root / name).is_dir()
            for path in sorted((root / name).iterdir())
            if path.suffix.lower() in EXTENSIONS
        ]
        if not self.samples:
            raise ContractError(f"{root} holds no images ({', '.join(sorted(EXTENSIONS))})")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[i]
        with Image.open(path) as img:
            img = self.transform(img.convert("RGB"))
        x = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / 255
        return (x - MEAN) / STD, label


def random_box(
    w: int,
    h: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """An Inception-style crop of a w x h image, (left, top, right, bottom): random area and
    aspect ratio; the whole image if ten tries find no crop inside it."""
    for _ in range(10):
        area = w * h * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = random.randint(0, w - cw), random.randint(0, h - ch)
            return left, top, left + cw, top + ch
    return 0, 0, w, h


def center_box(w: int, h: int, fraction: float = 0.875) -> tuple[float, float, float, float]:
    """The central square of a w x h image whose side is fraction of the short side: the crop
    that resizing the short side to size / fraction and cutting size x size takes."""
    side = min(w, h) * fraction  # in the original's pixels: one resampling, not two
    return (w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2


def random_resized_crop(
    img: Image.Image,
    size: int,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """Inception-style crop of random area and aspect ratio, resized to size, random flip."""
    img = img.resize((size, size), resample, box=random_box(*img.size, scale, ratio))
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if random.random() < 0.5 else img


def center_crop(
    img: Image.Image,
    size: int,
    fraction: float = 0.875,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Image.Image:
    """Resize the short side to size / fraction (256 for 224), cut the central size x size."""
    return img.resize((size, size), resample, box=center_box(*img.size, fraction))
