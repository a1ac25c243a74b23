"""Train BERT-large in PaddlePaddle with masked-language-model pretraining under the contract.

The twin of model_images/bert_large (PyTorch): the same presets, data, metric and target.
mini: a tiny BERT on a generated English-like language, a minute on a CPU. full: BERT-large on
MLPerf's pre-tokenized Wikipedia at sequence length 512 (converge) or synthetic batches of that
shape (speed). See workload.toml for the presets.
"""

import paddle
from paddle import nn
from paddle.io import DataLoader

from deepspark_workload.paddle_workload import Workload
from deepspark_workload.schedules import warmup_linear

import data
from metrics import mlm_accuracy, mlm_loss
from model import Bert


def evaluate(net: nn.Layer, loader: DataLoader, wl: Workload) -> float:
    """Masked-token top-1 accuracy over the whole eval set (each rank scores its share)."""

    def correct(batch: list) -> tuple[int, int]:
        *inputs, labels = data.as_batch(*batch)
        return mlm_accuracy(net(*inputs), labels)

    return wl.evaluate(net, loader, correct)


with Workload.from_env(__file__) as wl:
    cfg = wl.preset.optim
    net = wl.build_model(Bert)
    model = wl.wrap(net)
    train_batches, val_loader = data.load(wl)

    # Adam's step hardly grows with the batch: scale the rate by its square root, not linearly.
    lr = cfg.scaled_lr(wl.global_batch_size, "sqrt")
    schedule = paddle.optimizer.lr.LambdaDecay(  # BERT's: linear warmup, then linear decay
        lr, warmup_linear(cfg.warmup, wl.total_steps(train_batches))
    )
    decay = {p.name for p in net.parameters() if p.ndim >= 2}  # not biases and LayerNorms
    optimizer = paddle.optimizer.AdamW(
        schedule,
        beta1=0.9,
        beta2=0.999,
        epsilon=1e-6,
        parameters=net.parameters(),
        weight_decay=cfg.weight_decay,
        apply_decay_param_fun=lambda name: name in decay,
    )

    wl.start()
    for window in wl.windows(train_batches):
        for batch in window:
            *inputs, labels = data.as_batch(*batch)
            with wl.autocast():
                loss = mlm_loss(model(*inputs), labels)
            wl.step(loss, optimizer)
            schedule.step()
        if wl.converge:
            wl.log_eval(evaluate(net, val_loader, wl))
