"""Train the 3D U-Net for kidney and tumour segmentation under the DeepSpark workload contract.

mini: a small U-Net on generated 16^3 kidney phantoms, a minute on a CPU. full: MLPerf Training's
3D U-Net on 128^3 patches of KiTS19 (converge) or synthetic patches of that shape (speed). See
workload.toml for the presets.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import warmup_steps

import data
from metrics import case_dice, dice_ce_loss, sliding_window
from model import UNet3D


@torch.no_grad()
def evaluate(net: nn.Module, loader: DataLoader, wl: Workload) -> float:
    """Mean Dice of kidney and tumour per case, averaged over every validation case (MLPerf's
    mean_dice); whole cases by sliding window. Each rank scores its share."""
    net.eval()
    total = cases = 0.0
    for x, y in loader:
        x, y = x.to(wl.device, non_blocking=True), y.to(wl.device, non_blocking=True)
        with wl.autocast():
            logits = sliding_window(net, x, wl.preset.patch_size)
        dice = case_dice(logits.argmax(1), y[:, 0], logits.shape[1])  # (cases, classes)
        total += dice.mean(1).sum().item()
        cases += len(x)
    net.train()
    total, cases = wl.sum_over_ranks(total, cases)
    return total / cases


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    if wl.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shapes: pick the fastest kernels once
    net = wl.build_model(UNet3D)
    model = wl.wrap(net)
    train_batches, val_loader = data.load(wl)

    # The reference's SGD: Nesterov momentum, a linear warmup from init_lr, then lr constant.
    # Not scaled with the batch: the reference keeps lr whatever the number of GPUs.
    optimizer = torch.optim.SGD(
        model.parameters(),
        cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    warmup = warmup_steps(cfg.warmup, wl.total_steps(train_batches))
    start = cfg.init_lr / cfg.lr
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: start + (1 - start) * min(1, s / warmup)
    )

    wl.start()
    for window in wl.windows(train_batches):
        for x, y in window:
            x, y = x.to(wl.device, non_blocking=True), y.to(wl.device, non_blocking=True)
            with wl.autocast():
                loss = dice_ce_loss(model(x), y)
            wl.step(loss, optimizer)
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, val_loader, wl))
