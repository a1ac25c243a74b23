"""The masked-LM loss and its quality metric, over the selected positions alone (paddle)."""

import paddle
import paddle.nn.functional as F

IGNORE = -100  # an unused prediction slot's label (deepspark_workload.mlm.IGNORE)


def mlm_loss(logits: paddle.Tensor, labels: paddle.Tensor) -> paddle.Tensor:
    """Mean cross-entropy over the selected positions; logits (B, P, V), labels (B, P)."""
    labels = labels.flatten()
    losses = F.cross_entropy(
        logits.flatten(0, 1).astype("float32"), labels, ignore_index=IGNORE, reduction="none"
    )  # 0 at ignored slots; paddle's "mean" would divide by every slot, ignored ones included
    return losses.sum() / (labels != IGNORE).sum().clip(min=1).astype("float32")


def mlm_accuracy(logits: paddle.Tensor, labels: paddle.Tensor) -> tuple[int, int]:
    """(correct top-1 predictions, selected positions): sum both over the eval set, then divide."""
    selected = labels != IGNORE
    correct = (logits.argmax(-1) == labels) & selected
    return int(correct.sum()), int(selected.sum())
