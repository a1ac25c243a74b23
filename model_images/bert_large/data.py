"""Data for the BERT-large workload in torch tensors: the library's masked-LM data, loaded.

mini: a small English-like language generated from a fixed seed, "[CLS] the old cat sees some
red dogs [SEP] some red dogs are seen by the old cat [SEP]" (deepspark_workload/mlm.py, shared
with the Paddle twin, makes and masks it as numpy arrays).

full, converge: MLPerf BERT's Wikipedia sequences, pre-tokenized, under $DS_DATA_DIR:

    vocab.txt      the WordPiece vocabulary, one token a line, line i is id i (bert-large-uncased:
                   30,522 lines, with [PAD], [CLS], [SEP] and [MASK] among them)
    train/*.npy    integer arrays (N, 512): "[CLS] A [SEP] B [SEP]", then [PAD] to the end
    eval.npy       the same layout, the held-out sequences (MLPerf's 10,000)
    SHA256SUMS     the manifest of every other file (deepspark_workload/datasets.py)

The sequences are stored unmasked (MLPerf's eval set with its masked positions filled back):
training masks them afresh every epoch; the eval set is masked once, by a fixed generator.
full, speed (and infer without DS_DATA_DIR): one synthetic batch of the real shapes, made once
on the device.
"""

import itertools

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

from deepspark_workload import ContractError, Workload, mlm
from deepspark_workload.mlm import (  # re-exported: the tests and train.py read them here
    IGNORE,
    WORDS,
    Shards,
    Vocab,
    grammar,
    grammar_splits,
    read_corpus,
)

__all__ = [
    "IGNORE", "WORDS", "Batch", "Masking", "Shards", "Vocab", "grammar", "grammar_splits",
    "load", "read_corpus",
]  # fmt: skip
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]


def load(wl: Workload) -> tuple[DataLoader | itertools.repeat, DataLoader | None]:
    """Batches for wl.windows() (training batches; in infer mode, full batches of the eval
    set, shuffled), and the eval loader (None when not needed).

    A batch is (input ids, segment ids, padding or None, predicted positions, labels).
    """
    model, seq_len, predictions = wl.preset.model, wl.preset.seq_len, wl.preset.predictions
    if wl.preset.data == "grammar":
        vocab, train, val = grammar_splits(wl.preset.train_size, wl.preset.eval_size, seq_len)
        wl.log_generated_data("passive grammar", torch.from_numpy(train), torch.from_numpy(val))
        return masked_loaders(wl, vocab, model["vocab_size"], train, val, predictions)
    if not wl.reads_data:  # made once on the device and reused: the model's time alone
        b, v = wl.batch_size, model["vocab_size"]
        ids = torch.randint(1000, v, (b, seq_len), device=wl.device)  # past the special tokens
        types = (torch.arange(seq_len, device=wl.device) >= seq_len // 2).long().expand(b, -1)
        positions = torch.rand(b, seq_len, device=wl.device).argsort(1)[:, :predictions]
        labels = torch.randint(1000, v, (b, predictions), device=wl.device)
        return itertools.repeat((ids, types, None, positions, labels)), None
    vocab, train, val = read_corpus(wl.data_dir(), seq_len)
    kwargs = wl.loader_options()
    return masked_loaders(wl, vocab, model["vocab_size"], train, val, predictions, **kwargs)


def masked_loaders(
    wl: Workload,
    vocab: Vocab,
    vocab_size: int,
    train: Shards | np.ndarray,
    val: np.ndarray,
    predictions: int,
    **kwargs,
) -> tuple[DataLoader, DataLoader]:
    """Train: masked afresh at every batch (dynamic masking). Eval: masked once, fixed, in
    the run's batches whatever the scenario. Infer mode's queries: the masked eval set."""
    if vocab.size != vocab_size:
        raise ContractError(f"the vocabulary has {vocab.size} tokens, the model {vocab_size}")
    val_set = TensorDataset(*map(torch.from_numpy, mlm.mask_eval(val, vocab, predictions)))
    timed = (
        wl.loader(val_set, train=True, collate_fn=collate_masked, **kwargs)
        if wl.infer
        else wl.loader(train, train=True, collate_fn=Masking(vocab, predictions), **kwargs)
    )
    batch = wl.eval_batch_size
    return timed, wl.loader(val_set, False, batch, collate_fn=collate_masked, **kwargs)


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


class Masking(mlm.Masking):
    """A collate_fn: rows of token ids, stacked and masked afresh, as torch tensors."""

    def __call__(self, rows: list) -> Batch:
        return as_batch(*map(torch.from_numpy, super().__call__(rows)))
