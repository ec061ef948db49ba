"""A small pure-Python reader of TensorFlow checkpoints (tensor bundles), no TensorFlow needed.

A checkpoint `PREFIX` is `PREFIX.index` (a LevelDB-style SSTable mapping each variable name to a
`BundleEntryProto`: dtype, shape, shard, offset, size) plus `PREFIX.data-SSSSS-of-NNNNN` shards
holding the raw little-endian tensor bytes. `read_index` decodes the index (uncompressed blocks,
which is what TensorFlow writes); `read_tensors` also reads the values from the data shards.
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48

# tensorflow/core/framework/types.proto -> numpy dtype names (the numeric types a model holds).
TF_DTYPES = {
    1: "float32",
    2: "float64",
    3: "int32",
    4: "uint8",
    5: "int16",
    6: "int8",
    9: "int64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    19: "float16",
    22: "uint32",
    23: "uint64",
}


@dataclasses.dataclass(frozen=True)
class IndexEntry:
    """One variable of a checkpoint index: dtype name (None if not numeric), shape, location."""

    dtype: str | None
    dtype_enum: int
    shape: tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes):
    """Yields (field number, wire type, value) of a serialised protobuf message."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, _, value in _proto_fields(buf):
        if field == 2:  # TensorShapeProto.dim
            size = 0
            for f, _, v in _proto_fields(value):
                if f == 1:
                    size = v
            dims.append(size)
    return tuple(dims)


def _parse_entry(buf: bytes) -> IndexEntry:
    fields = {"dtype_enum": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0}
    names = {1: "dtype_enum", 3: "shard_id", 4: "offset", 5: "size"}
    for field, _, value in _proto_fields(buf):
        if field == 2:
            fields["shape"] = _parse_shape(value)
        elif field in names:
            fields[names[field]] = value
        elif field == 7:
            raise ValueError("partitioned (sliced) variables are not supported")
    return IndexEntry(dtype=TF_DTYPES.get(fields["dtype_enum"]), **fields)


def _read_block(data: bytes, offset: int, size: int, path: str) -> list[tuple[bytes, bytes]]:
    if offset + size + 5 > len(data):
        raise ValueError(f"{path}: block at {offset} (+{size}) runs past the end of the file")
    block = data[offset : offset + size]
    compression = data[offset + size]
    if compression != 0:
        raise ValueError(
            f"{path}: compressed SSTable block (type {compression}); only uncompressed blocks "
            "(what TensorFlow writes) are supported"
        )
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _index_path(prefix: str | os.PathLike) -> str:
    prefix = os.fspath(prefix)
    return prefix if prefix.endswith(".index") else prefix + ".index"


def read_raw_index(prefix: str | os.PathLike) -> tuple[int, dict[str, IndexEntry]]:
    """(number of data shards, {variable name: IndexEntry}) of a checkpoint's `.index` file."""
    path = _index_path(prefix)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < FOOTER_SIZE:
        raise ValueError(f"{path}: too short ({len(data)} bytes) to be a TF checkpoint index")
    footer = data[-FOOTER_SIZE:]
    (magic,) = struct.unpack("<Q", footer[-8:])
    if magic != TABLE_MAGIC:
        raise ValueError(f"{path}: not a TF checkpoint index (bad SSTable magic {magic:#x})")
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    num_shards, entries = 1, {}
    for _, handle in _read_block(data, index_offset, index_size, path):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        for key, value in _read_block(data, offset, size, path):
            if key == b"":  # BundleHeaderProto
                for field, _, v in _proto_fields(value):
                    if field == 1:
                        num_shards = v
                    elif field == 2 and v != 0:
                        raise ValueError(f"{path}: big-endian checkpoints are not supported")
                continue
            entries[key.decode("utf-8")] = _parse_entry(value)
    return num_shards, entries


def read_index(prefix: str | os.PathLike) -> dict[str, IndexEntry]:
    """{variable name: IndexEntry(dtype, shape, ...)} of a TF checkpoint (`PREFIX` or `PREFIX.index`)."""
    return read_raw_index(prefix)[1]


def read_tensors(prefix: str | os.PathLike, names=None) -> dict[str, np.ndarray]:
    """Reads variables (all, or `names`) of a TF checkpoint as numpy arrays, without TensorFlow."""
    path = _index_path(prefix)
    prefix = path[: -len(".index")]
    num_shards, entries = read_raw_index(path)
    wanted = list(entries) if names is None else list(names)
    out, shards = {}, {}
    try:
        for name in wanted:
            if name not in entries:
                raise KeyError(f"{path}: no variable {name!r}")
            e = entries[name]
            if e.dtype is None:
                raise ValueError(
                    f"{path}: variable {name!r} has non-numeric dtype enum {e.dtype_enum}"
                )
            if e.shard_id not in shards:
                shard = f"{prefix}.data-{e.shard_id:05d}-of-{num_shards:05d}"
                if not os.path.exists(shard):
                    raise FileNotFoundError(
                        f"checkpoint data shard {shard} not found (index {path})"
                    )
                shards[e.shard_id] = open(shard, "rb")  # noqa: SIM115
            f = shards[e.shard_id]
            f.seek(e.offset)
            raw = f.read(e.size)
            dtype = np.dtype(e.dtype) if e.dtype != "bfloat16" else np.dtype("uint16")
            count = int(np.prod(e.shape, dtype=np.int64))
            if len(raw) != e.size or e.size != count * dtype.itemsize:
                raise ValueError(
                    f"{path}: variable {name!r}: expected {count * dtype.itemsize} bytes for "
                    f"{e.dtype}{list(e.shape)}, read {len(raw)}"
                )
            arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(e.shape)
            if e.dtype == "bfloat16":
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[name] = arr.astype(dtype.newbyteorder("="), copy=True)
    finally:
        for f in shards.values():
            f.close()
    return out
