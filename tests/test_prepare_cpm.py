"""CPM's data converter: CLUECorpusSmall's text files (a miniature generated here) -> a
character vocabulary, train.bin and val.bin, decoded back to the corpus, then trained on."""

import numpy as np
import pytest

from deepspark_workload.prepare import PrepareError
from workload_runs import Counted, convert, load_module, prepare, tiny_preset, train_on

COMMON, RARE = "的一是在不了有和人这中大为上个国", "龘靐齉"


def tiny(vocab_size: int) -> str:
    model = dict(vocab_size=vocab_size, context=16, d_model=16, n_layers=1, n_heads=2, dropout=0.0)
    optim = dict(lr=1e-3, lr_batch=4, beta1=0.9, beta2=0.95, weight_decay=0.0)
    return tiny_preset(
        model,
        optim,
        seq_len=16,
        token_dtype="uint16",
        data="tokens",
        batch_size=4,
        steps_per_window=2,
    )


def clue_corpus(root, documents=40):
    """Two sub-corpora's .txt files, documents of 1-3 lines between blank lines (a line with
    spaces around it, a full-width space inside); returns the documents as converted."""
    rng = np.random.default_rng(0)
    docs = []
    for k in range(documents):
        lines = ["".join(rng.choice(list(COMMON), size=int(rng.integers(5, 30)))) for _ in range(3)]
        lines = lines[: int(rng.integers(1, 4))]
        lines[0] += RARE[k % 3] + "\u3000。"
        docs.append(lines)
    for n, part in enumerate((docs[:25], docs[25:])):
        path = root / f"{'news' if n == 0 else 'wiki'}2019zh_corpus" / f"part{n}.txt"
        path.parent.mkdir(parents=True)
        path.write_text("\n\n".join("\n".join(f"  {line} " for line in d) for d in part) + "\n")
    return ["\n".join(d) for d in docs]


def decode(path, vocab):
    return "".join(vocab[i] for i in np.fromfile(path, "<u2")).split("<eot>")[:-1]


def test_text_converts_to_character_ids_and_trains(tmp_path):
    docs = clue_corpus(tmp_path / "clue")
    data = tmp_path / "data"
    prepare("cpm", tmp_path / "clue", data)
    vocab = load_module("cpm", "prepare").read_vocab(data / "vocab.txt")
    assert vocab[:2] == ["<eot>", "<unk>"] and len(vocab) == 2 + len(set("".join(docs)))
    assert decode(data / "val.bin", vocab) == docs[:1]  # every 1,000th document: the 0th
    assert decode(data / "train.bin", vocab) == docs[1:]
    train_on("cpm", tiny(len(vocab)), data, tmp_path / "run")


def test_past_the_vocabulary_size_the_rarest_characters_are_unknown(tmp_path, monkeypatch):
    docs = clue_corpus(tmp_path / "clue")
    module = load_module("cpm", "prepare")
    monkeypatch.setattr(module, "VOCAB_SIZE", 2 + len(COMMON) + 4)  # + "\n", "\u3000", "。", one
    module.convert(tmp_path / "clue", tmp_path / "data", Counted())
    vocab = module.read_vocab(tmp_path / "data" / "vocab.txt")
    assert len(vocab) == module.VOCAB_SIZE and sum(c in vocab for c in RARE) == 1
    unknown = [d.translate({ord(c): "<unk>" for c in RARE if c not in vocab}) for d in docs]
    assert decode(tmp_path / "data" / "train.bin", vocab) == unknown[1:]


def test_the_vocabulary_file_round_trips_every_character(tmp_path):
    module = load_module("cpm", "prepare")
    vocab = ["<eot>", "<unk>", "\n", "\u3000", "\\", " ", "n", "\u2028", "中", "\U0001f600"]
    (tmp_path / "vocab.txt").write_text(module.vocab_text(vocab), encoding="utf-8")
    assert module.read_vocab(tmp_path / "vocab.txt") == vocab


def test_a_rerun_keeps_the_counted_vocabulary_and_remakes_the_tokens(tmp_path, monkeypatch):
    clue_corpus(tmp_path / "clue")
    convert("cpm", tmp_path / "clue", tmp_path / "data")
    whole = (tmp_path / "data" / "train.bin").read_bytes()
    (tmp_path / "data" / "val.bin").unlink()
    module = load_module("cpm", "prepare")
    monkeypatch.setattr(module, "count_vocab", None)  # counting again would fail
    module.convert(tmp_path / "clue", tmp_path / "data", Counted())
    assert (tmp_path / "data" / "train.bin").read_bytes() == whole
    assert (tmp_path / "data" / "val.bin").is_file()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: [p.unlink() for p in root.rglob("*.txt")], "holds no .txt files"),
        (lambda root: (root / "news2019zh_corpus" / "part0.txt").write_bytes(b"\xff"), "UTF-8"),
    ],
)
def test_a_damaged_source_is_a_one_line_error(tmp_path, damage, message):
    clue_corpus(tmp_path / "clue")
    damage(tmp_path / "clue")
    with pytest.raises(PrepareError, match=message) as caught:
        convert("cpm", tmp_path / "clue", tmp_path / "data")
    assert "\n" not in str(caught.value)
