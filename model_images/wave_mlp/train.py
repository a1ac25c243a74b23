"""Train Wave-MLP for image classification under the DeepSpark workload contract.

mini: a tiny Wave-MLP on 8x8 glyph scenes, seconds on a CPU. full: Wave-MLP-T on 224x224 ImageNet
(converge) or synthetic batches of that shape (speed). See workload.toml for the presets.
"""

import torch
import torch.nn.functional as F
from PIL import Image

from deepspark_workload import Workload, vision
from deepspark_workload.schedules import warmup_cosine

import metrics
from model import WaveMLP

with Workload.from_env(__file__) as wl:
    cfg, num_classes = wl.preset.optim, wl.preset.model["num_classes"]
    if wl.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
    net = wl.build_model(WaveMLP)
    model = wl.wrap(net)
    # The official evaluation: bicubic, the central 0.9 of the short side.
    train_batches, val_loader = vision.load(wl, 0.9, Image.Resampling.BICUBIC)

    # AdamW as the official recipe (timm): no weight decay on norms and biases.
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    lr = cfg.scaled_lr(wl.global_batch_size)  # scaled linearly with the batch
    optimizer = torch.optim.AdamW(groups, lr, betas=(0.9, 0.999), eps=1e-8)
    total = wl.total_steps(train_batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine decay to zero
        optimizer, warmup_cosine(cfg.warmup, total)
    )
    mixing = cfg.mixup > 0 or cfg.cutmix > 0

    wl.start()
    for window in wl.windows(train_batches):
        for x, y in window:
            x, y = x.to(wl.device, non_blocking=True), y.to(wl.device, non_blocking=True)
            if mixing:  # y becomes the mixed one-hot targets, which cross_entropy also takes
                x, y = metrics.mix(x, y, num_classes, cfg.mixup, cfg.cutmix)
            with wl.autocast():
                loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            wl.step(loss, optimizer)
            schedule.step()
        if wl.converge:
            wl.log_eval(wl.top1(net, val_loader))
