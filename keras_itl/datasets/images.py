"""Turn a list of decoded images of mixed sizes and channel counts into one rectangular uint8 array.

Folder datasets and some TFDS datasets hold images of different sizes; a Split needs one
(N, H, W, C) array. The common size is the most frequent (H, W), so most images are kept
pixel-exact, and the channel count is 3 if any image is colour (grayscale is tiled), else 1.
Alpha channels are dropped: the models take opaque grayscale or RGB pixels.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import tensorflow as tf


def _drop_alpha(image: np.ndarray) -> np.ndarray:
    """(H, W, 2) gray+alpha -> (H, W, 1); (H, W, 4) RGBA -> (H, W, 3); others unchanged."""
    return image[..., :-1] if image.shape[-1] in (2, 4) else image


def _resize_uint8(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one uint8 image, rounded back to uint8."""
    resized = tf.image.resize(image, (height, width), method="bilinear").numpy()
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def stack_images(images: list[np.ndarray]) -> np.ndarray:
    """Stack (H, W, C) uint8 images into (N, H', W', C') at the most common size and shared channels."""
    opaque = [_drop_alpha(image) for image in images]
    (height, width), _ = Counter(image.shape[:2] for image in opaque).most_common(1)[0]
    channels = max(image.shape[-1] for image in opaque)
    stacked = np.empty((len(opaque), height, width, channels), dtype=np.uint8)
    for row, image in enumerate(opaque):
        if image.shape[:2] != (height, width):
            image = _resize_uint8(image, height, width)
        stacked[row] = image  # a (H, W, 1) image broadcasts over 3 channels: grayscale tiled to RGB
    return stacked
