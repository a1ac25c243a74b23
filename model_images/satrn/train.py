"""Train SATRN for scene text recognition under the DeepSpark workload contract.

mini: a tiny SATRN on short strings rendered by the run itself, about a minute on a CPU. full:
MMOCR's satrn_academic on 32x100 word images (MJSynth + SynthText, converge) or synthetic
batches of that shape (speed). See workload.toml for the presets.
"""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import step_decay, warmup

import data
import metrics
from model import SATRN


def evaluate(net: SATRN, loader: DataLoader, wl: Workload) -> float:
    """Word accuracy of greedy decoding over the whole validation set (each rank its share)."""
    charset = wl.preset.charset

    def hits(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[int, int]:
        x, tokens = batch
        predicted = net.generate(x.to(wl.device, non_blocking=True))
        predictions = [data.decode(ids, charset) for ids in predicted.tolist()]
        targets = [data.decode(ids, charset) for ids in tokens[:, 1:].tolist()]
        return metrics.word_hits(predictions, targets), len(targets)

    return wl.evaluate(net, loader, hits)


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    assert wl.preset.model["num_classes"] == data.SPECIALS + len(wl.preset.charset)
    net = wl.build_model(SATRN)
    model = wl.wrap(net)
    train_batches, val_loader = data.load(wl)

    lr = cfg.scaled_lr(wl.global_batch_size)  # linear scaling (Goyal et al. 2017)
    optimizer = torch.optim.Adam(model.parameters(), lr)
    total = wl.total_steps(train_batches)
    decays = [round(epoch / wl.preset.epochs * total) for epoch in cfg.decay_epochs]
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then x gamma at each decay
        optimizer, warmup(cfg.warmup, total, step_decay(decays, cfg.gamma))
    )

    wl.start()
    for window in wl.windows(train_batches):
        for x, tokens in window:
            x = x.to(wl.device, non_blocking=True)
            tokens = tokens.to(wl.device, non_blocking=True)
            with wl.autocast():  # teacher forcing: each position predicts the next token
                logits = model(x, tokens[:, :-1])
            loss = F.cross_entropy(
                logits.float().flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=data.PAD
            )
            wl.step(loss, optimizer)  # no clipping: MMOCR's grad_clip=None
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, val_loader, wl))
