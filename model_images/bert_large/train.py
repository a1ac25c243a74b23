"""Train BERT-large with masked-language-model pretraining under the DeepSpark workload contract.

mini: a tiny BERT on a generated English-like language, a minute on a CPU. full: BERT-large on
MLPerf's pre-tokenized Wikipedia at sequence length 512 (converge) or synthetic batches of that
shape (speed). Infer mode predicts the eval set's masked tokens with a converge run's weights
(DS_CHECKPOINT). See workload.toml for the presets.
"""

import torch
from torch import nn
from torch.utils.data import DataLoader

from deepspark_workload import Workload
from deepspark_workload.schedules import warmup_linear

import data
from metrics import mlm_accuracy, mlm_loss
from model import Bert


def to_device(batch: tuple[torch.Tensor | None, ...], wl: Workload) -> tuple:
    return tuple(None if t is None else t.to(wl.device, non_blocking=True) for t in batch)


def evaluate(net: nn.Module, loader: DataLoader, wl: Workload) -> float:
    """Masked-token top-1 accuracy over the whole eval set (each rank scores its share)."""

    def correct(batch: data.Batch) -> tuple[int, int]:
        *inputs, labels = to_device(batch, wl)
        return mlm_accuracy(net(*inputs), labels)

    return wl.evaluate(net, loader, correct)


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    net = wl.build_model(Bert)
    start = wl.preset.init_checkpoint
    if start and wl.converge:  # MLPerf's phase-1 weights (speed mode times random ones)
        wl.load_checkpoint(net, wl.data_dir() / start.file, start.name)
    model = wl.wrap(net)
    batches, val_loader = data.load(wl)

    def query(m: nn.Module, batch: data.Batch) -> torch.Tensor:
        return m(*to_device(batch[:-1], wl))  # the inputs alone: no labels to copy

    def accuracy(m: nn.Module) -> float:
        return evaluate(m, val_loader, wl)

    if wl.infer:  # the eval set's queries, timed, then its masked-token accuracy
        wl.inference(model, batches, query, accuracy if val_loader else None)
    else:
        # Adam's step hardly grows with the batch: scale the rate by its square root, not linearly.
        lr = cfg.scaled_lr(wl.global_batch_size, "sqrt")
        decay = [p for p in net.parameters() if p.ndim >= 2]  # not biases and LayerNorms, as BERT
        no_decay = [p for p in net.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay}],
            lr,
            betas=(0.9, 0.999),
            eps=1e-6,
            weight_decay=0.0,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(  # BERT's: linear warmup, then linear decay
            optimizer, warmup_linear(cfg.warmup, wl.total_steps(batches))
        )

        wl.start()
        for window in wl.windows(batches):
            for batch in window:
                *inputs, labels = to_device(batch, wl)
                with wl.autocast():
                    loss = mlm_loss(model(*inputs), labels)
                wl.step(loss, optimizer)
                schedule.step()
            if wl.converge:
                wl.log_eval(accuracy(net))
        if wl.converge:
            wl.save_checkpoint(net)  # the final weights, for infer runs
