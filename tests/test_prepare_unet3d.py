"""unet3d/prepare.py: a miniature of KiTS19's official layout (NIfTI-1 volumes written here) ->
the cases MLPerf's reference preprocessing makes, checked against that reference's own steps
(torch's interpolate), then trained on."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate

from workload_runs import prepare, prepare_fails, prepare_resumes, tiny_preset, train_on

TINY = tiny_preset(
    data="kits19", real_data=True, patch_size=64, passes_per_window=1,
    model=dict(filters=[2, 2], in_channels=1, num_classes=3, activation="relu"),
    optim=dict(lr=0.1, init_lr=0.01, warmup=0.1, momentum=0.9, weight_decay=0.0),
)  # fmt: skip
CODES = {np.dtype(np.int16): 4, np.dtype(np.float32): 16, np.dtype(np.uint8): 2}


def write_nifti(
    path: Path, volume: np.ndarray, spacing: tuple[float, float, float], *,
    scale: tuple[float, float] = (0.0, 0.0), order: str = "<", magic: bytes = b"n+1\0",
) -> None:  # fmt: skip
    """A gzipped single-file NIfTI-1 image, as KiTS19's: volume stored first index fastest,
    pixdim the spacing, an sform (KiTS19's kind: axes flipped and permuted) that no reader of
    the reference's uses; scale (scl_slope, scl_inter) as stored."""
    header = bytearray(348)
    struct.pack_into(f"{order}i", header, 0, 348)
    struct.pack_into(f"{order}8h", header, 40, 3, *volume.shape, 1, 1, 1, 1)
    struct.pack_into(f"{order}2h", header, 70, CODES[volume.dtype], volume.dtype.itemsize * 8)
    struct.pack_into(f"{order}8f", header, 76, 1.0, *spacing, 0, 0, 0, 0)
    struct.pack_into(f"{order}3f", header, 108, 352.0, *scale)
    struct.pack_into(f"{order}h", header, 254, 2)  # sform_code: aligned
    rows = [[0, 0, -spacing[2], 0], [0, -spacing[1], 0, 0], [-spacing[0], 0, 0, 0]]
    struct.pack_into(f"{order}12f", header, 280, *(v for row in rows for v in row))
    header[344:348] = magic
    voxels = volume.astype(volume.dtype.newbyteorder(order)).tobytes(order="F")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(bytes(header) + bytes(4) + voxels))


def phantom(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A CT in HU (-400 to 700: past both ends of the clip) and its labels: a kidney
    ellipsoid (1) with a tumour ball (2) in it."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1) / np.array(shape)
    kidney = (((grid - 0.5) / 0.3) ** 2).sum(-1) <= 1
    tumour = ((grid - [0.5, 0.6, 0.5]) ** 2).sum(-1) <= 0.15**2
    label = kidney.astype(np.uint8) + tumour.astype(np.uint8)
    hu = rng.uniform(-400, 700, shape) + 150 * label
    return hu, label


CASES = {  # case: (shape, spacing mm, the dtype stored, scl_slope and scl_inter, byte order)
    0: ((20, 24, 22), (2.0, 0.9, 1.3), np.int16, (2.0, -1024.0), "<"),  # a validation case
    1: ((18, 16, 20), (1.6, 1.2, 1.2), np.float32, (0.0, 0.0), "<"),  # already at the spacing
    2: ((12, 30, 26), (3.0, 0.8, 0.8), np.int16, (0.0, 0.0), ">"),
}


def kits19(src: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """kits19/data/case_XXXXX/ for CASES and for case_00210 (the test set: imaging only);
    {case: (CT in HU, labels)}."""
    data, volumes = src / "kits19" / "data", {}
    for case, (shape, spacing, dtype, (slope, inter), order) in CASES.items():
        hu, label = phantom(shape, case)
        stored = np.round((hu - inter) / slope if slope else hu).astype(dtype)
        volumes[case] = (stored * slope + inter if slope else stored.astype(np.float64), label)
        folder = data / f"case_{case:05d}"
        write_nifti(folder / "imaging.nii.gz", stored, spacing, scale=(slope, inter), order=order)
        write_nifti(folder / "segmentation.nii.gz", label, spacing, order=order)
    write_nifti(data / "case_00210" / "imaging.nii.gz", np.zeros((4, 4, 4), np.int16), (1, 1, 1))
    return volumes


def reference(hu: np.ndarray, label: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """MLPerf's preprocess_dataset.py on one case, step by step, with torch as it does."""
    image, label = hu.astype(np.float32)[None], label[None]
    spacing = np.array(spacing, np.float32).tolist()  # pixdim as nibabel gives it
    if spacing != [1.6, 1.2, 1.2]:
        shape = (np.array(spacing) / np.array([1.6, 1.2, 1.2]) * image.shape[1:]).astype(int)
        image = interpolate(
            torch.from_numpy(image[None]), size=shape.tolist(), mode="trilinear",
            align_corners=True,
        )[0].numpy()  # fmt: skip
        label = interpolate(torch.from_numpy(label[None]), size=shape.tolist(), mode="nearest")
        label = label[0].numpy()
    image = (np.clip(image, -79.0, 304.0) - 101.0) / 76.9
    bounds = [max(0, 128 - s) for s in image.shape[1:]]
    pad = [(0, 0)] + [(b // 2, b - b // 2) for b in bounds]
    return np.pad(image, pad, mode="edge"), np.pad(label, pad, mode="edge")


def test_kits19_becomes_mlperfs_cases_that_unet3d_trains_on(tmp_path: Path, capsys) -> None:
    volumes, data = kits19(tmp_path / "src"), tmp_path / "data"
    assert prepare("unet3d", tmp_path / "src", data).expected == 3  # case_00210 skipped
    assert "skipped 1 cases from case_00210 on" in capsys.readouterr().err
    assert (data / "evaluation_cases.txt").read_text() == "00000\n"  # the reference's
    for case, (hu, label) in volumes.items():
        x, y = (np.load(data / f"case_{case:05d}_{kind}.npy") for kind in "xy")
        want_x, want_y = reference(hu, label, CASES[case][1])
        assert x.dtype == np.float32 and y.dtype == np.uint8 and x.flags.c_contiguous
        assert x.shape == y.shape == want_x.shape and min(x.shape[1:]) >= 128
        np.testing.assert_allclose(x, want_x, rtol=0, atol=2e-5)  # float32 rounding apart
        np.testing.assert_array_equal(y, want_y)
        assert {0, 1, 2} <= set(np.unique(y))
    assert np.load(data / "case_00000_x.npy").shape == (1, 128, 128, 128)
    assert np.load(data / "case_00002_x.npy").shape == (1, 128, 128, 128)
    # at the target spacing: not resampled; clipped and normalised exactly, edge-padded
    hu = volumes[1][0].astype(np.float32)
    x = np.load(data / "case_00001_x.npy")[0]
    inner = x[55:73, 56:72, 54:74]  # (128 - side) // 2 before each axis
    np.testing.assert_array_equal(inner, (np.clip(hu, -79, 304) - np.float32(101)) / 76.9)
    assert np.isclose(inner.min(), -180 / 76.9) and np.isclose(inner.max(), 203 / 76.9)
    np.testing.assert_array_equal(x[:55, 56:72, 54:74], np.broadcast_to(inner[0], (55, 16, 20)))
    train_on("unet3d", TINY, data, tmp_path / "run")


def test_a_second_run_redoes_only_the_unfinished_case(tmp_path: Path) -> None:
    kits19(tmp_path / "src")
    prepare_resumes(
        "unet3d", tmp_path / "src", tmp_path / "data", "case_00001_x.npy", "case_00002_y.npy"
    )


JUNK = gzip.compress(b"")[:10] + b"not deflate"  # a gzip header, then no valid block


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: (data / "case_00001" / "imaging.nii.gz").unlink(),
         r"case_00001/imaging.nii.gz is missing \(kits19's get_imaging.py downloads it\)"),
        (lambda data: (data / "case_00002" / "segmentation.nii.gz").write_bytes(JUNK),
         "case_00002/segmentation.nii.gz: "),
        (lambda data: write_nifti(data / "case_00001" / "imaging.nii.gz",
                                  np.zeros((2, 2, 2), np.int16), (1, 1, 1), magic=b"ni1\0"),
         "not a single-file NIfTI-1 image"),
        (lambda data: write_nifti(data / "case_00001" / "imaging.nii.gz",
                                  np.zeros((2, 2, 2), np.int16), (1, 1, 1)),
         r"imaging \(2, 2, 2\) but segmentation \(18, 16, 20\)"),
        (lambda data: write_nifti(data / "case_00001" / "segmentation.nii.gz",
                                  np.full((18, 16, 20), 3, np.uint8), (1, 1, 1)),
         "label 3; KiTS19's are 0, 1 and 2"),
        (lambda data: write_nifti(data / "case_00001" / "imaging.nii.gz",
                                  np.zeros((18, 16, 20), np.int16), (1, 0, 1)),
         r"voxel spacing \(1.0, 0.0, 1.0\), not positive"),
        (lambda data: (data / "case_00000").rename(data / "elsewhere"),
         "2 segmented cases, 0 of them the reference's validation cases"),
    ],
)  # fmt: skip
def test_a_bad_source_is_a_one_line_error(tmp_path: Path, damage, message) -> None:
    kits19(tmp_path / "src")
    damage(tmp_path / "src" / "kits19" / "data")
    prepare_fails("unet3d", tmp_path / "src", message)


def test_a_folder_without_kits19_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src" / "kits19" / "data").mkdir(parents=True)
    prepare_fails("unet3d", tmp_path / "src", "expected kits19/data/case_XXXXX/imaging.nii.gz")


def patched(path: Path, offset: int, value: bytes, cut: int = 0) -> Path:
    """path's NIfTI rewritten with value at offset in the header, less its last cut bytes."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[offset : offset + len(value)] = value
    path.write_bytes(gzip.compress(bytes(data[: len(data) - cut])))
    return path


@pytest.mark.parametrize(
    "offset, value, cut, message",
    [
        (40, struct.pack("<5h", 4, 2, 2, 2, 3), 0, r"dim \[4, 2, 2, 2, 3\], not one 3-D volume"),
        (70, struct.pack("<h", 128), 0, "datatype 128, not an integer or float type"),
        (0, b"", 1, r"359 bytes, 360 expected for \(2, 2, 2\)"),
    ],
)
def test_the_nifti_reader_refuses_what_it_does_not_read(tmp_path, offset, value, cut, message):
    from deepspark_workload import nifti

    path = tmp_path / "v.nii.gz"
    stored = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
    write_nifti(path, stored, (1, 1, 1))
    assert gzip.decompress(path.read_bytes())[352:] == bytes([0, 4, 2, 6, 1, 5, 3, 7])  # x fastest
    volume, spacing = nifti.read(path, np.float32)
    assert volume.dtype == np.float32 and spacing == (1, 1, 1)
    np.testing.assert_array_equal(volume, stored)
    with pytest.raises(nifti.NiftiError, match=message):
        nifti.read(patched(path, offset, value, cut), np.float32)
