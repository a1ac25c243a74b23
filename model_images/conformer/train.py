"""Train a Conformer-CTC for speech recognition under the DeepSpark workload contract.

mini: a tiny Conformer on synthetic speech-like utterances, a minute on a CPU. full:
Conformer-M on LibriSpeech's log-mel features (converge) or synthetic batches of that shape
(speed). Infer mode transcribes the held-out utterances with a converge run's weights
(DS_CHECKPOINT) and scores their CER. See workload.toml for the presets.
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
    batches, val_loader = data.load(wl)

    def query(m: nn.Module, batch: data.Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One query: the utterances as the loader pads them (mini: to the set's longest, one
        shape, so a compiled engine compiles once; LibriSpeech: to the batch's longest)."""
        x, frames, _, _ = batch
        return m(x.to(wl.device, non_blocking=True), frames.to(wl.device, non_blocking=True))

    def cer(m: nn.Module) -> float:
        return evaluate(m, val_loader, wl)

    if wl.infer:  # the held-out utterances' queries, timed, then their CER
        wl.inference(model, batches, query, cer if val_loader else None)
    else:
        # Adam and the Transformer schedule as the paper: linear warmup to the peak learning
        # rate, then decay with the inverse square root of the step.
        optimizer = torch.optim.Adam(
            model.parameters(), cfg.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=cfg.weight_decay
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_rsqrt(cfg.warmup, wl.total_steps(batches))
        )

        wl.start()
        for window in wl.windows(batches):
            for batch in window:
                x, frames, y, counts = (t.to(wl.device, non_blocking=True) for t in batch)
                if augment:
                    x = data.spec_augment(x, frames, **augment.model_dump())
                with wl.autocast():
                    logits, out_frames = model(x, frames)
                # (frames, batch, labels), as ctc_loss takes them
                log_probs = logits.float().log_softmax(-1).transpose(0, 1)
                # zero_infinity: an utterance too short for its transcript adds nothing, not inf
                loss = F.ctc_loss(log_probs, y, out_frames, counts, zero_infinity=True)
                wl.step(loss, optimizer, clip=cfg.clip)
                schedule.step()
            if wl.converge:
                wl.log_eval(cer(net))
        if wl.converge:
            wl.save_checkpoint(net)  # the final weights, for infer runs
