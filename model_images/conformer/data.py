"""Data for the Conformer workload: (features, frame counts, labels, label counts) batches.

mini: a deterministic speech-like synthesizer (`synthesize`). Each letter of a small alphabet
sounds as two formant-like bumps over the mel bins, and the letters' bumps share positions,
so that only the pair tells them apart. An utterance is a random string of 3-7 letters (no
letter twice in a row), each held for a random 5-10 frames, gliding from the letter before,
with a random loudness per letter; per utterance all formants shift by up to half the grid
spacing and the bumps get a random width (another voice), silence surrounds it, and noise
covers every bin. The utterances are the same in every run (their generator's seed is fixed,
not the run's).

full, speed (and infer without $DS_DATA_DIR): one synthetic batch of LibriSpeech's typical
shapes, made once on the device.

full, converge (and infer with $DS_DATA_DIR, on its dev split): LibriSpeech (Panayotov et al.
2015) as precomputed features under $DS_DATA_DIR:

    train/<utterance id>.npy   float16 or float32 (frames, 80): log-mel filterbank energies,
                               25 ms window, 10 ms hop, 16 kHz (train-clean-100, train-clean-360
                               and train-other-500: 281,241 utterances)
    dev/<utterance id>.npy     the same, for dev-clean (2,703 utterances)
    transcripts.tsv            <split>/<utterance id><TAB><transcript>, one a line, e.g.
                               "dev/1272-128104-0000<TAB>MISTER QUILTER IS THE APOSTLE OF ..."
    SHA256SUMS                 sha256sum's manifest of every file above

Each utterance's features are normalised per mel bin (zero mean, unit variance over its
frames). Transcripts are LibriSpeech's: upper-case letters, apostrophe and space; they are
lower-cased and mapped to the 29 labels of CHARACTERS.
"""

import itertools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from deepspark_workload import ContractError, Workload

CHARACTERS = "_ '" + "abcdefghijklmnopqrstuvwxyz"  # label 0 is CTC's blank
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
Utterance = tuple[torch.Tensor, torch.Tensor]  # features (frames, mels), labels (n,)
SYNTH_SEED = 0  # the mini data is fixed, never drawn by the run's seed


def load(wl: Workload) -> tuple[Iterable, DataLoader | None]:
    """Batches for wl.windows() (training batches; in infer mode, full batches of the held-out
    split, shuffled), and the validation loader (None when not needed)."""
    mels = wl.preset.model["in_features"]
    if wl.preset.data == "synthetic":
        n_train, n_val = wl.preset.utterances, wl.preset.val_utterances
        train, val = synthesize(n_train + n_val, wl.preset.letters, mels).split(n_train)
        wl.log_generated_data("synthetic speech", *train.tensors, *val.tensors)
        return wl.loader(val if wl.infer else train, train=True), wl.loader(val, train=False)
    if not wl.reads_data:  # made once on the device and reused: the model's time alone
        b, t, n = wl.batch_size, wl.preset.frames, wl.preset.label_length
        x = torch.randn(b, t, mels, device=wl.device)
        y = torch.randint(1, wl.preset.model["vocab_size"], (b, n), device=wl.device)
        frames, counts = (torch.full((b,), k, device=wl.device) for k in (t, n))
        return itertools.repeat((x, frames, y, counts)), None
    root = wl.data_dir()
    transcripts = read_transcripts(root / "transcripts.tsv")
    kwargs = dict(collate_fn=collate, **wl.loader_options())
    dev = LibriSpeech(root, "dev", transcripts, mels)
    timed = dev if wl.infer else LibriSpeech(root, "train", transcripts, mels)
    return wl.loader(timed, train=True, **kwargs), wl.loader(dev, train=False, **kwargs)


class Synthetic(TensorDataset):
    """Utterances padded to one length: features (N, T, mels), frames (N,), labels (N, L),
    label counts (N,), as batches come."""

    def split(self, n: int) -> tuple["Synthetic", "Synthetic"]:
        return Synthetic(*(t[:n] for t in self.tensors)), Synthetic(*(t[n:] for t in self.tensors))


def letter_formants(letters: int, mels: int) -> np.ndarray:
    """(letters, 2) mel-bin centres: a low and a high formant, on a grid, so that every low
    position and every high one is shared by several letters and only the pair is unique."""
    lows = np.linspace(0.08, 0.42, 4) * mels
    highs = np.linspace(0.55, 0.92, -(-letters // 4)) * mels
    return np.array([(lo, hi) for hi in highs for lo in lows][:letters])


def synthesize(n: int, letters: int, mels: int, seed: int = SYNTH_SEED) -> Synthetic:
    """n utterances of letters 1..letters (label 0 stays the blank) as log-mel-like frames."""
    rng = np.random.default_rng(seed)
    formants, bins = letter_formants(letters, mels), np.arange(mels)
    utterances = []
    for _ in range(n):
        text, length = [int(rng.integers(1, letters + 1))], int(rng.integers(3, 8))
        while len(text) < length:
            text.append(int(rng.choice([c for c in range(1, letters + 1) if c != text[-1]])))
        centres, loudness = [], []
        for c in text:
            frames = int(rng.integers(5, 11))
            start = centres[-1][-1] if centres else formants[c - 1]
            glide = np.clip(np.arange(1, frames + 1) / 3, 0, 1)[:, None]  # 3 frames from there
            centres.append(start + glide * (formants[c - 1] - start))
            loudness.append(np.full(frames, rng.uniform(0.6, 1.4)))
        centres, loudness = np.concatenate(centres), np.concatenate(loudness)
        centres = centres + rng.uniform(-2.5, 2.5)  # every formant of this voice a bit shifted
        width = rng.uniform(1.2, 2.2)
        bumps = np.exp(-0.5 * ((bins - centres[:, :, None]) / width) ** 2).sum(1)
        energy = loudness[:, None] * bumps
        lead, tail = rng.integers(2, 7, size=2)
        energy = np.pad(energy, ((lead, tail), (0, 0)))  # silence around the letters
        features = np.log(energy + 0.1) + rng.normal(0, 0.7, energy.shape)
        utterances.append((torch.tensor(features, dtype=torch.float32), torch.tensor(text)))
    return Synthetic(*collate(utterances))


def collate(utterances: list[Utterance]) -> Batch:
    """Zero-padded to the longest: features (B, T, mels), frames (B,), labels (B, L), counts."""
    features, labels = zip(*utterances, strict=True)
    frames = torch.tensor([len(f) for f in features])
    counts = torch.tensor([len(y) for y in labels])
    x = torch.zeros(len(features), int(frames.max()), features[0].shape[1])
    y = torch.zeros(len(labels), int(counts.max()), dtype=torch.long)
    for i, (f, label) in enumerate(utterances):
        x[i, : len(f)], y[i, : len(label)] = f, label
    return x, frames, y, counts


def encode(text: str) -> torch.Tensor:
    """A transcript's labels: lower-cased characters, each its index in CHARACTERS."""
    ids = [CHARACTERS.find(c) for c in text.lower()]
    if any(i <= 0 for i in ids):
        raise ContractError(f"transcript {text[:60]!r} has characters outside {CHARACTERS[1:]!r}")
    return torch.tensor(ids)


def read_transcripts(path: Path) -> dict[str, str]:
    """transcripts.tsv as {"<split>/<utterance id>": transcript}."""
    if not path.is_file():
        raise ContractError(f"{path} is missing: expected <split>/<utterance id>\\t<transcript>")
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        key, sep, text = line.partition("\t")
        if not (sep and key and text.strip()):
            raise ContractError(f"{path}:{lineno}: expected <split>/<utterance id>\\t<transcript>")
        out[key] = text.strip()
    return out


class LibriSpeech(Dataset):
    """root/<split>/<utterance id>.npy with their transcripts, as normalised features, labels."""

    def __init__(self, root: Path, split: str, transcripts: dict[str, str], mels: int) -> None:
        files = sorted((root / split).glob("*.npy"))
        if not files:
            raise ContractError(f"{root / split} holds no <utterance id>.npy features")
        missing = [f.stem for f in files if f"{split}/{f.stem}" not in transcripts]
        if missing:
            raise ContractError(
                f"transcripts.tsv lacks {split}/{missing[0]} (and {len(missing) - 1} more)"
            )
        self.files, self.mels = files, mels
        self.labels = [encode(transcripts[f"{split}/{f.stem}"]) for f in files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Utterance:
        x = torch.from_numpy(np.load(self.files[i]).astype(np.float32))
        if x.ndim != 2 or x.shape[1] != self.mels:
            raise ContractError(
                f"{self.files[i]}: shape {tuple(x.shape)}, not (frames, {self.mels})"
            )
        x = (x - x.mean(0)) / (x.std(0) + 1e-5)
        return x, self.labels[i]


def spec_augment(
    x: torch.Tensor,
    frames: torch.Tensor,
    freq_masks: int,
    freq_width: int,
    time_masks: int,
    time_ratio: float,
) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) as the Conformer paper uses it: freq_masks bands of up to
    freq_width mel bins, and time_masks spans of up to time_ratio of each utterance, set to 0
    (the normalised features' mean)."""
    b, t, f = x.shape
    keep = torch.ones(b, t, f, dtype=torch.bool, device=x.device)
    bins, steps = torch.arange(f, device=x.device), torch.arange(t, device=x.device)
    for _ in range(freq_masks):
        width = torch.randint(0, freq_width + 1, (b, 1), device=x.device)
        start = (torch.rand(b, 1, device=x.device) * (f - width + 1)).long()
        keep &= ~((bins >= start) & (bins < start + width)).unsqueeze(1)
    for _ in range(time_masks):
        width = (torch.rand(b, 1, device=x.device) * time_ratio * frames.unsqueeze(1)).long()
        start = (torch.rand(b, 1, device=x.device) * (frames.unsqueeze(1) - width + 1)).long()
        keep &= ((steps < start) | (steps >= start + width)).unsqueeze(2)
    return x * keep
