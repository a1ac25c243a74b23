"""The YOLOv5 workload: model, loss, metric, data, and whole runs under the contract: a mini
converge run, then the agent's infer runs (offline and latency, eager) with its weights."""

import math
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from deepspark_core.datasets import file_sha256
from deepspark_core.report import inference_row
from deepspark_core.results import Result
from deepspark_workload import ContractError
from workload_runs import converge, events, load_module, parameters, preset, spec

NAME = "yolov5"
PRESETS = spec(NAME)["configs"]


def load(name: str):
    return load_module(NAME, name)


def test_full_model_has_yolov5s_parameters() -> None:
    with torch.device("meta"):
        model = load("model").YOLOv5(**PRESETS["full"]["model"])
    n = parameters(model)
    assert abs(n - 7_235_389) / 7_235_389 < 0.02  # Ultralytics v7.0: YOLOv5s, 7,235,389 (7.2M)
    assert n == 7_235_389


def test_full_model_forward_backward_640() -> None:
    """The whole YOLOv5s at batch 1 on 640x640, with its loss: every parameter gets a gradient."""
    model = load("model").YOLOv5(**PRESETS["full"]["model"])
    preds = model(torch.rand(1, 3, 640, 640))
    assert [p.shape for p in preds] == [(1, 3, s, s, 85) for s in (80, 40, 20)]
    loss_fn = load("metrics").YoloLoss(
        model.detect.anchors, model.detect.stride, 80, 640, **PRESETS["full"]["loss"]
    )
    targets = torch.tensor([[0, 3, 0.5, 0.5, 0.2, 0.3], [0, 70, 0.2, 0.7, 0.05, 0.04]])
    loss, parts = loss_fn(preds, targets)
    loss.backward()
    assert torch.isfinite(loss) and (parts > 0).all()
    assert all(p.grad is not None for p in model.parameters())
    decoded = model.detect.decode([p.detach() for p in preds])
    assert decoded.shape == (1, 3 * (80**2 + 40**2 + 20**2), 85)


def test_average_precision_by_hand() -> None:
    metrics = load("metrics")
    # 3 ground-truth boxes; by confidence: TP, FP, TP, FP (one box never found).
    # recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2; envelope 1, 2/3, 2/3, 1/2.
    # all-point area: 1/3 * 1 + 1/3 * 2/3 = 5/9
    tp = torch.tensor([0.0, 1, 1, 0])
    conf = torch.tensor([0.5, 0.9, 0.6, 0.8])
    assert metrics.average_precision(tp, conf, 3) == pytest.approx(5 / 9)
    assert metrics.average_precision(torch.zeros(0), torch.zeros(0), 2) == 0
    assert math.isnan(metrics.average_precision(tp, conf, 0))


def test_match_and_map() -> None:
    metrics = load("metrics")
    truth = torch.tensor([[0, 0, 0, 10, 10], [0, 20, 20, 30, 30], [1, 0, 0, 10, 10]])
    detections = torch.tensor(
        [
            [0, 0, 10, 10, 0.9, 0],  # class 0, on the first box: TP
            [1, 0, 11, 10, 0.8, 0],  # the same box again, already taken: FP
            [20, 20, 30, 26, 0.7, 0],  # IoU 0.6 with the second box: TP
            [0, 0, 10, 10, 0.6, 2],  # right place, a class with no ground truth: FP
            [0, 0, 10, 4, 0.5, 1],  # IoU 0.4 with the class-1 box: FP
        ]
    )
    assert metrics.match(detections, truth).tolist() == [1, 0, 1, 0, 0]
    stats = metrics.DetectionStats(3)
    stats.add(detections.flip(0), truth)  # any order: sorted by confidence on the way in
    stats.gather(lambda *v: list(v), 0, 1)
    # class 0: TP, FP, TP over 2 boxes -> recall 1/2, 1/2, 1, precision 1, 1/2, 2/3:
    # 1/2 * 1 + 1/2 * 2/3 = 5/6. class 1: 0. class 2 has no ground truth: not counted.
    assert stats.map50() == pytest.approx((5 / 6 + 0) / 2)


def test_stats_gather_over_ranks() -> None:
    """Two ranks' shares, gathered through sums, score exactly what one process scores."""
    metrics = load("metrics")
    detections = [
        torch.tensor([[0, 0, 10, 10, 0.9, 0], [5, 5, 9, 9, 0.3, 1]]),
        torch.tensor([[20, 20, 30, 30, 0.4, 1], [0, 0, 4, 4, 0.8, 1]]),
        torch.zeros(0, 6),
    ]
    truths = [
        torch.tensor([[0, 0, 0, 10, 10]]),
        torch.tensor([[1, 20, 20, 30, 30]]),
        torch.tensor([[0, 1, 1, 5, 5]]),
    ]
    images = list(zip(detections, truths, strict=True))
    whole = metrics.DetectionStats(2)
    for detections, truth in images:
        whole.add(detections, truth)
    whole.gather(lambda *v: list(v), 0, 1)
    # class 0: TP of 2 boxes -> 1/2; class 1: FP (0.8), TP (0.4), FP (0.3) -> 1 * 1/2
    assert whole.map50() == pytest.approx(0.5)

    barrier, sent = threading.Barrier(2), [(), ()]

    def reducer(rank: int):
        def sum_over_ranks(*values: float) -> list[float]:
            sent[rank] = values
            barrier.wait()
            total = [a + b for a, b in zip(*sent, strict=True)]
            barrier.wait()
            return total

        return sum_over_ranks

    shares = [metrics.DetectionStats(2), metrics.DetectionStats(2)]
    for i, (detections, truth) in enumerate(images):
        shares[i % 2].add(detections, truth)  # as wl.loader shards: rank, rank + world, ...
    threads = [threading.Thread(target=shares[r].gather, args=(reducer(r), r, 2)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert shares[0].map50() == shares[1].map50() == whole.map50()


def test_nms_per_class() -> None:
    metrics = load("metrics")
    # one 4x4 box per row: cx, cy, w, h, objectness, class probabilities (2 classes)
    decoded = torch.tensor(
        [
            [
                [10, 10, 4, 4, 0.9, 0.9, 0.1],
                [10.5, 10, 4, 4, 0.8, 0.9, 0.1],  # overlaps the first, same class: suppressed
                [30, 30, 4, 4, 0.5, 0.1, 0.9],
                [50, 50, 4, 4, 0.0005, 1.0, 0.0],  # objectness under the threshold
            ]
        ]
    )
    (detections,) = metrics.postprocess(decoded, conf_threshold=0.05, iou_threshold=0.6)
    assert detections[:, 4].tolist() == pytest.approx([0.81, 0.45, 0.09])
    # 0.09: the first box as class 1 (its class-1 twin, 0.08, suppressed); the third box as
    # class 0 scores 0.05, not above the threshold
    assert detections[:, 5].tolist() == [0, 1, 1]
    assert detections[:, :4].tolist() == [[8, 8, 12, 12], [28, 28, 32, 32], [8, 8, 12, 12]]
    (nothing,) = metrics.postprocess(decoded, conf_threshold=0.95)
    assert nothing.shape == (0, 6)


def test_build_targets_neighbour_cells() -> None:
    """A target is assigned in its own cell and the two neighbours its centre lies closest to."""
    metrics = load("metrics")
    anchors = torch.tensor([[[8.0, 8], [100, 100], [16, 16]]] * 3)
    loss_fn = metrics.YoloLoss(anchors, torch.tensor([8.0, 16, 32]), 2, 64)
    preds = [torch.zeros(1, 3, s, s, 7) for s in (8, 4, 2)]
    # at stride 8 the centre (27, 21) px is cell (3.375, 2.625): own cell (3, 2), left (2, 2),
    # below (3, 3); a 10x10 box matches anchors 8 and 16 (ratio < 4), not 100.
    targets = torch.tensor([[0, 1, 27 / 64, 21 / 64, 10 / 64, 10 / 64]])
    b, a, gj, gi, tbox, tcls, _ = loss_fn.build_targets(preds, targets)[0]
    assert b.tolist() == [0] * 6
    cells = sorted(zip(a.tolist(), gj.tolist(), gi.tolist(), strict=True))
    assert cells == [(0, 2, 2), (0, 2, 3), (0, 3, 3), (2, 2, 2), (2, 2, 3), (2, 3, 3)]
    assert tcls.tolist() == [1] * 6
    assert ((tbox[:, :2] > -0.5) & (tbox[:, :2] < 1.5)).all()  # YOLOv5's xy reach
    _, parts = loss_fn(preds, targets)
    assert (parts > 0).all()


def test_shapes_data() -> None:
    """Fixed scenes (not drawn by the run's seed) whose boxes enclose their shapes."""
    shapes = load("data").shapes
    a, b = shapes(20, 64), shapes(20, 64)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors, strict=True))
    assert not torch.equal(shapes(20, 64, seed=1).tensors[0], a.tensors[0])
    images, labels = a.tensors
    assert images.shape == (20, 3, 64, 64) and images.dtype == torch.uint8
    present = labels[..., 0] >= 0
    assert present[:, 0].all() and set(labels[present][:, 0].tolist()) == {0, 1, 2}
    boxes = labels[present][:, 1:]
    assert ((boxes[:, 2:] >= 12 / 64 - 1e-6) & (boxes[:, 2:] <= 0.5)).all()
    assert ((boxes[:, :2] - boxes[:, 2:] / 2 >= 0) & (boxes[:, :2] + boxes[:, 2:] / 2 <= 1)).all()
    # each shape's centre stands out from the background just outside its box (its median: the
    # field is smooth, and a neighbour is at least a pixel further away)
    for image, objects in zip(images.float(), labels, strict=True):
        for cx, cy, w, h in (objects[objects[:, 0] >= 0][:, 1:] * 64).tolist():
            x0, y0 = max(int(cx - w / 2) - 1, 0), max(int(cy - h / 2) - 1, 0)
            x1, y1 = min(int(cx + w / 2) + 1, 63), min(int(cy + h / 2) + 1, 63)
            ring = torch.cat(
                (
                    image[:, y0, x0:x1],
                    image[:, y1, x0:x1],
                    image[:, y0:y1, x0],
                    image[:, y0:y1, x1],
                ),
                1,
            )
            centre = image[:, int(cy) - 1 : int(cy) + 2, int(cx) - 1 : int(cx) + 2].mean((1, 2))
            assert (centre - ring.median(1).values).abs().sum() > 0.4 * 255  # 0.5 apart, less noise


def test_untrained_model_is_far_from_the_target() -> None:
    metrics, mini = load("metrics"), PRESETS["mini"]
    torch.manual_seed(0)
    net = load("model").YOLOv5(**mini["model"], image_size=64).eval()
    images, labels = load("data").shapes(100, 64, seed=1).tensors
    stats = metrics.DetectionStats(3)
    with torch.no_grad():
        decoded = net.detect.decode(net(images.float() / 255))
    for detections, objects in zip(metrics.postprocess(decoded), labels, strict=True):
        objects = objects[objects[:, 0] >= 0]
        stats.add(
            detections, torch.cat((objects[:, :1], metrics.xywh_to_xyxy(objects[:, 1:]) * 64), 1)
        )
    stats.gather(lambda *v: list(v), 0, 1)
    assert stats.map50() < 0.1 < mini["target"]  # about 0.01 on the 500 validation scenes


def test_yolo_folder(tmp_path: Path) -> None:
    data = load("data")
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (80, 40), (30 * i, 100, 200)).save(
                tmp_path / "images" / split / f"{i}.jpg"
            )
        (tmp_path / "labels" / split / "0.txt").write_text(
            "5 0.5 0.5 0.5 0.5\n1 0.25 0.25 0.1 0.2\n"
        )
        # no labels/<split>/1.txt: an image without objects
        (tmp_path / "labels" / split / "2.txt").write_text("")
    val = data.YoloFolder(tmp_path, "val", 32, augment=False)
    x, labels = val[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    # 80x40 -> 32x16, letterboxed 8 px down: (0.5, 0.5, 0.5, 0.5) stays centred, half as tall
    assert labels.tolist()[0] == pytest.approx([5, 0.5, 0.5, 0.5, 0.25])
    assert labels.tolist()[1] == pytest.approx([1, 0.25, 0.375, 0.1, 0.1])
    assert val[1][1].shape == (0, 5) and val[2][1].shape == (0, 5)
    images, padded = data.collate([val[0], val[1]])
    assert images.shape == (2, 3, 32, 32) and padded.shape == (2, 2, 5)
    assert (padded[1, :, 0] == -1).all()
    train = data.YoloFolder(tmp_path, "train", 32, augment=True)
    for i in range(len(train)):
        x, labels = train[i]
        assert x.shape == (3, 32, 32) and labels.shape[1] == 5
        assert ((labels[:, 1:3] >= 0) & (labels[:, 1:3] <= 1) & (labels[:, 3:] > 0)).all()
    with pytest.raises(ContractError, match="images/"):
        data.YoloFolder(tmp_path / "missing", "val", 32, augment=False)


def test_full_speed_batches() -> None:
    """Speed mode on the full config: one synthetic batch of COCO's shape, repeated."""
    wl = SimpleNamespace(
        preset=preset(NAME, "full"), reads_data=False, batch_size=2, device=torch.device("cpu"),
        env=SimpleNamespace(batch_size=None),
    )  # fmt: skip
    batches, val = load("data").load(wl)
    assert val is None
    (x, labels), (x2, _) = next(batches), next(batches)
    assert x is x2 and x.shape == (2, 3, 640, 640) and x.dtype == torch.uint8
    assert labels.shape == (2, 8, 5) and (labels[..., 0] >= 0).all()
    assert (labels[..., 0] < 80).all() and ((labels[..., 1:] > 0) & (labels[..., 1:] < 1)).all()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """A mini converge run (seed 1, checked): its checkpoint.pt and its last event of each key."""
    out = tmp_path_factory.mktemp("converge")
    return out / "checkpoint.pt", {e["key"]: e for e in converge(NAME, out)}


@pytest.mark.slow
def test_mini_converge_writes_the_weights_it_evaluated(trained) -> None:
    checkpoint, last = trained
    assert last["framework"]["metadata"]["device"] == "cpu"
    state = torch.load(checkpoint, weights_only=True)  # the EMA's, a YOLOv5 state_dict
    net = load("model").YOLOv5(**PRESETS["mini"]["model"], image_size=64)
    assert state.keys() == net.state_dict().keys()
    assert last["checkpoint"]["metadata"]["sha256"] == file_sha256(checkpoint)


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario, windows, batch, queries",
    [("offline", 3, 32, 3 * 10), ("latency", 1, 1, 10 * 32)],  # 10 steps a window
)
def test_infer_scores_the_converge_runs_weights_and_gives_a_row(
    trained, cli, tmp_path, monkeypatch, scenario, windows, batch, queries
) -> None:
    """`run --mode infer` with the converge run's checkpoint, eager (torch.compile takes
    minutes to compile on a CPU): the same weights on the same 500 scenes in the same batches
    of 32 (a latency run's queries are of one image; its evaluation is not), so the mAP is
    exactly the converge run's last. The latency run's one window has throughput N/A."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as workload_runs: a shared 2-core runner
    checkpoint, last = trained
    code, out, err = cli(
        "run", NAME, "--mode", "infer", "--scenario", scenario, "--checkpoint", str(checkpoint),
        "--windows", str(windows), "--runtime", "process", "--out", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = Result.model_validate_json(out)
    (run,) = result.runs
    assert run.status == "success", run.reason
    figures = run.inference
    assert figures.accuracy.value == last["eval_accuracy"]["value"]
    assert figures.weights == f"checkpoint sha256:{last['checkpoint']['metadata']['sha256']}"
    assert (figures.batch_size, figures.latency.queries) == (batch, queries)
    row = inference_row(result, run)
    assert f"bs:{batch}, 1x, fp32, {scenario}, eager, checkpoint sha256:" in row["config"]
    assert row["accuracy"] == f"{last['eval_accuracy']['value']:.4g} (reached)"
    assert row["latency (ms)"].endswith(f"({queries} queries)")
    assert ("N/A" in row["throughput"]) == (windows < 3)
    (run_set,) = tmp_path.iterdir()
    log = events(run_set / run.label)
    stops = [e["metadata"]["samples_count"] for e in log if e["key"] == "block_stop"]
    assert stops == [10 * 32] * (windows + 1)  # a warm-up window, then the measured ones
