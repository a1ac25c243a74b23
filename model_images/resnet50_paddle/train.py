"""Train ResNet-50 (v1.5) in PaddlePaddle under the DeepSpark workload contract.

The twin of model_images/resnet50 (PyTorch): the same presets, data, metric and target.
mini: a small ResNet on 8x8 glyph scenes, seconds on a CPU. full: ResNet-50 on 224x224 ImageNet
(converge) or synthetic batches of that shape (speed). See workload.toml for the presets.
"""

import paddle
import paddle.nn.functional as F

from deepspark_workload.paddle_workload import Workload
from deepspark_workload.schedules import warmup_cosine

import data
from model import ResNet

with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    net = wl.build_model(ResNet)
    model = wl.wrap(net)
    train_batches, val_loader = data.load(wl)  # glyph scenes, or ImageNet with its manifest

    lr = cfg.scaled_lr(wl.global_batch_size)  # linear scaling (Goyal et al. 2017)
    total = wl.total_steps(train_batches)
    schedule = paddle.optimizer.lr.LambdaDecay(  # linear warmup, then cosine decay to zero
        lr, warmup_cosine(cfg.warmup, total)
    )
    optimizer = paddle.optimizer.Momentum(  # SGD with momentum; weight decay on the gradient
        schedule,
        cfg.momentum,
        [p for p in net.parameters() if p.trainable],  # not BatchNorm's running statistics
        weight_decay=cfg.weight_decay,
    )

    wl.start()
    for window in wl.windows(train_batches):
        for x, y in window:
            with wl.autocast():
                loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
            wl.step(loss, optimizer)
            schedule.step()
        if wl.converge:
            wl.log_eval(wl.top1(net, val_loader))
