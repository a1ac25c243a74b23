"""The Conformer workload: the model, its data, its metric, and whole runs under the contract."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepspark_workload import ContractError
from workload_runs import converge, load_module, parameters, preset, spec

NAME = "conformer"
PRESETS = spec(NAME)["configs"]
# Conformer-M is 30.7M parameters with its RNN-T decoder (Gulati et al. 2020, Table 1); less
# the decoder's one LSTM layer of 640 units (4 gates x 640 x (640 + 640 + 2 biases)):
REFERENCE = 30.7e6 - 4 * 640 * (640 + 640 + 2)


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_conformer_m_parameters() -> None:
    with torch.device("meta"):
        model = load("model").Conformer(**PRESETS["full"]["model"])
    n = parameters(model)
    assert abs(n - REFERENCE) / REFERENCE < 0.02  # 27.42M; ours is 0.5% below
    # subsampling 1,838,080 + 16 blocks x 1,588,992 + CTC head 7,453 (README)
    assert n == 27_269_405


def test_full_model_forward_backward_400_frames() -> None:
    """The whole full config (Conformer-M, 80 mels) at batch 1 on 4 s of features."""
    model = load("model").Conformer(**PRESETS["full"]["model"])
    logits, frames = model(torch.randn(1, 400, 80), torch.tensor([400]))
    assert logits.shape == (1, 99, 29) and frames.tolist() == [99]  # ((400 - 1) // 2 - 1) // 2
    logits.logsumexp(-1).sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()] == []


def test_rel_shift_aligns_scores_to_distances() -> None:
    """Column k of the unshifted scores is the distance t-1-k; after the shift, entry (i, j)
    must hold the score for distance i - j."""
    t = 5
    distances = torch.arange(t - 1, -t, -1.0).expand(2, 3, t, -1)  # (batch, heads, t, 2t-1)
    shifted = load("model").rel_shift(distances)
    i, j = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    assert shifted.shape == (2, 3, t, t) and torch.equal(shifted[1, 2], (i - j).float())


def test_padding_does_not_change_an_utterance() -> None:
    """In eval mode an utterance's logits are the same alone or padded beside a longer one:
    attention, the depthwise convolution and subsampling all ignore the padding."""
    torch.manual_seed(0)
    model = load("model").Conformer(**PRESETS["mini"]["model"]).eval()
    short, long = torch.randn(1, 37, 40), torch.randn(1, 60, 40)
    batch = torch.cat([torch.cat([short, torch.full((1, 23, 40), 5.0)], 1), long])
    with torch.no_grad():
        alone, n = model(short, torch.tensor([37]))
        padded, frames = model(batch, torch.tensor([37, 60]))
    assert frames.tolist() == [n.item(), 14] and padded.shape[1] == 14
    assert torch.allclose(padded[0, : n.item()], alone[0], atol=1e-5)


def test_greedy_decode_and_char_errors() -> None:
    metrics = load("metrics")
    paths = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0], [3, 3, 0, 0, 4, 4, 4, 4]])
    logits = torch.nn.functional.one_hot(paths, 5).float()
    # utterance 0: 0 1 1 0 1 2 2 -> collapse 0 1 0 1 2 -> drop blanks 1 1 2 (repeat kept,
    # split by a blank); utterance 1, 3 valid frames: 3 3 0 -> 3
    hyps = metrics.greedy_decode(logits, torch.tensor([7, 3]))
    assert hyps == [[1, 1, 2], [3]]
    # against [1, 2] (one insertion) and [3, 4] (one deletion): 2 errors in 4 characters
    assert metrics.char_errors(hyps, [[1, 2], [3, 4]]) == (2, 4)


def test_synthetic_speech_is_fixed_and_transcribable() -> None:
    data, mini = load("data"), PRESETS["mini"]
    letters, mels = mini["letters"], mini["model"]["in_features"]
    x, frames, y, counts = data.synthesize(300, letters, mels).tensors
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            data.synthesize(300, letters, mels).tensors, (x, frames, y, counts), strict=True
        )
    )
    assert x.shape == (300, int(frames.max()), mels) and torch.isfinite(x).all()
    assert counts.min() == 3 and counts.max() == 7 and y.max() == letters and y.min() == 0
    for row, n in zip(y, counts, strict=True):
        text = row[:n]
        assert (text > 0).all() and (text[1:] != text[:-1]).all()  # no letter twice in a row
        assert (row[n:] == 0).all()
    # CTC needs an output frame per letter, after the 4x subsampling
    assert (((frames - 1) // 2 - 1) // 2 >= counts).all()
    # a pair of formants per letter, every pair unique, every single formant shared
    formants = data.letter_formants(letters, mels)
    assert len({tuple(f) for f in formants}) == letters
    assert len(set(formants[:, 0])) < letters and len(set(formants[:, 1])) < letters


def test_untrained_model_is_far_from_target() -> None:
    data, metrics, mini = load("data"), load("metrics"), PRESETS["mini"]
    x, frames, y, counts = data.synthesize(
        200, mini["letters"], mini["model"]["in_features"]
    ).tensors
    torch.manual_seed(1)
    model = load("model").Conformer(**mini["model"]).eval()
    with torch.no_grad():
        logits, out_frames = model(x, frames)
    refs = [row[:n].tolist() for row, n in zip(y, counts.tolist(), strict=True)]
    errors, chars = metrics.char_errors(metrics.greedy_decode(logits, out_frames), refs)
    assert errors / chars > 0.8 > 3 * mini["target"]


def test_librispeech_features(tmp_path: Path) -> None:
    data = load("data")
    for split, utterance, frames in (("train", "19-198-0001", 30), ("dev", "84-121123-0000", 20)):
        (tmp_path / split).mkdir()
        features = np.random.default_rng(0).normal(3.0, 2.0, (frames, 80)).astype(np.float16)
        np.save(tmp_path / split / f"{utterance}.npy", features)
    (tmp_path / "transcripts.tsv").write_text(
        "train/19-198-0001\tNORTHANGER ABBEY\ndev/84-121123-0000\tGO DO YOU HEAR\n"
    )
    transcripts = data.read_transcripts(tmp_path / "transcripts.tsv")
    train = data.LibriSpeech(tmp_path, "train", transcripts, 80)
    x, labels = train[0]
    assert x.shape == (30, 80) and x.dtype == torch.float32
    assert torch.allclose(x.mean(0), torch.zeros(80), atol=1e-4)  # normalised per mel bin
    assert "".join(data.CHARACTERS[i] for i in labels) == "northanger abbey"
    batch = data.collate([train[0], data.LibriSpeech(tmp_path, "dev", transcripts, 80)[0]])
    assert [t.shape for t in batch] == [(2, 30, 80), (2,), (2, 16), (2,)]
    assert batch[1].tolist() == [30, 20] and batch[3].tolist() == [16, 14]
    with pytest.raises(ContractError, match="shape"):
        data.LibriSpeech(tmp_path, "train", transcripts, 40)[0]
    with pytest.raises(ContractError, match="lacks dev/84-121123-0000"):
        data.LibriSpeech(tmp_path, "dev", {}, 80)
    with pytest.raises(ContractError, match="outside"):
        data.encode("NUMBER 9")
    (tmp_path / "transcripts.tsv").write_text("train/19-198-0001 no tab\n")
    with pytest.raises(ContractError, match=r"transcripts\.tsv:1"):
        data.read_transcripts(tmp_path / "transcripts.tsv")


def test_full_speed_batches_fit_ctc() -> None:
    """Speed mode's synthetic batch has the full config's shapes, and its transcripts fit the
    4x-subsampled frames with room for CTC's blanks between repeated letters."""
    full = PRESETS["full"]
    wl = SimpleNamespace(
        preset=preset(NAME, "full"), batch_size=2, device=torch.device("cpu"), reads_data=False
    )
    batches, val = load("data").load(wl)
    x, frames, y, counts = next(batches)
    assert val is None and x.shape == (2, full["frames"], 80) and frames.tolist() == [1600] * 2
    assert y.shape == (2, full["label_length"]) and counts.tolist() == [240] * 2
    assert y.min() > 0 and y.max() < full["model"]["vocab_size"]  # never the blank
    assert (((frames - 1) // 2 - 1) // 2 >= 1.5 * counts).all()


def test_spec_augment_masks_within_bounds() -> None:
    spec_augment = load("data").spec_augment
    torch.manual_seed(0)
    x, frames = torch.ones(64, 100, 80), torch.tensor([100, 40] * 32)
    assert torch.equal(spec_augment(x, frames, 0, 27, 0, 0.05), x)
    bands = spec_augment(x, frames, 1, 27, 0, 0.05)
    masked_bins = (bands == 0).all(1).sum(1)  # a band: whole mel bins over every frame
    assert masked_bins.max() <= 27 and masked_bins.float().mean() > 5
    spans = spec_augment(x, frames, 0, 27, 1, 0.05)
    masked_frames = (spans == 0).all(2).sum(1)
    assert (masked_frames <= (0.05 * frames).long()).all() and masked_frames[0::2].max() > 0


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 1024 // 32 * 32 for m in stops)
