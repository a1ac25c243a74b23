"""LJSpeech 1.1's official layout -> Tacotron 2's mel spectrograms (data.py's layout).

Reads `LJSpeech-1.1/metadata.csv` (`<id>|<transcript>|<normalized transcript>`) and
`LJSpeech-1.1/wavs/<id>.wav` (22,050 Hz mono 16-bit PCM), as keithito.com's tarball unpacks
(src may be the folder holding `LJSpeech-1.1/` or that folder itself). Writes metadata.csv
(a copy), `mels/<id>.npy` ((80, frames) float32, NVIDIA's parameters), and the split:
train.txt, val.txt and test.txt (unused by the workload: NVIDIA's held-out test ids).

The split is NVIDIA's when src holds their filelists (`filelists/ljs_audio_text_{train,val,
test}_filelist.txt` from github.com/NVIDIA/tacotron2: 12,500, 100 and 500 utterances);
otherwise a seeded shuffle cut in the same proportions.
"""

import random
import shutil
import wave
from pathlib import Path

import numpy as np

from deepspark_workload.audio import LogMel
from deepspark_workload.prepare import PrepareError, Progress, done, write_atomic, write_npy

# NVIDIA's hparams.py: the STFT of librosa, magnitudes (not power), log(clamp(mel, 1e-5)).
MEL = LogMel(
    rate=22050, n_fft=1024, hop=256, window=1024, n_mels=80, fmin=0, fmax=8000, power=1,
    floor=1e-5,
)  # fmt: skip
SPLITS = {"train": 12500, "val": 100, "test": 500}  # NVIDIA's filelists' sizes
SPLIT_SEED = 1234  # NVIDIA's hparams seed; any fixed one would do
FILELIST = "filelists/ljs_audio_text_{}_filelist.txt"


def convert(src: Path, dst: Path, progress: Progress) -> None:
    root = src / "LJSpeech-1.1" if (src / "LJSpeech-1.1").is_dir() else src
    ids = read_metadata(root / "metadata.csv")
    progress.total(len(ids))
    for id_ in ids:
        out = dst / "mels" / f"{id_}.npy"
        if not done(out):
            write_npy(out, MEL(read_wav(root / "wavs" / f"{id_}.wav")))
        progress.advance()
    write_atomic(dst / "metadata.csv", lambda tmp: shutil.copyfile(root / "metadata.csv", tmp))
    for name, split in split_ids(src, ids).items():
        write_atomic(dst / f"{name}.txt", lambda tmp, split=split: tmp.write_text(lines(split)))


def read_metadata(path: Path) -> list[str]:
    """The utterance ids metadata.csv lists, in its order."""
    if not path.is_file():
        raise PrepareError(f"{path} is missing: expected LJSpeech-1.1/metadata.csv and wavs/")
    ids = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("|")
        if len(fields) != 3 or not fields[0]:
            raise PrepareError(f"{path}:{lineno}: expected '<id>|<text>|<normalized text>'")
        ids.append(fields[0])
    if not ids:
        raise PrepareError(f"{path} lists no utterances")
    return ids


def read_wav(path: Path) -> np.ndarray:
    """A 22,050 Hz mono 16-bit PCM file as floats in [-1, 1] (NVIDIA's max_wav_value 32768)."""
    if not path.is_file():
        raise PrepareError(f"{path} is missing: metadata.csv lists it")
    try:
        with wave.open(str(path), "rb") as w:
            shape = (w.getframerate(), w.getnchannels(), w.getsampwidth())
            pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise PrepareError(f"{path}: not a PCM WAV file ({exc})") from None
    if shape != (MEL.rate, 1, 2):
        raise PrepareError(f"{path}: {shape[0]} Hz, {shape[1]} channels, {8 * shape[2]}-bit; "
                           f"expected {MEL.rate} Hz mono 16-bit")  # fmt: skip
    return np.frombuffer(pcm, dtype="<i2") / 32768.0


def split_ids(src: Path, ids: list[str]) -> dict[str, list[str]]:
    """{split: ids}: NVIDIA's filelists under src, else a seeded shuffle of ids cut in their
    proportions (at least one validation id)."""
    lists = {name: src / FILELIST.format(name) for name in SPLITS}
    if all(path.is_file() for path in lists.values()):
        known, out = set(ids), {}
        for name, path in lists.items():
            out[name] = [Path(line.partition("|")[0]).stem for line in path.read_text().split("\n")
                         if line.strip()]  # fmt: skip
            if unknown := [i for i in out[name] if i not in known]:
                raise PrepareError(f"{path} names {unknown[0]}, which metadata.csv lacks")
        return out
    if len(ids) < 2:
        raise PrepareError("a split needs at least 2 utterances in metadata.csv")
    shuffled = sorted(ids)
    random.Random(SPLIT_SEED).shuffle(shuffled)
    n_val = max(1, round(len(ids) * SPLITS["val"] / sum(SPLITS.values())))
    n_test = round(len(ids) * SPLITS["test"] / sum(SPLITS.values()))
    return {
        "train": shuffled[n_val + n_test :],
        "val": shuffled[:n_val],
        "test": shuffled[n_val : n_val + n_test],
    }


def lines(ids: list[str]) -> str:
    return "".join(f"{i}\n" for i in ids)
