"""Train Tacotron 2 for speech synthesis (text to mel spectrogram) under the workload contract.

mini: a tiny Tacotron 2 on synthetic letter sounds, a minute on a CPU. full: NVIDIA's Tacotron 2
on LJSpeech mel spectrograms (converge) or synthetic batches of that shape (speed). The quality
metric is the teacher-forced mean squared error of the post-net's mel frames on held-out
utterances (MOS needs listeners). See workload.toml for the presets.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import step_decay, warmup

import data
from metrics import mel_squared_error, tacotron2_loss
from model import Tacotron2


@torch.no_grad()
def evaluate(net: nn.Module, loader: DataLoader, wl: Workload) -> float:
    """Mean squared error of the post-net's frames over every real frame of the held-out set."""
    net.eval()
    error = count = 0
    for batch in loader:
        text, text_lengths, mels, mel_lengths = (t.to(wl.device) for t in batch)
        with wl.autocast():
            _, postnet, _, _ = net(text, text_lengths, mels, mel_lengths)
        e, n = mel_squared_error(postnet, mels, mel_lengths)
        error, count = error + e, count + n
    net.train()
    error, count = wl.sum_over_ranks(error, count)
    return error / count


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    net = wl.build_model(Tacotron2)
    model = wl.wrap(net)
    train_batches, val_loader = data.load(wl)

    optimizer = torch.optim.Adam(
        model.parameters(), cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    total = wl.total_steps(train_batches)
    anneal = [round(f * total) for f in cfg.anneal_at]
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then steps down (NVIDIA's)
        optimizer, warmup(cfg.warmup, total, step_decay(anneal, cfg.anneal_factor))
    )

    wl.start()
    for window in wl.windows(train_batches):
        for batch in window:
            text, text_lengths, mels, mel_lengths = (t.to(wl.device) for t in batch)
            with wl.autocast():
                frames, postnet, gate, _ = model(text, text_lengths, mels, mel_lengths)
                loss = tacotron2_loss(frames, postnet, gate, mels, mel_lengths)
            wl.step(loss, optimizer, clip=cfg.clip)  # NVIDIA clips the gradient norm at 1
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, val_loader, wl))
