"""Data for the Tacotron 2 workload: (text, text length, mel frames, frame count) batches.

mini: a deterministic synthesizer. Each of 12 letters sounds as a fixed spectral pattern (two
formant-like bumps over the mel bins and a broadband loudness, under a rise-and-fall
envelope) for a fixed, letter-dependent 2-4 frames; consecutive letters blend smoothly.
Utterances are random strings of 3-8 letters, the same in every run (not drawn by the seed).

full, speed: one synthetic batch of LJSpeech's typical shapes, made once on the device.

full, converge: LJSpeech (Ito & Johnson 2017) with precomputed mel spectrograms, under
$DS_DATA_DIR:

    metadata.csv     LJSpeech's own: <id>|<transcript>|<normalized transcript>
    mels/<id>.npy    float32 (80, frames) log-mel spectrogram as NVIDIA's tacotron2 makes it:
                     22,050 Hz, n_fft 1024, hop 256, window 1024, fmin 0, fmax 8000,
                     log(clamp(mel, 1e-5))
    train.txt        ids to train on, one a line (NVIDIA's split: 12,500 ...
    val.txt          ... and 100 held out)
    SHA256SUMS       sha256sum's manifest of every file above

The normalized transcript (numbers and abbreviations already spelled out) is lower-cased and
mapped to NVIDIA's symbol ids; characters outside the symbol set are dropped.
"""

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepspark_workload import ContractError, Workload

# NVIDIA's text/symbols.py, in order: pad, special, punctuation, letters (ids 0-63); its 84
# ARPAbet symbols follow (64-147), unused by character input.
SYMBOLS = ["_", "-", *"!'(),.:;? ", *"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]
SYMBOL_ID = {s: i for i, s in enumerate(SYMBOLS)}
Utterance = tuple[torch.Tensor, torch.Tensor]  # symbol ids (N,), mel frames (n_mel, T)


def load(wl: Workload) -> tuple[Iterable, DataLoader | None]:
    """Training batches for wl.windows(), and the validation loader (None when not needed)."""
    if wl.preset.data == "synthetic":
        model = wl.preset.model  # one letter a symbol, but for padding
        shape = dict(n_letters=model["n_symbols"] - 1, n_mel=model["n_mel"])
        train = synthetic(wl.preset.utterances, **shape)
        val = synthetic(wl.preset.val_utterances, split=1, **shape)
        wl.log_generated_data("synthetic speech", *train.tensors(), *val.tensors())
        return loader(wl, train, True), loader(wl, val, False)
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        b, n, t = wl.batch_size, wl.preset.text_length, wl.preset.frames
        text = torch.randint(1, wl.preset.model["n_symbols"], (b, n), device=wl.device)
        mels = torch.randn(b, wl.preset.model["n_mel"], t, device=wl.device)
        text_lengths, mel_lengths = (torch.full((b,), k, device=wl.device) for k in (n, t))
        return itertools.repeat((text, text_lengths, mels, mel_lengths)), None
    root = wl.data_dir()
    kwargs = dict(num_workers=2, persistent_workers=True, pin_memory=wl.device.type == "cuda")
    return (
        loader(wl, LJSpeech(root, "train.txt"), True, **kwargs),
        loader(wl, LJSpeech(root, "val.txt"), False, **kwargs),
    )


def loader(wl: Workload, dataset: Dataset, train: bool, **kwargs) -> DataLoader:
    return wl.loader(dataset, train=train, collate_fn=collate, **kwargs)


def collate(batch: list[Utterance]) -> tuple[torch.Tensor, ...]:
    """Zero-padded to the batch's longest text and utterance: text (B, N), text lengths (B,),
    mels (B, n_mel, T), frame counts (B,)."""
    texts, mels = zip(*batch, strict=True)
    text_lengths = torch.tensor([len(t) for t in texts])
    mel_lengths = torch.tensor([m.size(1) for m in mels])
    text = torch.zeros(len(batch), int(text_lengths.max()), dtype=torch.long)
    mel = torch.zeros(len(batch), mels[0].size(0), int(mel_lengths.max()))
    for i, (t, m) in enumerate(batch):
        text[i, : len(t)], mel[i, :, : m.size(1)] = t, m
    return text, text_lengths, mel, mel_lengths


class Utterances(Dataset):
    """Utterances held in memory."""

    def __init__(self, items: list[Utterance]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Utterance:
        return self.items[i]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """Everything, padded into four tensors (the generated data's identity)."""
        return collate(self.items)


def letter_sounds(n_letters: int = 12, n_mel: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Each letter's sound (n_letters, n_mel), log-mel above silence, and duration in frames."""
    bins = torch.arange(n_mel, dtype=torch.float32)
    first = torch.linspace(1, n_mel * 0.55, n_letters)  # formant 1: spread over the low bins
    second = first.flip(0) + n_mel * 0.4  # formant 2: the reverse order, so every pair differs

    def bump(centres: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((bins - centres[:, None]) / (n_mel / 16)) ** 2)

    shape = bump(first) + 0.7 * bump(second)
    loudness = torch.arange(n_letters) * 5 % n_letters / (n_letters - 1)  # 0-1, scrambled
    sounds = 5 * shape / shape.amax(1, keepdim=True) + 2 * loudness[:, None]
    durations = 2 + torch.arange(n_letters) * 2 % 3  # 2, 4, 3, 2, 4, 3, ... frames
    return sounds, durations


def synthesize(
    letters: torch.Tensor, sounds: torch.Tensor, durations: torch.Tensor
) -> torch.Tensor:
    """Log-mel-like frames (n_mel, T) for letter indices, from -4 (silence) up."""
    frames = []
    for c in letters.tolist():
        d = int(durations[c])
        envelope = 0.6 + 0.4 * torch.sin(torch.pi * (torch.arange(d) + 0.5) / d)
        frames.append(sounds[c][:, None] * envelope)
    x = torch.cat(frames, 1)
    # smooth transitions, causal: no frame hints at the letter after it (only the text does)
    x = 0.75 * x + 0.25 * torch.cat([x[:, :1], x[:, :-1]], 1)
    return x - 4


def synthetic(
    n: int, split: int = 0, n_letters: int = 12, n_mel: int = 20, lengths: tuple = (3, 8)
) -> Utterances:
    """n utterances of random strings; split 0 and 1 draw different strings (train, val)."""
    g = torch.Generator().manual_seed(1000 + split)  # fixed: the same data for every seed
    sounds, durations = letter_sounds(n_letters, n_mel)
    items = []
    for _ in range(n):
        size = int(torch.randint(lengths[0], lengths[1] + 1, (), generator=g))
        letters = torch.randint(0, n_letters, (size,), generator=g)
        items.append((letters + 1, synthesize(letters, sounds, durations)))  # id 0: padding
    return Utterances(items)


def text_to_ids(text: str) -> torch.Tensor:
    """NVIDIA's english_cleaners on already-normalized text (lower case, single spaces), then
    symbol ids; characters outside the symbol set are dropped."""
    text = " ".join(text.lower().split())
    return torch.tensor([SYMBOL_ID[c] for c in text if c in SYMBOL_ID], dtype=torch.long)


class LJSpeech(Dataset):
    """The utterances listed in root/<ids_file>: (symbol ids, mel frames)."""

    def __init__(self, root: Path, ids_file: str) -> None:
        for name in ("metadata.csv", ids_file, "mels"):
            if not (root / name).exists():
                raise ContractError(f"{root / name} is missing: see tacotron2/README.md")
        texts = {}
        for line in (root / "metadata.csv").read_text(encoding="utf-8").splitlines():
            fields = line.split("|")
            if len(fields) == 3:
                texts[fields[0]] = fields[2]
        self.ids = (root / ids_file).read_text().split()
        missing = [i for i in self.ids if i not in texts]
        if not self.ids or missing:
            raise ContractError(f"{root / ids_file}: no ids, or ids without text {missing[:5]}")
        self.root, self.texts = root, texts

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Utterance:
        id_ = self.ids[i]
        mel = torch.from_numpy(np.load(self.root / "mels" / f"{id_}.npy").astype(np.float32))
        return text_to_ids(self.texts[id_]), mel
