"""Data for the FairMOT workload: frames with CenterNet-style targets, and held-out sequences.

A training batch is (images, heatmap, ind, mask, wh, offset, ids), the targets at stride 4
as FairMOT's JointDataset makes them: a Gaussian peak per object centre, and for up to
max_objs objects the flat index of the centre cell, a presence mask, the distances to the
box's left, top, right and bottom edges, the sub-cell offset of the centre and the identity.
A validation sequence yields (image, gt) per frame in order, gt an [n, 5] tensor of
(identity, x1, y1, x2, y2) in input pixels.

mini: deterministic synthetic videos (below). full, speed: synthetic batches of the real
shapes. full, converge: MOT17 under $DS_DATA_DIR, with its SHA256SUMS manifest:

    train/<sequence>/img1/000001.jpg ...   frames, numbered from 1
    train/<sequence>/gt/gt.txt             frame,id,left,top,width,height,flag,class,visibility

As in FairMOT's ablations (mot17.half), the first half of every sequence trains and the
second half is held out for MOTA. Only boxes with flag 1 and class 1 (pedestrian) count.
MOT17 ships each sequence three times (-DPM, -FRCNN, -SDP) with the same frames and ground
truth: only the first of each is used. Frames are letterboxed to 1088x608 (grey padding).
"""

import itertools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from deepspark_workload import ContractError, Workload

DOWN_RATIO = 4  # the model's output stride
Frame = tuple[torch.Tensor, torch.Tensor]  # image [3, H, W], gt [n, 5]: id, x1, y1, x2, y2


def load(wl: Workload) -> tuple[Iterable, list[DataLoader] | None]:
    """Training batches for wl.windows(), and this rank's validation sequences (or None)."""
    max_objs, (h, w) = wl.preset.max_objs, wl.preset.image_size
    if wl.preset.data == "synthetic":
        train, val = synthetic(**wl.preset.synthetic.model_dump(), size=h, max_objs=max_objs)
        frames = torch.stack([x for seq in val for x, _ in seq])
        gts = [gt for seq in val for _, gt in seq]
        wl.log_generated_data("synthetic videos", *train.tensors, frames, *gts)
        return wl.loader(train, train=True), sequence_loaders(wl, val)
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        g = torch.Generator().manual_seed(0)
        boxes = random_boxes(g, 20, h, w)  # a typical crowd: 20 pedestrians a frame
        target = targets(boxes, torch.arange(20), h, w, max_objs)
        batch = [torch.randn(wl.batch_size, 3, h, w, generator=g)]
        batch += [t.expand(wl.batch_size, *t.shape).contiguous() for t in target]
        return itertools.repeat(tuple(t.to(wl.device) for t in batch)), None
    train, val = mot17(wl.data_dir(), h, w, max_objs)
    kwargs = dict(num_workers=4, pin_memory=wl.device.type == "cuda", persistent_workers=True)
    return wl.loader(train, train=True, **kwargs), sequence_loaders(wl, val, num_workers=2)


def sequence_loaders(wl: Workload, sequences: Sequence[Sequence[Frame]], **kwargs) -> list:
    """This rank's share of whole sequences (the tracker runs over each in order)."""
    return [
        DataLoader(seq, wl.batch_size, collate_fn=collate, **kwargs)
        for seq in sequences[wl.rank :: wl.world_size]
    ]


def collate(frames: list[Frame]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.stack([x for x, _ in frames]), [gt for _, gt in frames]


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: corners within it keep IoU >= min_overlap with the true box."""
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def targets(
    boxes: torch.Tensor, ids: torch.Tensor, h: int, w: int, max_objs: int
) -> tuple[torch.Tensor, ...]:
    """Training targets at stride 4 for boxes [n, 4] (x1, y1, x2, y2 in input pixels)."""
    oh, ow = h // DOWN_RATIO, w // DOWN_RATIO
    hm = torch.zeros(1, oh, ow)
    ind = torch.zeros(max_objs, dtype=torch.long)
    mask = torch.zeros(max_objs, dtype=torch.bool)
    wh, reg = torch.zeros(max_objs, 4), torch.zeros(max_objs, 2)
    labels = torch.zeros(max_objs, dtype=torch.long)
    ys, xs = torch.arange(oh).view(-1, 1), torch.arange(ow).view(1, -1)
    for k, (box, identity) in enumerate(zip(boxes[:max_objs] / DOWN_RATIO, ids, strict=False)):
        box = box.clone()
        box[0::2], box[1::2] = box[0::2].clamp(0, ow - 1), box[1::2].clamp(0, oh - 1)
        bw, bh = (box[2] - box[0]).item(), (box[3] - box[1]).item()
        if bw <= 0 or bh <= 0:
            continue
        radius = max(0, int(gaussian_radius(math.ceil(bh), math.ceil(bw))))
        sigma = (2 * radius + 1) / 6
        center = torch.stack([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        cx, cy = center.long().tolist()
        peak = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
        peak *= ((xs - cx).abs() <= radius) & ((ys - cy).abs() <= radius)  # cut at the radius
        hm[0] = torch.maximum(hm[0], peak)
        ind[k], mask[k], labels[k] = cy * ow + cx, True, identity
        wh[k] = torch.cat([center - box[:2], box[2:] - center])  # left, top, right, bottom
        reg[k] = center - center.floor()
    return hm, ind, mask, wh, reg, labels


def random_boxes(g: torch.Generator, n: int, h: int, w: int) -> torch.Tensor:
    """n pedestrian-shaped boxes (aspect 0.4) inside an h x w image."""
    bh = h * (0.1 + 0.3 * torch.rand(n, generator=g))
    bw = 0.4 * bh
    x1, y1 = (w - bw) * torch.rand(n, generator=g), (h - bh) * torch.rand(n, generator=g)
    return torch.stack([x1, y1, x1 + bw, y1 + bh], 1)


# --- mini: synthetic videos ---------------------------------------------------------------

# Six well separated colours; an identity is a colour and a pattern.
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180]]) / 255  # fmt: skip
IDENTITIES = 2 * len(PALETTE)  # solid rectangles, then striped ellipses


def synthetic(
    size: int,
    train_videos: int,
    train_frames: int,
    val_videos: int,
    val_frames: int,
    objects: Sequence[int],
    max_objs: int,
) -> tuple[TensorDataset, list[list[Frame]]]:
    """Training frames with their targets, and held-out validation videos.

    Fixed (not drawn by the run's seed), so every run sees the same videos. Shapes of 12
    identities move at constant velocity plus jitter, bounce off the borders, and occlude each
    other when they cross; an untrained model finds nothing and scores MOTA 0.
    """
    rng = np.random.default_rng(2021)  # training videos; the validation ones have their own
    samples = []  # (image, *targets) per frame
    for _ in range(train_videos):
        video, gts = render_video(rng, size, train_frames, int(rng.choice(objects)))
        for x, gt in zip(video, gts, strict=True):
            samples.append((x, *targets(gt[:, 1:], gt[:, 0].long(), size, size, max_objs)))
    train = TensorDataset(*(torch.stack(column) for column in zip(*samples, strict=True)))
    val, rng = [], np.random.default_rng(2022)
    for _ in range(val_videos):
        video, gts = render_video(rng, size, val_frames, int(max(objects)))
        val.append(list(zip(video, gts, strict=True)))
    return train, val


def render_video(
    rng: np.random.Generator, size: int, frames: int, n: int
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One video [frames, 3, size, size] in [0, 1] and its ground truth per frame.

    An object is ground truth while at least 40% of it is visible.
    """
    identity = rng.choice(IDENTITIES, n, replace=False)
    wh = rng.uniform(9, 17, (n, 2))
    pos = rng.uniform(0, 1, (n, 2)) * (size - wh)  # top-left corners
    angle, speed = rng.uniform(0, 2 * np.pi, n), rng.uniform(1, 3, n)
    vel = np.stack([np.cos(angle), np.sin(angle)], 1) * speed[:, None]
    grey = rng.uniform(0.3, 0.7)  # a greyish background, blotchy and different in every video
    background = grey + 0.1 * np.kron(rng.uniform(-1, 1, (3, 4, 4)), np.ones((size // 4,) * 2))
    grid = np.arange(size) + 0.5
    video, gts = [], []
    for _ in range(frames):
        image = background + rng.normal(0, 0.04, (3, size, size))
        owner, area = np.full((size, size), -1), np.zeros(n)
        for k in range(n):  # later objects pass in front of earlier ones
            (x1, y1), (w, h) = pos[k], wh[k]
            inside_x, inside_y = (grid >= x1) & (grid < x1 + w), (grid >= y1) & (grid < y1 + h)
            shape = inside_y[:, None] & inside_x[None, :]
            colour = PALETTE[identity[k] % len(PALETTE)][:, None, None]
            if identity[k] >= len(PALETTE):  # striped ellipse
                dx, dy = (grid - x1 - w / 2) / (w / 2), (grid - y1 - h / 2) / (h / 2)
                shape &= dy[:, None] ** 2 + dx[None, :] ** 2 <= 1
                stripes = ((grid - y1) // 2 % 2 == 0)[:, None]
                colour = np.where(stripes, colour, 0.35 * colour)
            image = np.where(shape, colour + rng.normal(0, 0.04, (3, size, size)), image)
            owner[shape], area[k] = k, shape.sum()
        gt = [
            (identity[k], *pos[k], *(pos[k] + wh[k]))
            for k in range(n)
            if (owner == k).sum() >= 0.4 * area[k]
        ]
        video.append(np.clip(image, 0, 1))
        gts.append(torch.tensor(gt, dtype=torch.float32).view(-1, 5))
        pos += vel + rng.normal(0, 0.3, (n, 2))
        low_side, high_side = pos < 0, pos + wh > size  # bounce off the borders
        pos = np.where(low_side, -pos, np.where(high_side, 2 * (size - wh) - pos, pos))
        vel = np.where(low_side | high_side, -vel, vel)
    return torch.tensor(np.stack(video), dtype=torch.float32), gts


# --- full: MOT17 ----------------------------------------------------------------------------


def mot17(root: Path, h: int, w: int, max_objs: int) -> tuple["MOTFrames", list["MOTFrames"]]:
    """The first half of every sequence for training, each second half for validation."""
    seq_dirs, seen = [], set()
    for d in sorted((root / "train").glob("*/img1")):
        base = d.parent.name.rsplit("-", 1)[0] if d.parent.name.count("-") > 1 else d.parent.name
        if base not in seen:  # MOT17-02-DPM, -FRCNN, -SDP: the same frames
            seen.add(base)
            seq_dirs.append(d.parent)
    if not seq_dirs:
        raise ContractError(f"{root}/train has no <sequence>/img1/: expected the MOT17 layout")
    train, val, identities = [], [], {}
    for seq in seq_dirs:
        images = sorted((seq / "img1").glob("*.jpg"))
        if not (seq / "gt" / "gt.txt").is_file() or not images:
            raise ContractError(f"{seq} lacks gt/gt.txt or img1/*.jpg")
        rows = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)
        rows = rows[(rows[:, 6] == 1) & (rows[:, 7] == 1)]  # counted pedestrians only
        half, held_out = len(images) // 2, []
        for i, path in enumerate(images):
            r = rows[rows[:, 0] == i + 1]
            boxes = np.concatenate([r[:, 2:4], r[:, 2:4] + r[:, 4:6]], 1)
            if i < half:  # identities numbered over all sequences, for the ID classifier
                labels = [identities.setdefault((seq.name, t), len(identities)) for t in r[:, 1]]
                train.append((path, np.column_stack([labels, boxes])))
            else:
                held_out.append((path, np.column_stack([r[:, 1], boxes])))
        val.append(MOTFrames(held_out, h, w, max_objs, train=False))
    return MOTFrames(train, h, w, max_objs, train=True), val


class MOTFrames(Dataset):
    """Frames (path, gt [n, 5] of id and x1 y1 x2 y2 in image pixels), letterboxed to h x w.

    train: (image, *targets) with a random horizontal flip; otherwise (image, gt) in order.
    """

    def __init__(
        self, frames: list[tuple[Path, np.ndarray]], h: int, w: int, max_objs: int, train: bool
    ) -> None:
        self.frames, self.h, self.w, self.max_objs, self.train = frames, h, w, max_objs, train

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        path, gt = self.frames[i]
        with Image.open(path) as img:
            img = img.convert("RGB")
            scale = min(self.w / img.width, self.h / img.height)
            size = round(img.width * scale), round(img.height * scale)
            left, top = (self.w - size[0]) // 2, (self.h - size[1]) // 2
            canvas = Image.new("RGB", (self.w, self.h), (127, 127, 127))
            canvas.paste(img.resize(size, Image.Resampling.BILINEAR), (left, top))
        pixels = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8)
        x = pixels.view(self.h, self.w, 3).permute(2, 0, 1).float() / 255
        gt = torch.tensor(gt, dtype=torch.float32).view(-1, 5)
        gt[:, 1:] = gt[:, 1:] * scale + torch.tensor([left, top, left, top])
        if not self.train:
            return x, gt
        if torch.rand(()) < 0.5:
            x = x.flip(2)
            gt[:, [1, 3]] = self.w - gt[:, [3, 1]]
        return x, *targets(gt[:, 1:], gt[:, 0].long(), self.h, self.w, self.max_objs)
