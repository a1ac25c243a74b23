"""Train a Conformer-CTC for speech recognition under the DeepSpark workload contract.

mini: a tiny Conformer on synthetic speech-like utterances, a minute on a CPU. full:
Conformer-M on LibriSpeech's log-mel features (converge) or synthetic batches of that shape
(speed). See workload.toml for the presets.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import warmup_rsqrt

import data
import metrics
from model import Conformer


def evaluate(net: nn.Module, loader: DataLoader, wl: Workload) -> float:
    """Character error rate of greedy CTC transcripts over the whole validation set (each rank
    scores its share): all edit errors over all reference characters."""

    def errors(batch: tuple[torch.Tensor, ...]) -> tuple[int, int]:
        x, frames, y, counts = batch
        logits, out_frames = net(x.to(wl.device), frames.to(wl.device))
        refs = [row[:n].tolist() for row, n in zip(y, counts.tolist(), strict=True)]
        return metrics.char_errors(metrics.greedy_decode(logits, out_frames), refs)

    return wl.evaluate(net, loader, errors)


with Workload.from_env(__file__) as wl:
    cfg, augment = wl.preset.optim, wl.preset.spec_augment
    net = wl.build_model(Conformer)
    model = wl.wrap(net)
    train_batches, val_loader = data.load(wl)

    # Adam and the Transformer schedule as the paper: linear warmup to the peak learning rate,
    # then decay with the inverse square root of the step.
    optimizer = torch.optim.Adam(
        model.parameters(), cfg.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=cfg.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_rsqrt(cfg.warmup, wl.total_steps(train_batches))
    )

    wl.start()
    for window in wl.windows(train_batches):
        for x, frames, y, counts in window:
            x, frames = x.to(wl.device, non_blocking=True), frames.to(wl.device, non_blocking=True)
            y, counts = y.to(wl.device, non_blocking=True), counts.to(wl.device, non_blocking=True)
            if augment:
                x = data.spec_augment(x, frames, **augment.model_dump())
            with wl.autocast():
                logits, out_frames = model(x, frames)
            log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (frames, batch, labels)
            # zero_infinity: an utterance too short for its transcript adds nothing, not inf
            loss = F.ctc_loss(log_probs, y, out_frames, counts, zero_infinity=True)
            wl.step(loss, optimizer, clip=cfg.clip)
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, val_loader, wl))
