"""Registration of an earlier image onto its scene: the residual offset, per scene and per region.

Map-projected pairs are still misregistered by several pixels (pointing, the terrain model).
The offset ``(rows, cols)`` (scene pixels; the convention of :mod:`tiling.pairs`: the earlier
image's features lie at ``scene + offset`` in the uncorrected view) is estimated from the
overlap, in bounded memory:

1. The scene is cut into regions of ``region_rows`` rows (one for a short scene; a long strip
   drifts, so each region gets its own offset). In each region a grid of at most
   ``candidates`` windows of ``window_px`` is read from the scene and from the uncorrected
   view; the share of the scene's valid pixels that the earlier image covers with valid
   pixels (over all candidates) is the **coverage**.
2. Candidates without any no-data in either image, whose pixel standard deviation (as a share
   of the pixel type's top value) is at least ``min_std`` in both, are textured; the
   ``windows`` most textured of a region are used.
3. Each window's shift comes from the correlation peak of the two windows, standardised and
   Hann-tapered (no wrap-around edges), found in the Fourier domain and refined to
   1/``upsample`` px (``skimage.registration.phase_cross_correlation``; without phase
   normalisation, which weights sensor noise as much as terrain).
   The taper pulls each estimate towards zero by a share of the offset (up to a fifth on
   smooth terrain), so ``refine`` passes measure again through the view corrected by the
   region's estimate so far and add the residual.
4. A region's offset is the median of its windows' estimates; windows farther than
   ``agree_px`` from it are rejected and the median is taken again over the rest. The region
   is estimated when at least ``min_windows`` windows, and at least half of them, agree; its
   **spread** is the RMS distance of the agreeing windows from its offset. Regions without an
   estimate take the offset interpolated between their neighbours (``windows = 0``).
5. The scene's offset is the median of every agreeing window; its spread is their RMS
   distance from it (so a drifting strip has a large scene spread and small region spreads).

A pair is refused, in one line naming both files and the fix, when the coverage is below
``min_coverage`` or no region can be estimated (too few textured windows, or estimates that do
not agree). The result is JSON-able (:meth:`Registration.to_json`), written beside a run's
outputs as ``NAME_registration.json`` (:func:`write_registration`).
"""

from __future__ import annotations

import heapq
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from impacts.atomic import write_json_atomic
from impacts.errors import SceneError
from tiling.io import SceneInfo, open_image, read_window
from tiling.pairs import BeforeView, open_before

log = logging.getLogger(__name__)

#: Rows per region of a long strip.
REGION_ROWS = 2048
#: Side of a correlation window.
WINDOW_PX = 128
#: Candidate windows read per region, and the most textured used.
CANDIDATES = 64
WINDOWS = 16
#: Sub-pixel precision of phase correlation: 1/UPSAMPLE px.
UPSAMPLE = 20
#: Refinement passes: the taper pulls an estimate towards zero by a share of the offset, so
#: each pass measures the residual through the view corrected by the estimate so far.
REFINE = 2
#: Smallest standard deviation of a textured window, as a share of the type's top value.
MIN_STD = 0.01
#: Smallest share of the scene's valid pixels covered by valid earlier pixels.
MIN_COVERAGE = 0.3
#: Windows farther than this from the median are rejected; a region needs MIN_WINDOWS agreeing.
AGREE_PX = 1.0
MIN_WINDOWS = 3
#: The file a run writes per scene.
REGISTRATION_SUFFIX = "_registration.json"
_TOP = {"uint8": 255.0, "uint16": 65535.0}


@dataclass(frozen=True)
class Offset:
    """A registration offset and how well it is known.

    Attributes:
        rows: Offset along rows, scene pixels.
        cols: Offset along columns, scene pixels.
        spread_px: RMS distance of the agreeing windows' estimates from it.
        windows: Windows whose estimates agree (0: interpolated, no estimate of its own).
        rejected: Windows whose estimates disagree.
    """

    rows: float
    cols: float
    spread_px: float
    windows: int
    rejected: int = 0


@dataclass(frozen=True)
class RegionOffset(Offset):
    """The offset of the rows ``row_start:row_stop`` of a scene."""

    row_start: int = 0
    row_stop: int = 0


@dataclass(frozen=True)
class Registration:
    """The registration of an earlier image onto a scene (see the module)."""

    scene: str
    before: str
    coverage: float
    offset: Offset
    regions: tuple[RegionOffset, ...]

    def offset_at(self, row: float) -> tuple[float, float]:
        """The offset ``(rows, cols)`` at scene row ``row``: linear between the centres of the
        estimated regions, constant beyond the first and last."""
        known = [r for r in self.regions if r.windows > 0]
        if not known:
            return (self.offset.rows, self.offset.cols)
        centres = [(r.row_start + r.row_stop) / 2 for r in known]
        return (
            float(np.interp(row, centres, [r.rows for r in known])),
            float(np.interp(row, centres, [r.cols for r in known])),
        )

    def to_json(self) -> dict[str, Any]:
        """The registration as a JSON object."""
        return {
            "scene": self.scene,
            "before": self.before,
            "coverage": round(self.coverage, 4),
            "offset": _rounded(asdict(self.offset)),
            "regions": [_rounded(asdict(r)) for r in self.regions],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Registration:
        """A registration from :meth:`to_json`'s object."""
        return cls(
            scene=data["scene"],
            before=data["before"],
            coverage=float(data["coverage"]),
            offset=Offset(**data["offset"]),
            regions=tuple(RegionOffset(**r) for r in data["regions"]),
        )


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def window_shift(scene: np.ndarray, before: np.ndarray, upsample: int = UPSAMPLE) -> tuple[float, float]:
    """The offset ``(rows, cols)`` of ``before``'s features relative to ``scene``'s in one
    window pair, by phase correlation of the standardised, Hann-tapered windows.

    Args:
        scene: A scene window (no no-data).
        before: The same window of the uncorrected earlier view.
        upsample: Sub-pixel precision, 1/upsample px.

    Returns:
        The offset in pixels.
    """
    from skimage.registration import phase_cross_correlation

    taper = np.outer(np.hanning(scene.shape[0]), np.hanning(scene.shape[1]))

    def prepared(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64)
        return (a - a.mean()) / (a.std() or 1.0) * taper

    # Plain cross-correlation (normalization=None): phase normalisation whitens the spectrum
    # and gives the noisy high frequencies of a low-contrast pair as much weight as the
    # terrain (1.2 px RMS per window against 0.09 px on the tests' noisy pairs).
    shift, _, _ = phase_cross_correlation(
        prepared(scene), prepared(before), upsample_factor=upsample, normalization=None
    )
    # skimage gives the shift that moves `before` onto `scene`: the features' offset negated.
    return (-float(shift[0]), -float(shift[1]))


def _estimates(
    scene: Any,
    before: BeforeView,
    spots: list[tuple[int, int]],
    size: int,
    offset: tuple[float, float],
    upsample: int,
) -> list[tuple[float, float]]:
    """The offset found at each window ``(row, col)``: ``offset`` plus the residual measured
    through the view corrected by it (windows where the correction brings in no-data are left out)."""
    found = []
    for row, col in spots:
        b = before.read_at(row, col, size, size, offset)
        if (b != before.nodata).all():
            rows, cols = window_shift(read_window(scene, row, col, size, size), b, upsample)
            found.append((offset[0] + rows, offset[1] + cols))
    return found


def _spans(start: int, stop: int, size: int, count: int) -> list[int]:
    """Up to ``count`` window starts spread evenly so that windows of ``size`` lie in ``start:stop``."""
    last = max(start, stop - size)
    return sorted({round(start + i * (last - start) / max(count - 1, 1)) for i in range(count)})


def _combine(estimates: list[tuple[float, float]], agree_px: float) -> tuple[np.ndarray, np.ndarray]:
    """(median of the agreeing estimates, which agree): the median, then again without outliers."""
    values = np.asarray(estimates, dtype=np.float64).reshape(-1, 2)
    median = np.median(values, axis=0)
    agree = np.hypot(*(values - median).T) <= agree_px
    if agree.any():
        median = np.median(values[agree], axis=0)
    return median, agree


def _offset(values: np.ndarray, centre: np.ndarray, rejected: int) -> dict[str, Any]:
    spread = float(np.sqrt(np.mean(np.sum((values - centre) ** 2, axis=1)))) if len(values) else 0.0
    return {
        "rows": float(centre[0]),
        "cols": float(centre[1]),
        "spread_px": spread,
        "windows": len(values),
        "rejected": rejected,
    }


def register(
    scene: Any,
    before: BeforeView,
    info: SceneInfo,
    *,
    region_rows: int = REGION_ROWS,
    window_px: int = WINDOW_PX,
    candidates: int = CANDIDATES,
    windows: int = WINDOWS,
    min_std: float = MIN_STD,
    min_coverage: float = MIN_COVERAGE,
    agree_px: float = AGREE_PX,
    min_windows: int = MIN_WINDOWS,
    upsample: int = UPSAMPLE,
    refine: int = REFINE,
) -> Registration:
    """Estimate the offset of an earlier image from its overlap with the scene (see the module).

    Args:
        scene: The scene's reader (:func:`tiling.io.open_image`).
        before: The earlier image's uncorrected view on the scene grid (:func:`tiling.pairs.open_before`).
        info: The scene's grid and pixel type.
        region_rows: Rows per region.
        window_px: Side of a correlation window (at most the scene's smaller side).
        candidates: Candidate windows read per region.
        windows: Most textured windows used per region.
        min_std: Smallest standard deviation of a textured window (share of the type's top).
        min_coverage: Smallest share of the scene covered by valid earlier pixels.
        agree_px: Largest distance of an agreeing estimate from the median.
        min_windows: Agreeing windows a region needs.
        upsample: Sub-pixel precision, 1/upsample px.
        refine: Passes that measure again through the view corrected by the estimate so far.

    Returns:
        The registration.

    Raises:
        SceneError: Coverage below ``min_coverage``, or no region estimated.
    """
    size = min(window_px, info.height, info.width)
    top = _TOP.get(info.dtype, 1.0)
    grid_rows = max(1, min(4, candidates // 4, region_rows // size))
    grid_cols = max(1, candidates // grid_rows)
    covered = total = textured = 0
    found: list[tuple[int, int, list[tuple[float, float]]]] = []
    for start in range(0, info.height, region_rows):
        stop = min(start + region_rows, info.height)
        best: list[tuple[float, int, int]] = []  # (texture, row, col), a heap of the top `windows`
        for row in _spans(max(0, min(start, stop - size)), stop, size, grid_rows):
            for col in _spans(0, info.width, size, grid_cols):
                s = read_window(scene, row, col, size, size)
                b = before.read_at(row, col, size, size, (0.0, 0.0))
                s_valid, b_valid = s != info.nodata, b != info.nodata
                covered += int(np.count_nonzero(s_valid & b_valid))
                total += int(np.count_nonzero(s_valid))
                texture = min(float(s.std()), float(b.std())) / top
                if s_valid.all() and b_valid.all() and texture >= min_std:
                    textured += 1
                    heapq.heappush(best, (texture, row, col))
                    if len(best) > windows:
                        heapq.heappop(best)
        spots = [(r, c) for _, r, c in best]
        shifts = _estimates(scene, before, spots, size, (0.0, 0.0), upsample)
        for _ in range(refine):
            if shifts:  # measure again through the view corrected by the estimate so far
                median, _ = _combine(shifts, agree_px)
                shifts = _estimates(scene, before, spots, size, (median[0], median[1]), upsample)
        found.append((start, stop, shifts))
    names = f"scene {info.name} and earlier image {before.name}"
    coverage = covered / total if total else 0.0
    if coverage < min_coverage:
        raise SceneError(
            f"{names}: the earlier image covers {coverage:.0%} of the scene (at least {min_coverage:.0%} needed); "
            "pair the scene with an image of the same ground, or leave it without one"
        )
    regions: list[dict[str, Any]] = []
    agreeing: list[tuple[float, float]] = []
    for start, stop, shifts in found:
        region: dict[str, Any] = {"row_start": start, "row_stop": stop, "windows": 0, "rejected": len(shifts)}
        if shifts:
            median, agree = _combine(shifts, agree_px)
            good = np.asarray(shifts)[agree]
            if len(good) >= min_windows and 2 * len(good) >= len(shifts):
                region.update(_offset(good, median, int((~agree).sum())), row_start=start, row_stop=stop)
                agreeing.extend(map(tuple, good))
        regions.append(region)
    used = sum(len(s) for _, _, s in found)
    if not agreeing:
        why = (
            f"{textured} textured window(s) of {size} px without no-data (std >= {min_std:.0%} of the range), "
            f"at most {max(len(s) for _, _, s in found)} in a region where {min_windows} are needed"
            if max(len(s) for _, _, s in found) < min_windows
            else f"the {used} window estimates disagree by more than {agree_px} px"
        )
        raise SceneError(
            f"{names}: the offset cannot be estimated ({why}); check that both show the same ground, "
            "or co-register the earlier image beforehand (e.g. with ISIS or ASP)"
        )
    centre, _ = _combine(agreeing, float("inf"))
    scene_offset = Offset(**_offset(np.asarray(agreeing), centre, used - len(agreeing)))
    estimated = tuple(RegionOffset(**r) for r in regions if r["windows"])
    located = Registration(info.name, before.name, coverage, scene_offset, estimated)
    result = []
    for r in regions:
        if not r["windows"]:  # no estimate of its own: interpolated between its neighbours
            rows, cols = located.offset_at((r["row_start"] + r["row_stop"]) / 2)
            log.warning(
                "%s: rows %d-%d have no offset of their own; using (%.2f, %.2f) interpolated",
                names,
                r["row_start"],
                r["row_stop"],
                rows,
                cols,
            )
            r = {**r, "rows": rows, "cols": cols, "spread_px": 0.0}
        result.append(RegionOffset(**r))
    log.info(
        "%s: offset (%.2f, %.2f) px, spread %.2f px, %d windows, coverage %.0f%%",
        names,
        scene_offset.rows,
        scene_offset.cols,
        scene_offset.spread_px,
        scene_offset.windows,
        100 * coverage,
    )
    return Registration(info.name, before.name, coverage, scene_offset, tuple(result))


def register_files(image: Path, before: Path, threads: int = 1, **settings: Any) -> Registration:
    """Open a scene and its earlier image and :func:`register` them.

    Args:
        image: The scene's image.
        before: The earlier image.
        threads: GDAL decoding threads.
        **settings: Keyword settings of :func:`register`.

    Returns:
        The registration.

    Raises:
        SceneError: As :func:`register` and :func:`tiling.pairs.open_before`.
    """
    with open_image(image, threads) as (scene, info), open_before(before, info, threads=threads) as view:
        return register(scene, view, info, **settings)


def registration_path(out_dir: Path, name: str) -> Path:
    """``OUT/NAME_registration.json``."""
    return Path(out_dir) / f"{name}{REGISTRATION_SUFFIX}"


def write_registration(out_dir: Path, registration: Registration) -> Path:
    """Write ``OUT/NAME_registration.json`` atomically (:mod:`impacts.atomic`).

    Args:
        out_dir: The run's output folder (it must exist).
        registration: The registration.

    Returns:
        The file written.
    """
    return write_json_atomic(registration_path(out_dir, registration.scene), registration.to_json())


def read_registration(path: Path) -> Registration:
    """Read a ``NAME_registration.json``.

    Raises:
        SceneError: The file is not a registration (rerun the registration).
    """
    try:
        return Registration.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SceneError(
            f"{path}: not a registration ({exc}); delete it and register the pair again"
        ) from exc
