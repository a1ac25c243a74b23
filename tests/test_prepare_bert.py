"""BERT's data converter (deepspark_workload/mlm_text.py, both BERT workloads'): Google's
tokenizer on its own test cases, then MLPerf's text shards (a miniature generated here) ->
vocab.txt, train/*.npy and eval.npy, trained on by the PyTorch and the Paddle workload."""

import numpy as np
import pytest

from deepspark_workload.prepare import PrepareError
from deepspark_workload.wordpiece import WordPiece, ascii_tokens, basic_tokens, unicode_tokens
from workload_runs import convert, prepare, tiny_preset, train_on

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(600)]  # a word per position of the corpus: order is visible


def tiny(vocab_size: int) -> str:
    model = dict(
        vocab_size=vocab_size, hidden=16, layers=1, heads=2, ffn=32, max_positions=512,
        type_vocab_size=2, dropout=0.0,
    )  # fmt: skip
    return tiny_preset(
        model,
        dict(lr=1e-3, lr_batch=4),
        data="wikipedia",
        batch_size=4,
        steps_per_window=2,
        seq_len=512,
        predictions=8,
    )


def test_basic_tokens_as_googles_tokenizer_splits_them():
    words = ["hello", "!", "how", "are", "you", "?"]
    assert basic_tokens(" \tHeLLo!how  \n Are yoU?  ", True) == words
    assert basic_tokens("H\u00e9llo", True) == ["hello"]
    assert basic_tokens("H\u00e9llo", False) == ["H\u00e9llo"]
    assert basic_tokens("ah\u535a\u63a8zz", True) == ["ah", "\u535a", "\u63a8", "zz"]
    assert basic_tokens("a\x00b\ufffdc\u200bd $5", True) == ["abcd", "$", "5"]


def test_the_ascii_fast_path_splits_as_the_unicode_rules():
    rng = np.random.default_rng(0)
    for _ in range(200):
        text = "".join(map(chr, rng.integers(128, size=int(rng.integers(1, 40)))))
        for lower in (True, False):
            assert ascii_tokens(text, lower) == unicode_tokens(text, lower), repr(text)


def test_wordpiece_is_greedy_longest_match_first():
    vocab = ["[UNK]", "[CLS]", "[SEP]", "want", "##want", "##ed", "wa", "un", "runn", "##ing"]
    tokenizer = WordPiece(vocab)
    assert [vocab[i] for i in tokenizer.ids_of("UNwanted,running")] == [
        "un", "##want", "##ed", "[UNK]", "runn", "##ing",
    ]  # fmt: skip
    assert [vocab[i] for i in tokenizer.ids_of("unwantedX running")] == ["[UNK]", "runn", "##ing"]
    assert tokenizer.ids_of("") == []
    with pytest.raises(PrepareError, match=r"lacks \[UNK\]"):
        WordPiece(["a"])


def mlperf_text(root, shards=3, documents=4):
    """vocab.txt, part-0000k-of-00500 shards and eval.txt: documents of 5-word sentences whose
    words run w0, w1, ... across each document, so a sequence shows where its text came from."""
    root.mkdir()
    (root / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + [",", "."]) + "\n")
    rng = np.random.default_rng(0)
    for name in [f"part-{k:05d}-of-00500" for k in range(shards)] + ["eval.txt"]:
        docs = []
        for _ in range(documents):
            start, sentences = int(rng.integers(100)), int(rng.integers(1, 40))
            words = WORDS[start : start + 5 * sentences]
            docs.append(
                "\n".join(" ".join(words[i : i + 5]) + " ." for i in range(0, len(words), 5))
            )
        (root / name).write_text("\n\n".join(docs) + "\n")


def test_shards_convert_to_sentence_pairs_and_both_workloads_train(tmp_path):
    mlperf_text(tmp_path / "text")
    data = tmp_path / "data"
    prepare("bert_large", tmp_path / "text", data)
    vocab = (data / "vocab.txt").read_text().splitlines()
    assert vocab == (tmp_path / "text" / "vocab.txt").read_text().splitlines()
    shards = sorted((data / "train").iterdir())
    assert [s.name for s in shards] == [f"part-{k:05d}-of-00500.npy" for k in range(3)]
    rows = np.concatenate([np.load(s) for s in shards] + [np.load(data / "eval.npy")])
    assert rows.dtype == np.uint16 and rows.shape[1] == 512 and len(rows) > 12
    pad, cls, sep = (vocab.index(t) for t in ("[PAD]", "[CLS]", "[SEP]"))
    for row in rows:
        length = int((row != pad).sum())
        assert row[0] == cls and row[length - 1] == sep and (row[length:] == pad).all()
        (middle,) = np.flatnonzero(row[1 : length - 1] == sep) + 1  # "[CLS] A [SEP] B [SEP]"
        for segment in (row[1:middle], row[middle + 1 : length - 1]):
            words = [int(vocab[i][1:]) for i in segment if vocab[i].startswith("w")]
            assert len(segment) and words == list(range(words[0], words[0] + len(words)))
    for workload in ("bert_large", "bert_large_paddle"):
        train_on(workload, tiny(len(vocab)), data, tmp_path / workload)


def test_a_rerun_remakes_only_the_missing_shard_the_same(tmp_path):
    mlperf_text(tmp_path / "text", shards=2, documents=2)
    convert("bert_large_paddle", tmp_path / "text", tmp_path / "data")
    kept, lost = (tmp_path / "data" / "train" / f"part-0000{k}-of-00500.npy" for k in (0, 1))
    before, whole = kept.stat().st_mtime_ns, lost.read_bytes()
    lost.unlink()
    convert("bert_large_paddle", tmp_path / "text", tmp_path / "data")
    assert kept.stat().st_mtime_ns == before and lost.read_bytes() == whole


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "eval.txt").unlink(), "eval.txt is missing"),
        (lambda root: [p.unlink() for p in root.glob("part-*")], "no part-XXXXX-of-00500"),
        (lambda root: (root / "vocab.txt").write_text("[PAD]\n[UNK]\n"), "lacks .CLS.*MASK"),
        (lambda root: (root / "part-00001-of-00500").write_bytes(b"caf\xe9\n"), "not UTF-8"),
    ],
)
def test_a_damaged_source_is_a_one_line_error(tmp_path, damage, message):
    mlperf_text(tmp_path / "text", shards=2, documents=2)
    damage(tmp_path / "text")
    with pytest.raises(PrepareError, match=message) as caught:
        convert("bert_large", tmp_path / "text", tmp_path / "data")
    assert "\n" not in str(caught.value)
