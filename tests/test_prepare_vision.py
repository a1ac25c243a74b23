"""The vision datasets' converters: a few files generated in each official layout, converted
(through `data prepare` for ImageNet), and trained on for one epoch by the workload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from deepspark_core.datasets import MANIFEST, verify_manifest
from deepspark_workload import imagenet
from workload_runs import prepare, prepare_fails, tiny_preset, train_on

WNIDS = ("n01440764", "n02102040")


def jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(len(path.name)).integers(0, 30, (size[1], size[0], 3))
    Image.fromarray((np.array(colour) + noise).clip(0, 255).astype(np.uint8)).save(path)


def kaggle_imagenet(src: Path) -> None:
    """Kaggle's ILSVRC2012: ILSVRC/Data/CLS-LOC/{train/<wnid>/, val/}, LOC_val_solution.csv."""
    images = src / imagenet.KAGGLE
    rows = ["ImageId,PredictionString"]
    for c, wnid in enumerate(WNIDS):
        colour = (200, 40, 40) if c == 0 else (40, 40, 200)
        for i in range(8):
            jpeg(images / "train" / wnid / f"{wnid}_{i}.JPEG", colour)
        for i in range(2):
            name = f"ILSVRC2012_val_{c * 2 + i + 1:08d}"
            jpeg(images / "val" / f"{name}.JPEG", colour)
            rows.append(f"{name},{wnid} 1 1 10 10 {wnid} 2 2 8 8")
    (src / imagenet.SOLUTION).write_text("\n".join(rows) + "\n")


RESNET_TINY = tiny_preset(
    data="imagefolder", batch_size=4, image_size=16,
    model=dict(layers=[1, 1, 1, 1], width=4, in_channels=3, num_classes=2, small_stem=True),
    optim=dict(lr=0.1),
)  # fmt: skip


def test_imagenet_through_data_prepare_trains_resnet50(cli, tmp_path: Path) -> None:
    src, dst = tmp_path / "kaggle", tmp_path / "imagenet"
    kaggle_imagenet(src)
    code, out, err = cli("data", "prepare", "resnet50", "--from", str(src), "--to", str(dst))
    assert code == 0, err
    assert sorted(p.name for p in (dst / "val" / WNIDS[1]).iterdir()) == [
        "ILSVRC2012_val_00000003.JPEG", "ILSVRC2012_val_00000004.JPEG",
    ]  # fmt: skip
    assert len(list((dst / "train").glob("*/*.JPEG"))) == 16
    source = src / imagenet.KAGGLE / "train" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG"
    assert (dst / "train" / WNIDS[0] / source.name).samefile(source)  # a hard link
    digest, files = verify_manifest(dst)
    assert files == 20 and f"sha256 {digest}" in out
    log = train_on("resnet50", RESNET_TINY, dst, tmp_path / "run")
    (dataset,) = [e for e in log if e["key"] == "dataset"]
    assert dataset["metadata"]["sha256"] == digest


def test_imagenet_devkit_labels(tmp_path: Path) -> None:
    """The devkit's ground truth numbers classes by ILSVRC2012_ID, not in wnid order."""
    from scipy.io import savemat

    data = tmp_path / imagenet.DEVKIT
    data.mkdir(parents=True)
    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O")]
    synsets = np.array([(1, WNIDS[1]), (2, WNIDS[0])], dtype=fields)
    savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n1\n")
    assert imagenet.val_labels(tmp_path) == {
        "ILSVRC2012_val_00000001": WNIDS[0], "ILSVRC2012_val_00000002": WNIDS[1],
    }  # fmt: skip


def test_imagenet_without_its_layout_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    prepare_fails("resnet50", src, "no train/<wnid>/")
    jpeg(src / "train" / WNIDS[0] / "a.JPEG", (0, 0, 0))
    prepare_fails("resnet50", src, "no validation labels")
    assert not (tmp_path / "out" / MANIFEST).exists()


def coco(src: Path) -> None:
    """COCO 2017: train2017/, val2017/, annotations/instances_{train,val}2017.json, the 80
    categories with ids 1..90 (gaps), one crowd region."""
    ids = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
    categories = [{"id": i, "name": f"c{i}", "supercategory": "s"} for i in ids]
    for folder, n in (("train2017", 6), ("val2017", 2)):
        images, annotations = [], []
        for i in range(n):
            name = f"{i + 1:012d}.jpg"
            jpeg(src / folder / name, (90, 90, 90), size=(40, 30))
            images.append({"id": i + 1, "file_name": name, "width": 40, "height": 30})
            annotations.append({"id": 10 * i, "image_id": i + 1, "category_id": 90,
                                "bbox": [4, 3, 20, 15], "iscrowd": 0, "area": 300})  # fmt: skip
        annotations.append({"id": 99, "image_id": 1, "category_id": 1,
                            "bbox": [0, 0, 40, 30], "iscrowd": 1, "area": 1200})  # fmt: skip
        document = {"images": images, "annotations": annotations, "categories": categories}
        (src / "annotations").mkdir(parents=True, exist_ok=True)
        (src / "annotations" / f"instances_{folder}.json").write_text(json.dumps(document))


YOLO_TINY = tiny_preset(
    data="coco", image_size=32,
    model=dict(
        depth_multiple=0.33, width_multiple=0.125, num_classes=80,
        anchors=[[12, 12, 14, 22, 22, 14], [20, 20, 18, 30, 30, 18], [24, 32, 32, 24, 30, 30]],
    ),
    loss=dict(box=0.05, obj=1.0, cls=0.5, anchor_t=4.0),
    optim=dict(
        optimizer="AdamW", lr=0.002, momentum=0.937, nominal_batch=2, final_lr_fraction=0.01,
        ema_decay=0.9999, ema_tau=100,
    ),
)  # fmt: skip


def test_coco_to_yolo_layout_trains_yolov5(tmp_path: Path) -> None:
    src, dst = tmp_path / "coco", tmp_path / "yolo"
    coco(src)
    prepare("yolov5", src, dst)
    assert len(list((dst / "images" / "train").iterdir())) == 6
    label = (dst / "labels" / "val" / "000000000001.txt").read_text()
    assert label == "79 0.350000 0.350000 0.500000 0.500000\n"  # id 90: the 80th; no crowd
    train_on("yolov5", YOLO_TINY, dst, tmp_path / "run")


def mot17(src: Path) -> None:
    """MOT17: train/MOT17-XX-{DPM,FRCNN,SDP}/ (the same frames three times), two pedestrians
    walking across 4 frames, one distractor row (class 7)."""
    for seq in ("02", "04"):
        for detector in ("DPM", "FRCNN", "SDP"):
            root = src / "MOT17" / "train" / f"MOT17-{seq}-{detector}"
            rows = []
            for frame in range(1, 5):
                jpeg(root / "img1" / f"{frame:06d}.jpg", (100, 100, 100), size=(64, 32))
                for pid in (1, 2):
                    rows.append(f"{frame},{pid},{4 + 6 * frame + 20 * pid},4,8,20,1,1,1.0")
                rows.append(f"{frame},9,1,1,5,5,0,7,1.0")
            (root / "gt").mkdir()
            (root / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
            (root / "det").mkdir()
            (root / "det" / "det.txt").write_text("1,-1,1,1,5,5,0.9\n")
            (root / "seqinfo.ini").write_text(f"[Sequence]\nname=MOT17-{seq}-{detector}\n")


FAIRMOT_TINY = tiny_preset(
    data="mot17", image_size=[32, 64], max_objs=8,
    model=dict(
        levels=[1, 1, 1, 1, 1, 1], channels=[4, 8, 8, 8, 8, 8], head_conv=8, reid_dim=8,
        num_ids=4,
    ),
    optim=dict(lr=1e-3, lr_drop=0.8),
    track=dict(threshold=0.4, emb_gate=0.4, iou_gate=0.5, max_lost=6),
)  # fmt: skip


def test_mot17_keeps_each_sequence_once_and_trains_fairmot(tmp_path: Path) -> None:
    src, dst = tmp_path / "download", tmp_path / "mot17"
    mot17(src)
    prepare("fairmot", src, dst)
    assert sorted(p.name for p in (dst / "train").iterdir()) == ["MOT17-02-DPM", "MOT17-04-DPM"]
    assert sorted(p.name for p in (dst / "train" / "MOT17-02-DPM").iterdir()) == [
        "gt", "img1", "seqinfo.ini",
    ]  # fmt: skip
    train_on("fairmot", FAIRMOT_TINY, dst, tmp_path / "run")


def nerf_synthetic(src: Path) -> None:
    """nerf_synthetic/lego/: transforms_*.json, 8x8 RGBA views, test/'s depth maps beside."""
    scene = src / "nerf_synthetic" / "lego"
    for split, n in (("train", 4), ("val", 1), ("test", 2)):
        frames = []
        for i in range(n):
            angle = 2 * np.pi * i / n
            eye = [4 * np.cos(angle), 4 * np.sin(angle), 1.0]
            c2w = np.eye(4)
            c2w[:3, 3] = eye
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
            (scene / split).mkdir(parents=True, exist_ok=True)
            rgba = np.full((8, 8, 4), 255, np.uint8)
            rgba[2:6, 2:6] = (200, 50, 50, 255)
            Image.fromarray(rgba, "RGBA").save(scene / split / f"r_{i}.png")
            if split == "test":
                Image.fromarray(rgba[..., 0]).save(scene / split / f"r_{i}_depth_0000.png")
        meta = {"camera_angle_x": 0.69, "frames": frames}
        (scene / f"transforms_{split}.json").write_text(json.dumps(meta))


NERF_TINY = tiny_preset(
    data="blender", batch_size=64, eval_chunk=256,
    model=dict(
        levels=2, features=2, log2_table_size=8, base_resolution=4, finest_resolution=16,
        hidden=8, geo_features=4, color_layers=1, bound=1.2, samples=8, background=1.0,
    ),
    optim=dict(lr=0.01, decay_at=[0.6, 0.85], decay=0.33),
)  # fmt: skip


def test_nerf_synthetic_scene_trains_ngp_nerf(tmp_path: Path) -> None:
    src, dst = tmp_path / "archive", tmp_path / "lego"
    nerf_synthetic(src)
    prepare("ngp_nerf", src, dst)
    assert sorted(p.name for p in (dst / "test").iterdir()) == ["r_0.png", "r_1.png"]
    train_on("ngp_nerf", NERF_TINY, dst, tmp_path / "run")
