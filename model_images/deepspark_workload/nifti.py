"""NIfTI-1 volumes (`.nii`, `.nii.gz`) with numpy alone, for the medical workloads' converters.

A single-file NIfTI-1 image is a 348-byte header, 4 bytes of extension flags (and any
extensions), then the voxels from `vox_offset` on, the first index varying fastest. `read`
gives the array as nibabel's `get_fdata()` does (the stored index order, no reorientation; the
header's scl_slope and scl_inter applied) in the dtype asked for, with the voxel spacing
nibabel's `header["pixdim"][1:4]` gives. Only what such images need: 3-D, little- or
big-endian, the integer and float datatypes (not complex or RGB).
"""

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

HEADER = 348
MAGIC = b"n+1\x00"  # single file; "ni1" (a .hdr/.img pair) is not read
DATATYPES = {
    2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4",
    1024: "i8", 1280: "u8",
}  # fmt: skip


class NiftiError(ValueError):
    """Not a NIfTI-1 volume this reader takes; one line saying why."""


def read(path: Path, dtype: np.dtype | type) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The volume (x, y, z) as dtype, and its voxel spacing (pixdim 1-3, as stored)."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise NiftiError(f"{path}: {exc}") from None
    if len(data) < HEADER + 4:
        raise NiftiError(f"{path}: {len(data)} bytes, shorter than a NIfTI-1 header")
    order = next((o for o in "<>" if struct.unpack_from(f"{o}i", data)[0] == HEADER), None)
    if order is None or data[344:348] != MAGIC:
        raise NiftiError(f"{path}: not a single-file NIfTI-1 image (sizeof_hdr 348, 'n+1')")
    dim = struct.unpack_from(f"{order}8h", data, 40)
    (datatype,) = struct.unpack_from(f"{order}h", data, 70)
    pixdim = struct.unpack_from(f"{order}8f", data, 76)
    vox_offset, slope, inter = struct.unpack_from(f"{order}3f", data, 108)
    if not 3 <= dim[0] <= 7 or any(d != 1 for d in dim[4 : dim[0] + 1]) or min(dim[1:4]) < 1:
        raise NiftiError(f"{path}: dim {list(dim[: dim[0] + 1])}, not one 3-D volume")
    if datatype not in DATATYPES:
        raise NiftiError(f"{path}: datatype {datatype}, not an integer or float type")
    shape = dim[1:4]
    stored = np.dtype(order + DATATYPES[datatype])
    offset, size = int(vox_offset), math.prod(shape) * stored.itemsize
    if offset < HEADER + 4 or len(data) < offset + size:
        raise NiftiError(f"{path}: {len(data)} bytes, {offset + size} expected for {shape}")
    voxels = np.frombuffer(data, stored, math.prod(shape), offset).reshape(shape, order="F")
    return _scaled(voxels, slope, inter, path).astype(dtype, order="C"), pixdim[1:4]


def _scaled(voxels: np.ndarray, slope: float, inter: float, path: Path) -> np.ndarray:
    """slope * voxels + inter in float64 as nibabel scales (a slope of 0 or not finite: none)."""
    if slope == 0 or not math.isfinite(slope):
        return voxels
    if not math.isfinite(inter):
        raise NiftiError(f"{path}: scl_slope {slope} with scl_inter {inter}")
    if (slope, inter) == (1, 0):
        return voxels
    return voxels * np.float64(slope) + np.float64(inter)
