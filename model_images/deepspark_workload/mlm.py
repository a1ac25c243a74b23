"""Masked-language-model data as numpy arrays, for a BERT in any framework.

BERT's masking (Google's create_pretraining_data.py), the memory-mapped token shards of the
full config, and the mini config's generated language: each sequence is an active sentence and
its passive, "[CLS] the old cat sees some red dogs [SEP] some red dogs are seen by the old cat
[SEP]": words are copied across the two sentences in another order, and verbs and auxiliaries
agree in number with their nouns, so context determines most masked words. A framework wraps
the arrays in its own tensors and loaders (the BERT workloads' data.py).
"""

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .env import ContractError

MASK_RATE = 0.15  # of each sequence's tokens, [CLS] and [SEP] counted, as BERT counts them
IGNORE = -100  # the label of a prediction slot left unused (cross-entropy's ignore_index)
EVAL_MASKING_SEED = 0  # the eval set's masking is fixed, never drawn by the run's seed

# inputs, segment ids, padding (True at [PAD]), predicted positions, labels
Masked = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


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


def mask_tokens(
    ids: np.ndarray, vocab: Vocab, predictions: int, rng: np.random.Generator
) -> Masked:
    """BERT's masked-LM example for each row of ids (B, T), as create_pretraining_data.py makes it.

    Selects round(15% of the row's tokens) positions (at least 1, at most `predictions`) among
    those not [CLS], [SEP] or [PAD]; of those 80% become [MASK], 10% a random token, 10% stay.
    Returns the inputs, segment ids (0 up to the first [SEP], 1 after), padding (True at [PAD]),
    positions (B, predictions) and labels (the original ids there; IGNORE in unused slots),
    all int64 but padding (bool).
    """
    ids = np.asarray(ids, dtype=np.int64)
    padding = ids == vocab.pad
    sep = ids == vocab.sep
    candidates = ~(padding | sep | (ids == vocab.cls))
    count = np.clip(np.round((~padding).sum(1) * MASK_RATE), 1, predictions).astype(np.int64)
    count = np.minimum(count, candidates.sum(1))
    scores = np.where(candidates, rng.random(ids.shape), 2.0)
    positions = scores.argsort(1)[:, :predictions]  # a random order of candidates, the rest last
    selected = np.arange(predictions) < count[:, None]
    originals = np.take_along_axis(ids, positions, 1)
    draw = rng.random(positions.shape)
    randoms = rng.integers(vocab.size, size=positions.shape)
    new = np.where(draw < 0.8, vocab.mask, np.where(draw < 0.9, randoms, originals))
    inputs = ids.copy()
    np.put_along_axis(inputs, positions, np.where(selected, new, originals), 1)
    types = np.minimum(sep.cumsum(1) - sep, 1)
    types[padding] = 0
    return inputs, types, padding, positions, np.where(selected, originals, IGNORE)


class Masking:
    """A collate_fn core: stack rows of token ids and mask them afresh (dynamic masking).

    Each batch draws its generator from numpy's global state: seed_everything seeds it with the
    run's seed, and torch's and paddle's DataLoader workers each reseed it per worker, so runs
    repeat and workers differ."""

    def __init__(self, vocab: Vocab, predictions: int) -> None:
        self.vocab, self.predictions = vocab, predictions

    def __call__(self, rows: list) -> Masked:
        rng = np.random.default_rng(np.random.randint(2**32, size=4))
        ids = np.stack([np.asarray(r) for r in rows])
        return mask_tokens(ids, self.vocab, self.predictions, rng)


def mask_eval(ids: np.ndarray, vocab: Vocab, predictions: int) -> Masked:
    """The eval set masked once by a fixed generator: every run scores the same positions."""
    return mask_tokens(ids, vocab, predictions, np.random.default_rng(EVAL_MASKING_SEED))


def check_sequences(ids: np.ndarray, seq_len: int, path: Path) -> None:
    if ids.ndim != 2 or ids.shape[1] != seq_len:
        raise ContractError(f"{path} has shape {tuple(ids.shape)}, expected (N, {seq_len})")


class Shards:
    """The rows of several (N, seq_len) .npy files, memory-mapped, as one dataset of int64 rows
    (len and indexing: torch's and paddle's DataLoaders both take it)."""

    def __init__(self, files: list[Path], seq_len: int) -> None:
        if not files:
            raise ContractError("train/ holds no .npy files: expected train/*.npy of (N, seq_len)")
        self.arrays = [np.load(f, mmap_mode="r") for f in files]
        for f, a in zip(files, self.arrays, strict=True):
            check_sequences(a, seq_len, f)
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        shard = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.arrays[shard][i - self.starts[shard]].astype(np.int64)


def read_corpus(root: Path, seq_len: int) -> tuple[Vocab, Shards, np.ndarray]:
    """The full config's data under root (checked by the workload first): vocabulary, training
    shards, eval sequences."""
    vocab = Vocab.of((root / "vocab.txt").read_text().splitlines())
    train = Shards(sorted((root / "train").glob("*.npy")), seq_len)
    val = np.load(root / "eval.npy").astype(np.int64)
    check_sequences(val, seq_len, root / "eval.npy")
    return vocab, train, val


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


def grammar(n: int, seq_len: int, rng: np.random.Generator, max_adjectives: int = 2) -> np.ndarray:
    """n sequences "[CLS] <active sentence> [SEP] <its passive> [SEP]", [PAD] to seq_len.

    Active: NP1 verb NP2, the verb agreeing with NP1's number. Passive: NP2 is/are <participle>
    by NP1, the auxiliary agreeing with NP2. A noun phrase is a determiner of its number, up to
    max_adjectives adjectives and a noun, all drawn uniformly; the passive repeats both phrases.
    """
    ids = {w: i for i, w in enumerate(WORDS)}
    out = np.zeros((n, seq_len), dtype=np.int64)
    for row in range(n):
        (n1, np1), (n2, np2) = phrase(rng, max_adjectives), phrase(rng, max_adjectives)
        verb = VERBS[rng.integers(len(VERBS))]
        active = [*np1, verb[n1], *np2]
        passive = [*np2, ("is", "are")[n2], verb[2], "by", *np1]
        words = ["[CLS]", *active, "[SEP]", *passive, "[SEP]"]
        out[row, : len(words)] = [ids[w] for w in words]
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
) -> tuple[Vocab, np.ndarray, np.ndarray]:
    """The vocabulary, and the training and eval sequences (disjoint draws of one stream)."""
    rng = np.random.default_rng(GRAMMAR_SEED)
    ids = grammar(train_size + eval_size, seq_len, rng)
    return Vocab.of(WORDS), ids[:train_size], ids[train_size:]
