"""Counter-based randomness: a uniform value per integer position and salt.

A value that depends only on its coordinates (not on the order things are visited) lets
scenes be rendered window by window and patches be drawn stripe by stripe with results
that do not depend on the window or stripe size.
"""

from __future__ import annotations

import numpy as np


def hash_unit(iy: np.ndarray, ix: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniform [0, 1) float32 per ``(iy, ix)`` pair (a 64-bit mix hash),
    broadcast over the inputs' shapes."""
    with np.errstate(over="ignore"):
        h = (np.asarray(iy).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            np.asarray(ix).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        )
        h ^= np.uint64(salt & 0xFFFFFFFFFFFF) * np.uint64(0x165667B19E3779F9)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)
