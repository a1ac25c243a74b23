"""LibriSpeech's official layout -> the Conformer's log-mel features (data.py's layout).

Reads `LibriSpeech/<subset>/<speaker>/<chapter>/<utterance id>.flac` and
`<speaker>-<chapter>.trans.txt` (`<utterance id> <TRANSCRIPT>` per line), as openslr.org's
tarballs unpack (src may be the folder holding `LibriSpeech/` or `LibriSpeech/` itself).
Writes `train/<id>.npy` (train-clean-100, train-clean-360, train-other-500), `dev/<id>.npy`
(dev-clean): float16 (frames, 80) log-mel features, and `transcripts.tsv`.
"""

from pathlib import Path
from types import ModuleType

import numpy as np

from deepspark_workload.audio import LogMel
from deepspark_workload.prepare import PrepareError, Progress, done, write_atomic, write_npy

SUBSETS = {
    "train-clean-100": "train",
    "train-clean-360": "train",
    "train-other-500": "train",
    "dev-clean": "dev",
}
# 25 ms Hann windows every 10 ms at 16 kHz in a 512-point FFT, power spectrum, 80 Slaney mel
# filters over 0-8 kHz, natural log (floored: digital silence would be log 0).
FEATURES = LogMel(
    rate=16000, n_fft=512, hop=160, window=400, n_mels=80, fmin=0, fmax=8000, power=2,
    floor=1e-10,
)  # fmt: skip

Utterance = tuple[str, str, Path]  # split, utterance id, its .flac


def convert(src: Path, dst: Path, progress: Progress) -> None:
    root = src / "LibriSpeech" if (src / "LibriSpeech").is_dir() else src
    missing = [s for s in SUBSETS if not (root / s).is_dir()]
    if missing:
        raise PrepareError(f"{root / missing[0]} is missing: expected LibriSpeech/<subset>/")
    utterances, transcripts = [], []
    for subset, split in SUBSETS.items():
        for trans in sorted((root / subset).glob("*/*/*.trans.txt")):
            for uid, text in read_trans(trans):
                utterances.append((split, uid, trans.parent / f"{uid}.flac"))
                transcripts.append(f"{split}/{uid}\t{text}\n")
    if not utterances:
        raise PrepareError(f"{root} holds no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt")
    progress.total(len(utterances))
    sf = soundfile()
    for split, uid, flac in utterances:
        out = dst / split / f"{uid}.npy"
        if not done(out):
            write_npy(out, features(sf, flac))
        progress.advance()
    write_atomic(dst / "transcripts.tsv", lambda tmp: tmp.write_text("".join(transcripts)))


def read_trans(path: Path) -> list[tuple[str, str]]:
    """A chapter's `<utterance id> <TRANSCRIPT>` lines."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        uid, _, text = line.strip().partition(" ")
        if not (uid.startswith(path.name.removesuffix(".trans.txt")) and text.strip()):
            raise PrepareError(f"{path}:{lineno}: expected '<utterance id> <TRANSCRIPT>'")
        out.append((uid, text.strip()))
    return out


def soundfile() -> ModuleType:
    """soundfile, which decodes FLAC (its wheels bundle libsndfile)."""
    try:
        import soundfile
    except ImportError:
        raise PrepareError("LibriSpeech's FLAC needs soundfile: pip install soundfile") from None
    return soundfile


def features(sf: ModuleType, flac: Path) -> np.ndarray:
    """(frames, 80) float16 log-mel features of one utterance."""
    if not flac.is_file():
        raise PrepareError(f"{flac} is missing: its chapter's transcript lists it")
    try:
        signal, rate = sf.read(flac, dtype="float32")
    except sf.SoundFileError as exc:
        raise PrepareError(f"{flac}: {exc}") from None
    if rate != FEATURES.rate or signal.ndim != 1:
        raise PrepareError(f"{flac}: {rate} Hz, {signal.ndim}-D; expected 16 kHz mono")
    return FEATURES(signal).T.astype(np.float16)
