"""Training configs: model, data, optimisation, mining rounds and evaluation."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, model_validator

from impacts.config import StrictModel


class ModelConfig(StrictModel):
    """U-Net architecture (see :func:`training.model.build_unet`)."""

    input_px: int = Field(128, ge=16, description="Input side in px; a multiple of 2**depth.")
    depth: int = Field(4, ge=1, le=6, description="Down-sampling steps.")
    base_filters: int = Field(16, ge=2, description="Filters of the first level; doubled at each step down.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each level's convolutions.")
    l2: float = Field(1e-5, ge=0, description="L2 weight decay on convolution kernels.")
    expected_params: int | None = Field(
        None, description="Trainable parameters this config should build (checked by a test)."
    )

    @model_validator(mode="after")
    def _multiple(self) -> ModelConfig:
        if self.input_px % (2**self.depth):
            raise ValueError(f"input_px {self.input_px} is not a multiple of 2**depth = {2**self.depth}")
        return self


class DataConfig(StrictModel):
    """Input pipeline."""

    batch_size: int = Field(16, ge=2, description="Batch size (per replica).")
    positive_fraction: float = Field(0.5, gt=0, lt=1, description="Impact patches in every batch.")
    shuffle_buffer: int = Field(
        1024,
        ge=1,
        description="Shuffle buffer per class; 1 = no shuffling, records in shard order (reproducible comparisons).",
    )
    augment: bool = Field(True, description="Flips, 90-degree rotations, brightness/contrast, noise.")
    deterministic: bool = Field(
        False, description="Same batches and augmentations on every run with the same seed."
    )
    steps_per_epoch: int | None = Field(
        None, ge=1, description="Batches per epoch; None = one pass over the larger class."
    )


class OptimizerConfig(StrictModel):
    """Optimizer and learning-rate schedule."""

    name: Literal["adam", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    decay: Literal["none", "exponential", "cosine"] = Field(
        "exponential", description="Learning-rate decay per step."
    )
    decay_rate: float = Field(0.5, gt=0, le=1, description="Exponential decay: factor per decay_epochs.")
    decay_epochs: float = Field(10, gt=0)


class MiningConfig(StrictModel):
    """Hard-negative mining rounds (after round 0, the plain training)."""

    rounds: int = Field(1, ge=0, description="Mining rounds after the first training.")
    source: Literal["pool", "scenes", "both"] = Field(
        "pool",
        description=(
            "pool: the tiler's unused train negatives (training/mining.py); scenes: the false "
            "candidates of the whole train scenes, predicted as `impacts predict` does "
            "(training/scene_mining.py; needs evaluation.scenes_dir or `impacts train --scenes`); "
            "both: scene_share of each round's quota from the scenes, the rest from the pool."
        ),
    )
    scene_share: float = Field(
        0.5, gt=0, le=1, description="source both: the share of a round's quota mined from whole scenes."
    )
    top_n: int = Field(200, ge=1, description="Hardest patches (or windows) added per round.")
    max_share: float = Field(
        0.4, gt=0, lt=1, description="Most mined patches as a share of the training set."
    )
    score: Literal["area", "max"] = Field(
        "area", description="area: predicted impact pixels; max: highest probability."
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="Probability counted as a predicted impact pixel.")
    mode: Literal["finetune", "restart"] = Field(
        "finetune", description="Continue from the last weights or retrain from scratch."
    )
    epochs: int | None = Field(None, ge=1, description="Epochs per mining round; None = train.epochs.")
    batch_size: int = Field(64, ge=1, description="Pool patches predicted per batch.")


class EvalConfig(StrictModel):
    """Evaluation settings."""

    threshold: float = Field(0.5, gt=0, lt=1, description="Probability threshold of a predicted impact.")
    min_area_px: int = Field(4, ge=1, description="Smaller predicted objects are ignored.")
    res_m: float = Field(6.0, gt=0, description="Pixel size for false positives per 100 km^2.")
    grid_patches: int = Field(6, ge=1, description="Patches in each prediction grid (chosen and worst).")
    merge_distance_px: int = Field(
        0,
        ge=0,
        description=(
            "Detections whose boxes are at most this many px apart become one (fragments of one "
            "blast zone or cluster, see tiling/fragments.py); 0 = no merging."
        ),
    )
    match_radii: float = Field(
        1.5,
        gt=0,
        description=(
            "Whole scenes: a detection hits an impact when its centroid lies within "
            "max(match_radii * radius_px, match_min_px) of the impact's centre."
        ),
    )
    match_min_px: float = Field(
        8.0, ge=0, description="Whole scenes: the least matching distance in px (small impacts)."
    )
    size_classes_px: list[float] = Field(
        [5.0, 10.0, 20.0],
        description="Whole scenes: radius bounds in px of the size classes recall is given for (ascending).",
    )
    sweep_thresholds: list[float] = Field(
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        description="Whole scenes: thresholds of the sweep (the operating threshold is always added).",
    )
    scenes_dir: str | None = Field(
        None,
        description=(
            "Training: folder of the tiled scenes (NAME.tif with NAME_objects.csv or NAME_mask.tif); "
            "when set (or `impacts train --scenes DIR`), the val and test scenes are predicted whole "
            "after every round and the operating point is chosen on the val scenes; None = skipped."
        ),
    )
    target_recall: float = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "Training with scenes_dir: the operating point stored in the bundle is the val setting with "
            "the fewest false candidates per 100 km² reaching this whole-scene recall "
            "(training/operating_point.py)."
        ),
    )
    sweep_merge_distances_px: list[int] = Field(
        [0, 2, 4],
        description="Training with scenes_dir: fragment merging distances tried with every sweep threshold.",
    )

    @model_validator(mode="after")
    def _ascending(self) -> EvalConfig:
        edges = self.size_classes_px
        if any(b <= a for a, b in itertools.pairwise(edges)) or any(e <= 0 for e in edges):
            raise ValueError(f"size_classes_px must be positive and ascending, got {edges}")
        if any(not 0 < t < 1 for t in self.sweep_thresholds):
            raise ValueError(f"sweep_thresholds must lie in (0, 1), got {self.sweep_thresholds}")
        if any(d < 0 for d in self.sweep_merge_distances_px):
            raise ValueError(f"sweep_merge_distances_px must be >= 0, got {self.sweep_merge_distances_px}")
        return self


class DistributeConfig(StrictModel):
    """How devices and processes cooperate (see :mod:`training.distribute`); the model,
    data and callbacks are the same whatever the strategy."""

    strategy: Literal["auto", "single", "mirrored", "horovod"] = Field(
        "auto",
        description=(
            "auto: horovod when started by mpirun/horovodrun with more than one process, "
            "mirrored when the node has several GPUs, else single."
        ),
    )
    cpu_replicas: int = Field(
        2, ge=1, description="mirrored without GPUs: logical CPU devices to mirror over (tests)."
    )
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none",
        description=(
            "optimizer.learning_rate is for one replica's batch; with R replicas it is multiplied "
            "by 1 (none), R (linear) or sqrt(R) (sqrt)."
        ),
    )


class TrainConfig(StrictModel):
    """Everything ``impacts train`` needs."""

    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: Literal["bce", "bce_dice"] = Field(
        "bce_dice", description="Binary cross-entropy, or BCE + soft Dice."
    )
    epochs: int = Field(
        40, ge=1, description="Epochs of round 0 (and of mining rounds unless mining.epochs)."
    )
    early_stopping_patience: int | None = Field(
        8,
        ge=1,
        description="Stop after this many epochs without val_loss progress (best weights kept); None = off.",
    )
    target_val_loss: float | None = Field(
        None, gt=0, description="Stop as soon as val_loss reaches this (time-to-target)."
    )
    mining: MiningConfig = Field(default_factory=MiningConfig)
    distribute: DistributeConfig = Field(default_factory=DistributeConfig)
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "float32",
        description=(
            "Compute dtype policy; mixed_float16 (with dynamic loss scaling) is for GPUs, "
            "the output layer stays float32."
        ),
    )
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
