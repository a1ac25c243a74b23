"""COCO 2017 from its official layout to the YOLO layout data.py reads:

    SRC/train2017/*.jpg, SRC/val2017/*.jpg         ->  DST/images/{train,val}/*.jpg
    SRC/annotations/instances_{train,val}2017.json ->  DST/labels/{train,val}/<stem>.txt

one label line per object, `class cx cy w h` normalised to the image, the class the index of
its category among the 80 in id order (COCO's ids run 1..90 with gaps); crowd regions and
empty boxes are left out, as Ultralytics' conversion does; an image without objects gets no
.txt. Images are hard-linked where the filesystem allows, otherwise copied.
"""

import json
from collections import defaultdict
from pathlib import Path

from deepspark_workload.prepare import PrepareError, Progress, done, link_all, write_atomic

SPLITS = {"train": "train2017", "val": "val2017"}


def convert(src: Path, dst: Path, progress: Progress) -> None:
    splits = {split: read_split(src, folder) for split, folder in SPLITS.items()}
    pairs = []
    for split, (images, labels) in splits.items():
        for stem, lines in labels.items():  # small: written before the images are linked
            label = dst / "labels" / split / f"{stem}.txt"
            if not done(label):
                text = "".join(f"{line}\n" for line in lines)
                write_atomic(label, lambda tmp, text=text: tmp.write_text(text))
        pairs += [(source, dst / "images" / split / file) for file, source in images.items()]
    link_all(pairs, progress)


def read_split(src: Path, folder: str) -> tuple[dict[str, Path], dict[str, list[str]]]:
    """The split's images by file name, and each image's YOLO label lines by file stem."""
    annotations = src / "annotations" / f"instances_{folder}.json"
    if not annotations.is_file() or not (src / folder).is_dir():
        raise PrepareError(f"{src}: expected {folder}/ and annotations/{annotations.name}")
    coco = json.loads(annotations.read_text())
    classes = {c["id"]: i for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    info = {image["id"]: image for image in coco["images"]}
    labels: dict[str, list[str]] = defaultdict(list)
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]  # pixels, top-left corner
        if a.get("iscrowd") or w <= 0 or h <= 0:
            continue
        image = info[a["image_id"]]
        width, height = image["width"], image["height"]
        box = ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)
        line = " ".join(f"{min(max(v, 0.0), 1.0):.6f}" for v in box)
        labels[Path(image["file_name"]).stem].append(f"{classes[a['category_id']]} {line}")
    images = {}
    for image in info.values():
        path = src / folder / image["file_name"]
        if not path.is_file():
            raise PrepareError(f"{path} is listed in {annotations.name} but missing")
        images[image["file_name"]] = path
    return dict(sorted(images.items())), labels
