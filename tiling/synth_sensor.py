"""CTX-like detector and acquisition artefacts for the realistic preset.

CTX is a pushbroom camera: a line of about 5,000 detector columns sweeps along the orbit,
so its images show fixed-pattern differences between columns (striping, banding, an
even/odd offset) and a gain and brightness that drift along the strip (rows). The sensor
model maps the scene's grey levels ``g`` at ``(row, col)`` to

``g * gain(row) + offset(row) + stripes(col) + noise(row, col)``

where every term is a pure function of the pixel's position and the scene's salt, so a
scene rendered window by window gets the same bytes as one rendered whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tiling.config import CtxLook
from tiling.hashing import hash_unit


def smooth_noise_1d(start: int, length: int, spacing: int, salt: int) -> np.ndarray:
    """Smooth 1-D value noise in [-1, 1) at positions ``start .. start + length - 1``:
    random values every ``spacing`` positions, joined by smoothstep interpolation."""
    f = (start + np.arange(length)) / spacing
    i = np.floor(f).astype(np.int64)
    t = (f - i).astype(np.float32)
    t = t * t * (3 - 2 * t)
    knots = hash_unit(np.arange(i[0], i[-1] + 2), np.zeros(1, np.int64), salt) * 2 - 1
    j = i - i[0]
    return knots[j] * (1 - t) + knots[j + 1] * t


@dataclass(frozen=True)
class Sensor:
    """The artefacts of one scene: its ``CtxLook`` settings, the gain and offset drawn for
    it, and the salt of its patterns and noise."""

    look: CtxLook
    gain: float
    offset_grey: float
    salt: int

    def apply(self, img: np.ndarray, row0: int, col0: int) -> np.ndarray:
        """Return ``img`` (float32 grey levels of the window at ``(row0, col0)``) as CTX
        would record it (the input is modified in place)."""
        height, width = img.shape
        look = self.look
        gain = self.gain * (
            1 + look.gain_along_strip * smooth_noise_1d(row0, height, look.along_strip_px, self.salt)
        )
        offset = self.offset_grey + look.offset_along_strip_grey * smooth_noise_1d(
            row0, height, look.along_strip_px, self.salt + 1
        )
        cols = col0 + np.arange(width)
        stripes = (
            look.column_stripe_grey * (2 * hash_unit(cols, np.zeros(1, np.int64), self.salt + 2) - 1)
            + look.column_band_grey * smooth_noise_1d(col0, width, look.column_band_px, self.salt + 3)
            + look.even_odd_grey * np.where(cols % 2 == 0, 0.5, -0.5)
        ).astype(np.float32)
        img *= gain[:, None]
        img += offset[:, None]
        img += stripes[None, :]
        if look.noise_grey > 0:
            rows = (row0 + np.arange(height))[:, None]
            # Uniform noise with this standard deviation: amplitude sqrt(3) sigma.
            amplitude = np.float32(math.sqrt(3) * look.noise_grey)
            img += amplitude * (2 * hash_unit(rows, cols[None, :], self.salt + 4) - 1)
        return img


def draw_sensor(look: CtxLook, rng: np.random.Generator) -> Sensor:
    """Draw a scene's gain, offset and salt.

    Args:
        look: The artefact settings.
        rng: The scene's random generator.

    Returns:
        The scene's sensor.
    """
    return Sensor(
        look,
        float(rng.uniform(*look.scene_gain)),
        float(rng.uniform(*look.scene_offset_grey)),
        int(rng.integers(0, 2**31 - 1)),
    )
