"""Data for the SATRN workload: word images and their texts as token ids.

mini: short random strings rendered by the run itself with Pillow's default font (fixed, not
drawn by the seed). full: synthetic batches of the real shapes (speed), or a text-line dataset
under $DS_DATA_DIR (converge), MJSynth + SynthText for training and the six academic test sets
(IIIT5K, SVT, IC13, IC15, SVTP, CUTE80) for evaluation, laid out as

    $DS_DATA_DIR/SHA256SUMS              sha256 of every other file (sha256sum format)
    $DS_DATA_DIR/train/labels.txt        one "<image path>\\t<text>" per line, paths relative
    $DS_DATA_DIR/train/<image path>      to train/ (e.g. images/000000001.jpg)
    $DS_DATA_DIR/val/labels.txt          the same for the test images
    $DS_DATA_DIR/val/<image path>

Images are resized to the preset's image_size without keeping the aspect ratio, as MMOCR does.
Token ids: PAD = 0, BOS = EOS = 1 (one start/end token), UNK = 2, then the charset's
characters; a sequence is BOS, the text (cut to max_len - 1 characters), EOS, PADs.
"""

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import DataLoader, Dataset, TensorDataset

from deepspark_workload import ContractError, Workload

PAD, EOS, UNK = 0, 1, 2
SPECIALS = 3
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)  # ImageNet statistics, as MMOCR
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

# mini: texts of 3-6 characters at font sizes 9-12 (six are at most ~48 px wide), 0-4 px from
# the left edge at any height of a 16 x 64 image, in random grey levels at least 0.5 apart, with
# Gaussian noise.
MIN_CHARS, MAX_CHARS, FONT_SIZES = 3, 6, (9, 10, 11, 12)
X_JITTER, MIN_CONTRAST, NOISE = 4, 0.5, 0.05


def load(wl: Workload) -> tuple[Iterable, DataLoader | None]:
    """Training batches for wl.windows(), and the validation loader (None when not needed)."""
    p = wl.preset
    charset, max_len = p.charset, p.model["max_len"]
    if p.data == "rendered":
        train, val = rendered(charset, p.image_size, p.train_samples, p.val_samples)
        train, val = (TensorDataset(x, encode(t, charset, max_len)) for x, t in (train, val))
        wl.log_generated_data("rendered text", *train.tensors, *val.tensors)
        return wl.loader(train, train=True), wl.loader(val, train=False)
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        h, w = p.image_size
        x = torch.randn(wl.batch_size, p.model["in_channels"], h, w, device=wl.device)
        tokens = torch.randint(SPECIALS, SPECIALS + len(charset), (wl.batch_size, max_len + 1))
        tokens[:, 0] = EOS  # BOS; a full-length text throughout: the most decoder work
        return itertools.repeat((x, tokens.to(wl.device))), None
    root = wl.data_dir()
    train = TextLines(root / "train", charset, p.image_size, max_len)
    val = TextLines(root / "val", charset, p.image_size, max_len)
    kwargs = wl.loader_options()
    return wl.loader(train, train=True, **kwargs), wl.loader(val, train=False, **kwargs)


def encode(texts: list[str], charset: str, max_len: int) -> torch.Tensor:
    """(N, max_len + 1) token ids: BOS, the text's ids (UNK outside charset), EOS, PAD."""
    index = {c: SPECIALS + i for i, c in enumerate(charset)}
    tokens = torch.full((len(texts), max_len + 1), PAD, dtype=torch.long)
    for row, text in zip(tokens, texts, strict=True):
        ids = [EOS, *(index.get(c, UNK) for c in text[: max_len - 1]), EOS]
        row[: len(ids)] = torch.tensor(ids)
    return tokens


def decode(ids: Iterable[int], charset: str) -> str:
    """Ids up to the first EOS as text; UNK becomes U+FFFD, PAD is dropped."""
    chars = []
    for i in ids:
        if i == EOS:
            break
        if i == UNK:
            chars.append("\ufffd")
        elif i >= SPECIALS:
            chars.append(charset[i - SPECIALS])
    return "".join(chars)


def render(text: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """text drawn at a random font size, position and grey levels, with noise: (h, w) in [0, 1]."""
    h, w = size
    font = ImageFont.load_default(size=int(rng.choice(FONT_SIZES)))
    left, top, right, bottom = font.getbbox(text)
    if right - left > w or bottom - top > h:
        raise ValueError(f"{text!r} does not fit a {h} x {w} image")
    x = int(rng.integers(0, min(w - (right - left), X_JITTER) + 1)) - left
    y = int(rng.integers(0, h - (bottom - top) + 1)) - top
    mask = Image.new("L", (w, h))
    ImageDraw.Draw(mask).text((x, y), text, fill=255, font=font)
    ink, paper = rng.random(2)
    while abs(ink - paper) < MIN_CONTRAST:
        ink, paper = rng.random(2)
    pixels = paper + (ink - paper) * np.asarray(mask, dtype=np.float32) / 255
    return np.clip(pixels + rng.normal(0, NOISE, (h, w)), 0, 1).astype(np.float32)


def rendered(
    charset: str, size: tuple[int, int], n_train: int, n_val: int
) -> tuple[tuple[torch.Tensor, list[str]], tuple[torch.Tensor, list[str]]]:
    """(images (N, 1, h, w) normalised to [-1, 1], texts) for training and validation.

    Fixed, not drawn by the seed; no validation text occurs in training.
    """
    rng = np.random.default_rng(0)
    chars = list(charset)

    def text() -> str:
        return "".join(rng.choice(chars, int(rng.integers(MIN_CHARS, MAX_CHARS + 1))))

    val_texts = [text() for _ in range(n_val)]
    seen, train_texts = set(val_texts), []
    while len(train_texts) < n_train:
        if (t := text()) not in seen:
            train_texts.append(t)

    def images(texts: list[str]) -> torch.Tensor:
        x = torch.from_numpy(np.stack([render(t, size, rng) for t in texts]))
        return (x.unsqueeze(1) - 0.5) / 0.5

    return (images(train_texts), train_texts), (images(val_texts), val_texts)


class TextLines(Dataset):
    """root/labels.txt ("<image path>\\t<text>" per line) as (normalised image, token ids)."""

    def __init__(self, root: Path, charset: str, size: tuple[int, int], max_len: int) -> None:
        labels = root / "labels.txt"
        if not labels.is_file():
            raise ContractError(f"{labels} is missing: expected <split>/labels.txt and images")
        self.samples = []
        for lineno, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), 1):
            path, sep, text = line.partition("\t")
            if not (sep and path and text):
                raise ContractError(f"{labels}:{lineno}: expected '<image path>\\t<text>'")
            self.samples.append((root / path, text))
        if not self.samples:
            raise ContractError(f"{labels} lists no images")
        self.root, self.charset, self.size, self.max_len = root, charset, size, max_len

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, text = self.samples[i]
        h, w = self.size
        with Image.open(path) as img:
            img = img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        x = pixels.view(h, w, 3).permute(2, 0, 1).float() / 255
        return (x - MEAN) / STD, encode([text], self.charset, self.max_len)[0]
