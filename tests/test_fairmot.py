"""The FairMOT workload: the model, its data, the tracker and MOTA, and whole runs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deepspark_workload import ContractError
from workload_runs import converge, load_module, parameters, spec

NAME = "fairmot"
PRESETS = spec(NAME)["configs"]
# The official FairMOT DLA-34 (ifzhang/FairMOT src/lib/models/networks/pose_dla_dcn.py,
# get_pose_net(34, {hm: 1, wh: 4, id: 128, reg: 2}, head_conv=256)) has 20,349,711 parameters,
# counted module by module: 638,064 of them in the offset/mask convs of its 16 DCNv2 layers
# and 513,000 in the ImageNet classifier its backbone carries unused. Without those two:
REFERENCE = 19_198_647


def load(name: str):
    return load_module(NAME, name)


def mini_model(**kwargs):
    torch.manual_seed(0)
    return load("model").FairMOT(**{**PRESETS["mini"]["model"], **kwargs})


def test_full_model_has_fairmot_dla34_parameters() -> None:
    with torch.device("meta"):
        model = load("model").FairMOT(**PRESETS["full"]["model"])
    training_only = parameters(model.classifier) + 2  # ID classifier, two uncertainty weights
    network = parameters(model) - training_only
    assert network == 19_156_919  # the 41,728 less: two 1x1 projections the official discards
    assert abs(network / REFERENCE - 1) < 0.02
    assert training_only == 128 * 14455 + 14455 + 2


def test_full_model_forward_backward() -> None:
    """The full-width model (1088x608 takes minutes on a CPU) at batch 1 on a 160x96 input,
    with the training loss, so that every parameter, the ID classifier's too, gets a grad."""
    model, data = load("model").FairMOT(**PRESETS["full"]["model"]), load("data")
    boxes = torch.tensor([[10.0, 20.0, 30.0, 80.0], [100.0, 8.0, 124.0, 60.0]])
    targets = data.targets(boxes, torch.tensor([3, 14000]), 96, 160, max_objs=500)
    out = model(torch.randn(1, 3, 96, 160))
    assert {k: v.shape[1:] for k, v in out.items()} == {
        "hm": (1, 24, 40), "wh": (4, 24, 40), "reg": (2, 24, 40), "id": (128, 24, 40)
    }  # fmt: skip
    losses = model.loss(out, [t.unsqueeze(0) for t in targets])
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_loss_without_objects_is_finite() -> None:
    """A frame with nobody in it: no nan from the empty ID batch, and DDP still sees a grad
    for every parameter."""
    model, data = mini_model(), load("data")
    targets = data.targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 64, 64, 8)
    losses = model(torch.rand(2, 3, 64, 64), [t.expand(2, *t.shape) for t in targets])
    assert losses["id"] == 0 and losses["wh"] == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_targets() -> None:
    data = load("data")
    # box (8, 8)-(24, 40) at stride 4: (2, 2)-(6, 10), centre (4, 6), 4 wide and 8 high
    hm, ind, mask, wh, reg, ids = data.targets(
        torch.tensor([[8.0, 8.0, 24.0, 40.0], [41.0, 2.0, 51.0, 14.0]]), torch.tensor([5, 9]),
        64, 64, max_objs=4,
    )  # fmt: skip
    assert hm.shape == (1, 16, 16) and hm[0, 6, 4] == 1 and hm.eq(1).sum() == 2
    assert ind.tolist() == [6 * 16 + 4, 2 * 16 + 11, 0, 0]
    assert mask.tolist() == [True, True, False, False] and ids.tolist() == [5, 9, 0, 0]
    assert wh[0].tolist() == [2, 4, 2, 4] and reg[0].tolist() == [0, 0]
    # second: (10.25, 0.5)-(12.75, 3.5), centre (11.5, 2): offset (0.5, 0) from cell (11, 2)
    assert wh[1].tolist() == [1.25, 1.5, 1.25, 1.5] and reg[1].tolist() == [0.5, 0]
    # CenterNet's radius for 8x4 at overlap 0.7, the smallest of its three cases (r1 11.51,
    # r2 22.28): r3 = (-1.4 * 12 + sqrt((1.4 * 12) ** 2 + 4 * 2.8 * 0.3 * 32)) / 2
    assert data.gaussian_radius(8, 4) == pytest.approx(1.4712, abs=1e-4)


def test_decode() -> None:
    metrics = load("metrics")
    hm = torch.full((1, 1, 8, 10), -10.0)
    hm[0, 0, 3, 5], hm[0, 0, 3, 6], hm[0, 0, 7, 1] = 3.0, 2.0, -1.0  # a peak, its neighbour, weak
    out = {
        "hm": hm,
        "wh": torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1).expand(1, 4, 8, 10),
        "reg": torch.tensor([0.5, 0.25]).view(1, 2, 1, 1).expand(1, 2, 8, 10),
        "id": torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 8, 10),
    }
    ((boxes, scores, embeddings),) = metrics.decode(out, threshold=0.4)
    # the neighbour loses to the 3x3 max-pool, the weak one (0.27) to the threshold
    # centre (5.5, 3.25) cells; ltrb (1, 2, 3, 4) -> (4.5, 1.25)-(8.5, 7.25) cells, x4 pixels
    np.testing.assert_allclose(boxes, [[18, 5, 34, 29]])
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-3))], rtol=1e-6)
    np.testing.assert_allclose(embeddings, [[0.6, 0.8]], rtol=1e-6)


def test_mota_hand_checked() -> None:
    metrics = load("metrics")
    a, b, far = [0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60]
    clear = metrics.ClearMOT()
    clear.update([[1, *a], [2, *b]], [[7, *a], [8, *b], [9, *far]])  # 2 matches, 1 FP
    clear.update([[1, *a], [2, *b]], [[7, *b], [8, *a]])  # the tracks swap: 2 ID switches
    clear.update([[1, *a]], np.zeros((0, 5)))  # nobody tracked: 1 miss
    # GT 2 + 2 + 1 = 5; MOTA = 1 - (FN 1 + FP 1 + IDSW 2) / 5 = 0.2
    assert clear.counts == (5, 1, 1, 2)
    assert metrics.mota(*clear.counts) == pytest.approx(0.2)
    assert metrics.iou(np.array([a]), np.array([[5, 0, 15, 10]])) == pytest.approx(50 / 150)


def test_mota_keeps_a_match_while_it_holds() -> None:
    """py-motmetrics: the previous match stays while its IoU >= 0.5, even when another
    hypothesis overlaps better; that one is then a false positive, not a switch."""
    metrics = load("metrics")
    clear = metrics.ClearMOT()
    clear.update([[1, 0, 0, 10, 10]], [[1, 0, 0, 10, 10]])
    clear.update([[1, 0, 0, 10, 10]], [[1, 2, 0, 12, 10], [2, 0, 0, 10, 10]])  # IoU 80/120, 1
    assert clear.counts == (2, 0, 1, 0)
    clear.update([[1, 0, 0, 10, 10]], [[1, 6, 0, 16, 10], [2, 0, 0, 10, 10]])  # IoU 40/160, 1
    assert clear.counts == (3, 0, 2, 1)


def test_tracker_follows_crossing_objects() -> None:
    """Two objects cross (overlapping on the way), one vanishes for two frames: appearance
    keeps every identity, and a new detection becomes a track only on its second frame."""
    metrics = load("metrics")
    tracker = metrics.Tracker(max_lost=3)
    e = np.eye(3)
    seen = []
    for t in range(12):
        boxes = [[4 * t, 20, 4 * t + 10, 40], [44 - 4 * t, 22, 54 - 4 * t, 42]]
        emb = [e[0], e[1]]
        if t in (6, 7):  # the first one is hidden
            boxes, emb = boxes[1:], emb[1:]
        if t >= 9:  # a third arrives
            boxes, emb = [*boxes, [0, 0, 8, 8]], [*emb, e[2]]
        seen.append(tracker.update(np.array(boxes, dtype=float), np.array(emb)))
    ids_at = [{int(i): box for i, *box in frame} for frame in seen]
    assert all(sorted(frame) == [1, 2] for frame in [*ids_at[:6], ids_at[8]])
    assert all(frame[1][0] == 4 * t for t, frame in enumerate(ids_at) if 1 in frame)
    assert list(ids_at[6]) == [2] and list(ids_at[9]) == [1, 2]  # the newcomer: unconfirmed
    assert sorted(ids_at[10]) == [1, 2, 3]


def test_synthetic_videos() -> None:
    data = load("data")
    rng = [np.random.default_rng(7), np.random.default_rng(7)]
    (video, gts), (again, _) = (data.render_video(r, 64, 12, 4) for r in rng)
    assert video.shape == (12, 3, 64, 64) and torch.equal(video, again)
    assert video.min() >= 0 and video.max() <= 1
    ids = torch.cat(gts)[:, 0]
    assert len(set(ids.tolist())) <= 4 and ids.min() >= 0 and ids.max() < data.IDENTITIES
    boxes = torch.cat(gts)[:, 1:]
    assert boxes.min() >= 0 and boxes.max() <= 64
    assert (boxes[:, 2:] - boxes[:, :2]).min() >= 9  # whole objects: nothing leaves the frame
    assert sum(len(g) for g in gts) >= 0.7 * 12 * 4  # only occlusion hides objects


def test_untrained_model_detects_nothing() -> None:
    """So an untrained model's MOTA is 0: the target's floor."""
    data, metrics = load("data"), load("metrics")
    cfg = PRESETS["mini"]
    _, val = data.synthetic(**{**cfg["synthetic"], "train_videos": 1}, size=64, max_objs=8)
    model = mini_model().eval()
    with torch.no_grad():
        out = model(torch.stack([x for seq in val for x, _ in seq]))
    assert all(len(boxes) == 0 for boxes, _, _ in metrics.decode(out, cfg["track"]["threshold"]))


def test_mot17(tmp_path: Path) -> None:
    data = load("data")
    gt = ["1,1,10,20,30,60,1,1,1", "1,2,50,0,20,40,0,1,1", "1,3,60,10,20,40,1,7,1",  # 2: ignored
          "2,1,12,20,30,60,1,1,0.5", "3,1,14,20,30,60,1,1,1", "4,1,16,20,30,60,1,1,1",
          "3,4,100,50,40,80,1,1,1"]  # fmt: skip
    for seq in ("MOT17-02-DPM", "MOT17-02-FRCNN", "MOT17-05-SDP"):
        (tmp_path / "train" / seq / "img1").mkdir(parents=True)
        (tmp_path / "train" / seq / "gt").mkdir()
        (tmp_path / "train" / seq / "gt" / "gt.txt").write_text("\n".join(gt))
        for i in range(1, 5):
            image = Image.new("RGB", (320, 180), (i * 40, 0, 0))
            image.save(tmp_path / "train" / seq / "img1" / f"{i:06d}.jpg")
    train, val = data.mot17(tmp_path, 96, 160, max_objs=8)  # 320x180 -> 160x90, 3 px bars
    assert len(train) == 4 and [len(v) for v in val] == [2, 2]  # FRCNN: a copy of DPM
    assert [len(g) for _, g in train.frames] == [1, 1, 1, 1]  # flag 0 and class 7 dropped
    assert [int(g[0, 0]) for _, g in train.frames] == [0, 0, 1, 1]  # per (sequence, track)
    image, gts = val[0][0]  # frame 3 of MOT17-02, boxes halved and moved 3 px down
    assert image.shape == (3, 96, 160)
    torch.testing.assert_close(gts, torch.tensor([[1, 7, 13, 22, 43], [4, 50, 28, 70, 68.0]]))
    image, *targets = train[0]
    assert image.shape == (3, 96, 160) and targets[0].shape == (1, 24, 40) and targets[2].sum() == 1
    with pytest.raises(ContractError, match="MOT17 layout"):
        data.mot17(tmp_path / "missing", 96, 160, max_objs=8)


@pytest.mark.slow
def test_mini_converge(tmp_path: Path) -> None:
    log = converge(NAME, tmp_path)
    stops = [e["metadata"] for e in log if e["key"] == "block_stop"]
    assert all(m["samples_count"] == 512 for m in stops)  # 128 videos x 4 frames, full batches
