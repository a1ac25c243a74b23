"""First vs cached verification of a dataset's manifest: a full hash, then a stat per file.

.venv/bin/python benchmarks/dataset_cache.py [--files 200] [--mib 4] [--rounds 3]

Generates FILES random files of MIB MiB each in a temporary directory, writes SHA256SUMS, and
times verify_manifest with an empty cache (every byte hashed) and again (the host's cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from deepspark_core.datasets import CACHE_ENV, verify_manifest, write_manifest


def timed(root: Path) -> float:
    start = time.perf_counter()
    verify_manifest(root)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--mib", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp, "data"), Path(tmp, "cache")
        root.mkdir()
        for i in range(args.files):
            (root / f"{i:05d}.bin").write_bytes(os.urandom(int(args.mib * 2**20)))
        write_manifest(root)
        first, cached = [], []
        for r in range(args.rounds):
            os.environ[CACHE_ENV] = str(cache / str(r))  # an empty cache each round
            first.append(timed(root))
            cached.append(timed(root))
    gib = args.files * args.mib / 1024
    t1, t2 = statistics.median(first), statistics.median(cached)
    print(f"{args.files} files, {gib:.2f} GiB; median of {args.rounds} rounds")
    print(f"first verification  {t1:8.3f} s  ({gib / t1:.2f} GiB/s hashed)")
    print(f"cached verification {t2:8.3f} s  ({t2 / args.files * 1e6:.0f} us a file)")
    print(f"ratio               {t1 / t2:8.0f}x")


if __name__ == "__main__":
    main()
