"""Train CPM (a GPT-2 style causal language model) under the DeepSpark workload contract.

mini: a 2-layer GPT on a synthetic template language, seconds on a CPU. full: CPM-Large (2.6B
parameters) on a pre-tokenized corpus (converge) or random tokens of that shape (speed). See
workload.toml for the presets.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import warmup_cosine

import data
from metrics import next_token_hits
from model import CPM


def evaluate(net: nn.Module, loader: DataLoader, wl: Workload) -> float:
    """Next-token accuracy over every position of the validation set (each rank its share)."""

    def hits(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[int, int]:
        x, y = (t.to(wl.device, non_blocking=True) for t in batch)
        return next_token_hits(net(x), y)

    return wl.evaluate(net, loader, hits)


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    train_batches, val_loader = data.load(wl)  # first: a missing dataset fails before 2.6B weights
    net = wl.build_model(CPM)
    model = wl.wrap(net)

    # Adam's square-root rule (Malladi et al. 2022): lr is given at a global batch of lr_batch
    lr = cfg.scaled_lr(wl.global_batch_size, "sqrt")
    decay = [p for p in model.parameters() if p.dim() >= 2]  # not biases and LayerNorm gains
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": rest, "weight_decay": 0},
        ],
        lr,
        betas=(cfg.beta1, cfg.beta2),
        fused=wl.device.type == "cuda",
    )
    total = wl.total_steps(train_batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine decay to zero
        optimizer, warmup_cosine(cfg.warmup, total)
    )

    wl.start()
    for window in wl.windows(train_batches):
        for x, y in window:
            x, y = x.to(wl.device, non_blocking=True), y.to(wl.device, non_blocking=True)
            with wl.autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())  # fp32 softmax
            wl.step(loss, optimizer)
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, val_loader, wl))
