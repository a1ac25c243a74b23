"""Train ResNet-50 (v1.5) for image classification under the DeepSpark workload contract.

mini: a small ResNet on 8x8 glyph scenes, seconds on a CPU. full: ResNet-50 on 224x224 ImageNet
(converge) or synthetic batches of that shape (speed). Infer mode classifies the validation
split with a converge run's weights (DS_CHECKPOINT). See workload.toml for the presets.
"""

import torch
import torch.nn.functional as F

from deepspark_workload import Workload, vision
from deepspark_workload.schedules import warmup_cosine

from model import ResNet

with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    if wl.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
    net = wl.build_model(ResNet).to(memory_format=torch.channels_last)
    model = wl.wrap(net)
    batches, val_loader = vision.load(wl)  # glyph scenes, or ImageNet with its manifest

    def query(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return m(batch[0].to(wl.device, memory_format=torch.channels_last, non_blocking=True))

    def top1(m: torch.nn.Module) -> float:
        return wl.top1(m, val_loader, torch.channels_last)

    if wl.infer:  # the validation split's queries, timed, then its top-1
        wl.inference(model, batches, query, top1 if val_loader else None)
    else:
        lr = cfg.scaled_lr(wl.global_batch_size)  # linear scaling (Goyal et al. 2017)
        optimizer = torch.optim.SGD(
            model.parameters(), lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        total = wl.total_steps(batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine decay to zero
            optimizer, warmup_cosine(cfg.warmup, total)
        )

        wl.start()
        for window in wl.windows(batches):
            for x, y in window:
                x = x.to(wl.device, memory_format=torch.channels_last, non_blocking=True)
                y = y.to(wl.device, non_blocking=True)
                with wl.autocast():
                    loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
                wl.step(loss, optimizer)
                schedule.step()
            if wl.converge:
                wl.log_eval(top1(net))
        if wl.converge:
            wl.save_checkpoint(net)  # the final weights, for infer runs
