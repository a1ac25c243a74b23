"""Train instant-ngp's NeRF (hash encoding + tiny MLPs + ray marching) under the DeepSpark
workload contract.

mini: a small hash grid on an analytically rendered scene of spheres, about a minute on a CPU.
full: the paper's model on a NeRF-synthetic scene (converge) or synthetic rays (speed). A batch
is batch_size rays; samples count rays. See workload.toml for the presets.
"""

import torch
import torch.nn.functional as F
from torch import nn

from deepspark_workload import Workload

import data
from metrics import psnr
from model import InstantNGP


@torch.no_grad()
def evaluate(net: nn.Module, views: list[data.Rays], wl: Workload, chunk: int) -> float:
    """Mean PSNR over every held-out view, each rendered whole (each rank renders its share)."""
    net.eval()
    total = count = 0.0
    for origins, dirs, rgb in views[wl.rank :: wl.world_size]:
        parts = []
        for start in range(0, len(origins), chunk):
            o = origins[start : start + chunk].to(wl.device, non_blocking=True)
            d = dirs[start : start + chunk].to(wl.device, non_blocking=True)
            with wl.autocast():
                parts.append(net(o, d).float())
        total += psnr(torch.cat(parts), rgb.to(wl.device))
        count += 1
    net.train()
    total, count = wl.sum_over_ranks(total, count)
    return total / count


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    net = wl.build_model(InstantNGP)
    model = wl.wrap(net)
    train_batches, test_views = data.load(wl)

    # The paper's Adam (beta2 0.99, eps 1e-15) with L2 regularisation on the MLP weights only;
    # the hash table's entries are left unregularised.
    mlp_weights = [p for name, p in net.named_parameters() if not name.startswith("grid.")]
    optimizer = torch.optim.Adam(
        [
            {"params": [net.grid.table], "weight_decay": 0.0},
            {"params": mlp_weights, "weight_decay": cfg.weight_decay},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.99),
        eps=1e-15,
    )
    total = wl.total_steps(train_batches)
    milestones = [round(f * total) for f in cfg.decay_at]  # step decay at these fractions
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, cfg.decay)

    wl.start()
    for window in wl.windows(train_batches):
        for origins, dirs, rgb in window:
            with wl.autocast():
                loss = F.mse_loss(model(origins, dirs), rgb)
            wl.step(loss, optimizer)
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, test_views, wl, wl.preset.eval_chunk))
