"""From the heads' maps to tracks, and tracks to MOTA.

decode: detections at heatmap peaks (3x3 max-pool NMS) above a threshold, with their boxes
and unit re-ID embeddings. Tracker: FairMOT's online association (JDE's tracker), with a
constant-velocity prediction in place of its Kalman filter. ClearMOT: the CLEAR-MOT counts
as py-motmetrics makes them, MOTA = 1 - (FN + FP + IDSW) / GT.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

DOWN_RATIO = 4
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [n, 4], scores [n], embeddings


@torch.no_grad()
def decode(out: dict[str, torch.Tensor], threshold: float, max_dets: int = 500) -> list[Detections]:
    """Per image: the peaks scoring over threshold, best first, as input-pixel x1 y1 x2 y2."""
    heat = torch.sigmoid(out["hm"].float())
    heat = heat * (heat == F.max_pool2d(heat, 3, 1, padding=1))  # keep local maxima only
    dets = []
    for b in range(heat.shape[0]):
        ys, xs = torch.nonzero(heat[b, 0] > threshold, as_tuple=True)
        scores = heat[b, 0, ys, xs]
        order = scores.argsort(descending=True)[:max_dets]
        ys, xs, scores = ys[order], xs[order], scores[order]
        reg, ltrb = out["reg"][b, :, ys, xs].float().T, out["wh"][b, :, ys, xs].float().T
        cx, cy = xs + reg[:, 0], ys + reg[:, 1]
        boxes = torch.stack([cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3]], 1)
        emb = F.normalize(out["id"][b, :, ys, xs].float().T, dim=1)
        dets.append((DOWN_RATIO * boxes.cpu().numpy(), scores.cpu().numpy(), emb.cpu().numpy()))
    return dets


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [n, 4] and b [m, 4] (x1, y1, x2, y2) -> [n, m]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def assign(cost: np.ndarray, max_cost: float) -> list[tuple[int, int]]:
    """Hungarian matching using only pairs with cost <= max_cost: as many pairs as possible,
    then the lowest total cost (py-motmetrics' way of handling forbidden pairs)."""
    if cost.size == 0:
        return []
    valid = cost <= max_cost
    big = 2 * (max_cost + 1) * max(cost.shape)  # beats any sum of valid costs
    rows, cols = linear_sum_assignment(np.where(valid, cost, big))
    return [(r, c) for r, c in zip(rows, cols, strict=True) if valid[r, c]]


@dataclass
class Track:
    id: int
    box: np.ndarray
    embedding: np.ndarray
    confirmed: bool
    velocity: np.ndarray | None = None  # box change per frame
    missed: int = 0  # frames since the last match

    def predict(self) -> np.ndarray:
        v = 0 if self.velocity is None else self.velocity
        return self.box + v * (self.missed + 1)

    def update(self, box: np.ndarray, embedding: np.ndarray, momentum: float) -> None:
        step = (box - self.box) / (self.missed + 1)
        self.velocity = step if self.velocity is None else 0.5 * (self.velocity + step)
        self.box, self.missed, self.confirmed = box, 0, True
        e = momentum * self.embedding + (1 - momentum) * embedding
        self.embedding = e / np.linalg.norm(e)


class Tracker:
    """Online multi-object tracker (FairMOT's association, Kalman filter left out).

    Each frame: (1) confirmed tracks, tracked or lost, take detections by embedding cosine
    distance (at most emb_gate), gated to near their predicted box; (2) the tracks seen in the
    previous frame that are still free, new ones included, take the rest by IoU (at least
    iou_gate); (3) a detection left over starts a track, confirmed at once in the first frame
    and otherwise by its next match; a track unmatched for more than max_lost frames ends.
    """

    def __init__(
        self,
        emb_gate: float = 0.4,
        iou_gate: float = 0.5,
        max_lost: int = 30,
        momentum: float = 0.9,  # of the track's embedding, updated at each match
    ) -> None:
        self.emb_gate, self.iou_gate, self.max_lost = emb_gate, iou_gate, max_lost
        self.momentum = momentum
        self.tracks: list[Track] = []
        self.frames = 0
        self.next_id = 1

    def update(self, boxes: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """Take one frame's detections; return the [k, 5] (id, x1, y1, x2, y2) tracked now."""
        free = list(range(len(boxes)))
        pool = [t for t in self.tracks if t.confirmed]
        matched: set[int] = set()
        if pool and free:
            predicted = np.stack([t.predict() for t in pool])
            cost = 1 - np.stack([t.embedding for t in pool]) @ embeddings.T
            size = np.hypot(*(predicted[:, 2:] - predicted[:, :2]).T)
            centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
            dist = np.linalg.norm(centre(predicted)[:, None] - centre(boxes)[None], axis=2)
            cost[dist > size[:, None]] = np.inf  # motion gate: within a box diagonal
            for r, c in assign(cost, self.emb_gate):
                pool[r].update(boxes[c], embeddings[c], self.momentum)
                matched.add(id(pool[r]))
                free.remove(c)
        recent = [t for t in self.tracks if t.missed == 0 and id(t) not in matched]
        if recent and free:
            overlap = iou(np.stack([t.predict() for t in recent]), boxes[free])
            taken = []
            for r, c in assign(1 - overlap, 1 - self.iou_gate):
                recent[r].update(boxes[free[c]], embeddings[free[c]], self.momentum)
                matched.add(id(recent[r]))
                taken.append(free[c])
            free = [c for c in free if c not in taken]
        survivors = []
        for t in self.tracks:
            if id(t) not in matched:
                t.missed += 1
                if not t.confirmed or t.missed > self.max_lost:
                    continue
            survivors.append(t)
        for c in free:
            track = Track(self.next_id, boxes[c], embeddings[c], confirmed=self.frames == 0)
            survivors.append(track)
            self.next_id += 1
        self.tracks, self.frames = survivors, self.frames + 1
        out = [(t.id, *t.box) for t in self.tracks if t.confirmed and t.missed == 0]
        return np.array(out, dtype=np.float64).reshape(-1, 5)


class ClearMOT:
    """CLEAR-MOT counts over one sequence, frame by frame, as py-motmetrics makes them.

    A ground-truth object stays matched to its previous hypothesis while their IoU is at
    least min_iou; the others are matched by the Hungarian algorithm on 1 - IoU; a match to a
    hypothesis other than the object's last one is an identity switch.
    """

    def __init__(self, min_iou: float = 0.5) -> None:
        self.min_iou = min_iou
        self.gt = self.fn = self.fp = self.idsw = 0
        self.last: dict[int, int] = {}  # ground-truth id -> hypothesis id it last matched

    def update(self, gt: np.ndarray, hyp: np.ndarray) -> None:
        """One frame: gt and hyp are [n, 5] arrays of (id, x1, y1, x2, y2)."""
        gt, hyp = np.asarray(gt, dtype=np.float64), np.asarray(hyp, dtype=np.float64)
        gt_ids, hyp_ids = gt[:, 0].astype(int).tolist(), hyp[:, 0].astype(int).tolist()
        dist = 1 - iou(gt[:, 1:], hyp[:, 1:])
        valid = dist <= 1 - self.min_iou
        free_gt, free_hyp = set(range(len(gt_ids))), set(range(len(hyp_ids)))
        for i, o in enumerate(gt_ids):  # keep last frame's matches that still hold
            if o in self.last and self.last[o] in hyp_ids:
                j = hyp_ids.index(self.last[o])
                if valid[i, j] and j in free_hyp:
                    free_gt.discard(i)
                    free_hyp.discard(j)
        rows, cols = sorted(free_gt), sorted(free_hyp)
        for r, c in assign(dist[np.ix_(rows, cols)], 1 - self.min_iou):
            o, h = gt_ids[rows[r]], hyp_ids[cols[c]]
            self.idsw += o in self.last and self.last[o] != h
            self.last[o] = h
            free_gt.discard(rows[r])
            free_hyp.discard(cols[c])
        self.gt += len(gt_ids)
        self.fn += len(free_gt)
        self.fp += len(free_hyp)

    @property
    def counts(self) -> tuple[int, int, int, int]:
        return self.gt, self.fn, self.fp, self.idsw


def mota(gt: float, fn: float, fp: float, idsw: float) -> float:
    return 1 - (fn + fp + idsw) / max(gt, 1)
