"""Decoding hostile uploads: sizes are checked on what the decoder will allocate, every
malformed upload is a 4xx, and a refused upload costs (almost) no memory."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.decode import TileError, decode_tile
from tests.conftest import load_benchmark

hostile = load_benchmark("hostile")
MB = 2**20


def _peak_growth(action: Callable[[], object]) -> int:
    """How far this process's peak resident memory rose above its resident memory during
    ``action`` (Linux ``clear_refs``/``VmHWM``), in bytes."""

    def field(name: str) -> int:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(name))
        return int(line.split()[1]) * 1024

    before = field("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")
    with contextlib.suppress(TileError):
        action()
    return field("VmHWM:") - before


def _status(data: bytes, max_px: int = 1024) -> int:
    with pytest.raises(TileError) as caught:
        decode_tile(data, max_px)
    return caught.value.status


def test_a_png_whose_second_header_declares_a_huge_image_is_refused_before_decoding() -> None:
    data = hostile.png_two_headers(declared=(16, 16), actual=(12_000, 12_000))
    assert len(data) < 200_000
    assert _status(data) == 413
    # Decoding it would take 144 MB; refusing it takes nothing like that.
    assert _peak_growth(lambda: decode_tile(data, 1024)) < 20 * MB


def test_a_png_declaring_more_than_the_limit_is_413_and_a_small_one_decodes() -> None:
    assert _status(hostile.png_declared(5000, 16)) == 413
    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(buffer, format="PNG")
    tile = decode_tile(buffer.getvalue(), 1024)
    assert tile.image.shape == (20, 30) and tile.scale == 255.0


@pytest.mark.parametrize("descr", ["|V0", "|S0", "<U0", "|O", "<c8", "<i4", "|b1", "<M8[s]"])
def test_npy_of_a_type_the_model_cannot_take_is_422_before_its_payload_is_read(descr: str) -> None:
    assert _status(hostile.npy_header(descr, (64, 64))) == 422


def test_npy_declaring_a_huge_array_is_413_and_a_truncated_one_is_400() -> None:
    assert _status(hostile.npy_header("|u1", (100_000, 100_000))) == 413
    assert _status(hostile.npy_header("<u2", (64, 64), bytes(100))) == 400
    big_endian = hostile.npy_header(">u2", (2, 3), np.arange(6, dtype=">u2").tobytes())
    assert decode_tile(big_endian, 64).image.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_tiffs_declaring_huge_rasters_or_blocks_are_413() -> None:
    assert _status(hostile.tiff(100_000, 100_000, 256)) == 413
    # 16 x 16 pixels, but GDAL would decode 8192 x 8192 blocks.
    assert _status(hostile.tiff(16, 16, 8192)) == 413
    assert decode_tile(hostile.tiff(64, 48), 1024).image.shape == (64, 48)


def _valid_uploads() -> list[bytes]:
    image = np.random.default_rng(5).integers(0, 255, (48, 40), dtype=np.uint8)
    npy = io.BytesIO()
    np.save(npy, image.astype(np.uint16))
    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    return [npy.getvalue(), png.getvalue(), hostile.tiff(48, 40)]


VALID = _valid_uploads()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid upload with bytes flipped, overwritten, cut or inserted (headers most often)."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, min(len(data) - 1, draw(st.sampled_from([64, 256, len(data) - 1])))))
        action = draw(st.sampled_from(["flip", "set", "cut", "insert", "word"]))
        if action == "flip":
            data[where] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            data[where] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[where:]
            if not data:
                data = bytearray(b"\x00")
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=16))
        else:  # a big number where a size or an offset may stand
            data[where : where + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x2e\xe0", b"\x7f\xff\xff\xff"])
            )
    return bytes(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_uploads_decode_or_get_a_4xx_within_bounded_memory(data: bytes) -> None:
    max_px = 256
    outcome: list[object] = []

    def decode() -> None:
        try:
            outcome.append(decode_tile(data, max_px))
        except TileError as exc:
            outcome.append(exc)

    growth = _peak_growth(decode)
    (result,) = outcome
    if isinstance(result, TileError):
        assert 400 <= result.status < 500, result
    else:
        assert max(result.image.shape) <= max_px  # type: ignore[attr-defined]
    assert growth < 2 * max_px**2 * 4 + 50 * MB
