"""Data for the Paddle BERT-large: the library's masked-LM data (deepspark_workload/mlm.py, the
PyTorch twin's to the byte) in paddle loaders.

mini: the generated active/passive language, masked afresh every batch; the eval set masked
once by a fixed generator. full, converge: MLPerf's pre-tokenized Wikipedia under $DS_DATA_DIR
(vocab.txt, train/*.npy, eval.npy, SHA256SUMS: model_images/bert_large/README.md).
full, speed: one synthetic batch of the real shapes, made once on the device.
"""

import itertools

import numpy as np
import paddle
from paddle.io import DataLoader

from deepspark_workload import ContractError, mlm
from deepspark_workload.paddle_workload import Workload

# input ids, segment ids, padding (True at [PAD]) or None, predicted positions, labels
Batch = tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor | None, paddle.Tensor, paddle.Tensor]


def load(wl: Workload) -> tuple[DataLoader | itertools.repeat, DataLoader | None]:
    """Training batches for wl.windows(), and the eval loader (None when not needed)."""
    model, seq_len, predictions = wl.preset.model, wl.preset.seq_len, wl.preset.predictions
    if wl.preset.data == "grammar":
        vocab, train, val = mlm.grammar_splits(wl.preset.train_size, wl.preset.eval_size, seq_len)
        wl.log_generated_data("passive grammar", train, val)
        return masked_loaders(wl, vocab, model["vocab_size"], train, val, predictions)
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        b, v = wl.batch_size, model["vocab_size"]
        ids = paddle.randint(1000, v, [b, seq_len])  # past the special tokens
        types = (paddle.arange(seq_len) >= seq_len // 2).astype("int64").expand([b, seq_len])
        positions = paddle.rand([b, seq_len]).argsort(1)[:, :predictions]
        labels = paddle.randint(1000, v, [b, predictions])
        return itertools.repeat((ids, types, None, positions, labels)), None
    vocab, train, val = mlm.read_corpus(wl.data_dir(), seq_len)
    kwargs = wl.loader_options()
    return masked_loaders(wl, vocab, model["vocab_size"], train, val, predictions, **kwargs)


def masked_loaders(
    wl: Workload,
    vocab: mlm.Vocab,
    vocab_size: int,
    train: mlm.Shards | np.ndarray,
    val: np.ndarray,
    predictions: int,
    **kwargs,
) -> tuple[DataLoader, DataLoader]:
    """Train: masked afresh at every batch (dynamic masking). Eval: masked once, fixed."""
    if vocab.size != vocab_size:
        raise ContractError(f"the vocabulary has {vocab.size} tokens, the model {vocab_size}")
    val_set = list(zip(*mlm.mask_eval(val, vocab, predictions), strict=True))  # one per sequence
    return (
        wl.loader(train, train=True, collate_fn=mlm.Masking(vocab, predictions), **kwargs),
        wl.loader(val_set, train=False, **kwargs),
    )


def as_batch(
    inputs: paddle.Tensor,
    types: paddle.Tensor,
    padding: paddle.Tensor,
    positions: paddle.Tensor,
    labels: paddle.Tensor,
) -> Batch:
    """The model's inputs and the labels; padding None when no row is padded (paddle's loader
    carries no None, so the batch says it here)."""
    return inputs, types, padding if bool(padding.any()) else None, positions, labels
