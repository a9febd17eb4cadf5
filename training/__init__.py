"""Training: U-Net, tf.data input, metrics, fit loop, hard-negative mining, bundles.

Importing this package does not import TensorFlow; the functions that need it do.
"""

from training.bundle import Bundle, load_bundle

__all__ = ["Bundle", "load_bundle"]
