"""The CPU image path: Pillow decode + crop per core, against reading the same files.

Writes generated JPEGs of ImageNet's typical size and weight (about 500x375, ~110 KB at
quality 90: smooth shapes under fine noise, as photographs compress), then times, on one
core, reading every file (warm page cache), and the training sample exactly as the
image-folder loader makes it (images.ImageFolder: decode, random-resized crop to 224, flip,
normalise), and the validation sample (centre crop). Prints images/s for each and the ratio;
with --workers N also the training path in N processes, as N loader workers would run.

    .venv/bin/python benchmarks/image_decode.py [--images 300] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from deepspark_workload import images

SIZE = 224


def write_jpegs(root: Path, n: int) -> list[Path]:
    """n JPEGs in root/train/c/ and root/val/c/ (the same files, the folder layout's two sides)."""
    rng = np.random.default_rng(0)
    paths = []
    for split in ("train", "val"):
        (root / split / "c").mkdir(parents=True)
    for i in range(n):
        w, h = rng.integers(400, 640), rng.integers(300, 480)
        coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
        pixels = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)
        for split in ("train", "val"):
            Image.fromarray(pixels).save(root / split / "c" / f"{i}.JPEG", quality=90)
        paths.append(root / "train" / "c" / f"{i}.JPEG")
    return paths


def rate(work: Callable[[int], object], n: int, rounds: int) -> float:
    """Items per second of work(0..n-1), the median of rounds (after one warm-up pass)."""
    for i in range(n):
        work(i)
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        for i in range(n):
            work(i)
        times.append(time.perf_counter() - began)
    return n / statistics.median(times)


def train_share(root: str, start: int, stop: int) -> int:
    """Training samples start..stop-1 in this process (one loader worker's share)."""
    train, _ = images.image_folder(Path(root), SIZE)
    for i in range(start, stop):
        train[i]
    return stop - start


def parallel_rate(root: Path, n: int, workers: int, rounds: int) -> float:
    """Training samples per second over `workers` processes, each taking an equal share."""
    bounds = [(k * n // workers, (k + 1) * n // workers) for k in range(workers)]
    times = []
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(train_share, [str(root)] * workers, *zip(*bounds, strict=True)))  # warm
        for _ in range(rounds):
            began = time.perf_counter()
            list(pool.map(train_share, [str(root)] * workers, *zip(*bounds, strict=True)))
            times.append(time.perf_counter() - began)
    return n / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="also time N processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_jpegs(root, args.images)
        kb = statistics.mean(p.stat().st_size for p in paths) / 1e3
        train, val = images.image_folder(root, SIZE)
        read = rate(lambda i: paths[i].read_bytes(), args.images, args.rounds)
        decode = rate(lambda i: train[i], args.images, args.rounds)
        center = rate(lambda i: val[i], args.images, args.rounds)
        print(f"{args.images} JPEGs, mean {kb:.0f} KB; one core, median of {args.rounds}:")
        print(f"  read the file:                         {read:10,.0f} images/s")
        print(f"  decode + random crop {SIZE} + normalise: {decode:10,.0f} images/s")
        print(f"  decode + centre crop {SIZE} + normalise: {center:10,.0f} images/s")
        print(f"  reading is {read / decode:,.0f}x the training decode")
        if args.workers:
            many = parallel_rate(root, args.images, args.workers, args.rounds)
            print(f"  training decode in {args.workers} processes: {many:,.0f} images/s "
                  f"({many / args.workers:,.0f} per process)")  # fmt: skip


if __name__ == "__main__":
    main()
