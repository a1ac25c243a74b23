"""The Tacotron 2 workload: the model, its data and metric, and whole runs under the contract."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepspark_workload import ContractError
from workload_runs import converge, load_module, parameters, preset, spec

NAME = "tacotron2"
PRESETS = spec(NAME)["configs"]
MINI = PRESETS["mini"]


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_tacotron2_parameters() -> None:
    with torch.device("meta"):
        model = load("model").Tacotron2(**PRESETS["full"]["model"])
    assert parameters(model) == 28_193_153
    # Grad-TTS (Popov et al. 2021), Table 1: Tacotron 2 (NVIDIA's implementation), 28.2M
    assert abs(parameters(model) / 28.2e6 - 1) < 0.02


def test_full_model_forward_backward_short_utterance() -> None:
    """The whole full-size model at batch 1 on a short utterance: 20 characters, 100 frames."""
    model = load("model").Tacotron2(**PRESETS["full"]["model"])
    text, mels = torch.randint(1, 148, (1, 20)), torch.randn(1, 80, 100)
    frames, postnet, gate, alignments = model(text, torch.tensor([20]), mels, torch.tensor([100]))
    assert frames.shape == postnet.shape == (1, 80, 100)
    assert gate.shape == (1, 100) and alignments.shape == (1, 100, 20)
    assert torch.allclose(alignments.sum(2), torch.ones(1, 100))
    (frames.sum() + postnet.sum() + gate.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_padding_is_masked() -> None:
    """In a batch with a longer utterance, a short one's padding gets no attention, no encoder
    output (the BiLSTM runs packed), zero frames and a certain stop token."""
    model = load("model").Tacotron2(**MINI["model"]).eval()
    text = torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 0, 0, 0]])
    text_lengths, mel_lengths = torch.tensor([6, 3]), torch.tensor([12, 7])
    with torch.no_grad():
        memory = model.encoder(model.embedding(text).transpose(1, 2), text_lengths)
        frames, postnet, gate, alignments = model(
            text, text_lengths, torch.randn(2, MINI["model"]["n_mel"], 12), mel_lengths
        )
    assert memory[1, 3:].abs().max() == 0 and memory[1, :3].abs().min() > 0
    assert alignments[1, :, 3:].max() == 0
    assert torch.allclose(alignments.sum(2), torch.ones(2, 12))
    assert frames[1, :, 7:].abs().max() == 0 and postnet[1, :, 7:].abs().max() == 0
    assert (gate[1, 7:] == 1e3).all() and (gate[1, :7] < 1e3).all()


def test_mel_squared_error_by_hand() -> None:
    metrics = load("metrics")
    # Utterance 0, 2 real frames of 3: its errors are bin 0 (1-0)^2 + (0-0)^2 = 1 and bin 1
    # (0-0)^2 + (0-2)^2 = 4, over 2 frames x 2 bins; its third frame (error 50) is padding.
    # Utterance 1, 3 real frames, every value 1 off: 6 over 6. Together 11 / 10 = 1.1.
    postnet = torch.tensor([[[1.0, 0, 5], [0, 0, 5]], [[1, 1, 1], [1, 1, 1]]])
    mels = torch.tensor([[[0.0, 0, 0], [0, 2, 0]], [[0, 0, 0], [0, 0, 0]]])
    error, count = metrics.mel_squared_error(postnet, mels, torch.tensor([2, 3]))
    assert (error, count) == (11.0, 10)


def test_loss_and_stop_targets() -> None:
    metrics = load("metrics")
    assert metrics.gate_targets(torch.tensor([2, 3]), 3).tolist() == [[0, 1, 1], [0, 0, 1]]
    mels = torch.randn(2, 4, 3)
    loss = metrics.tacotron2_loss(mels, mels, torch.zeros(2, 3), mels, torch.tensor([2, 3]))
    assert loss.item() == pytest.approx(np.log(2))  # exact frames; stop logits 0: BCE = ln 2


def test_synthetic_speech_is_fixed_and_follows_the_letters() -> None:
    data = load("data")
    torch.manual_seed(0)
    a = data.synthetic(64)
    torch.manual_seed(1)
    b, val = data.synthetic(64), data.synthetic(64, 1)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors(), strict=True))
    sounds, durations = data.letter_sounds()
    assert sounds.shape == (12, MINI["model"]["n_mel"]) and MINI["model"]["n_symbols"] == 13
    assert len({tuple(s.tolist()) for s in sounds}) == 12  # every letter sounds different
    for text, mel in a.items:
        assert 3 <= len(text) <= 8 and text.min() >= 1 and text.max() <= 12
        assert mel.size(1) == durations[text - 1].sum() and mel.min() >= -4
    assert {tuple(t.tolist()) for t, _ in a.items} != {tuple(t.tolist()) for t, _ in val.items}


def test_trivial_predictions_miss_the_mini_target() -> None:
    """Predicting the training set's mean frame, or repeating the previous true frame (what a
    decoder that ignores the text can do best at letter onsets), scores far above target."""
    data = load("data")
    train = data.collate(data.synthetic(MINI["utterances"]).items)
    _, _, mels, lengths = data.collate(data.synthetic(MINI["val_utterances"], 1).items)
    real = torch.arange(mels.size(2)) < lengths[:, None]
    frames = mels.transpose(1, 2)[real]
    train_real = torch.arange(train[2].size(2)) < train[3][:, None]
    mean = train[2].transpose(1, 2)[train_real].mean(0)
    previous = torch.cat([torch.zeros_like(mels[:, :, :1]), mels[:, :, :-1]], 2)
    assert (frames - mean).square().mean() > 10 * MINI["target"]
    assert (frames - previous.transpose(1, 2)[real]).square().mean() > 5 * MINI["target"]


def test_collate_pads_to_the_longest() -> None:
    data = load("data")
    text, text_lengths, mels, mel_lengths = data.collate(
        [(torch.tensor([3, 4]), torch.ones(5, 2)), (torch.tensor([5, 6, 7]), torch.ones(5, 4))]
    )
    assert text.tolist() == [[3, 4, 0], [5, 6, 7]] and text_lengths.tolist() == [2, 3]
    assert mels.shape == (2, 5, 4) and mel_lengths.tolist() == [2, 4]
    assert mels[0, :, 2:].abs().max() == 0 and mels[1].min() == 1


def test_full_speed_batches_have_ljspeech_shapes() -> None:
    data = load("data")
    wl = SimpleNamespace(
        preset=preset(NAME, "full"), converge=False, batch_size=2, device=torch.device("cpu")
    )
    batches, val = data.load(wl)
    text, text_lengths, mels, mel_lengths = next(iter(batches))
    assert val is None and text.shape == (2, 100) and mels.shape == (2, 80, 570)
    assert text_lengths.tolist() == [100, 100] and mel_lengths.tolist() == [570, 570]
    assert text.min() >= 1 and text.max() < 148


def test_ljspeech_layout(tmp_path: Path) -> None:
    data = load("data")
    (tmp_path / "mels").mkdir()
    (tmp_path / "metadata.csv").write_text(
        "LJ001-0001|Hi, Dr. Who!|Hi, Doctor   Who!\nLJ001-0002|In 1884|In eighteen eighty-four\n"
    )
    (tmp_path / "train.txt").write_text("LJ001-0001\nLJ001-0002\n")
    (tmp_path / "val.txt").write_text("LJ001-0003\n")
    for i, frames in ((1, 7), (2, 9)):
        np.save(tmp_path / "mels" / f"LJ001-000{i}.npy", np.zeros((80, frames), np.float16))
    train = data.LJSpeech(tmp_path, "train.txt")
    text, mel = train[0]
    # NVIDIA's ids: h = 38 + 7, i = 46, ',' = 6, ' ' = 11, '!' = 2 (lower case, one space)
    assert text.tolist()[:4] == [45, 46, 6, 11] and text[-1] == 2
    assert "".join(data.SYMBOLS[i] for i in text) == "hi, doctor who!"
    assert mel.shape == (80, 7) and mel.dtype == torch.float32
    assert "".join(data.SYMBOLS[i] for i in train[1][0]) == "in eighteen eighty-four"
    with pytest.raises(ContractError, match="ids without text"):
        data.LJSpeech(tmp_path, "val.txt")
    with pytest.raises(ContractError, match="missing"):
        data.LJSpeech(tmp_path, "test.txt")


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == MINI["utterances"] // 32 * 32 for m in stops)
    evals = [e["value"] for e in log if e["key"] == "eval_accuracy"]
    assert evals[-1] < evals[0] / 5  # the held-out loss falls steeply, not just past the line
