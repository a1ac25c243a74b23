"""A NeRF-synthetic scene from the official archive to the layout data.py reads:

    SRC/nerf_synthetic/lego/transforms_{train,val,test}.json + {train,val,test}/r_<i>.png
        ->  DST/transforms_{train,val,test}.json + {train,val,test}/r_<i>.png

SRC is the unpacked archive (nerf_synthetic/, or the folder holding it): the paper's figure is
lego's, so lego is taken; SRC may instead be one scene's folder (chair/, ship/, ...) to train on
that scene. Only the views the transforms list are kept: test/'s depth and normal maps are not
training data. Files are hard-linked where the filesystem allows, otherwise copied.
"""

import json
from pathlib import Path

from deepspark_workload.prepare import PrepareError, Progress, link_all

SPLITS = ("train", "val", "test")
SCENE = "lego"


def convert(src: Path, dst: Path, progress: Progress) -> None:
    scene = next(
        (d for d in (src, src / SCENE, src / "nerf_synthetic" / SCENE)
         if (d / "transforms_train.json").is_file()),
        None,
    )  # fmt: skip
    if scene is None:
        raise PrepareError(f"{src}: no transforms_train.json (nor nerf_synthetic/{SCENE}/)")
    files = []
    for split in SPLITS:
        transforms = scene / f"transforms_{split}.json"
        if not transforms.is_file():
            raise PrepareError(f"{transforms} is missing")
        files.append(transforms)
        for frame in json.loads(transforms.read_text())["frames"]:
            image = scene / f"{frame['file_path'].removeprefix('./')}.png"
            if not image.is_file():
                raise PrepareError(f"{image} is listed in {transforms.name} but missing")
            files.append(image)
    link_all([(f, dst / f.relative_to(scene)) for f in files], progress)
