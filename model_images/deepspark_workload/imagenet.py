"""ImageNet-1k (ILSVRC2012) from its official layout to the class folders the image workloads
read (resnet50, resnet50_paddle, wave_mlp: `images.image_folder`):

    SRC/train/<wnid>/*.JPEG                        ->  DST/train/<wnid>/*.JPEG
    SRC/val/ILSVRC2012_val_<n>.JPEG                ->  DST/val/<wnid>/ILSVRC2012_val_<n>.JPEG

SRC is the image-net.org download unpacked (train/, val/), or Kaggle's (its
ILSVRC/Data/CLS-LOC/{train,val}/). The validation labels come from Kaggle's
LOC_val_solution.csv, or else from the devkit's ILSVRC2012_validation_ground_truth.txt and
meta.mat (read with scipy) under ILSVRC2012_devkit_t12/data/. Images are hard-linked where the
filesystem allows (the same bytes, no space), otherwise copied.
"""

import csv
from pathlib import Path

from .prepare import PrepareError, Progress, link_all

KAGGLE = Path("ILSVRC/Data/CLS-LOC")
SOLUTION = "LOC_val_solution.csv"
DEVKIT = Path("ILSVRC2012_devkit_t12/data")
EXTENSIONS = {".jpeg", ".jpg", ".png"}


def convert(src: Path, dst: Path, progress: Progress) -> None:
    images = src / KAGGLE if (src / KAGGLE / "train").is_dir() else src
    train = images / "train"
    if not train.is_dir():
        raise PrepareError(f"{src}: no train/<wnid>/ (nor Kaggle's {KAGGLE}/train/)")
    pairs = [
        (path, dst / "train" / path.parent.name / path.name)
        for path in sorted(train.glob("*/*"))
        if path.suffix.lower() in EXTENSIONS
    ]
    if not pairs:
        raise PrepareError(f"{train}: no images under <wnid>/")
    labels = val_labels(src)
    for path in sorted((images / "val").glob("*")):
        if path.suffix.lower() in EXTENSIONS:
            if path.stem not in labels:
                raise PrepareError(f"{path.name} has no label in the validation ground truth")
            pairs.append((path, dst / "val" / labels[path.stem] / path.name))
    link_all(pairs, progress)


def val_labels(src: Path) -> dict[str, str]:
    """{image id (ILSVRC2012_val_00000001): wnid}, from Kaggle's csv or the devkit."""
    if (src / SOLUTION).is_file():
        with (src / SOLUTION).open(newline="") as f:
            # PredictionString: "<wnid> x0 y0 x1 y1 <wnid> ..." (every box has the image's class)
            return {row["ImageId"]: row["PredictionString"].split()[0] for row in csv.DictReader(f)}
    truth = src / DEVKIT / "ILSVRC2012_validation_ground_truth.txt"
    if not truth.is_file():
        raise PrepareError(f"{src}: no validation labels ({SOLUTION}, or {DEVKIT}/ of the devkit)")
    wnids = devkit_wnids(src / DEVKIT / "meta.mat")
    ids = truth.read_text().split()
    return {f"ILSVRC2012_val_{i:08d}": wnids[int(label)] for i, label in enumerate(ids, 1)}


def devkit_wnids(meta: Path) -> dict[int, str]:
    """{ILSVRC2012_ID: wnid} from the devkit's meta.mat (its ids are not in wnid order)."""
    from scipy.io import loadmat  # here: only the devkit's labels need it

    synsets = loadmat(meta, squeeze_me=True)["synsets"]
    return {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
