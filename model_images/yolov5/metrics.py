"""YOLOv5's loss, non-maximum suppression, and mAP@0.5 (imported by train.py and the tests).

The loss is utils/loss.py's ComputeLoss of Ultralytics YOLOv5 v7.0: CIoU box loss, objectness
BCE towards the predicted box's IoU, class BCE; a target is assigned to every anchor whose
width and height ratios to it stay under anchor_t, in its own cell and in the two neighbouring
cells its centre lies closest to.

mAP@0.5 is the VOC/COCO way: per class, detections sorted by confidence, each matched greedily
to the unmatched ground-truth box it overlaps most if that IoU is >= 0.5, then the area under
the precision/recall curve with all-point interpolation (VOC 2010+), averaged over the classes
that have ground truth.
"""

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

BALANCE = (4.0, 1.0, 0.4)  # objectness weight per level, strides 8/16/32
MAX_WH = 7680  # pixels; classes' boxes are shifted this far apart for NMS (as YOLOv5)
OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]]) * 0.5  # own + 4 neighbours


def xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    xy, half = b[..., :2], b[..., 2:4] / 2
    return torch.cat((xy - half, xy + half), -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every xyxy box in a (n, 4) with every one in b (m, 4): (n, m)."""
    lt, rb = torch.max(a[:, None, :2], b[:, :2]), torch.min(a[:, None, 2:], b[:, 2:])
    inter = (rb - lt).clamp(0).prod(2)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(1), (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a[:, None] + area_b - inter + 1e-9)


def complete_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """CIoU (Zheng et al. 2020) of matching xywh boxes: IoU - centre distance - aspect term."""
    (a1, a2), (b1, b2) = xywh_to_xyxy(a).split(2, -1), xywh_to_xyxy(b).split(2, -1)
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(0).prod(-1)
    wa, ha, wb, hb = a[:, 2], a[:, 3] + eps, b[:, 2], b[:, 3] + eps
    iou = inter / (wa * ha + wb * hb - inter + eps)
    enclosing = (torch.max(a2, b2) - torch.min(a1, b1)).pow(2).sum(-1) + eps  # diagonal squared
    centres = (a[:, :2] - b[:, :2]).pow(2).sum(-1)
    v = (4 / math.pi**2) * (torch.atan(wb / hb) - torch.atan(wa / ha)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (centres / enclosing + v * alpha)


class YoloLoss:
    """ComputeLoss with YOLOv5's gains, scaled as its train.py does for classes and image size.

    Returns the loss summed over the batch, as YOLOv5 does (its lr0 is for that sum), and
    the three parts (box, objectness, class) per image for logging.
    """

    def __init__(
        self,
        anchors: torch.Tensor,  # (levels, anchors, 2) in pixels
        strides: torch.Tensor,
        num_classes: int,
        image_size: int,
        box: float = 0.05,
        obj: float = 1.0,
        cls: float = 0.5,
        anchor_t: float = 4.0,
    ) -> None:
        levels = len(strides)
        self.anchors = anchors / strides.view(-1, 1, 1)  # in grid cells
        self.nc, self.anchor_t = num_classes, anchor_t
        self.gains = (
            box * 3 / levels,
            obj * (image_size / 640) ** 2 * 3 / levels,
            cls * num_classes / 80 * 3 / levels,
        )

    def __call__(
        self, preds: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """preds: per level (batch, anchors, ny, nx, 5 + nc); targets: (n, 6) rows of image
        index, class, cx, cy, w, h with coordinates normalised to the image."""
        device = targets.device
        lbox, lobj, lcls = (torch.zeros((), device=device) for _ in range(3))
        for i, (p, (b, a, gj, gi, tbox, tcls, anchors)) in enumerate(
            zip(preds, self.build_targets(preds, targets), strict=True)
        ):
            p = p.float()
            tobj = torch.zeros(p.shape[:4], device=device)
            if len(b):
                ps = p[b, a, gj, gi]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors
                iou = complete_iou(torch.cat((pxy, pwh), 1), tbox)
                lbox = lbox + (1 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0)  # objectness learns the box's quality
                if self.nc > 1:
                    onehot = F.one_hot(tcls, self.nc).float()
                    lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], onehot)
            lobj = lobj + F.binary_cross_entropy_with_logits(p[..., 4], tobj) * BALANCE[i]
        parts = torch.stack((lbox * self.gains[0], lobj * self.gains[1], lcls * self.gains[2]))
        return parts.sum() * len(preds[0]), parts.detach()

    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor) -> list[tuple]:
        """Per level: image, anchor, cell row and column, box (cell offset, wh), class, anchor."""
        na, nt = self.anchors.shape[1], len(targets)
        device = targets.device
        anchor_index = torch.arange(na, device=device).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), anchor_index[..., None]), 2)  # (na, nt, 7)
        offsets_all = OFFSETS.to(device)
        out = []
        for p, anchors in zip(preds, self.anchors.to(device), strict=True):
            ny, nx = p.shape[2:4]
            gain = torch.tensor([1, 1, nx, ny, nx, ny, 1], device=device, dtype=torch.float32)
            t = targets * gain  # in grid cells
            offsets = torch.zeros(1, 2, device=device)
            if nt:
                ratio = t[..., 4:6] / anchors[:, None]
                t = t[torch.max(ratio, 1 / ratio).max(2)[0] < self.anchor_t]
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                left, top = ((gxy % 1 < 0.5) & (gxy > 1)).T
                right, bottom = ((gxi % 1 < 0.5) & (gxi > 1)).T
                use = torch.stack((torch.ones_like(left), left, top, right, bottom))
                t = t.repeat((5, 1, 1))[use]
                offsets = (torch.zeros_like(gxy)[None] + offsets_all[:, None])[use]
            else:
                t = targets[0]
            b, c = t[:, :2].long().T
            gxy, gwh, a = t[:, 2:4], t[:, 4:6], t[:, 6].long()
            gij = (gxy - offsets).long()
            gi, gj = gij[:, 0].clamp(0, nx - 1), gij[:, 1].clamp(0, ny - 1)
            out.append((b, a, gj, gi, torch.cat((gxy - gij, gwh), 1), c, anchors[a]))
        return out


def non_max_suppression(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, max_keep: int
) -> torch.Tensor:
    """Greedy NMS on xyxy boxes: indices kept, best first (at most max_keep).

    Cluster-NMS (Zheng et al. 2021): a box survives if no surviving better box overlaps it;
    iterated from "all survive" to the fixed point, which is exactly greedy NMS's answer, in
    a few matrix steps instead of a Python loop over boxes.
    """
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    overlaps = box_iou(boxes, boxes).triu_(1) > iou_threshold  # [j, i]: j better, overlaps i
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    while True:
        survivors = ~(overlaps & keep[:, None]).any(0)
        if torch.equal(survivors, keep):
            return order[keep][:max_keep]
        keep = survivors


def postprocess(
    decoded: torch.Tensor,
    conf_threshold: float = 0.001,
    iou_threshold: float = 0.6,
    max_det: int = 300,
    max_candidates: int = 3000,
) -> list[torch.Tensor]:
    """Per image (n, 6) detections: x1, y1, x2, y2, confidence, class (YOLOv5 val.py settings).

    decoded: (batch, boxes, 5 + nc) from Detect.decode. A box may yield one detection per
    class whose objectness x class probability passes the threshold; NMS runs per class, over
    the best max_candidates (YOLOv5: 30,000; fewer here, as this NMS holds all pairs at once).
    """
    out = []
    for x in decoded.float():
        x = x[x[:, 4] > conf_threshold]
        scores = x[:, 5:] * x[:, 4:5]
        i, c = (scores > conf_threshold).nonzero().T
        boxes, conf = xywh_to_xyxy(x[i, :4]), scores[i, c]
        top = conf.argsort(descending=True)[:max_candidates]
        boxes, conf, c = boxes[top], conf[top], c[top]
        shifted = boxes + c[:, None] * MAX_WH  # classes apart: one NMS does them all
        keep = non_max_suppression(shifted, conf, iou_threshold, max_det)
        out.append(torch.cat((boxes[keep], conf[keep, None], c[keep, None].float()), 1))
    return out


def match(
    detections: torch.Tensor, truth: torch.Tensor, iou_threshold: float = 0.5
) -> torch.Tensor:
    """True positives of one image's detections (x1, y1, x2, y2, conf, class), sorted by
    confidence, against its ground truth (class, x1, y1, x2, y2): each in turn takes the
    unmatched box of its class it overlaps most, if by iou_threshold or more."""
    tp = torch.zeros(len(detections))
    if not len(truth):
        return tp
    iou = box_iou(detections[:, :4], truth[:, 1:])
    iou[detections[:, 5, None] != truth[None, :, 0]] = -1  # another class: never a match
    for d in (iou.max(1).values >= iou_threshold).nonzero()[:, 0].tolist():  # the rest miss
        j = int(iou[d].argmax())
        if iou[d, j] >= iou_threshold:
            tp[d] = 1
            iou[:, j] = -1  # taken
    return tp


def average_precision(tp: torch.Tensor, conf: torch.Tensor, n_truth: int) -> float:
    """Area under one class's precision/recall curve, all-point interpolated."""
    if n_truth == 0:
        return float("nan")
    tp = tp[conf.argsort(descending=True, stable=True)].double()
    tps, fps = tp.cumsum(0), (1 - tp).cumsum(0)
    recall = torch.cat((torch.zeros(1), tps / n_truth, torch.ones(1)))
    precision = torch.cat((torch.zeros(1), tps / (tps + fps), torch.zeros(1)))
    precision = precision.flip(0).cummax(0).values.flip(0)  # the envelope: best to its right
    return float(((recall[1:] - recall[:-1]) * precision[1:]).sum())


class DetectionStats:
    """Every detection's (class, confidence, true positive) and the ground truth per class."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.rows: list[torch.Tensor] = []
        self.truth = torch.zeros(num_classes, dtype=torch.float64)

    def add(self, detections: torch.Tensor, truth: torch.Tensor) -> None:
        """One image: detections (x1, y1, x2, y2, conf, class), truth (class, x1, y1, x2, y2)."""
        detections, truth = detections.float().cpu(), truth.float().cpu()
        detections = detections[detections[:, 4].argsort(descending=True, stable=True)]
        tp = match(detections, truth)
        self.rows.append(torch.stack((detections[:, 5], detections[:, 4], tp), 1))
        self.truth += torch.bincount(truth[:, 0].long(), minlength=self.num_classes)

    def gather(self, sum_over_ranks: Callable[..., Sequence[float]], rank: int, world: int) -> None:
        """Every rank's rows on every rank, through sums: each rank fills its own slice."""
        rows = torch.cat(self.rows) if self.rows else torch.zeros(0, 3)
        counts = [int(n) for n in sum_over_ranks(*(len(rows) * (r == rank) for r in range(world)))]
        flat = torch.zeros(sum(counts), 3, dtype=torch.float64)
        start = sum(counts[:rank])
        flat[start : start + len(rows)] = rows.double()
        self.rows = [torch.tensor(sum_over_ranks(*flat.flatten().tolist())).view(-1, 3)]
        self.truth = torch.tensor(sum_over_ranks(*self.truth.tolist()), dtype=torch.float64)

    def map50(self) -> float:
        """mAP@0.5 over the classes with ground truth (0 if there is none)."""
        rows = torch.cat(self.rows) if self.rows else torch.zeros(0, 3)
        aps = [
            average_precision(rows[rows[:, 0] == c, 2], rows[rows[:, 0] == c, 1], int(n))
            for c, n in enumerate(self.truth.tolist())
            if n > 0
        ]
        return sum(aps) / len(aps) if aps else 0.0
