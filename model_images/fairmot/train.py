"""Train FairMOT (DLA-34) for multi-object tracking under the DeepSpark workload contract.

mini: a narrow DLA-34 FairMOT on synthetic 64x64 videos of moving shapes, a minute on a CPU.
full: FairMOT DLA-34 at 1088x608 on MOT17 (converge) or synthetic batches of that shape
(speed). Quality: MOTA of the tracker on held-out sequences. See workload.toml.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import step_decay, warmup

import data
from metrics import ClearMOT, Tracker, decode, mota
from model import FairMOT


@torch.no_grad()
def evaluate(net: nn.Module, sequences: list[DataLoader], wl: Workload) -> float:
    """MOTA over all held-out sequences (each rank tracks its share, the counts are summed)."""
    cfg = wl.preset.track
    net.eval()
    counts = [0, 0, 0, 0]  # ground truth, misses, false positives, identity switches
    for frames in sequences:
        tracker = Tracker(cfg.emb_gate, cfg.iou_gate, cfg.max_lost)
        clear = ClearMOT()
        for images, gts in frames:
            with wl.autocast():
                out = net(images.to(wl.device, non_blocking=True))
            for (boxes, _, embeddings), gt in zip(decode(out, cfg.threshold), gts, strict=True):
                clear.update(gt.numpy(), tracker.update(boxes, embeddings))
        counts = [a + b for a, b in zip(counts, clear.counts, strict=True)]
    net.train()
    return mota(*wl.sum_over_ranks(*counts))


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    if wl.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
    net = wl.build_model(FairMOT)
    model = wl.wrap(net)
    train_batches, val_sequences = data.load(wl)

    lr = cfg.scaled_lr(wl.global_batch_size)  # linear scaling
    optimizer = torch.optim.Adam(model.parameters(), lr)
    total = wl.total_steps(train_batches)
    drop = round(cfg.lr_drop * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then a 10x drop (FairMOT)
        optimizer, warmup(cfg.warmup, total, step_decay([drop], 0.1))
    )

    wl.start()
    for window in wl.windows(train_batches):
        for images, *targets in window:
            images = images.to(wl.device, non_blocking=True)
            targets = [t.to(wl.device, non_blocking=True) for t in targets]
            with wl.autocast():
                loss = model(images, targets)["loss"]
            wl.step(loss, optimizer)
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, val_sequences, wl))
