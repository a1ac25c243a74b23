"""The SATRN workload: the model, its data and metrics, and whole runs under the contract."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from deepspark_workload import ContractError
from workload_runs import converge, load_module, parameters, spec

NAME = "satrn"
PRESETS = spec(NAME)["configs"]


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_satrn_academic_parameters() -> None:
    """MMOCR's satrn_academic, counted part by part from its modules' shapes."""
    with torch.device("meta"):
        model = load("model").SATRN(**PRESETS["full"]["model"])
    d, i, classes = 512, 2048, 93
    cnn = 3 * 9 * d // 2 + d + d // 2 * 9 * d + 2 * d  # two bias-free convs and their BNs
    adaptive_pe = 2 * 2 * (d * d + d)  # height and width gates: two 1x1 convs each
    attention = 4 * d * d  # q, k, v, out without biases
    laff = d * i + 2 * i + 9 * i + 2 * i + i * d + 2 * d  # 1x1, depthwise 3x3, 1x1, with BNs
    encoder = 12 * (2 * 2 * d + attention + laff) + 2 * d
    decoder = 6 * (3 * 2 * d + 2 * attention + d * i + i + i * d + d) + 2 * d
    head = classes * d + d * classes + classes  # embedding and classifier
    assert parameters(model) == cnn + adaptive_pe + encoder + decoder + head == 65_640_797
    assert parameters(model.cnn) == cnn and parameters(model.encoder) == encoder - 2 * d


def test_full_model_forward_backward_and_decoding() -> None:
    """The full config at batch 1 and the real 32x100 input, on the CPU."""
    model = load("model").SATRN(**PRESETS["full"]["model"])
    images, tokens = torch.randn(1, 3, 32, 100), torch.randint(3, 93, (1, 26))
    logits = model(images, tokens)
    assert logits.shape == (1, 26, 93)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    predicted = model.generate(images)
    assert predicted.shape[0] == 1 and 1 <= predicted.shape[1] <= 25


def mini_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return load("model").SATRN(**PRESETS["mini"]["model"])


def test_every_parameter_gets_a_gradient() -> None:
    """DDP needs every parameter in each step's loss: teacher forcing uses them all."""
    model, data = mini_model(), load("data")
    tokens = data.encode(["ab", "abcdef"], "abcdef", PRESETS["mini"]["model"]["max_len"])
    logits = model(torch.randn(2, 1, 16, 64), tokens[:, :-1])
    F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=0).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_greedy_decoding_matches_teacher_forcing() -> None:
    """Feeding generate's own output back in teacher-forced gives the same argmax."""
    model = mini_model().eval()
    images = torch.randn(3, 1, 16, 64)
    predicted = model.generate(images)
    assert predicted.shape[1] <= PRESETS["mini"]["model"]["max_len"]
    bos = torch.ones(3, 1, dtype=torch.long)
    logits = model(images, torch.cat([bos, predicted[:, :-1]], 1))
    assert torch.equal(logits.argmax(-1), predicted)


def test_encode_decode() -> None:
    data = load("data")
    tokens = data.encode(["ba", "", "abz", "aaaaaaaa"], "ab", max_len=4)
    assert tokens.tolist() == [  # PAD 0, BOS = EOS 1, UNK 2, then "a" 3, "b" 4
        [1, 4, 3, 1, 0],
        [1, 1, 0, 0, 0],
        [1, 3, 4, 2, 1],
        [1, 3, 3, 3, 1],  # cut to max_len - 1 characters, then EOS
    ]
    assert [data.decode(t[1:], "ab") for t in tokens.tolist()] == ["ba", "", "ab\ufffd", "aaa"]
    assert data.decode([4, 0, 3, 1, 4], "ab") == "ba"  # PAD dropped, nothing after EOS


def test_word_accuracy_and_cer() -> None:
    metrics = load("metrics")
    assert metrics.normalise("Hello, World-2!") == "helloworld2"
    # "Cafe!" = "cafe" ignoring case and symbols; "ab" != "abc"; "x.y" = "xy"
    assert metrics.word_hits(["CAFE", "ab", "xy"], ["Cafe!", "abc", "x.y"]) == 2
    # 1 (drop "c") + 3 (insert "xyz") edits over 3 + 3 target characters
    assert metrics.char_errors(["ab", "?"], ["ABC", "x-y-z"]) == (4, 6)


def test_rendered_data_is_fixed_and_held_out() -> None:
    data, charset = load("data"), PRESETS["mini"]["charset"]
    (train, train_texts), (val, val_texts) = data.rendered(charset, (16, 64), 96, 32)
    (again, again_texts), _ = data.rendered(charset, (16, 64), 96, 32)
    assert torch.equal(train, again) and train_texts == again_texts  # not drawn by the seed
    assert train.shape == (96, 1, 16, 64) and val.shape == (32, 1, 16, 64)
    assert train.min() >= -1 and train.max() <= 1
    assert not set(train_texts) & set(val_texts)
    texts = train_texts + val_texts
    assert all(3 <= len(t) <= 6 and set(t) <= set(charset) for t in texts)
    assert {len(t) for t in texts} == {3, 4, 5, 6}
    # the text is in the pixels: ink spans more columns for longer texts
    contrast = (train - train.median(3, keepdim=True).values).abs().amax((1, 2)) > 0.5
    width = [int(np.flatnonzero(c)[-1] - np.flatnonzero(c)[0]) for c in contrast.numpy()]
    short = [w for w, t in zip(width, train_texts, strict=True) if len(t) == 3]
    long = [w for w, t in zip(width, train_texts, strict=True) if len(t) == 6]
    assert np.mean(long) > np.mean(short) + 10


def test_untrained_model_scores_nothing() -> None:
    data, metrics = load("data"), load("metrics")
    charset = PRESETS["mini"]["charset"]
    _, (val, texts) = data.rendered(charset, (16, 64), 1, 64)
    predicted = mini_model().eval().generate(val)
    predictions = [data.decode(ids, charset) for ids in predicted.tolist()]
    assert metrics.word_hits(predictions, texts) == 0


def test_text_lines(tmp_path: Path) -> None:
    data = load("data")
    (tmp_path / "images").mkdir()
    for i, size in enumerate([(120, 40), (50, 20)]):
        Image.new("RGB", size, (255, 0, 128)).save(tmp_path / "images" / f"{i}.png")
    (tmp_path / "labels.txt").write_text("images/0.png\tHello\nimages/1.png\ta b\n")
    lines = data.TextLines(tmp_path, "Haelob", (32, 100), max_len=25)
    assert len(lines) == 2
    x, tokens = lines[0]
    assert x.shape == (3, 32, 100) and x.dtype == torch.float32
    expected = (torch.tensor([255, 0, 128]) / 255 - data.MEAN.flatten()) / data.STD.flatten()
    assert torch.allclose(x.mean((1, 2)), expected, atol=1e-2)
    assert tokens.shape == (26,) and data.decode(tokens[1:].tolist(), "Haelob") == "Hello"
    assert data.decode(lines[1][1][1:].tolist(), "Haelob") == "a\ufffdb"  # space: unknown
    (tmp_path / "labels.txt").write_text("images/0.png Hello\n")
    with pytest.raises(ContractError, match="expected '<image path>"):
        data.TextLines(tmp_path, "Haelob", (32, 100), max_len=25)
    with pytest.raises(ContractError, match="missing"):
        data.TextLines(tmp_path / "val", "Haelob", (32, 100), max_len=25)


def test_presets_match_the_charsets() -> None:
    for preset in PRESETS.values():
        assert preset["model"]["num_classes"] == load("data").SPECIALS + len(preset["charset"])
    assert len(PRESETS["full"]["charset"]) == 90  # MMOCR's english_digits_symbols


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 4096 for m in stops)
    first = next(e["value"] for e in log if e["key"] == "eval_accuracy")
    assert first < 0.2  # learnt during the run, not given
