"""Train YOLOv5 for object detection under the DeepSpark workload contract.

mini: a narrow, shallow YOLOv5 on generated 64x64 scenes of shapes, a minute on a CPU. full:
YOLOv5s on 640x640 COCO 2017 (converge) or synthetic batches of that shape (speed). Infer mode
detects on the validation split with a converge run's weights (DS_CHECKPOINT): a query is the
forward pass, the decode and NMS. See workload.toml for the presets.
"""

import copy
import math

import torch
from torch import nn
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import warmup

import data
from metrics import DetectionStats, YoloLoss, postprocess, xywh_to_xyxy
from model import YOLOv5


def as_targets(labels: torch.Tensor) -> torch.Tensor:
    """Padded (batch, objects, 5) labels -> (n, 6) rows of image index, class, cx, cy, w, h."""
    image, k = (labels[..., 0] >= 0).nonzero(as_tuple=True)
    return torch.cat((image[:, None].float(), labels[image, k]), 1)


def detect(net: YOLOv5, x: torch.Tensor) -> list[torch.Tensor]:
    """Each image's detections (x1, y1, x2, y2, confidence, class) from uint8 images on the
    device: the forward pass, the decode and NMS (all elementwise: the same under autocast)."""
    return postprocess(net.detect.decode(net(x.float() / 255)))


@torch.no_grad()
def evaluate(net: YOLOv5, loader: DataLoader, wl: Workload) -> float:
    """mAP@0.5 over the whole validation set (each rank scores its share); net is in
    evaluation mode (the EMA's copy, or an infer run's model)."""
    stats, size = DetectionStats(net.detect.nc), wl.preset.image_size
    for x, labels in loader:
        with wl.autocast():
            found = detect(net, x.to(wl.device, non_blocking=True))
        for detections, objects in zip(found, labels, strict=True):
            objects = objects[objects[:, 0] >= 0]
            truth = torch.cat((objects[:, :1], xywh_to_xyxy(objects[:, 1:]) * size), 1)
            stats.add(detections, truth)
    stats.gather(wl.sum_over_ranks, wl.rank, wl.world_size)
    return stats.map50()


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv weights only, not on BatchNorm weights or biases (as YOLOv5)."""
    decay = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)]
    ids = {id(p) for p in decay}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0}]


class EMA:
    """YOLOv5's ModelEMA: an exponential moving average of the weights and BatchNorm statistics,
    evaluated instead of the model; its decay ramps up over the first ~tau steps."""

    def __init__(self, net: nn.Module, decay: float, tau: float) -> None:
        self.module = copy.deepcopy(net).eval().requires_grad_(False)
        floats = [k for k, v in net.state_dict().items() if v.is_floating_point()]
        self.averages = [self.module.state_dict()[k] for k in floats]
        self.current = [net.state_dict()[k] for k in floats]  # views of net's own tensors
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = self.decay * (1 - math.exp(-self.updates / self.tau))
        torch._foreach_lerp_(self.averages, self.current, 1 - decay)


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    if wl.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
    net = wl.build_model(YOLOv5, image_size=wl.preset.image_size)
    model = wl.wrap(net)
    batches, val_loader = data.load(wl)

    def query(m: YOLOv5, batch: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        return detect(m, batch[0].to(wl.device, non_blocking=True))

    def map50(m: YOLOv5) -> float:
        return evaluate(m, val_loader, wl)

    if wl.infer:  # the validation split's queries, timed, then its mAP@0.5
        wl.inference(model, batches, query, map50 if val_loader else None)
    else:
        compute_loss = YoloLoss(
            net.detect.anchors,
            net.detect.stride,
            net.detect.nc,
            wl.preset.image_size,
            **wl.preset.loss.model_dump(),
        )

        # YOLOv5's loss is a sum over the batch (its lr0 is for that sum), so its weight decay,
        # set for a nominal batch of 64, grows with the batch to keep the two in proportion
        groups = param_groups(net, cfg.weight_decay * wl.global_batch_size / cfg.nominal_batch)
        if cfg.optimizer == "SGD":
            optimizer = torch.optim.SGD(groups, cfg.lr, momentum=cfg.momentum, nesterov=True)
        else:
            optimizer = torch.optim.AdamW(groups, cfg.lr, betas=(cfg.momentum, 0.999))
        total = wl.total_steps(batches)
        lrf = cfg.final_lr_fraction
        schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then linear decay to lrf
            optimizer, warmup(cfg.warmup, total, lambda s: 1 - (1 - lrf) * s / total)
        )
        ema = EMA(net, cfg.ema_decay, cfg.ema_tau)

        wl.start()
        for window in wl.windows(batches):
            for x, labels in window:
                x = x.to(wl.device, non_blocking=True).float() / 255
                targets = as_targets(labels.to(wl.device, non_blocking=True))
                with wl.autocast():
                    preds = model(x)
                loss, _ = compute_loss(preds, targets)
                wl.step(loss * wl.world_size, optimizer)  # DDP averages over ranks: sum them
                schedule.step()
                ema.update()
            if wl.converge:
                wl.log_eval(map50(ema.module))
        if wl.converge:
            wl.save_checkpoint(ema.module)  # the weights evaluated (the EMA), for infer runs
