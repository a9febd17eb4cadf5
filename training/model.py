"""The U-Net: BatchNorm after every convolution, ELU, dropout, L2, sigmoid output.

``build_unet(cfg)`` returns a functional Keras 3 model, so ``model.get_config()`` and the
``.keras`` format rebuild it without custom code.
"""

from __future__ import annotations

from typing import Any

from impacts.errors import ConfigError
from training.config import ModelConfig


def _conv_block(x: Any, filters: int, cfg: ModelConfig, name: str) -> Any:
    import keras

    for i in (1, 2):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,  # BatchNorm's offset does the bias's job
            kernel_initializer="he_normal",
            kernel_regularizer=keras.regularizers.L2(cfg.l2) if cfg.l2 else None,
            name=f"{name}_conv{i}",
        )(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.Activation("elu", name=f"{name}_elu{i}")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name=f"{name}_drop")(x)
    return x


def build_unet(cfg: ModelConfig, name: str = "unet") -> Any:
    """Build the U-Net for ``cfg``.

    Input: ``(input_px, input_px, 1)`` float32 images scaled to [0, 1] (any spatial size
    that is a multiple of ``2**depth`` also works, the model is fully convolutional).
    Output: per-pixel impact probability, float32 even under mixed precision.

    Args:
        cfg: Architecture.
        name: Model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ConfigError: The input size is not a multiple of ``2**depth`` or filters are too few.
    """
    import keras

    if cfg.input_px % (2**cfg.depth):
        raise ConfigError(f"model.input_px {cfg.input_px} must be a multiple of 2**depth = {2**cfg.depth}")
    if cfg.base_filters < 2:
        raise ConfigError(f"model.base_filters {cfg.base_filters} is below 2")
    inputs = keras.Input(shape=(None, None, 1), name="image")
    x = inputs
    skips = []
    for level in range(cfg.depth):
        x = _conv_block(x, cfg.base_filters * 2**level, cfg, f"down{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
    x = _conv_block(x, cfg.base_filters * 2**cfg.depth, cfg, "bottom")
    for level in reversed(range(cfg.depth)):
        x = keras.layers.Conv2DTranspose(
            cfg.base_filters * 2**level, 2, strides=2, padding="same", name=f"up{level}_upconv"
        )(x)
        x = keras.layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = _conv_block(x, cfg.base_filters * 2**level, cfg, f"up{level}")
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="impact_prob")(x)
    return keras.Model(inputs, outputs, name=name)


def count_trainable(model: Any) -> int:
    """Number of trainable parameters."""
    import numpy as np

    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
