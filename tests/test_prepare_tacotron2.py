"""tacotron2/prepare.py: a miniature of LJSpeech 1.1's official layout -> mels it trains on."""

import wave
from pathlib import Path

import numpy as np

from workload_runs import (
    load_module,
    prepare,
    prepare_fails,
    prepare_resumes,
    spec,
    tiny_preset,
    train_on,
)

prep = load_module("tacotron2", "prepare")
TINY = tiny_preset(
    data="ljspeech", target=100.0,
    model=dict(
        n_symbols=148, embedding_dim=16, encoder_convs=1, encoder_kernel=3, n_mel=80,
        prenet_dim=16, rnn_dim=16, attention_dim=8, location_filters=2, location_kernel=3,
        postnet_convs=2, postnet_dim=16, postnet_kernel=3, p_attention_dropout=0.0,
        p_decoder_dropout=0.0,
    ),
    optim=dict(lr=1e-3, eps=1e-6, anneal_at=[], anneal_factor=0.1),
)  # fmt: skip


def write_wav(path: Path, pcm: np.ndarray, rate: int = 22050, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def ljspeech(src: Path, n: int = 8) -> dict[str, np.ndarray]:
    """LJSpeech-1.1/ with n short clips; {id: 16-bit samples}."""
    root, rng, clips, rows = src / "LJSpeech-1.1", np.random.default_rng(0), {}, []
    (root / "wavs").mkdir(parents=True)
    for i in range(n):
        id_ = f"LJ001-{i + 1:04d}"
        t = np.arange(int(22050 * rng.uniform(0.3, 0.5))) / 22050
        clips[id_] = (8000 * np.sin(2 * np.pi * rng.uniform(150, 400) * t)).astype(np.int16)
        write_wav(root / "wavs" / f"{id_}.wav", clips[id_])
        rows.append(f"{id_}|Printing, in {i + 1}st place|Printing, in {i + 1}st place\n")
    (root / "metadata.csv").write_text("".join(rows), encoding="utf-8")
    return clips


def test_ljspeech_becomes_nvidias_mels_the_full_model_trains_on(tmp_path: Path) -> None:
    clips = ljspeech(tmp_path / "src")
    data = tmp_path / "data"
    assert prepare("tacotron2", tmp_path / "src", data).expected == 8
    source = tmp_path / "src" / "LJSpeech-1.1" / "metadata.csv"
    assert (data / "metadata.csv").read_bytes() == source.read_bytes()
    mel = np.load(data / "mels" / "LJ001-0003.npy")
    samples = clips["LJ001-0003"]
    assert mel.dtype == np.float32 and mel.shape == (80, 1 + len(samples) // 256)
    np.testing.assert_array_equal(mel, prep.MEL(samples / 32768.0))
    assert prep.MEL.n_mels == spec("tacotron2")["configs"]["full"]["model"]["n_mel"]
    split = {name: (data / f"{name}.txt").read_text().split() for name in prep.SPLITS}
    assert sorted(i for ids in split.values() for i in ids) == sorted(clips)  # one split each
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (7, 1, 0)
    train_on("tacotron2", TINY, data, tmp_path / "run")
    # the same source splits the same way
    prepare("tacotron2", tmp_path / "src", tmp_path / "again")
    assert (tmp_path / "again" / "val.txt").read_text() == (data / "val.txt").read_text()


def test_nvidias_filelists_give_their_split(tmp_path: Path) -> None:
    ljspeech(tmp_path / "src")
    lists = tmp_path / "src" / "filelists"
    lists.mkdir()
    chosen = {"train": [1, 2, 3, 4, 5], "val": [6], "test": [7, 8]}
    for name, numbers in chosen.items():
        rows = [f"DUMMY/LJ001-{k:04d}.wav|Printing.\n" for k in numbers]
        (lists / f"ljs_audio_text_{name}_filelist.txt").write_text("".join(rows))
    prepare("tacotron2", tmp_path / "src", tmp_path / "data")
    for name, numbers in chosen.items():
        ids = (tmp_path / "data" / f"{name}.txt").read_text().split()
        assert ids == [f"LJ001-{k:04d}" for k in numbers]


def test_a_second_run_redoes_only_what_is_missing(tmp_path: Path) -> None:
    ljspeech(tmp_path / "src")
    prepare_resumes(
        "tacotron2",
        tmp_path / "src",
        tmp_path / "data",
        "mels/LJ001-0001.npy",
        "mels/LJ001-0005.npy",
    )


def test_bad_sources_say_what_is_missing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    root = src / "LJSpeech-1.1"

    def fails(match: str) -> None:
        prepare_fails("tacotron2", src, match)

    fails("metadata.csv is missing: expected LJSpeech-1.1/metadata.csv and wavs/")
    ljspeech(src, n=3)
    write_wav(root / "wavs" / "LJ001-0002.wav", np.zeros(100), rate=16000)
    fails(r"LJ001-0002.wav: 16000 Hz, 1 channels, 16-bit; expected 22050 Hz mono 16-bit")
    (root / "wavs" / "LJ001-0002.wav").write_bytes(b"RIFF")
    fails(r"LJ001-0002.wav: not a PCM WAV file")
    (root / "wavs" / "LJ001-0002.wav").unlink()
    fails(r"LJ001-0002.wav is missing: metadata.csv lists it")
    (root / "metadata.csv").write_text("LJ001-0001|only two fields\n")
    fails(r"metadata.csv:1: expected '<id>\|<text>\|<normalized text>'")
