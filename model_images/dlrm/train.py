"""Train DLRM for click-through prediction under the DeepSpark workload contract.

mini: a small DLRM on a synthetic click log, about a minute on a CPU. full: the MLPerf DLRM on
Criteo 1TB (converge) or synthetic batches of its shapes (speed). See workload.toml for the presets.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import warmup

import data
from metrics import roc_auc
from model import DLRM


@torch.no_grad()
def evaluate(net: nn.Module, loader: DataLoader, wl: Workload) -> float:
    """ROC AUC over the whole validation set: each rank scores its share, all ranks rank all."""
    net.eval()
    scores, labels = [], []
    for dense, sparse, label in loader:
        with wl.autocast():
            logits = net(dense.to(wl.device, non_blocking=True), sparse.to(wl.device))
        scores.append(logits.float())
        labels.append(label.to(wl.device))
    net.train()
    return roc_auc(wl.gather_over_ranks(torch.cat(scores)), wl.gather_over_ranks(torch.cat(labels)))


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    with wl.device:  # built in place: full's 26 billion parameters never visit host memory
        net = wl.build_model(DLRM)
    model = wl.wrap(net)
    train_batches, val_loader = data.load(wl)

    # Plain SGD as in the MLPerf reference (lr 1.0 at batch 2048), scaled linearly with the batch.
    optimizer = torch.optim.SGD(model.parameters(), cfg.scaled_lr(wl.global_batch_size))
    total = wl.total_steps(train_batches)
    decay = round(cfg.decay_start * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # the reference's policy: linear warmup,
        optimizer,  # constant, then a quadratic (polynomial, power 2) decay to zero at the end
        warmup(cfg.warmup, total, lambda s: min(1, ((total - s) / (total - decay)) ** 2)),
    )

    wl.start()
    for window in wl.windows(train_batches):
        for dense, sparse, labels in window:
            dense = dense.to(wl.device, non_blocking=True)
            sparse, labels = sparse.to(wl.device, non_blocking=True), labels.to(wl.device)
            with wl.autocast():
                loss = F.binary_cross_entropy_with_logits(model(dense, sparse), labels)
            wl.step(loss, optimizer)
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, val_loader, wl))
