"""KiTS19's official layout -> the cases data.py reads, preprocessed as MLPerf Training's
reference does (mlcommons/training, image_segmentation/pytorch/preprocess_dataset.py):

    SRC/kits19/data/case_00000/{imaging,segmentation}.nii.gz
        ->  DST/case_00000_x.npy   float32 (1, D, H, W): the CT
            DST/case_00000_y.npy   uint8   (1, D, H, W): 0 background, 1 kidney, 2 tumour
    DST/evaluation_cases.txt       the reference's validation case numbers among those converted

SRC may also be the kits19 repository itself or its data/ folder. Cases 0-209 (the training
set) are converted; 210-299, KiTS19's test set, have no segmentation and are skipped (stderr
counts them), as the reference skips every case from 210 on.

Per case, as the reference: the voxel array in its stored order (nibabel's get_fdata; KiTS19
keeps the axial slices on the first axis, no reorientation) with pixdim 1-3 as its spacing;
resampled to (1.6, 1.2, 1.2) mm, to the shape spacing / target x shape truncated, the CT
linearly with corners aligned (the reference's trilinear `interpolate(align_corners=True)`)
and the labels by its nearest neighbour (`mode="nearest"`: source index floor(i x in/out));
the CT clipped to [-79, 304] HU and normalised by mean 101.0 and std 76.9; both padded by edge
values, half before and half after, to at least 128 on every axis (the full preset's patch).
"""

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from deepspark_workload import nifti
from deepspark_workload.prepare import (
    PrepareError,
    Progress,
    done,
    save_npy,
    write_atomic,
    write_atomic_all,
)

TRAINING_CASES = 210  # case_00210 on: KiTS19's test set, without segmentations
SPACING = (1.6, 1.2, 1.2)  # mm
CLIP = (-79.0, 304.0)  # HU
MEAN, STD = 101.0, 76.9
MIN_SIDE = 128
# The reference's evaluation_cases.txt: the 42 cases it validates on.
EVALUATION = (
    0, 3, 5, 6, 12, 24, 34, 41, 44, 49, 52, 56, 61, 65, 66, 70, 76, 78, 80, 84, 86, 87, 92, 111,
    112, 125, 128, 138, 157, 160, 161, 162, 169, 171, 176, 185, 187, 189, 198, 203, 206, 207,
)  # fmt: skip


def convert(src: Path, dst: Path, progress: Progress) -> None:
    cases = find_cases(src)
    training = [case for case in cases if int(case.name[5:]) < TRAINING_CASES]
    ids = {case.name[5:] for case in training}
    evaluation = [f"{n:05d}" for n in EVALUATION if f"{n:05d}" in ids]
    if not evaluation or len(evaluation) == len(training):
        raise PrepareError(
            f"{src}: {len(training)} segmented cases, {len(evaluation)} of them the reference's "
            "validation cases: data.py needs some of each (KiTS19: 210, 42 of them)"
        )
    progress.total(len(training))
    for case in training:
        outputs = [dst / f"{case.name}_{kind}.npy" for kind in "xy"]
        if not all(done(path) for path in outputs):
            image, label = preprocess(*read_case(case))
            write_atomic_all(outputs, lambda tmps, x=image, y=label: save(tmps, x, y))
        progress.advance()
    text = "".join(f"{n}\n" for n in evaluation)
    write_atomic(dst / "evaluation_cases.txt", lambda tmp: tmp.write_text(text))
    if skipped := len(cases) - len(training):
        print(f"skipped {skipped} cases from case_{TRAINING_CASES:05d} on: KiTS19's test set, "
              "without segmentations", file=sys.stderr)  # fmt: skip


def find_cases(src: Path) -> list[Path]:
    """The case_XXXXX folders under src, src/data or src/kits19/data, sorted."""
    for root in (src / "kits19" / "data", src / "data", src):
        cases = sorted(p for p in root.glob("case_*") if p.is_dir() and p.name[5:].isdigit())
        if cases:
            return cases
    raise PrepareError(f"{src}: expected kits19/data/case_XXXXX/imaging.nii.gz (KiTS19's layout)")


def read_case(case: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """The CT (float32), its labels (uint8) and the CT's voxel spacing, as the reference reads
    them (the labels at the CT's spacing)."""
    paths = [case / "imaging.nii.gz", case / "segmentation.nii.gz"]
    for path in paths:
        if not path.is_file():
            how = "kits19's get_imaging.py downloads" if path == paths[0] else "kits19's git holds"
            raise PrepareError(f"{path} is missing ({how} it)")
    try:
        image, spacing = nifti.read(paths[0], np.float32)
        label, _ = nifti.read(paths[1], np.uint8)
    except nifti.NiftiError as exc:
        raise PrepareError(str(exc)) from None
    if image.shape != label.shape:
        raise PrepareError(f"{case}: imaging {image.shape} but segmentation {label.shape}")
    if min(spacing) <= 0:
        raise PrepareError(f"{paths[0]}: voxel spacing {spacing}, not positive")
    if label.max() > 2:
        raise PrepareError(f"{paths[1]}: label {label.max()}; KiTS19's are 0, 1 and 2")
    return image, label, spacing


def preprocess(
    image: np.ndarray, label: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's preprocess_case and pad_to_min_shape: (1, D, H, W) float32 and uint8."""
    shape = (np.array(spacing) / np.array(SPACING) * np.array(image.shape)).astype(int)
    if min(shape) < 1:
        raise PrepareError(f"a case of {image.shape} voxels of {spacing} mm: under one voxel")
    if tuple(shape) != image.shape:
        factors = shape / np.array(image.shape)
        image = ndimage.zoom(image, factors, order=1, mode="nearest", grid_mode=False)
        label = label[np.ix_(*map(nearest, label.shape, shape))]
    image = (np.clip(image, *CLIP) - MEAN) / STD
    pad = [(0, 0)] + [((m := max(0, MIN_SIDE - s)) // 2, m - m // 2) for s in image.shape]
    return np.pad(image[None], pad, mode="edge"), np.pad(label[None], pad, mode="edge")


def nearest(size: int, out: int) -> np.ndarray:
    """torch's nearest-neighbour source indices, computed in float32 as its kernel does."""
    scale = np.float32(size) / np.float32(out)
    return np.minimum(np.floor(np.arange(out, dtype=np.float32) * scale).astype(int), size - 1)


def save(tmps: list[Path], image: np.ndarray, label: np.ndarray) -> None:
    for tmp, array in zip(tmps, (image, label), strict=True):
        save_npy(tmp, array)
