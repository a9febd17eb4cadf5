"""Configs of the tiling package: the synthetic generator and the patch tiler."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from impacts.config import StrictModel


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
    difficulty: Literal["easy", "medium", "hard"] = Field(
        "medium", description="Look-alike density and impact contrast."
    )
    impact_fraction: float = Field(
        0.005, gt=0, lt=0.2, description="Target share of valid pixels covered by impacts."
    )
    max_impacts: int = Field(60, ge=1, description="Most impacts per scene (huge scenes keep a few dozen).")
    res_m: float = Field(6.0, gt=0, description="Pixel size in metres (CTX: about 6 m).")
    without_mask: int = Field(
        0, ge=0, description="How many scenes (the last ones) are written without a mask."
    )
    window_px: int = Field(1024, ge=256, description="Side of the windows the writer renders at a time.")

    @model_validator(mode="after")
    def _sizes(self) -> SynthConfig:
        for h, w in [s for s in (self.size, self.min_size, self.max_size) if s is not None]:
            if h < 256 or w < 256:
                raise ValueError(f"scene size {h}x{w} is below 256x256 px")
        if any(a > b for a, b in zip(self.min_size, self.max_size, strict=True)):
            raise ValueError("min_size must not exceed max_size")
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
