"""Data for the DLRM workload: batches of (dense float (B, 13), sparse ids (B, 26), label (B,)).

mini: a synthetic click log made here from a fixed seed, whose clicks follow a hidden
factorization machine (see click_log). full, speed: synthetic batches of the real shapes. full,
converge: Criteo 1TB as prepare.py or torchrec's preprocessing
(process_Criteo_1TB_Click_Logs_dataset.sh, the MLPerf DLRM reference's) writes it, with a
SHA256SUMS manifest (workload.py's wl.data_dir()):

    $DS_DATA_DIR/day_{0..23}_dense.npy    float32 (N, 13)  log(x + 3) of the integer features
    $DS_DATA_DIR/day_{0..23}_sparse.npy   int32 (N, 26)    categorical ids, any int32
    $DS_DATA_DIR/day_{0..23}_labels.npy   int32 (N, 1)     click: 0 or 1
    $DS_DATA_DIR/SHA256SUMS

Days 0-22 train, read in file order (prepare.py keeps the logs' order); the first half of day 23
is the validation set, as in MLPerf. Ids are reduced modulo each table's size (torchrec's hashing).
"""

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from deepspark_workload import ContractError, Workload

TRAIN_DAYS, VAL_DAY = range(23), 23


def load(wl: Workload) -> tuple[Iterable, DataLoader | None]:
    """Training batches for wl.windows(), and the validation loader (None when not needed)."""
    tables = wl.preset.model["table_sizes"]
    if wl.preset.data == "synthetic-clicks":
        n_train = wl.preset.train_samples
        dense, sparse, labels, _ = click_log(n_train + wl.preset.val_samples, tables)
        wl.log_generated_data("synthetic click log", dense, sparse, labels)
        train = TensorDataset(dense[:n_train], sparse[:n_train], labels[:n_train])
        val = TensorDataset(dense[n_train:], sparse[n_train:], labels[n_train:])
        return wl.loader(train, train=True), wl.loader(val, train=False)
    if not wl.converge:  # made once on the device and reused: speed mode times the model alone
        b, device = wl.batch_size, wl.device
        dense = torch.randn(b, wl.preset.model["num_dense"], device=device)
        sparse = torch.stack([torch.randint(0, n, (b,), device=device) for n in tables], 1)
        labels = torch.randint(0, 2, (b,), device=device).float()
        return itertools.repeat((dense, sparse, labels)), None
    root = wl.data_dir()
    train = CriteoBatches(root, TRAIN_DAYS, tables, wl.batch_size, wl.rank, wl.world_size, True)
    val = CriteoBatches(root, [VAL_DAY], tables, wl.batch_size, wl.rank, wl.world_size, False)
    # batch_size None: the dataset's items are whole batches, sliced from memory maps
    kwargs = dict(batch_size=None, **wl.loader_options())
    return DataLoader(train, **kwargs), DataLoader(val, **kwargs)


INTERACTING = (0, 2, 4, 6)  # the categorical features whose ids interact (tables of 10-100 rows)


def click_log(n: int, tables: Sequence[int], seed: int = 0) -> tuple[torch.Tensor, ...]:
    """n clicks drawn by a hidden factorization machine: fixed by seed, not by the run's seed.

    Dense features are log(1 + count) of heavy-tailed counts; each categorical feature draws its
    ids from a Zipf law over its table. The hidden click logit is a bias, a small linear term in
    the dense features, a random effect per id of the INTERACTING features, and, most of it, the
    sum over every pair of those features of the product of their ids' latent factors (a
    factorization machine of rank 1: the pairwise dot products DLRM's interaction computes).
    Each table's factors are centred under its id law, so that an id alone says nothing about
    the pair terms: a model without crosses sees only the linear and per-id parts. The other
    features are noise. Returns dense, sparse ids, labels and the true click probabilities.
    """
    g = torch.Generator().manual_seed(seed)
    counts = torch.exp(1.2 * torch.randn(n, 13, generator=g) + 1).floor()
    dense = torch.log1p(counts)
    laws = [id_law(size) for size in tables]
    sparse = torch.stack([torch.multinomial(p, n, replacement=True, generator=g) for p in laws], 1)

    std_dense = (dense - dense.mean(0)) / dense.std(0)
    logit = -1.0 + std_dense @ (0.3 * torch.randn(13, generator=g))
    factors = []
    for k in INTERACTING:
        logit += 0.6 * torch.randn(tables[k], generator=g)[sparse[:, k]]
        factor = 1.5 * torch.randn(tables[k], generator=g, dtype=torch.float64)
        factors.append((factor - laws[k] @ factor).float()[sparse[:, k]])  # mean 0 over ids
    f = torch.stack(factors, 1)
    logit += (f.sum(1) ** 2 - (f**2).sum(1)) / 2  # the sum of f_i f_j over the pairs i < j
    prob = torch.sigmoid(logit)
    return dense, sparse, torch.bernoulli(prob, generator=g), prob


def id_law(size: int, exponent: float = 1.1) -> torch.Tensor:
    """Zipf's law over a table: id r drawn with probability proportional to (r + 1)^-exponent."""
    weights = torch.arange(1, size + 1, dtype=torch.float64) ** -exponent
    return weights / weights.sum()


class CriteoBatches(Dataset):
    """This rank's contiguous share of the rows of some days, as whole batches.

    train: equal shares, short tails dropped so every step is a full global batch. Otherwise
    (validation: the first half of the day) every row once over all ranks, the last batch short.
    """

    def __init__(
        self,
        root: Path,
        days: Iterable[int],
        tables: Sequence[int],
        batch_size: int,
        rank: int,
        world_size: int,
        train: bool,
    ) -> None:
        self.files = []
        for day in days:
            arrays = []
            for kind in ("dense", "sparse", "labels"):
                path = root / f"day_{day}_{kind}.npy"
                if not path.is_file():
                    raise ContractError(f"{path} is missing: expected day_<n>_<kind>.npy")
                arrays.append(np.load(path, mmap_mode="r"))
            rows = len(arrays[0]) if train else len(arrays[0]) // 2
            if any(len(a) < rows for a in arrays[1:]):
                raise ContractError(f"day {day}: dense, sparse and labels differ in length")
            self.files.append((arrays, rows))
        self.offsets = np.cumsum([0] + [rows for _, rows in self.files])
        total = int(self.offsets[-1])
        if train:
            share = total // world_size
            self.start, self.stop = rank * share, rank * share + share // batch_size * batch_size
        else:
            self.start, self.stop = rank * total // world_size, (rank + 1) * total // world_size
        self.batch_size = batch_size
        self.tables = torch.tensor(tables)

    def __len__(self) -> int:
        return -(-(self.stop - self.start) // self.batch_size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        a = self.start + i * self.batch_size
        b = min(a + self.batch_size, self.stop)
        parts: list[list[np.ndarray]] = [[], [], []]
        for f, (arrays, _) in enumerate(self.files):  # the batch may span two days
            lo, hi = max(a, self.offsets[f]), min(b, self.offsets[f + 1])
            for part, array in zip(parts, arrays, strict=True):
                if lo < hi:
                    part.append(array[lo - self.offsets[f] : hi - self.offsets[f]])
        dense, sparse, labels = (torch.from_numpy(np.concatenate(p)) for p in parts)
        sparse = torch.remainder(sparse.long(), self.tables)  # may be negative: int32 of hex ids
        return dense.float(), sparse, labels.flatten().float()
