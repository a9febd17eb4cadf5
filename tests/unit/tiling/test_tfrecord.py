"""TFRecord shards without TensorFlow: examples round-trip, corruption is caught, tf.data reads them."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impacts.errors import PatchSetError
from tiling.tfrecord import TFRecordWriter, decode_example, encode_example, read_record_at, read_records

INT64 = st.integers(-(2**63), 2**63 - 1)
FLOAT32 = st.floats(width=32, allow_nan=False)
KEYS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
FEATURES = st.dictionaries(
    KEYS,
    st.one_of(
        st.binary(max_size=300),
        INT64,
        FLOAT32,
        st.lists(INT64, max_size=20),
        st.lists(FLOAT32, min_size=1, max_size=20),
    ),
    max_size=6,
)


def _expected(value: bytes | int | float | list[int] | list[float]) -> bytes | list[int] | list[float]:
    """What decoding gives back: bytes as they were, scalars as one-element lists."""
    if isinstance(value, bytes | list):
        return value
    return [value]


@settings(deadline=None, max_examples=100)
@given(FEATURES)
def test_encode_decode_round_trip(features: dict[str, bytes | int | float | list[int] | list[float]]) -> None:
    decoded = decode_example(encode_example(features))
    assert decoded == {key: _expected(value) for key, value in features.items()}


def test_round_trip_keeps_types_and_extreme_int64() -> None:
    features: dict[str, bytes | int | float | list[int] | list[float]] = {
        "image": bytes(range(256)),
        "height": 128,
        "offset": -1,
        "extremes": [-(2**63), -(2**31), 0, 2**31, 2**63 - 1],
        "res_m": 6.0,
        "centroid": [0.5, -12.25, 1e30],
    }
    decoded = decode_example(encode_example(features))
    assert decoded["image"] == bytes(range(256))
    assert decoded["height"] == [128]
    assert decoded["offset"] == [-1]
    assert decoded["extremes"] == [-(2**63), -(2**31), 0, 2**31, 2**63 - 1]
    assert decoded["res_m"] == [6.0]
    assert decoded["centroid"] == pytest.approx([0.5, -12.25, 1e30], rel=1e-7)  # float32 on the wire


def test_encoding_does_not_depend_on_key_order() -> None:
    a = encode_example({"b": 1, "a": b"x", "c": 2.5})
    b = encode_example({"c": 2.5, "a": b"x", "b": 1})
    assert a == b


def _write(path: Path, records: list[bytes]) -> list[int]:
    with TFRecordWriter(path) as writer:
        offsets = [writer.write(r) for r in records]
        assert writer.count == len(records)
    return offsets


@settings(deadline=None, max_examples=50)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_written_records_read_back_in_order_and_by_offset(records: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard.tfrecord"
        offsets = _write(path, records)
        assert list(read_records(path)) == records
        for offset, record in reversed(list(zip(offsets, records, strict=True))):
            assert read_record_at(path, offset) == record


def test_offsets_are_byte_positions_of_each_record(tmp_path: Path) -> None:
    records = [b"a", b"", b"ccc"]
    offsets = _write(tmp_path / "s.tfrecord", records)
    assert offsets == [0, 12 + 1 + 4, 2 * 12 + 1 + 2 * 4]  # 12-byte header and 4-byte footer each
    assert (tmp_path / "s.tfrecord").stat().st_size == 3 * 16 + 4


Shard = tuple[bytes, list[bytes], list[int]]


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Shard:
    """Bytes of a three-record shard, its records and their offsets."""
    records = [encode_example({"image": bytes([k]) * 50, "label": k}) for k in range(3)]
    path = tmp_path_factory.mktemp("shard") / "shard.tfrecord"
    offsets = _write(path, records)
    return path.read_bytes(), records, offsets


def _read_all(data: bytes) -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard.tfrecord"
        path.write_bytes(data)
        return list(read_records(path))


@settings(deadline=None, max_examples=60)
@given(cut=st.integers(1, 10_000))
def test_truncated_file_raises(shard: Shard, cut: int) -> None:
    data, _, offsets = shard
    keep = cut % len(data)
    if keep in offsets:  # a cut exactly between records leaves a valid, shorter file
        keep += 1
    with pytest.raises(PatchSetError, match="re-run `impacts tile`"):
        _read_all(data[:keep])


@settings(deadline=None, max_examples=60)
@given(position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_flipped_bit_anywhere_raises(shard: Shard, position: int, bit: int) -> None:
    data = bytearray(shard[0])
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(PatchSetError):
        _read_all(bytes(data))


def test_read_record_at_detects_a_flipped_byte_in_its_record(shard: Shard, tmp_path: Path) -> None:
    raw, records, offsets = shard
    data = bytearray(raw)
    data[offsets[1] + 12 + 5] ^= 0xFF  # inside the second record's payload
    path = tmp_path / "corrupt.tfrecord"
    path.write_bytes(bytes(data))
    assert read_record_at(path, offsets[0]) == records[0]
    with pytest.raises(PatchSetError, match="corrupt"):
        read_record_at(path, offsets[1])


def test_read_record_at_rejects_offsets_off_a_record(shard: Shard, tmp_path: Path) -> None:
    raw, _, offsets = shard
    path = tmp_path / "shard.tfrecord"
    path.write_bytes(raw)
    with pytest.raises(PatchSetError, match="no record at offset"):
        read_record_at(path, path.stat().st_size)
    with pytest.raises(PatchSetError):
        read_record_at(path, offsets[1] + 3)


def test_huge_length_in_a_corrupt_header_is_caught_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "s.tfrecord"
    _write(path, [b"payload"])
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", 2**62)  # length no longer matches its CRC
    path.write_bytes(bytes(data))
    with pytest.raises(PatchSetError, match="corrupt record length"):
        list(read_records(path))


def test_tensorflow_parses_our_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # read when TensorFlow is first imported
    import tensorflow as tf

    rng = np.random.default_rng(0)
    patches = [rng.integers(0, 256, size=(16, 12), dtype=np.uint8) for _ in range(3)]
    path = tmp_path / "shard.tfrecord"
    with TFRecordWriter(path) as writer:
        for k, patch in enumerate(patches):
            writer.write(
                encode_example(
                    {
                        "image": patch.tobytes(),
                        "height": patch.shape[0],
                        "width": patch.shape[1],
                        "label": k % 2,
                        "row": -(k + 1),  # negative int64 must survive TF's parser too
                        "res_m": 6.0,
                        "box": [1.5, 2.5, 3.5, 4.5],
                    }
                )
            )

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "height": tf.io.FixedLenFeature([], tf.int64),
        "width": tf.io.FixedLenFeature([], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "row": tf.io.FixedLenFeature([], tf.int64),
        "res_m": tf.io.FixedLenFeature([], tf.float32),
        "box": tf.io.FixedLenFeature([4], tf.float32),
    }
    parsed = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(str(path))]

    assert len(parsed) == len(patches)
    for k, (example, patch) in enumerate(zip(parsed, patches, strict=True)):
        h, w = int(example["height"]), int(example["width"])
        image = tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), (h, w)).numpy()
        np.testing.assert_array_equal(image, patch)
        assert int(example["label"]) == k % 2
        assert int(example["row"]) == -(k + 1)
        assert float(example["res_m"]) == 6.0
        np.testing.assert_array_equal(example["box"].numpy(), [1.5, 2.5, 3.5, 4.5])

    # And the other way: TensorFlow's own serialisation decodes with ours.
    tf_example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x00\xff"])),
                "row": tf.train.Feature(int64_list=tf.train.Int64List(value=[-5, 7])),
                "res_m": tf.train.Feature(float_list=tf.train.FloatList(value=[0.25])),
            }
        )
    )
    assert decode_example(tf_example.SerializeToString()) == {
        "image": b"\x00\xff",
        "row": [-5, 7],
        "res_m": [0.25],
    }


@pytest.mark.parametrize(
    ("dtype", "shape", "patch_id"),
    [("uint8", (128, 128), "S-000001"), ("uint16", (64, 32), "x"), ("uint8", (16, 16), "")],
)
def test_patch_records_are_the_bytes_the_generic_encoder_gives(
    dtype: str, shape: tuple[int, int], patch_id: str
) -> None:
    from tiling.shards import encode_patch

    rng = np.random.default_rng(1)
    image = rng.integers(0, 2000, size=shape).astype(dtype)
    mask = (rng.random(shape) < 0.3).astype(np.uint8)
    expected = encode_example(
        {
            "patch_id": patch_id.encode(),
            "image": image.tobytes(),
            "mask": mask.tobytes(),
            "height": shape[0],
            "width": shape[1],
            "dtype": dtype.encode(),
        }
    )
    assert encode_patch(patch_id, image, mask) == expected
    empty = encode_example(
        {
            "patch_id": patch_id.encode(),
            "image": image.tobytes(),
            "mask": bytes(mask.size),
            "height": shape[0],
            "width": shape[1],
            "dtype": dtype.encode(),
        }
    )
    assert encode_patch(patch_id, image, None) == empty
