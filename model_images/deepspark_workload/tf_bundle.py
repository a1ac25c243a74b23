"""TensorFlow's checkpoint format, a tensor bundle, read without TensorFlow (numpy alone).

PREFIX.index is an SSTable (LevelDB's table format, TensorFlow's copy in tensorflow/core/lib/io):
data blocks of prefix-compressed key/value entries with restart points, an index block of
block handles, a 48-byte footer (two handles, padding, the magic number); each block is
followed by its compression type and a masked CRC32C. Its first key, "", holds a
BundleHeaderProto (number of shards, endianness); every other key is a tensor's name and its
value a BundleEntryProto (dtype, shape, shard, offset, size, masked CRC32C of the bytes).
PREFIX.data-<shard>-of-<shards> holds the tensors' raw bytes, little-endian. TensorFlow writes
its index uncompressed (tensor_bundle.cc's TableBuilderOptions); a snappy-compressed block is
refused. Everything read is checked: the magic number, every block's and tensor's CRC32C,
the entries' bounds, and the restart points.
"""

import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

MAGIC = 0xDB4775248B80FB57  # LevelDB's kTableMagicNumber, which TensorFlow's tables keep
FOOTER = 48  # two block handles padded to 40 bytes, then the magic number
TRAILER = 5  # a block's compression type and masked CRC32C
# TensorFlow's DataType numbers (types.proto) read here; bfloat16 is widened to float32.
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}
BFLOAT16 = 14


class BundleError(ValueError):
    """A file that is not a sound tensor bundle, or a tensor it lacks: one line saying which."""


def _crc_table() -> np.ndarray:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):  # CRC-32C (Castagnoli), reflected
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return np.array(table, dtype=np.uint32)


TABLE = _crc_table()
_PY_TABLE = TABLE.tolist()


def _extend(crc: int, data: bytes) -> int:
    """The CRC register after data, byte by byte (short inputs)."""
    for byte in data:
        crc = _PY_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of data. A long input runs as up to 16,384 equal segments at once in numpy, each
    from a zero register; the segments are then chained through the register's map over a
    segment of zero bytes (linear, so 32 basis registers run beside them give it)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    lanes = min(16384, len(buf) // 1024)
    if lanes < 16:
        return _extend(0xFFFFFFFF, bytes(buf)) ^ 0xFFFFFFFF
    seg = len(buf) // lanes
    columns = np.ascontiguousarray(buf[: lanes * seg].reshape(lanes, seg).T)
    regs = np.zeros(lanes + 32, dtype=np.uint32)
    regs[lanes:] = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    padded = np.zeros(lanes + 32, dtype=np.uint32)
    for column in columns:
        padded[:lanes] = column
        regs = TABLE[(regs ^ padded) & 0xFF] ^ (regs >> 8)
    basis = regs[lanes:]
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (byte, bit)
    shift = [  # the zero-segment map, a byte of the register at a time
        np.bitwise_xor.reduce(np.where(bits, basis[8 * k : 8 * k + 8], 0), axis=1).tolist()
        for k in range(4)
    ]
    crc = 0xFFFFFFFF
    for value in regs[:lanes].tolist():
        crc = (
            shift[0][crc & 0xFF]
            ^ shift[1][(crc >> 8) & 0xFF]
            ^ shift[2][(crc >> 16) & 0xFF]
            ^ shift[3][crc >> 24]
            ^ value
        )
    return _extend(crc, bytes(buf[lanes * seg :])) ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """LevelDB's masked CRC (stored CRCs of data that may hold CRCs)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A base-128 varint at pos: (value, the position after it)."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise BundleError("a varint runs past its field")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """A protobuf message's (field number, value) pairs: varints as ints (int64 sign kept),
    fixed32 as ints, length-delimited fields as bytes."""
    fields, pos = [], 0
    while pos < len(buf):
        tag, pos = varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = varint(buf, pos)
            value = value - (1 << 64) if value >= 1 << 63 else value
        elif wire == 2:
            size, pos = varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        else:
            raise BundleError(f"protobuf wire type {wire} is not one a bundle uses")
        if pos > len(buf):
            raise BundleError(f"protobuf field {number} runs past its message")
        fields.append((number, value))
    return fields


class Entry(NamedTuple):
    """A tensor's BundleEntryProto."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int  # masked
    sliced: bool  # a partitioned tensor (its slices are other entries): not read here


def parse_entry(value: bytes) -> Entry:
    fields = dict(dtype=0, shape=(), shard=0, offset=0, size=0, crc32c=0, sliced=False)
    for number, field in proto_fields(value):
        if number == 2:  # TensorShapeProto: dim = 2 (Dim: size = 1), unknown_rank = 3
            dims = [f for n, f in proto_fields(bytes(field)) if n == 2]
            fields["shape"] = tuple(
                next((s for n, s in proto_fields(bytes(d)) if n == 1), 0) for d in dims
            )
        elif number == 7:
            fields["sliced"] = True
        elif 1 <= number <= 6:
            key = ("dtype", "shape", "shard", "offset", "size", "crc32c")[number - 1]
            fields[key] = field
    return Entry(**fields)


def _block(index: bytes, handle: bytes, what: str) -> bytes:
    """The block a handle (varint offset, varint size) points at, its trailer checked."""
    offset, pos = varint(handle, 0)
    size, _ = varint(handle, pos)
    end = offset + size + TRAILER
    if end > len(index) - FOOTER:
        raise BundleError(f"{what}: the {what.split()[-1]} block runs past the end (truncated?)")
    block, kind = index[offset : offset + size], index[offset + size]
    if kind != 0:
        raise BundleError(f"{what}: a compressed block (type {kind}): only uncompressed tables")
    (stored,) = struct.unpack_from("<I", index, offset + size + 1)
    if mask(crc32c(index[offset : offset + size + 1])) != stored:
        raise BundleError(f"{what}: a block's CRC32C does not match (corrupt)")
    return block


def block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """A block's (key, value) entries; every restart point must start an entry with a whole key."""
    if len(block) < 4:
        raise BundleError(f"{what}: a block too short for its restart count")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise BundleError(f"{what}: a block's restart array runs past it")
    points = set(struct.unpack_from(f"<{restarts}I", block, limit))
    entries, whole, pos, key = [], set(), 0, b""
    while pos < limit:
        start = pos
        shared, pos = varint(block, pos)
        unshared, pos = varint(block, pos)
        length, pos = varint(block, pos)
        if shared > len(key) or pos + unshared + length > limit:
            raise BundleError(f"{what}: an entry runs past its block (corrupt)")
        if shared == 0:
            whole.add(start)
        key = key[:shared] + block[pos : pos + unshared]
        entries.append((key, block[pos + unshared : pos + unshared + length]))
        pos += unshared + length
    if not points <= whole:
        raise BundleError(f"{what}: a restart point is not the start of a whole key (corrupt)")
    return entries


class Bundle:
    """A tensor bundle's index, read whole (a few KB); tensors are read one at a time."""

    def __init__(self, prefix: Path) -> None:
        self.prefix, what = prefix, f"{prefix}.index"
        try:
            index = Path(what).read_bytes()
        except OSError as exc:
            raise BundleError(f"{what}: {exc.strerror}") from None
        if len(index) < FOOTER or struct.unpack_from("<Q", index, len(index) - 8)[0] != MAGIC:
            raise BundleError(f"{what}: not a TensorFlow checkpoint index (no table footer)")
        footer = index[len(index) - FOOTER :]
        _, pos = varint(footer, varint(footer, 0)[1])  # the metaindex handle: unused
        handles = block_entries(_block(index, footer[pos:], f"{what} index"), what)
        entries = [
            e for _, h in handles for e in block_entries(_block(index, h, f"{what} data"), what)
        ]
        if not entries or entries[0][0] != b"":
            raise BundleError(f"{what}: no bundle header (the first key must be empty)")
        header = dict(proto_fields(entries[0][1]))
        if header.get(2, 0) != 0:
            raise BundleError(f"{what}: a big-endian bundle: only little-endian ones are read")
        self.shards = header.get(1, 1)
        self.entries = {key.decode(): parse_entry(value) for key, value in entries[1:]}

    def read(self, name: str) -> np.ndarray:
        """The tensor called name, its bytes checked against their CRC32C."""
        entry = self.entries.get(name)
        if entry is None:
            raise BundleError(f"{self.prefix}: no tensor {name!r}")
        if entry.sliced or entry.dtype not in (*DTYPES, BFLOAT16):
            why = "partitioned" if entry.sliced else f"of TensorFlow dtype {entry.dtype}"
            raise BundleError(f"{self.prefix}: {name!r} is {why}, which is not read here")
        dtype = np.dtype("<u2" if entry.dtype == BFLOAT16 else DTYPES[entry.dtype])
        if entry.size != dtype.itemsize * int(np.prod(entry.shape)):
            raise BundleError(f"{self.prefix}: {name!r} has {entry.size} bytes for {entry.shape}")
        path = Path(f"{self.prefix}.data-{entry.shard:05d}-of-{self.shards:05d}")
        try:
            with path.open("rb") as f:
                f.seek(entry.offset)
                data = f.read(entry.size)
        except OSError as exc:
            raise BundleError(f"{path}: {exc.strerror}") from None
        if len(data) != entry.size:
            raise BundleError(f"{path}: ends inside {name!r} (truncated)")
        if mask(crc32c(data)) != entry.crc32c:
            raise BundleError(f"{path}: {name!r}'s CRC32C does not match (corrupt)")
        array = np.frombuffer(data, dtype=dtype).reshape(entry.shape)
        if entry.dtype == BFLOAT16:
            return (array.astype(np.uint32) << 16).view(np.float32)
        return array
