"""Image-folder batches decoded on the GPU: torchvision's nvJPEG decode, or a DALI pipeline.

The loader's workers only read the files' bytes, batched by the same samplers as the Pillow
path (vision.py); each batch is decoded, cropped, flipped and normalised on the device when
the training loop draws it. Training crops are images.py's random_box (drawn in the main
process, seeded by the run), evaluation crops its center_box, so both paths train alike.
"""

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from . import images
from .workload import Workload

Decode = Callable[[list[torch.Tensor]], torch.Tensor]  # encoded files -> (N, 3, size, size)
JPEG_MAGIC = [0xFF, 0xD8]


class Encoded(Dataset):
    """An images.ImageFolder's samples as (the file's bytes as a uint8 tensor, class index)."""

    def __init__(self, folder: images.ImageFolder) -> None:
        self.samples = folder.samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8), label


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Files of different lengths stay a list; the labels become one tensor."""
    return [data for data, _ in batch], torch.tensor([label for _, label in batch])


class Decoded:
    """A DataLoader of encoded batches, each decoded on the device as it is drawn."""

    def __init__(self, loader: DataLoader, decode: Decode) -> None:
        self.loader, self.decode = loader, decode
        self.sampler = loader.sampler  # the windows reshuffle by it every epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for data, labels in self.loader:
            yield self.decode(data), labels


def loaders(
    wl: Workload,
    decode: str,
    folders: tuple[images.ImageFolder, images.ImageFolder],
    size: int,
    crop_fraction: float,
    resample: Image.Resampling,
    options: dict[str, Any],
) -> tuple[Decoded, Decoded]:
    """The training and validation batches of folders, decoded by `decode` ("gpu-nvjpeg" or
    "dali") at size x size: random crops for training, the central crop_fraction for val. In
    infer mode the timed batches are val's, full and shuffled, with val's central crop."""
    make = {"gpu-nvjpeg": nvjpeg, "dali": dali}[decode]
    kwargs = {**options, "collate_fn": collate}
    train, val = folders
    timed, crop = (val, crop_fraction) if wl.infer else (train, None)
    return (
        Decoded(wl.loader(Encoded(timed), True, **kwargs), make(wl, size, resample, crop)),
        Decoded(wl.loader(Encoded(val), False, **kwargs), make(wl, size, resample, crop_fraction)),
    )


def nvjpeg(
    wl: Workload, size: int, resample: Image.Resampling, crop_fraction: float | None
) -> Decode:
    """torchvision's batched decode_jpeg on the device; files that are no JPEG (ImageNet has a
    few PNGs and CMYK images) through decode_image on the CPU. crop_fraction None: training."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg
    from torchvision.transforms.v2.functional import InterpolationMode, resized_crop

    interpolation = InterpolationMode[resample.name]
    mean, std = (torch.from_numpy(a).to(wl.device) for a in (images.MEAN, images.STD))

    def crop(img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        if crop_fraction is None:
            left, top, right, bottom = images.random_box(w, h)
            flip = random.random() < 0.5
        else:  # Pillow resamples a fractional box; a tensor crop takes whole pixels
            left, top, right, bottom = (round(v) for v in images.center_box(w, h, crop_fraction))
            flip = False
        out = resized_crop(
            img, top, left, bottom - top, right - left, [size, size], interpolation, antialias=True
        )
        return out.flip(-1) if flip else out

    def decode(data: list[torch.Tensor]) -> torch.Tensor:
        jpeg = [d[:2].tolist() == JPEG_MAGIC for d in data]
        batch = [d for d, is_jpeg in zip(data, jpeg, strict=True) if is_jpeg]
        decoded = iter(
            decode_jpeg(batch, mode=ImageReadMode.RGB, device=wl.device) if batch else []
        )
        pictures = [
            next(decoded) if is_jpeg else decode_image(d, mode=ImageReadMode.RGB).to(wl.device)
            for d, is_jpeg in zip(data, jpeg, strict=True)
        ]
        x = torch.stack([crop(p) for p in pictures]).float().div_(255)
        return (x - mean) / std

    return decode


def dali(
    wl: Workload, size: int, resample: Image.Resampling, crop_fraction: float | None
) -> Decode:
    """A DALI pipeline fed each batch's files: decoded on the GPU ("mixed"), Inception crops
    and flips for training (crop_fraction None), the resized short side's centre for val."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import feed_ndarray

    interp = {"BILINEAR": types.INTERP_LINEAR, "BICUBIC": types.INTERP_CUBIC}[resample.name]
    norm = {
        "mean": (images.MEAN * 255).ravel().tolist(),
        "std": (images.STD * 255).ravel().tolist(),
    }

    @pipeline_def(
        batch_size=wl.batch_size,
        num_threads=wl.loader_workers(),
        device_id=wl.device.index,
        seed=wl.env.seed + wl.rank,
        exec_async=False,  # one run() per feed_input(): the batch the sampler drew, in order
        exec_pipelined=False,
    )
    def pipeline() -> Any:
        files = fn.external_source(name="files", dtype=types.UINT8)
        if crop_fraction is None:
            pictures = fn.decoders.image_random_crop(
                files, device="mixed", output_type=types.RGB, random_area=[0.08, 1.0],
                random_aspect_ratio=[3 / 4, 4 / 3], num_attempts=10,
            )  # fmt: skip
            pictures = fn.resize(pictures, resize_x=size, resize_y=size, interp_type=interp)
            mirror = fn.random.coin_flip()
        else:
            pictures = fn.decoders.image(files, device="mixed", output_type=types.RGB)
            shorter = size / crop_fraction
            pictures = fn.resize(pictures, resize_shorter=shorter, interp_type=interp)
            mirror = 0
        return fn.crop_mirror_normalize(
            pictures, dtype=types.FLOAT, output_layout="CHW", crop=(size, size), mirror=mirror,
            **norm,
        )  # fmt: skip

    pipe = pipeline()
    pipe.build()

    def decode(data: list[torch.Tensor]) -> torch.Tensor:
        pipe.feed_input("files", [np.asarray(d) for d in data])
        (out,) = pipe.run()
        x = torch.empty((len(data), 3, size, size), device=wl.device)
        feed_ndarray(out.as_tensor(), x, cuda_stream=torch.cuda.current_stream(wl.device))
        return x

    return decode
