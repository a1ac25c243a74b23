"""Data for the YOLOv5 workload: batches of (uint8 images, labels).

labels is (batch, objects, 5): class, cx, cy, w, h normalised to the image, padded with
class -1 rows to the batch's most objects.

mini: generated scenes of rectangles, ellipses and triangles among look-alikes on smooth colour
fields (fixed, not drawn by the seed). full + speed (or infer without $DS_DATA_DIR): synthetic
batches of the real shapes. full + converge (or infer): COCO 2017 in the YOLO layout under
$DS_DATA_DIR, with its SHA256SUMS manifest:

    images/train/<name>.jpg   labels/train/<name>.txt   (one line per object: class cx cy w h,
    images/val/<name>.jpg     labels/val/<name>.txt      normalised; no .txt: no objects)

as Ultralytics' scripts/get_coco.sh lays it out (train2017 -> train, val2017 -> val).
"""

import itertools
import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from deepspark_workload import ContractError, Workload

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
GREY = (114, 114, 114)  # YOLOv5's padding colour


def load(wl: Workload) -> tuple[Iterable, DataLoader | None]:
    """Batches for wl.windows() (training batches; in infer mode, full batches of the
    validation split, shuffled), and the validation loader (None when not needed).

    The validation loader's batch is the converge run's whatever the scenario (a latency
    run's queries are of one image), so an infer run scores its weights on the same batches.
    """
    size = wl.preset.image_size
    val_batch = wl.env.batch_size or wl.preset.batch_size
    if wl.preset.data == "shapes":
        train = shapes(wl.preset.train_images, size, seed=0)
        val = shapes(wl.preset.val_images, size, seed=1)  # other scenes, same generator
        wl.log_generated_data("shapes", *train.tensors, *val.tensors)
        timed = val if wl.infer else train
        return wl.loader(timed, train=True), wl.loader(val, train=False, batch_size=val_batch)
    if not wl.reads_data:  # made once on the device and reused: the model's time alone
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (wl.batch_size, 3, size, size), dtype=torch.uint8, generator=g)
        labels = torch.rand(wl.batch_size, 8, 5, generator=g) * 0.5 + 0.25  # COCO: ~7 per image
        labels[..., 0] = torch.randint(0, wl.preset.model["num_classes"], (8,), generator=g)
        return itertools.repeat((x.to(wl.device), labels.to(wl.device))), None
    root = wl.data_dir()
    kwargs = dict(**wl.loader_options(), collate_fn=collate)
    wl.log_data_loader("pillow", kwargs["num_workers"])  # mosaics are Pillow's work
    val = YoloFolder(root, "val", size, False)
    timed = val if wl.infer else YoloFolder(root, "train", size, True)
    return (
        wl.loader(timed, train=True, **kwargs),
        wl.loader(val, train=False, batch_size=val_batch, **kwargs),
    )


CLASSES = ("rectangle", "ellipse", "triangle")
# Look-alikes that are not objects, filling their boxes as the classes do: a ring (an ellipse with
# a hole, 0.71) and a frame (a rectangle with a hole, 0.91), an upside-down triangle and a diamond
# (both 1/2). A rule on how much of its box a region fills cannot tell them from the classes.
DISTRACTORS = ("inverted triangle", "diamond", "ring", "frame")


def outline(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which of a box's pixels (u, v in [0, 1] across it) a shape covers; kind indexes
    CLASSES + DISTRACTORS."""
    du, dv = np.abs(u - 0.5), np.abs(v - 0.5)
    r2 = du**2 + dv**2
    match kind:
        case 0:
            return (du <= 0.5) & (dv <= 0.5)
        case 1:
            return r2 <= 0.25
        case 2:  # apex up, base at the bottom
            return du <= v / 2
        case 3:  # apex down
            return du <= (1 - v) / 2
        case 4:
            return du + dv <= 0.5
        case 5:  # the hole's radius 0.15 of the box
            return (r2 <= 0.25) & (r2 >= 0.0225)
        case _:  # the hole 0.3 of the box's sides
            return (du <= 0.5) & (dv <= 0.5) & ((du >= 0.15) | (dv >= 0.15))


def shapes(
    n: int, size: int = 64, seed: int = 0, max_objects: int = 4, max_distractors: int = 2
) -> TensorDataset:
    """n scenes of 1 to max_objects shapes and 0 to max_distractors look-alikes (unlabelled),
    each 12 to size/2 pixels a side, not overlapping, on a smooth colour field, each in a colour
    at least 0.5 (L1) from every background pixel it covers; noise over all. Boxes are tight.

    The field defeats a threshold on colour or brightness, the look-alikes a rule on regions'
    box fill: what is left is the outline, which is what a detector learns.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.float32)
    labels = np.full((n, max_objects, 5), -1.0, np.float32)
    pixel = np.arange(size) + 0.5
    for i in range(n):
        image = images[i]
        # a smooth colour field: per channel a mean and two waves of 0.5-1.5 cycles per image
        freq = rng.uniform(0.5, 1.5, (3, 2, 2)) * rng.choice([-1, 1], (3, 2, 2)) * 2 * np.pi / size
        phase = rng.uniform(0, 2 * np.pi, (3, 2, 1, 1))
        waves = np.cos(
            freq[..., 0, None, None] * pixel + freq[..., 1, None, None] * pixel[:, None] + phase
        )
        image[:] = np.clip(rng.uniform(0.2, 0.8, 3) + 0.2 * waves.sum(1).transpose(1, 2, 0), 0, 1)
        boxes: list[tuple[float, float, float, float]] = []
        count = rng.integers(1, max_objects + 1)
        kinds = [*rng.integers(len(CLASSES), size=count)]  # objects first, then look-alikes
        extra = rng.integers(max_distractors + 1)
        kinds += [*rng.integers(len(CLASSES), len(CLASSES) + len(DISTRACTORS), size=extra)]
        for _ in range(20 * len(kinds)):  # tries: placements that overlap are redrawn
            if len(boxes) == len(kinds):
                break
            w, h = rng.uniform(12, size / 2, 2)
            x0, y0 = rng.uniform(0, size - w), rng.uniform(0, size - h)
            if any(
                x0 < b[2] + 1 and b[0] < x0 + w + 1 and y0 < b[3] + 1 and b[1] < y0 + h + 1
                for b in boxes
            ):
                continue
            kind = kinds[len(boxes)]
            left, top = int(x0), int(y0)  # the pixels the box touches
            right, bottom = min(size, int(x0 + w) + 1), min(size, int(y0 + h) + 1)
            u = (pixel[left:right] - x0)[None, :] / w  # in [0, 1] inside the box
            v = (pixel[top:bottom] - y0)[:, None] / h
            inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1) & outline(kind, u, v)
            under = image[top:bottom, left:right][inside]
            colour = rng.uniform(0, 1, 3)
            while np.abs(colour - under).sum(1).min() < 0.5:
                colour = rng.uniform(0, 1, 3)
            image[top:bottom, left:right][inside] = colour
            if kind < len(CLASSES):
                labels[i, len(boxes)] = kind, x0 + w / 2, y0 + h / 2, w, h
            boxes.append((x0, y0, x0 + w, y0 + h))
    images += rng.standard_normal(images.shape, np.float32) * 0.08
    labels[..., 1:] /= np.where(labels[..., :1] >= 0, size, 1)
    pixels = torch.from_numpy(np.clip(images * 255, 0, 255).round().astype(np.uint8))
    return TensorDataset(pixels.permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels))


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the images; pad every image's labels with class -1 rows to the most objects."""
    most = max(1, *(len(labels) for _, labels in batch))
    padded = torch.full((len(batch), most, 5), -1.0)
    for i, (_, labels) in enumerate(batch):
        padded[i, : len(labels)] = labels
    return torch.stack([image for image, _ in batch]), padded


class YoloFolder(Dataset):
    """root/images/<split>/* with root/labels/<split>/<stem>.txt, letterboxed to size x size.

    train: YOLOv5's mosaic (four images around a random centre), random scale (0.5-1.5x) and
    translation (10%), left-right flips. val: the image alone, letterboxed.
    """

    def __init__(self, root: Path, split: str, size: int, augment: bool) -> None:
        folder = root / "images" / split
        if not folder.is_dir():
            raise ContractError(f"{folder} is missing: expected images/{{train,val}}/<image>")
        self.images = sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
        if not self.images:
            raise ContractError(f"{folder} holds no images ({', '.join(sorted(EXTENSIONS))})")
        self.labels = [root / "labels" / split / f"{p.stem}.txt" for p in self.images]
        self.size, self.augment = size, augment

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> tuple[Image.Image, torch.Tensor]:
        """Image i with its long side resized to size, and its boxes (class, x1, y1, x2, y2)."""
        with Image.open(self.images[i]) as img:
            img = img.convert("RGB")
        r = self.size / max(img.size)
        if r != 1:
            img = img.resize(
                (round(img.width * r), round(img.height * r)), Image.Resampling.BILINEAR
            )
        path = self.labels[i]
        rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
        labels = torch.tensor([[float(v) for v in row] for row in rows if row]).view(-1, 5)
        scale = torch.tensor([img.width, img.height] * 2)
        xy, half = labels[:, 1:3], labels[:, 3:5] / 2
        return img, torch.cat((labels[:, :1], torch.cat((xy - half, xy + half), 1) * scale), 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.size
        if not self.augment:
            img, boxes = self.load(i)
            canvas = Image.new("RGB", (s, s), GREY)
            dx, dy = (s - img.width) // 2, (s - img.height) // 2
            canvas.paste(img, (dx, dy))
            boxes[:, 1:] += torch.tensor([dx, dy, dx, dy])
        else:
            canvas, boxes = self.mosaic(i)
            if random.random() < 0.5:
                canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                boxes[:, [1, 3]] = s - boxes[:, [3, 1]]
        pixels = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8)
        xyxy = boxes[:, 1:] / s
        cxcywh = torch.cat(((xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]), 1)
        return pixels.view(s, s, 3).permute(2, 0, 1), torch.cat((boxes[:, :1], cxcywh), 1)

    def mosaic(self, i: int) -> tuple[Image.Image, torch.Tensor]:
        s = self.size
        canvas = Image.new("RGB", (2 * s, 2 * s), GREY)
        xc, yc = (round(random.uniform(s / 2, 3 * s / 2)) for _ in range(2))
        all_boxes = []
        for k, j in enumerate([i, *random.choices(range(len(self)), k=3)]):
            img, boxes = self.load(j)
            w, h = img.size  # around the centre: top-left, top-right, bottom-left, -right
            x0 = xc - w if k in (0, 2) else xc
            y0 = yc - h if k in (0, 1) else yc
            canvas.paste(img, (x0, y0))  # PIL clips what falls outside the canvas; so do we
            boxes[:, 1:] = (boxes[:, 1:] + torch.tensor([x0, y0, x0, y0])).clamp(0, 2 * s)
            all_boxes.append(boxes)
        # random scale and translation of the 2s canvas' centre, cut out at s x s
        scale = random.uniform(0.5, 1.5)
        cx, cy = (s + random.uniform(-0.1, 0.1) * s for _ in range(2))
        half = s / scale / 2
        window = (cx - half, cy - half, cx + half, cy + half)
        out = canvas.transform(
            (s, s), Image.Transform.EXTENT, window, Image.Resampling.BILINEAR, fillcolor=GREY
        )
        boxes = torch.cat(all_boxes)
        xyxy = (boxes[:, 1:] - torch.tensor(window[:2] * 2)) * scale
        clipped = xyxy.clamp(0, s)
        area, kept_area = (xyxy[:, 2:] - xyxy[:, :2]).prod(1), (clipped[:, 2:] - clipped[:, :2])
        keep = (kept_area > 2).all(1) & (kept_area.prod(1) > 0.1 * area)  # YOLOv5's candidates
        return out, torch.cat((boxes[:, :1], clipped), 1)[keep]
