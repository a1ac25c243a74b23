"""Every mini config's target is out of reach of a model-free baseline on the mini's own data.

A mini that logistic regression or a nearest neighbour passes shows that the pipeline runs,
not that the workload trained its model (issue 22). Each entry below builds the mini's data
with the workload's own generator at the preset's sizes, scores a baseline with the
workload's metric on the held-out split, and the test asserts that the score stays on the
wrong side of the target by the entry's margin (0.05 unless stated, in the metric's units).

Adding a workload is one function under `@baseline("name")` returning (what, score). An entry
that passes its target today is marked `KNOWN` (xfail, strict): fixing the mini flips it.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.ndimage
import torch

from workload_runs import MODEL_IMAGES, load_module, preset, spec

Score = tuple[str, float]  # which baseline, its value in the metric's units
BASELINES: dict[str, tuple[Callable[[Any], Score], float]] = {}
KNOWN: dict[str, str] = {}  # workload: why its baseline passes today (the fix flips the xfail)


def baseline(*workloads: str, margin: float = 0.05) -> Callable:
    """Register fn(preset) -> (what, score) as the baseline of these workloads' minis."""

    def register(fn: Callable[[Any], Score]) -> Callable[[Any], Score]:
        for name in workloads:
            BASELINES[name] = (fn, margin)
        return fn

    return register


MINIS = sorted(
    p.parent.name for p in MODEL_IMAGES.glob("*/workload.toml") if "[configs.mini]" in p.read_text()
)


def entry(name: str) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN[name])] if name in KNOWN else []
    return pytest.param(name, marks=marks)


def test_every_mini_has_a_baseline() -> None:
    assert sorted(BASELINES) == MINIS


@pytest.mark.parametrize("name", [entry(n) for n in MINIS])
def test_baseline_stays_below_target(name: str) -> None:
    p = preset(name, "mini")
    fn, margin = BASELINES[name]
    what, score = fn(p)
    if spec(name)["quality"]["direction"] == "higher":
        assert score <= p.target - margin, f"{what}: {score:.3f} against target {p.target}"
    else:
        assert score >= p.target + margin, f"{what}: {score:.3f} against target {p.target}"


# --- model-free tools, written once ---------------------------------------------------------


def softmax_regression(x: np.ndarray, y: np.ndarray, classes: int, steps: int = 300) -> Callable:
    """Multinomial logistic regression (L2 1e-4) by full-batch gradient descent with momentum on
    standardised features; returns the class probabilities' function."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    w, b = np.zeros((x.shape[1], classes)), np.zeros(classes)
    vw, vb, onehot = np.zeros_like(w), np.zeros_like(b), np.eye(classes)[y]
    xs = (x - mean) / std

    def probs(z: np.ndarray) -> np.ndarray:
        logits = z @ w + b
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    for _ in range(steps):
        err = (probs(xs) - onehot) / len(y)
        vw = 0.9 * vw - 0.5 * (xs.T @ err + 1e-4 * w)
        vb = 0.9 * vb - 0.5 * err.sum(0)
        w, b = w + vw, b + vb
    return lambda z: probs((z - mean) / std)


def nearest_neighbour(train: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query row's nearest training row (Euclidean), in chunks."""
    sq = (train**2).sum(1)
    return np.concatenate(
        [
            (sq[None] - 2 * q @ train.T).argmin(1)
            for q in np.array_split(query, -(-len(query) // 512))
        ]
    )


def classifiers(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> Score:
    """The better of logistic regression and 1-NN on the flattened pixels: (what, top-1)."""
    a, b = x_train.reshape(len(x_train), -1), x_val.reshape(len(x_val), -1)
    classes = int(y_train.max()) + 1
    lr = (softmax_regression(a, y_train, classes)(b).argmax(1) == y_val).mean()
    nn = (y_train[nearest_neighbour(a, b)] == y_val).mean()
    return f"logistic regression {lr:.3f}, 1-NN {nn:.3f}", max(lr, nn)


def ngram(train: list[list[int]], context: int) -> Callable[[tuple[int, ...]], int]:
    """The most frequent next token after each context of up to `context` tokens, backing off
    to shorter contexts, then to the most frequent token."""
    tables: list[dict] = [{} for _ in range(context + 1)]
    for row in train:
        for i, token in enumerate(row):
            for k in range(context + 1):
                if i >= k:
                    counts = tables[k].setdefault(tuple(row[i - k : i]), {})
                    counts[token] = counts.get(token, 0) + 1
    best = [{c: max(n, key=n.get) for c, n in t.items()} for t in tables]

    def predict(ctx: tuple[int, ...]) -> int:
        for k in range(min(context, len(ctx)), -1, -1):
            if (found := best[k].get(ctx[len(ctx) - k :])) is not None:
                return found
        raise AssertionError("the empty context is always known")

    return predict


# --- the entries ----------------------------------------------------------------------------


def logistic_regression_auc(
    dense: np.ndarray, ids: np.ndarray, labels: np.ndarray, tables: list[int], n_train: int
) -> float:
    """Held-out ROC AUC of logistic regression on the standardised dense features and the
    one-hot ids of every table, with no crosses: a weight per dense feature and per id, fitted
    on the first n_train rows by full-batch Adam on the L2-regularised log loss. The L2 strength
    is the one that scores best held out on DLRM's mini (scikit-learn's C = 0.01 = 1 / (7.6e-4
    n_train), of C from 0.003 to 10); these steps reach its lbfgs fit's AUC within 1e-4."""
    dense = (dense - dense[:n_train].mean(0)) / dense[:n_train].std(0)
    columns = ids + np.cumsum([0, *tables[:-1]])  # each table's ids in a column range of its own
    x, cols, y = dense[:n_train], columns[:n_train].ravel(), labels[:n_train]
    weights = np.zeros(1 + dense.shape[1] + sum(tables))  # bias, dense, one-hot ids
    moment, square = np.zeros_like(weights), np.zeros_like(weights)

    def logits(w: np.ndarray, x: np.ndarray, columns: np.ndarray) -> np.ndarray:
        return w[0] + x @ w[1 : 1 + x.shape[1]] + w[1 + x.shape[1] :][columns].sum(1)

    for step in range(1, 301):
        residual = (1 / (1 + np.exp(-logits(weights, x, columns[:n_train]))) - y) / n_train
        per_id = np.bincount(cols, np.repeat(residual, ids.shape[1]), minlength=sum(tables))
        grad = np.concatenate([[residual.sum()], x.T @ residual, per_id]) + 7.6e-4 * weights
        moment = 0.9 * moment + 0.1 * grad
        square = 0.999 * square + 0.001 * grad**2
        step_size = 0.1 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
        weights -= step_size * moment / (np.sqrt(square) + 1e-8)
    scores = logits(weights, dense[n_train:], columns[n_train:])
    return rank_auc(scores, labels[n_train:])


def rank_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC from the ranks (Mann-Whitney U); the scores here are continuous, so no ties."""
    ranks = np.empty(len(scores))
    ranks[np.argsort(scores)] = np.arange(1, len(scores) + 1)
    positive = labels == 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def ngram_accuracy(train: np.ndarray, val: np.ndarray, order: int, vocab: int) -> float:
    """Next-token accuracy on val's rows of the n-gram model counted on train's: after the
    previous order - 1 tokens, the token that followed them most often in train (ties: the
    smallest id), backing off to shorter contexts where train never showed one."""
    predicted = np.zeros((len(val), val.shape[1] - 1), dtype=np.int64)
    for k in range(order):  # context lengths 0 .. order - 1: a longer one overrides where seen
        keys, following = contexts(train, k, vocab)
        pairs, counts = np.unique(keys.ravel() * vocab + following.ravel(), return_counts=True)
        seen, token = pairs // vocab, pairs % vocab
        best = np.lexsort((token, -counts, seen))  # per context: most often, then smallest id
        first = np.r_[True, seen[best][1:] != seen[best][:-1]]
        seen, token = seen[best][first], token[best][first]
        asked, _ = contexts(val, k, vocab)
        at = np.minimum(np.searchsorted(seen, asked), len(seen) - 1)
        known = seen[at] == asked
        predicted[:, max(k - 1, 0) :][known] = token[at][known]
    return float((predicted == val[:, 1:]).mean())


def contexts(rows: np.ndarray, k: int, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """The k tokens before each next token that has k before it in its row, as one integer
    (base vocab), and those next tokens."""
    last, start = rows.shape[1] - 1, max(k - 1, 0)
    keys = np.zeros((len(rows), last - start), dtype=np.int64)
    for j in range(k):
        keys = keys * vocab + rows[:, start - k + 1 + j : last - k + 1 + j]
    return keys, rows[:, start + 1 :]


@baseline("resnet50", "resnet50_paddle", "wave_mlp")
def glyph_classifiers(p: Any) -> Score:
    from deepspark_workload import images

    return classifiers(*images.glyph_splits(p.image_size))


@baseline("bert_large", "bert_large_paddle")
def masked_ngram(p: Any) -> Score:
    """Each masked word from its two neighbours in the input (the trigram around it in the
    training sentences), backing off to the left neighbour alone, then the commonest word."""
    from deepspark_workload import mlm

    vocab, train, val = mlm.grammar_splits(p.train_size, p.eval_size, p.seq_len)
    inputs, _, _, positions, labels = mlm.mask_eval(val, vocab, p.predictions)
    around: dict[tuple[int, int], dict[int, int]] = {}
    for row in train.tolist():
        for i in range(1, len(row) - 1):
            counts = around.setdefault((row[i - 1], row[i + 1]), {})
            counts[row[i]] = counts.get(row[i], 0) + 1
    after = ngram(train.tolist(), 1)
    hits = total = 0
    for row, slots, answers in zip(
        inputs.tolist(), positions.tolist(), labels.tolist(), strict=True
    ):
        for i, answer in zip(slots, answers, strict=True):
            if answer == mlm.IGNORE:
                continue
            counts = around.get((row[i - 1], row[i + 1]))
            guess = max(counts, key=counts.get) if counts else after((row[i - 1],))
            hits, total = hits + (guess == answer), total + 1
    return f"masked word from its neighbours {hits / total:.3f}", hits / total


@baseline("cpm")
def next_token_ngrams(p: Any) -> Score:
    """The best of the n-grams of orders 2 and 3 (the previous one or two tokens, backing off)."""
    data = load_module("cpm", "data")
    train = data.sentences(p.train_sequences, p.seq_len, seed=1).numpy()
    val = data.sentences(p.val_sequences, p.seq_len, seed=2).numpy()
    best = max(ngram_accuracy(train, val, n, data.VOCAB) for n in (2, 3))
    return f"n-gram of order 2 or 3 {best:.3f}", best


@baseline("dlrm")
def click_regression(p: Any) -> Score:
    """Logistic regression on the dense features and one-hot ids: no interaction."""
    tables = p.model["table_sizes"]
    dense, ids, labels, _ = load_module("dlrm", "data").click_log(
        p.train_samples + p.val_samples, tables
    )
    auc = logistic_regression_auc(
        dense.numpy(), ids.numpy(), labels.numpy(), tables, p.train_samples
    )
    return f"logistic regression, no interaction {auc:.3f}", auc


@baseline("conformer")
def nearest_utterance(p: Any) -> Score:
    """The transcript of the nearest training utterance (features resampled to 16 frames)."""
    data, metrics = load_module("conformer", "data"), load_module("conformer", "metrics")
    utts = data.synthesize(p.utterances + p.val_utterances, p.letters, p.model["in_features"])
    x, frames, y, counts = (t.numpy() for t in utts.tensors)
    grid = np.linspace(0, 1, 16)
    pooled = np.stack(
        [
            np.stack([np.interp(grid, np.linspace(0, 1, n), col) for col in f[:n].T], 1).ravel()
            for f, n in zip(x, frames, strict=True)
        ]
    )
    texts = [row[:n].tolist() for row, n in zip(y, counts, strict=True)]
    n = p.utterances
    guesses = [texts[i] for i in nearest_neighbour(pooled[:n], pooled[n:])]
    errors, chars = metrics.char_errors(guesses, texts[n:])
    return f"nearest training transcript, CER {errors / chars:.3f}", errors / chars


@baseline("satrn")
def nearest_word(p: Any) -> Score:
    """The word of the nearest training image: no validation word occurs in training."""
    data, metrics = load_module("satrn", "data"), load_module("satrn", "metrics")
    (xt, train), (xv, val) = data.rendered(p.charset, p.image_size, p.train_samples, p.val_samples)
    guesses = [train[i] for i in nearest_neighbour(xt.flatten(1).numpy(), xv.flatten(1).numpy())]
    hits = metrics.word_hits(guesses, val) / len(val)
    return f"nearest training word {hits:.3f}", hits


@baseline("tacotron2")
def previous_frame(p: Any) -> Score:
    """Each frame from the real previous one (teacher forcing, as the metric): the better of
    copying it and a ridge regression on it, fitted on the training utterances."""
    data = load_module("tacotron2", "data")
    shape = dict(n_letters=p.model["n_symbols"] - 1, n_mel=p.model["n_mel"])

    def pairs(split: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        mels = [m.numpy().T for _, m in data.synthetic(n, split=split, **shape).items]
        before = np.concatenate([np.vstack([np.zeros_like(m[:1]), m[:-1]]) for m in mels])
        return before, np.concatenate(mels)

    (a, b), (va, vb) = pairs(0, p.utterances), pairs(1, p.val_utterances)
    design = np.hstack([a, np.ones((len(a), 1))])
    w = np.linalg.solve(design.T @ design + 1e-3 * np.eye(design.shape[1]), design.T @ b)
    ridge = ((np.hstack([va, np.ones((len(va), 1))]) @ w - vb) ** 2).mean()
    copy = ((va - vb) ** 2).mean()
    return f"previous frame: copied {copy:.3f}, ridge {ridge:.3f}", min(copy, ridge)


@baseline("unet3d")
def smoothed_thresholds(p: Any) -> Score:
    """Two intensity thresholds on the volume smoothed over 3^3, chosen on the training cases."""
    data, metrics = load_module("unet3d", "data"), load_module("unet3d", "metrics")

    def smoothed(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = data.phantoms(n, p.patch_size, seed=seed).tensors
        return torch.nn.functional.avg_pool3d(x, 3, 1, 1, count_include_pad=False)[:, 0], y[:, 0]

    def dice(split: tuple[torch.Tensor, torch.Tensor], lo: float, hi: float) -> float:
        s, y = split
        return metrics.case_dice((s > lo).long() + (s > hi).long(), y, 3).mean().item()

    train, val = smoothed(128, 0), smoothed(p.val_cases, 1)  # 128 cases tune two numbers
    grid = [(lo, hi) for lo in np.arange(0.25, 2, 0.25) for hi in np.arange(lo + 0.5, 3.5, 0.25)]
    lo, hi = max(grid, key=lambda t: dice(train, *t))
    score = dice(val, lo, hi)
    return f"smoothed thresholds {lo:.2f}/{hi:.2f}: {score:.3f}", score


def components(mask: np.ndarray, min_area: int) -> list[tuple[slice, slice, np.ndarray]]:
    """Connected regions of a boolean image: (rows, columns, the region's mask in its box)."""
    labels, _ = scipy.ndimage.label(mask)
    return [
        (rs, cs, labels[rs, cs] == k)
        for k, (rs, cs) in enumerate(scipy.ndimage.find_objects(labels), 1)
        if (labels[rs, cs] == k).sum() >= min_area
    ]


@baseline("yolov5")
def shape_regions(p: Any) -> Score:
    """The better of two ways to find the shapes: pixels away from the border's median colour,
    or inside strong edges (Sobel of the lightly blurred image, holes filled); either grouped
    into connected regions, each a box classed by how much of it the region fills (a rectangle
    all, an ellipse pi/4, a triangle 1/2)."""
    data, metrics = load_module("yolov5", "data"), load_module("yolov5", "metrics")
    images, labels = data.shapes(p.val_images, p.image_size, seed=1).tensors
    images = images.float().numpy() / 255

    def colour(image: np.ndarray) -> np.ndarray:
        border = np.concatenate([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], 1)
        return np.abs(image - np.median(border, 1)[:, None, None]).sum(0) > 0.3

    def edges(image: np.ndarray) -> np.ndarray:
        blurred = scipy.ndimage.gaussian_filter(image, (0, 1, 1))
        gradient = sum(
            np.hypot(scipy.ndimage.sobel(c, 0), scipy.ndimage.sobel(c, 1)) for c in blurred
        )
        return scipy.ndimage.binary_fill_holes(gradient > 1.5)

    def score(foreground: Callable[[np.ndarray], np.ndarray]) -> float:
        stats = metrics.DetectionStats(p.model["num_classes"])
        for image, objects in zip(images, labels, strict=True):
            found = [
                (
                    cs.start,
                    rs.start,
                    cs.stop,
                    rs.stop,
                    1.0,
                    0 if fill > 0.9 else 1 if fill > 0.65 else 2,
                )
                for rs, cs, region in components(foreground(image), 20)
                for fill in [region.mean()]
            ]
            objects = objects[objects[:, 0] >= 0]
            truth = torch.cat(
                (objects[:, :1], metrics.xywh_to_xyxy(objects[:, 1:]) * p.image_size), 1
            )
            stats.add(torch.tensor(found, dtype=torch.float32).view(-1, 6), truth)
        return stats.map50()

    scores = {"colour": score(colour), "edge": score(edges)}
    what = max(scores, key=scores.__getitem__)
    return f"{what} regions {scores[what]:.3f} (colour {scores['colour']:.3f})", scores[what]


@baseline("fairmot")
def background_subtraction(p: Any) -> Score:
    """Each video's per-pixel median frame as its background; regions away from it are the
    detections, their mean colour the embedding, tracked by the workload's own tracker."""
    data, metrics = load_module("fairmot", "data"), load_module("fairmot", "metrics")
    h = p.image_size[0]
    _, videos = data.synthetic(**p.synthetic.model_dump(), size=h, max_objs=p.max_objs)
    counts = np.zeros(4)
    for video in videos:
        frames = torch.stack([x for x, _ in video]).numpy()
        background = np.median(frames, 0)
        tracker, clear = (
            metrics.Tracker(p.track.emb_gate, p.track.iou_gate, p.track.max_lost),
            metrics.ClearMOT(),
        )
        for frame, gt in zip(frames, (g for _, g in video), strict=True):
            regions = components(np.abs(frame - background).sum(0) > 0.3, 20)
            boxes = np.array(
                [(cs.start, rs.start, cs.stop, rs.stop) for rs, cs, _ in regions], float
            )
            colours = np.array([frame[:, rs, cs][:, m].mean(1) for rs, cs, m in regions]).reshape(
                -1, 3
            )
            embeddings = colours / np.linalg.norm(colours, axis=1, keepdims=True).clip(1e-6)
            clear.update(gt.numpy(), tracker.update(boxes.reshape(-1, 4), embeddings))
        counts += clear.counts
    score = metrics.mota(*counts)
    return f"background subtraction and the tracker {score:.3f}", score


@baseline("ngp_nerf", margin=1.0)
def nearest_view(p: Any) -> Score:
    """The best of an all-white image, the mean training view, and the training view whose
    camera is nearest: PSNR in dB over the held-out views."""
    data, metrics = load_module("ngp_nerf", "data"), load_module("ngp_nerf", "metrics")
    train_cams = data.fibonacci_cameras(p.train_views)
    test_cams = data.fibonacci_cameras(p.test_views, turn=0.5)
    train = [rgb for _, _, rgb in data.render_views(train_cams, p.image_size)]
    test = [rgb for _, _, rgb in data.render_views(test_cams, p.image_size)]
    eyes = np.stack([c[:3, 3].numpy() for c in train_cams])
    mean = torch.stack(train).mean(0)
    scores = {
        "white": np.mean([metrics.psnr(torch.ones_like(t), t) for t in test]),
        "mean view": np.mean([metrics.psnr(mean, t) for t in test]),
        "nearest view": np.mean(
            [
                metrics.psnr(
                    train[int(np.linalg.norm(eyes - c[:3, 3].numpy(), axis=1).argmin())], t
                )
                for c, t in zip(test_cams, test, strict=True)
            ]
        ),
    }
    what = max(scores, key=scores.get)
    return f"{what} {scores[what]:.1f} dB", float(scores[what])


def test_ngram_accuracy_hand_checked() -> None:
    train = np.array([[5, 2, 4, 1, 2, 3, 1, 2, 3]])
    val = np.array([[5, 2, 4]])  # next tokens 2, 4
    assert ngram_accuracy(train, val, 1, 7) == 1 / 2  # always 2 (3 of the 8 next tokens)
    assert ngram_accuracy(train, val, 2, 7) == 1 / 2  # 5 -> 2 hits, 2 -> 3 (2 of 3) misses
    assert ngram_accuracy(train, val, 3, 7) == 1  # 5 -> 2 (backed off), then (5, 2) -> 4
    # 6 never seen: order 1's 2 (hit), then (6, 2) never seen: order 2's 2 -> 3 (hit)
    assert ngram_accuracy(train, np.array([[6, 2, 3]]), 3, 7) == 1
