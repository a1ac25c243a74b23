"""Criteo 1TB click logs -> the full config's day files (data.py), as torchrec's `tsv_to_npys`
(the MLPerf DLRM reference's preprocessing) writes them.

The official layout: `day_0` .. `day_23`, plain or gzipped (`day_<d>.gz`), one click a line:
label, 13 integer features and 26 categorical features as 32-bit hex hashes, tab-separated,
any feature possibly empty. Per day this writes

    day_<d>_dense.npy    float32 (N, 13)  log(x + 3), an empty feature counted 0 (torchrec's)
    day_<d>_sparse.npy   int32 (N, 26)    the hash's 32 bits as int32, an empty one 0
    day_<d>_labels.npy   int32 (N, 1)     0 or 1

in the logs' row order (torchrec's script then shuffles the training days in memory; this
does not). Ids stay raw: data.py reduces them modulo each table's size. A day file (10-50 GB)
streams through in blocks of whole lines, parsed by numpy: memory stays bounded, and each
finished day is kept when a run is interrupted.
"""

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from deepspark_workload.prepare import PrepareError, Progress, done, write_atomic_all

DAYS = 24
DENSE, SPARSE = 13, 26
FIELDS = 1 + DENSE + SPARSE
KINDS = ("dense", "sparse", "labels")
BLOCK = 4 << 20  # bytes read at a time: the parse's arrays take a few times this
LONGEST_LINE = 1 << 16  # Criteo's lines are ~150-300 bytes: past this the file is something else
MAX_DIGITS = {10: 18, 16: 8}  # an int64 holds 18 decimal digits; a hash is 8 hex digits

DIGIT = np.full(256, -1, np.int8)  # a byte's value as a digit, -1 for a non-digit
DIGIT[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
DIGIT[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
DIGIT[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)


def convert(src: Path, dst: Path, progress: Progress) -> None:
    sources = [day_file(src, day) for day in range(DAYS)]
    progress.total(sum(s.stat().st_size for s in sources))
    for day, source in enumerate(sources):
        outputs = [dst / f"day_{day}_{kind}.npy" for kind in KINDS]
        if all(map(done, outputs)):
            progress.advance(source.stat().st_size)
            continue
        write_atomic_all(outputs, lambda tmps, source=source: convert_day(source, tmps, progress))


def day_file(src: Path, day: int) -> Path:
    for name in (f"day_{day}", f"day_{day}.gz"):
        if (src / name).is_file():
            return src / name
    raise PrepareError(f"{src}: day_{day} (or day_{day}.gz) is missing: expected Criteo 1TB's days")


def convert_day(source: Path, outputs: list[Path], progress: Progress) -> None:
    """One day's log into its three .npy files (outputs: dense, sparse, labels)."""
    files = [path.open("wb") for path in outputs]
    try:
        dense = NpyRows(files[0], np.float32, DENSE)
        sparse = NpyRows(files[1], np.int32, SPARSE)
        labels = NpyRows(files[2], np.int32, 1)
        for offset, block in lines(source, progress):
            values = parse(block, f"{source} (the block at byte {offset})")
            # torchrec's log(x + 3); x + 3 floored at 1 so the log stays finite below -2
            dense.append(np.log(np.maximum(values[:, 1 : 1 + DENSE] + 3, 1).astype(np.float32)))
            sparse.append(values[:, 1 + DENSE :].astype(np.uint32).view(np.int32))
            labels.append(values[:, :1].astype(np.int32))
        if labels.rows == 0:
            raise PrepareError(f"{source} holds no clicks")
        for array in (dense, sparse, labels):
            array.close()
    finally:
        for f in files:
            f.close()


def lines(source: Path, progress: Progress) -> Iterator[tuple[int, bytes]]:
    """source's text (gunzipped) in blocks of whole lines, with each block's offset; progress
    advanced by the bytes read from disk."""
    with source.open("rb") as raw:
        stream: BinaryIO = gzip.GzipFile(fileobj=raw) if source.suffix == ".gz" else raw
        rest, offset, seen = b"", 0, 0
        while block := read(stream, source):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut:
                yield offset, block[:cut]
                offset += cut
            elif len(block) > LONGEST_LINE:
                raise PrepareError(f"{source}: a line over {LONGEST_LINE} bytes: not a click log")
            rest = block[cut:]
            progress.advance(raw.tell() - seen)
            seen = raw.tell()
        if rest:  # a last line without its newline
            yield offset, rest + b"\n"


def read(stream: BinaryIO, source: Path) -> bytes:
    try:
        return stream.read(BLOCK)
    except (OSError, EOFError) as exc:  # a corrupt or truncated .gz
        raise PrepareError(f"{source}: {exc}") from None


def parse(block: bytes, where: str) -> np.ndarray:
    """Whole lines of the log as int64 (rows, 40): label, integers, hashes; an empty field 0."""
    data = np.frombuffer(block, np.uint8)
    newline = data == ord("\n")
    ends = np.flatnonzero(newline | (data == ord("\t")))  # each field ends at a tab or newline
    rows = len(ends) // FIELDS
    if len(ends) != rows * FIELDS or int(newline.sum()) != rows or not newline[ends[-1]]:
        raise PrepareError(f"{where}: a line without {FIELDS} tab-separated fields")
    starts = np.concatenate([[0], ends[:-1] + 1])
    digit = DIGIT[data]
    negative = data[starts] == ord("-")  # an empty field starts at its end: never
    digits = (ends - starts - negative).reshape(rows, FIELDS)
    negative = negative.reshape(rows, FIELDS)
    # every byte a digit but the separators and the leading minus of an integer feature
    if np.count_nonzero(digit < 0) != len(ends) + np.count_nonzero(negative[:, 1 : 1 + DENSE]):
        raise PrepareError(f"{where}: a field that is not a number ({FIELDS} fields a line)")
    ends = ends.reshape(rows, FIELDS)
    values = np.concatenate(
        [
            numbers(digit, ends[:, : 1 + DENSE], digits[:, : 1 + DENSE], 10, where),
            numbers(digit, ends[:, 1 + DENSE :], digits[:, 1 + DENSE :], 16, where),
        ],
        axis=1,
    )
    if not np.isin(values[:, 0], (0, 1)).all():
        raise PrepareError(f"{where}: a label that is not 0 or 1")
    return np.where(negative, -values, values)


def numbers(digit: np.ndarray, ends: np.ndarray, digits: np.ndarray, base: int, where: str):
    """The numbers in base whose last digit is just before ends, digits[i] digits long: summed
    a place at a time over all fields (a number is short, a block has ~10^5 of them)."""
    if digits.max(initial=0) > MAX_DIGITS[base]:
        raise PrepareError(f"{where}: a number of over {MAX_DIGITS[base]} digits in base {base}")
    values = np.zeros(ends.shape, np.int64)
    for place in range(int(digits.max(initial=0))):
        d = np.where(digits > place, digit[ends - 1 - place], 0)
        if (d >= base).any():
            raise PrepareError(f"{where}: a field that is not a number in base {base}")
        values += d.astype(np.int64) * base**place
    return values


class NpyRows:
    """An .npy file of (rows, columns) written a block of rows at a time. numpy's header leaves
    room for the row count to grow, so the header is written first and rewritten in place with
    the final count by close()."""

    def __init__(self, file: BinaryIO, dtype: type, columns: int) -> None:
        self.file, self.dtype, self.columns, self.rows = file, np.dtype(dtype), columns, 0
        self._header()

    def _header(self) -> None:
        descr = np.lib.format.dtype_to_descr(self.dtype)
        header = {"descr": descr, "fortran_order": False, "shape": (self.rows, self.columns)}
        np.lib.format.write_array_header_1_0(self.file, header)

    def append(self, rows: np.ndarray) -> None:
        assert rows.dtype == self.dtype and rows.shape[1:] == (self.columns,)
        self.file.write(np.ascontiguousarray(rows).tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        end = self.file.tell()
        self.file.seek(0)
        self._header()
        body = self.file.tell()
        expected = body + self.rows * self.columns * self.dtype.itemsize
        assert end == expected, "the header changed size"
        self.file.seek(end)
