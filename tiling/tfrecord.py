"""TFRecord files of ``tf.train.Example`` messages, written and read without TensorFlow.

The tiling package must not import TensorFlow, yet its shards are read by ``tf.data``. The
two formats are small: a TFRecord is ``uint64 length, uint32 masked crc32c(length), data,
uint32 masked crc32c(data)``; an Example is the protobuf
``Example{features: Features{feature: map<string, Feature>}}`` with each Feature a
``bytes_list`` (field 1), ``float_list`` (2) or ``int64_list`` (3).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import crc32c

from impacts.errors import PatchSetError

Chunk = bytes | bytearray
FeatureValue = bytes | bytearray | int | float | list[int] | list[float]

_MASK_DELTA = 0xA282EAD8
_SMALL = [bytes((v,)) for v in range(0x80)]


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C: rotate right by 15 bits and add a constant."""
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 are ten-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=4096)
def _header(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field (patches repeat the same few)."""
    return _varint(number << 3 | 2) + _varint(length)


def _nest(number: int, chunks: list[Chunk]) -> list[Chunk]:
    """Wrap chunks in a length-delimited field without copying them: only a header is made;
    the payload is copied once, by the final join."""
    return [_header(number, sum(map(len, chunks))), *chunks]


def _feature(value: FeatureValue) -> list[Chunk]:
    if isinstance(value, bytes | bytearray):
        return _nest(1, _nest(1, [value]))
    if isinstance(value, float) or (isinstance(value, list) and value and isinstance(value[0], float)):
        floats = [value] if isinstance(value, float) else value
        return _nest(2, [_field(1, struct.pack(f"<{len(floats)}f", *floats))])
    ints = [value] if isinstance(value, int) else value
    return _nest(3, [_field(1, b"".join(_varint(int(v)) for v in ints))])


def example_chunks(features: dict[str, FeatureValue]) -> list[Chunk]:
    """The serialised ``tf.train.Example`` as chunks whose concatenation is the message;
    each bytes value appears as its own chunk, the very object passed in."""
    entries: list[Chunk] = []
    for key, value in sorted(features.items()):
        entries += _nest(1, [_field(1, key.encode()), *_nest(2, _feature(value))])
    return _nest(1, entries)


def encode_example(features: dict[str, FeatureValue]) -> bytes:
    """Serialise a dict as a ``tf.train.Example`` (keys sorted, so bytes are reproducible)."""
    return b"".join(example_chunks(features))


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        if tag & 7 != 2:
            raise PatchSetError(f"unexpected protobuf wire type {tag & 7} in an Example")
        length, pos = _read_varint(buf, pos)
        yield tag >> 3, buf[pos : pos + length]
        pos += length


def decode_example(data: bytes) -> dict[str, bytes | list[int] | list[float]]:
    """Parse a serialised ``tf.train.Example`` into ``{name: bytes | ints | floats}``
    (a bytes_list gives its first value)."""
    out: dict[str, bytes | list[int] | list[float]] = {}
    for _, features in _fields(data):
        for _, entry in _fields(features):
            parts = dict(_fields(entry))
            key = parts[1].decode()
            kind, payload = next(_fields(parts.get(2, b"")), (0, b""))
            inner = next(_fields(payload), (0, b""))[1] if payload else b""
            if kind == 1:
                out[key] = inner
            elif kind == 2:
                out[key] = list(struct.unpack(f"<{len(inner) // 4}f", inner))
            else:
                ints, pos = [], 0
                while pos < len(inner):
                    v, pos = _read_varint(inner, pos)
                    ints.append(v - (1 << 64) if v >= 1 << 63 else v)
                out[key] = ints
    return out


class TFRecordWriter:
    """Append records to a TFRecord file; :meth:`write` returns each record's byte offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO = path.open("wb")
        self.count = 0

    def write(self, record: bytes) -> int:
        offset = self._fh.tell()
        header = struct.pack("<Q", len(record))
        self._fh.write(
            header + struct.pack("<I", masked_crc(header)) + record + struct.pack("<I", masked_crc(record))
        )
        self.count += 1
        return offset

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_one(fh: BinaryIO, path: Path) -> bytes | None:
    header = fh.read(12)
    if not header:
        return None
    if len(header) < 12:
        raise PatchSetError(f"{path}: truncated record header; re-run `impacts tile` for this scene")
    (length,) = struct.unpack("<Q", header[:8])
    if struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
        raise PatchSetError(f"{path}: corrupt record length; re-run `impacts tile` for this scene")
    data = fh.read(length)
    footer = fh.read(4)
    if len(data) < length or len(footer) < 4 or struct.unpack("<I", footer)[0] != masked_crc(data):
        raise PatchSetError(f"{path}: truncated or corrupt record; re-run `impacts tile` for this scene")
    return data


def read_records(path: Path) -> Iterator[bytes]:
    """Yield every record of a TFRecord file, checking both CRCs."""
    with path.open("rb") as fh:
        while (data := _read_one(fh, path)) is not None:
            yield data


def read_record_at(path: Path, offset: int) -> bytes:
    """Read the one record that starts at byte ``offset``."""
    with path.open("rb") as fh:
        fh.seek(offset)
        data = _read_one(fh, path)
    if data is None:
        raise PatchSetError(f"{path}: no record at offset {offset}; the manifest does not match the shard")
    return data
