"""Losses: binary cross-entropy, or BCE plus soft Dice (robust to rare impact pixels)."""

from __future__ import annotations

from typing import Any


def soft_dice_loss(y_true: Any, y_pred: Any, smooth: float = 1.0) -> Any:
    """1 - soft Dice per patch (``smooth`` keeps empty patches from dividing by zero)."""
    from keras import ops

    y_true = ops.cast(y_true, y_pred.dtype)
    axes = (1, 2, 3)
    intersection = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


def get_loss(name: str) -> Any:
    """The Keras loss for a config name (``bce`` or ``bce_dice``)."""
    import keras
    from keras import ops

    bce = keras.losses.BinaryCrossentropy(name="bce")
    if name == "bce":
        return bce

    @keras.saving.register_keras_serializable(package="impacts", name="bce_dice")
    def bce_dice(y_true: Any, y_pred: Any) -> Any:
        per_pixel = keras.losses.binary_crossentropy(ops.cast(y_true, y_pred.dtype), y_pred)
        return ops.mean(per_pixel, axis=(1, 2)) + soft_dice_loss(y_true, y_pred)

    return bce_dice
