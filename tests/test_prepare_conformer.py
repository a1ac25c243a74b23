"""conformer/prepare.py: a miniature of LibriSpeech's official layout -> features it trains on."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from workload_runs import (
    load_module,
    prepare,
    prepare_fails,
    prepare_resumes,
    spec,
    tiny_preset,
    train_on,
)

prep = load_module("conformer", "prepare")
TINY = tiny_preset(
    data="librispeech", target=0.99,
    model=dict(in_features=80, dim=16, layers=1, heads=2, ffn=32, kernel=3, vocab_size=29,
               dropout=0.0),
    optim=dict(lr=1e-3),
)  # fmt: skip
TEXTS = ["HELLO WORLD", "IT'S A TEST", "ONE TWO"]


def librispeech(root: Path) -> dict[str, np.ndarray]:
    """Every subset the converter reads, one chapter of TEXTS each; {utterance id: signal}."""
    rng, signals = np.random.default_rng(0), {}
    for speaker, subset in enumerate(prep.SUBSETS, 100):
        chapter = root / "LibriSpeech" / subset / str(speaker) / "7"
        chapter.mkdir(parents=True)
        lines = []
        for i, text in enumerate(TEXTS):
            uid = f"{speaker}-7-{i:04d}"
            t = np.arange(int(16000 * rng.uniform(0.6, 1.0))) / 16000
            signal = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t) * np.hanning(len(t))
            soundfile.write(chapter / f"{uid}.flac", signal, 16000, format="FLAC")
            signals[uid] = soundfile.read(chapter / f"{uid}.flac", dtype="float32")[0]
            lines.append(f"{uid} {text}\n")
        (chapter / f"{speaker}-7.trans.txt").write_text("".join(lines))
    return signals


def test_librispeech_becomes_log_mel_features_the_full_model_trains_on(tmp_path: Path) -> None:
    signals = librispeech(tmp_path / "src")
    progress = prepare("conformer", tmp_path / "src", tmp_path / "data")
    assert progress.expected == 12
    data = tmp_path / "data"
    transcripts = (data / "transcripts.tsv").read_text().splitlines()
    assert len(transcripts) == 12 and "dev/103-7-0001\tIT'S A TEST" in transcripts
    assert len(list((data / "train").glob("*.npy"))) == 9
    assert sorted(p.stem for p in (data / "dev").glob("*.npy")) == [
        f"103-7-000{i}" for i in range(3)
    ]
    features = np.load(data / "dev" / "103-7-0000.npy")
    signal = signals["103-7-0000"]
    assert features.dtype == np.float16 and features.shape == (1 + len(signal) // 160, 80)
    np.testing.assert_array_equal(features, prep.FEATURES(signal).T.astype(np.float16))
    assert prep.FEATURES.n_mels == spec("conformer")["configs"]["full"]["model"]["in_features"]
    train_on("conformer", TINY, data, tmp_path / "run")


def test_a_second_run_redoes_only_what_is_missing(tmp_path: Path) -> None:
    librispeech(tmp_path / "src")
    prepare_resumes(
        "conformer",
        tmp_path / "src",
        tmp_path / "data",
        "train/100-7-0000.npy",
        "dev/103-7-0002.npy",
    )


def test_bad_sources_say_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    librispeech(src)
    chapter = src / "LibriSpeech" / "dev-clean" / "103" / "7"
    (chapter / "103-7-0001.flac").unlink()
    prepare_fails(
        "conformer", src, r"103-7-0001.flac is missing: its chapter's transcript lists it"
    )
    (chapter / "103-7-0001.flac").write_bytes(b"not flac")
    prepare_fails("conformer", src, r"103-7-0001.flac: ")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "soundfile", None)  # as if not installed
        prepare_fails("conformer", src, "LibriSpeech's FLAC needs soundfile: pip install soundfile")
    (chapter / "103-7.trans.txt").write_text("103-7-0000\n")
    prepare_fails("conformer", src, r"103-7.trans.txt:1: expected '<utterance id> <TRANSCRIPT>'")
    shutil.rmtree(src / "LibriSpeech" / "train-other-500")
    prepare_fails("conformer", src, "train-other-500 is missing: expected LibriSpeech/<subset>/")
