"""Configs of the tiling package: the synthetic generator and the patch tiler."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from impacts.config import StrictModel

Range = tuple[float, float]


def _ordered(name: str, lo: float, hi: float) -> None:
    if lo > hi:
        raise ValueError(f"{name}: the first value {lo} exceeds the second {hi}; write [low, high]")


class RealisticImpacts(StrictModel):
    """Impacts of the ``realistic`` preset: mostly small and faint, more than half clusters.

    Blast-zone radii follow a truncated power law, ``N(>r) ~ r**-radius_power`` between the
    two bounds: with the defaults about 89 % are under 10 px and about 3 % over 20 px.
    """

    per_mpx: float = Field(
        2.0, gt=0, description="Impacts per megapixel of valid area (impact_density overrides it)."
    )
    radius_px: Range = Field((2.5, 40.0), description="Smallest and largest blast-zone radius in px.")
    radius_power: float = Field(1.5, gt=0, description="Exponent of the cumulative radius power law.")
    contrast: Range = Field(
        (0.08, 0.6), description="Share of brightness the blast zone removes at its centre (log-uniform)."
    )
    cluster_share: float = Field(
        0.6, ge=0, le=1, description="Share of impacts that are clusters of craters under one dark halo."
    )
    cluster_craters: tuple[int, int] = Field(
        (2, 12), description="Fewest and most craters in a cluster (log-uniform)."
    )
    ray_share: float = Field(
        0.15, ge=0, le=1, description="Share of impacts with dark rays (not in the mask)."
    )

    @model_validator(mode="after")
    def _ranges(self) -> RealisticImpacts:
        _ordered("radius_px", *self.radius_px)
        _ordered("contrast", *self.contrast)
        _ordered("cluster_craters", *self.cluster_craters)
        if self.radius_px[0] < 1:
            raise ValueError("radius_px: the smallest radius must be at least 1 px")
        if not (self.contrast[0] > 0 and self.contrast[1] < 1):
            raise ValueError("contrast: values must lie in (0, 1)")
        if self.cluster_craters[0] < 2:
            raise ValueError("cluster_craters: a cluster has at least 2 craters")
        return self


class RealisticLookalikes(StrictModel):
    """Look-alikes of the ``realistic`` preset, each in objects per megapixel of valid area."""

    crater: float = Field(15.0, ge=0, description="Old craters (lit and shadowed rim, some dark floors).")
    boulder: float = Field(40.0, ge=0, description="Small dark boulders and knobs with their shadows.")
    shadow: float = Field(8.0, ge=0, description="Shadows of relief, cast away from the sun.")
    dune: float = Field(1.0, ge=0, description="Dark dunes: single barchans or small dune fields.")
    slope_streak: float = Field(
        3.0, ge=0, description="Slope streaks: dark fans or tongues, 1-3 side by side."
    )
    dust_devil_track: float = Field(1.5, ge=0, description="Dust-devil tracks: faint dark curving lines.")


class CtxLook(StrictModel):
    """Detector and acquisition artefacts of CTX strips in the ``realistic`` preset (grey levels)."""

    scene_gain: Range = Field((0.8, 1.2), description="Gain drawn per scene.")
    scene_offset_grey: Range = Field((-20.0, 20.0), description="Brightness offset drawn per scene.")
    gain_along_strip: float = Field(
        0.1, ge=0, lt=1, description="Relative swing of the gain along the strip (rows)."
    )
    offset_along_strip_grey: float = Field(8.0, ge=0, description="Swing of the brightness along the strip.")
    along_strip_px: int = Field(3000, ge=64, description="Scale in rows of the variations along the strip.")
    column_stripe_grey: float = Field(2.0, ge=0, description="Per-column offset (fixed-pattern striping).")
    column_band_grey: float = Field(3.0, ge=0, description="Smooth banding across columns.")
    column_band_px: int = Field(48, ge=2, description="Scale in columns of the banding.")
    even_odd_grey: float = Field(1.0, ge=0, description="Offset between even and odd columns.")
    noise_grey: float = Field(3.5, ge=0, description="Standard deviation of the per-pixel noise.")

    @model_validator(mode="after")
    def _ranges(self) -> CtxLook:
        _ordered("scene_gain", *self.scene_gain)
        _ordered("scene_offset_grey", *self.scene_offset_grey)
        if self.scene_gain[0] <= 0:
            raise ValueError("scene_gain: gains must be positive")
        return self


class RealisticConfig(StrictModel):
    """Everything the ``realistic`` difficulty draws (ignored by easy/medium/hard)."""

    impacts: RealisticImpacts = Field(default_factory=RealisticImpacts)
    lookalikes_per_mpx: RealisticLookalikes = Field(default_factory=RealisticLookalikes)
    ctx: CtxLook = Field(default_factory=CtxLook)


class BeforeConfig(StrictModel):
    """The earlier image of each scene (``impacts synth --before``): ``NAME_before.tif``, the
    same ground before its new impacts fell, on another grid, with a planted misregistration.

    Look-alikes stay; the scene's impacts are absent; some old impacts that have faded by the
    time of the scene show in it. The sun, gain, brightness and noise differ. Every range
    is drawn uniformly per scene; shifts and sun changes get a random sign.
    """

    enabled: bool = Field(
        False, description="Write NAME_before.tif and NAME_before.json per scene (--before)."
    )
    res_m: Range = Field(
        (5.0, 7.0), description="Range of the earlier image's pixel size in metres (scenes: res_m)."
    )
    margin_px: int = Field(
        32, ge=0, description="Scene px the earlier grid extends beyond the scene's on every side."
    )
    shift_px: Range = Field(
        (1.0, 4.0),
        description="Range of the planted misregistration per axis in scene px (magnitude; sign random).",
    )
    gain: Range = Field((0.85, 1.15), description="Range of the earlier image's gain.")
    offset_grey: Range = Field((-15.0, 15.0), description="Range of the earlier image's brightness offset.")
    noise_grey: float = Field(3.0, ge=0, description="Standard deviation of the earlier image's noise.")
    sun_change_deg: Range = Field(
        (10.0, 40.0),
        description="Range of the change of sun azimuth in degrees (magnitude; sign random): "
        "old craters' lit and shadowed walls, boulders' and relief's shadows turn with it.",
    )
    faded_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Chance per scene impact of an old impact elsewhere, dark in the earlier "
        "image and faded away by the scene's time.",
    )

    @model_validator(mode="after")
    def _ranges(self) -> BeforeConfig:
        for name in ("res_m", "shift_px", "gain", "offset_grey", "sun_change_deg"):
            _ordered(name, *getattr(self, name))
        if self.res_m[0] <= 0 or self.gain[0] <= 0:
            raise ValueError("res_m and gain must be positive")
        if self.shift_px[0] < 0 or not 0 <= self.sun_change_deg[0] <= self.sun_change_deg[1] <= 180:
            raise ValueError("shift_px must be >= 0 and sun_change_deg within [0, 180]")
        if self.margin_px < 3 * self.shift_px[1]:
            raise ValueError(
                f"margin_px {self.margin_px} leaves the shifted earlier image short of the scene; "
                f"make it at least 3 x the largest shift ({3 * self.shift_px[1]:g})"
            )
        return self


class SynthConfig(StrictModel):
    """Synthetic CTX-like scenes (``impacts synth``)."""

    seed: int = Field(0, description="Seed; the same seed writes the same bytes.")
    count: int = Field(4, ge=1, le=10_000, description="Number of scenes.")
    size: tuple[int, int] | None = Field(
        None,
        description="Fixed (height, width) in px; None draws each scene's size between min_size and max_size.",
    )
    min_size: tuple[int, int] = Field((2048, 1536), description="Smallest drawn (height, width) in px.")
    max_size: tuple[int, int] = Field((3584, 2560), description="Largest drawn (height, width) in px.")
    strips: bool = Field(
        False,
        description="Draw CTX strip sizes (strip_width_px, strip_length_ratio) instead of min_size..max_size.",
    )
    strip_width_px: tuple[int, int] = Field(
        (3100, 7000), description="Width range of strips in px (CTX swath: about 5,000 px)."
    )
    strip_length_ratio: Range = Field(
        (0.9, 6.0), description="Range of height / width of strips (log-uniform)."
    )
    difficulty: Literal["easy", "medium", "hard", "realistic"] = Field(
        "medium",
        description="easy/medium/hard: look-alike density and impact contrast; realistic: see `realistic`.",
    )
    impact_fraction: float = Field(
        0.005, gt=0, lt=0.2, description="Target share of valid pixels covered by impacts (easy/medium/hard)."
    )
    max_impacts: int = Field(
        60, ge=1, description="Most impacts per scene (easy/medium/hard without impact_density)."
    )
    impact_density: float | None = Field(
        None,
        gt=0,
        le=2000,
        description="Impacts per megapixel of valid area, for any difficulty; None: impact_fraction "
        "(easy/medium/hard) or realistic.impacts.per_mpx.",
    )
    realistic: RealisticConfig = Field(default_factory=RealisticConfig)
    res_m: float = Field(6.0, gt=0, description="Pixel size in metres (CTX: about 6 m).")
    without_mask: int = Field(
        0, ge=0, description="How many scenes (the last ones) are written without a mask."
    )
    window_px: int = Field(1024, ge=256, description="Side of the windows the writer renders at a time.")
    before: BeforeConfig = Field(
        default_factory=BeforeConfig, description="The earlier image of each scene (--before)."
    )

    @model_validator(mode="after")
    def _sizes(self) -> SynthConfig:
        for h, w in [s for s in (self.size, self.min_size, self.max_size) if s is not None]:
            if h < 256 or w < 256:
                raise ValueError(f"scene size {h}x{w} is below 256x256 px")
        if any(a > b for a, b in zip(self.min_size, self.max_size, strict=True)):
            raise ValueError("min_size must not exceed max_size")
        _ordered("strip_width_px", *self.strip_width_px)
        _ordered("strip_length_ratio", *self.strip_length_ratio)
        if self.strip_width_px[0] < 256 or self.strip_length_ratio[0] * self.strip_width_px[0] < 256:
            raise ValueError("strips below 256 px on a side: raise strip_width_px or strip_length_ratio")
        return self


class SplitConfig(StrictModel):
    """Scene-level train/val/test assignment."""

    val_fraction: float = Field(0.2, ge=0, lt=1, description="Share of scenes for validation.")
    test_fraction: float = Field(0.2, ge=0, lt=1, description="Share of scenes for test.")
    val_scenes: list[str] = Field(default_factory=list, description="Scenes put in val explicitly.")
    test_scenes: list[str] = Field(default_factory=list, description="Scenes put in test explicitly.")

    @model_validator(mode="after")
    def _disjoint(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1")
        both = set(self.val_scenes) & set(self.test_scenes)
        if both:
            raise ValueError(f"scenes in both val_scenes and test_scenes: {sorted(both)}")
        return self


class TileConfig(StrictModel):
    """Balanced patches from scenes (``impacts tile``)."""

    seed: int = Field(0, description="Seed of splits, crop offsets and negative sampling.")
    patch_px: int = Field(128, ge=16, le=1024, description="Patch side in px.")
    positives_per_impact: int = Field(4, ge=1, description="Random-offset crops per impact (train).")
    eval_positives_per_impact: int = Field(1, ge=1, description="Random-offset crops per impact (val/test).")
    negatives_per_positive: float = Field(
        1.0, ge=0, description="Train negatives per positive (1.0 = 50/50)."
    )
    eval_negatives_per_positive: float = Field(1.0, ge=0, description="Val/test negatives per positive.")
    negative_stride_px: int = Field(
        64,
        ge=8,
        description="Negative and pool windows start on a grid of this step (random offset); must divide patch_px.",
    )
    max_nodata_fraction: float = Field(
        0.5, ge=0, le=1, description="Negatives with more no-data are dropped."
    )
    border_share: float = Field(
        0.15, ge=0, le=1, description="Share of negatives that touch the no-data border, kept on purpose."
    )
    max_negatives_per_scene: int = Field(
        1000,
        ge=0,
        description="Most negatives per scene (bounds the sampling memory with pool_max_per_scene).",
    )
    pool_max_per_scene: int = Field(
        2000, ge=0, description="Most unused train negatives kept per scene as the mining pool."
    )
    shard_max_patches: int = Field(1024, ge=1, description="Most patches per TFRecord shard.")
    stripe_px: int = Field(
        4_000_000, ge=65_536, description="Pixels read per stripe while scanning (bounds memory)."
    )
    workers: int = Field(0, ge=0, description="Scene processes; 0 = one per core.")
    split: SplitConfig = Field(default_factory=SplitConfig)

    @model_validator(mode="after")
    def _stride(self) -> TileConfig:
        if self.patch_px % self.negative_stride_px:
            raise ValueError(
                f"negative_stride_px {self.negative_stride_px} must divide patch_px {self.patch_px}"
            )
        return self
