"""Data for the BERT-large workload: token sequences, masked the way BERT masks them.

mini: a small English-like language made here from a fixed seed. Each sequence is an active
sentence and its passive, "[CLS] the old cat sees some red dogs [SEP] some red dogs are seen
by the old cat [SEP]": words are copied across the two sentences in another order, and verbs
and auxiliaries agree in number with their nouns, so context determines most masked words.

full, converge: MLPerf BERT's Wikipedia sequences, pre-tokenized, under $DS_DATA_DIR:

    vocab.txt      the WordPiece vocabulary, one token a line, line i is id i (bert-large-uncased:
                   30,522 lines, with [PAD], [CLS], [SEP] and [MASK] among them)
    train/*.npy    integer arrays (N, 512): "[CLS] A [SEP] B [SEP]", then [PAD] to the end
    eval.npy       the same layout, the held-out sequences (MLPerf's 10,000)
    SHA256SUMS     the manifest of every other file (deepspark_workload/datasets.py)

The sequences are stored unmasked (MLPerf's eval set with its masked positions filled back):
training masks them afresh every epoch; the eval set is masked once, by a fixed generator.
full, speed: one synthetic batch of the real shapes, made once on the device.
"""

import itertools
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

from deepspark_workload import ContractError, Workload

MASK_RATE = 0.15  # of each sequence's tokens, [CLS] and [SEP] counted, as BERT counts them
IGNORE = -100  # the label of a prediction slot left unused (F.cross_entropy's ignore_index)
EVAL_MASKING_SEED = 0  # the eval set's masking is fixed, never drawn by the run's seed

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]


class Vocab(NamedTuple):
    size: int
    pad: int
    cls: int
    sep: int
    mask: int

    @classmethod
    def of(cls, words: list[str]) -> "Vocab":
        ids = {w: i for i, w in enumerate(words)}
        missing = [w for w in ("[PAD]", "[CLS]", "[SEP]", "[MASK]") if w not in ids]
        if missing:
            raise ContractError(f"the vocabulary lacks {', '.join(missing)}")
        return cls(len(words), ids["[PAD]"], ids["[CLS]"], ids["[SEP]"], ids["[MASK]"])


def load(wl: Workload) -> tuple[DataLoader | itertools.repeat, DataLoader | None]:
    """Training batches for wl.windows(), and the eval loader (None when not needed).

    A batch is (input ids, segment ids, padding or None, predicted positions, labels).
    """
    model, seq_len, predictions = wl.preset["model"], wl.preset["seq_len"], wl.preset["predictions"]
    if wl.preset["data"] == "grammar":
        vocab, train, val = grammar_splits(wl.preset["train_size"], wl.preset["eval_size"], seq_len)
        wl.log_generated_data("passive grammar", train, val)
        return masked_loaders(wl, vocab, model["vocab_size"], train, val, predictions)
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        b, v = wl.batch_size, model["vocab_size"]
        ids = torch.randint(1000, v, (b, seq_len), device=wl.device)  # past the special tokens
        types = (torch.arange(seq_len, device=wl.device) >= seq_len // 2).long().expand(b, -1)
        positions = torch.rand(b, seq_len, device=wl.device).argsort(1)[:, :predictions]
        labels = torch.randint(1000, v, (b, predictions), device=wl.device)
        return itertools.repeat((ids, types, None, positions, labels)), None
    root = wl.data_dir()
    vocab = Vocab.of((root / "vocab.txt").read_text().splitlines())
    train = Shards(sorted((root / "train").glob("*.npy")), seq_len)
    val = torch.from_numpy(np.load(root / "eval.npy").astype(np.int64))
    check_sequences(val, seq_len, root / "eval.npy")
    per_rank = len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    kwargs = dict(
        num_workers=max(1, min(8, per_rank - 1)),
        pin_memory=wl.device.type == "cuda",
        persistent_workers=True,  # no worker start-up inside every epoch's window
    )
    return masked_loaders(wl, vocab, model["vocab_size"], train, val, predictions, **kwargs)


def masked_loaders(
    wl: Workload,
    vocab: Vocab,
    vocab_size: int,
    train: Dataset,
    val: torch.Tensor,
    predictions: int,
    **kwargs,
) -> tuple[DataLoader, DataLoader]:
    """Train: masked afresh at every batch (dynamic masking). Eval: masked once, fixed."""
    if vocab.size != vocab_size:
        raise ContractError(f"the vocabulary has {vocab.size} tokens, the model {vocab_size}")
    fixed = torch.Generator().manual_seed(EVAL_MASKING_SEED)
    val_set = TensorDataset(*mask_tokens(val, vocab, predictions, fixed))
    return (
        wl.loader(train, train=True, collate_fn=Masking(vocab, predictions), **kwargs),
        wl.loader(val_set, train=False, collate_fn=collate_masked, **kwargs),
    )


def mask_tokens(
    ids: torch.Tensor, vocab: Vocab, predictions: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's masked-LM example for each row of ids (B, T), as create_pretraining_data.py makes it.

    Selects round(15% of the row's tokens) positions (at least 1, at most `predictions`) among
    those not [CLS], [SEP] or [PAD]; of those 80% become [MASK], 10% a random token, 10% stay.
    Returns the inputs, segment ids (0 up to the first [SEP], 1 after), padding (True at [PAD]),
    positions (B, predictions) and labels (the original ids there; IGNORE in unused slots).
    """
    padding = ids == vocab.pad
    sep = ids == vocab.sep
    candidates = ~(padding | sep | (ids == vocab.cls))
    count = ((~padding).sum(1) * MASK_RATE).round().clamp(1, predictions)
    count = torch.minimum(count, candidates.sum(1))
    scores = torch.rand(ids.shape, generator=generator).masked_fill(~candidates, 2.0)
    positions = scores.argsort(1)[:, :predictions]  # a random order of candidates, the rest last
    selected = torch.arange(predictions) < count[:, None]
    originals = ids.gather(1, positions)
    draw = torch.rand(positions.shape, generator=generator)
    randoms = torch.randint(vocab.size, positions.shape, generator=generator)
    new = torch.where(draw < 0.8, vocab.mask, torch.where(draw < 0.9, randoms, originals))
    inputs = ids.scatter(1, positions, torch.where(selected, new, originals))
    types = ((sep.cumsum(1) - sep.long()).clamp(max=1)).masked_fill(padding, 0)
    return inputs, types, padding, positions, originals.masked_fill(~selected, IGNORE)


def as_batch(
    inputs: torch.Tensor,
    types: torch.Tensor,
    padding: torch.Tensor,
    positions: torch.Tensor,
    labels: torch.Tensor,
) -> Batch:
    """The model's inputs and the labels; padding None when no row is padded."""
    return inputs, types, padding if padding.any() else None, positions, labels


def collate_masked(samples: list[tuple[torch.Tensor, ...]]) -> Batch:
    """A collate_fn for examples masked ahead (the eval set)."""
    return as_batch(*default_collate(samples))


class Masking:
    """A collate_fn: stack rows of token ids, mask them with the global (seeded) generator."""

    def __init__(self, vocab: Vocab, predictions: int) -> None:
        self.vocab, self.predictions = vocab, predictions

    def __call__(self, rows: list[torch.Tensor]) -> Batch:
        return as_batch(*mask_tokens(torch.stack(rows), self.vocab, self.predictions))


def check_sequences(ids: torch.Tensor | np.ndarray, seq_len: int, path: Path) -> None:
    if ids.ndim != 2 or ids.shape[1] != seq_len:
        raise ContractError(f"{path} has shape {tuple(ids.shape)}, expected (N, {seq_len})")


class Shards(Dataset):
    """The rows of several (N, seq_len) .npy files, memory-mapped, as one dataset."""

    def __init__(self, files: list[Path], seq_len: int) -> None:
        if not files:
            raise ContractError("train/ holds no .npy files: expected train/*.npy of (N, seq_len)")
        self.arrays = [np.load(f, mmap_mode="r") for f in files]
        for f, a in zip(files, self.arrays, strict=True):
            check_sequences(a, seq_len, f)
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> torch.Tensor:
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        return torch.from_numpy(self.arrays[shard][i - self.starts[shard]].astype(np.int64))


SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]
DETERMINERS = (["a", "this", "that", "every", "the"], ["these", "those", "some", "many", "the"])
ADJECTIVES = ["red", "big", "old", "small", "green", "happy", "quiet", "tall", "dark", "young"]
ADJECTIVES += ["bright", "cold"]
SINGULARS = ["cat", "dog", "bird", "fox", "horse", "girl", "boy", "king", "queen", "farmer"]
SINGULARS += ["doctor", "teacher", "frog", "owl", "bear", "duck"]
NOUNS = [(w, w + "s") for w in SINGULARS]  # singular, plural
VERBS = [  # third person singular, plural, past participle
    ("sees", "see", "seen"),
    ("takes", "take", "taken"),
    ("knows", "know", "known"),
    ("eats", "eat", "eaten"),
    ("hides", "hide", "hidden"),
    ("bites", "bite", "bitten"),
    ("draws", "draw", "drawn"),
    ("throws", "throw", "thrown"),
    ("chooses", "choose", "chosen"),
    ("finds", "find", "found"),
    ("holds", "hold", "held"),
    ("feeds", "feed", "fed"),
]
WORDS = list(
    dict.fromkeys(
        SPECIALS
        + [d for ds in DETERMINERS for d in ds]
        + ADJECTIVES
        + [w for n in NOUNS for w in n]
        + [w for v in VERBS for w in v]
        + ["is", "are", "by"]
    )
)
GRAMMAR_SEED = 20190524  # fixed: every run trains and evaluates on the same sequences


def grammar(
    n: int, seq_len: int, rng: np.random.Generator, max_adjectives: int = 2
) -> torch.Tensor:
    """n sequences "[CLS] <active sentence> [SEP] <its passive> [SEP]", [PAD] to seq_len.

    Active: NP1 verb NP2, the verb agreeing with NP1's number. Passive: NP2 is/are <participle>
    by NP1, the auxiliary agreeing with NP2. A noun phrase is a determiner of its number, up to
    max_adjectives adjectives and a noun, all drawn uniformly; the passive repeats both phrases.
    """
    ids = {w: i for i, w in enumerate(WORDS)}
    out = torch.zeros(n, seq_len, dtype=torch.long)
    for row in range(n):
        (n1, np1), (n2, np2) = phrase(rng, max_adjectives), phrase(rng, max_adjectives)
        verb = VERBS[rng.integers(len(VERBS))]
        active = [*np1, verb[n1], *np2]
        passive = [*np2, ("is", "are")[n2], verb[2], "by", *np1]
        words = ["[CLS]", *active, "[SEP]", *passive, "[SEP]"]
        out[row, : len(words)] = torch.tensor([ids[w] for w in words])
    return out


def phrase(rng: np.random.Generator, max_adjectives: int) -> tuple[int, list[str]]:
    """A noun phrase and its number (0 singular, 1 plural)."""
    number = int(rng.integers(2))
    count = rng.integers(max_adjectives + 1)
    adjectives = [ADJECTIVES[i] for i in rng.integers(len(ADJECTIVES), size=count)]
    det = DETERMINERS[number][rng.integers(len(DETERMINERS[number]))]
    return number, [det, *adjectives, NOUNS[rng.integers(len(NOUNS))][number]]


def grammar_splits(
    train_size: int, eval_size: int, seq_len: int
) -> tuple[Vocab, torch.Tensor, torch.Tensor]:
    """The vocabulary, and the training and eval sequences (disjoint draws of one stream)."""
    rng = np.random.default_rng(GRAMMAR_SEED)
    ids = grammar(train_size + eval_size, seq_len, rng)
    return Vocab.of(WORDS), ids[:train_size], ids[train_size:]
