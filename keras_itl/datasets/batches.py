"""``make_batches``: a Split as a tf.data pipeline of (image, label, id) batches for a model.

Images leave as float32 in [0, 255]: rescaling belongs to the model's own preprocessing, so an
exported model takes raw pixels. Resizing and channel conversion run on whole batches, which is
much faster than per example. Shuffling is a NumPy permutation from ``shuffle_seed`` alone, so the
order depends on nothing but the seed (no global TF seed, no iterator state) and a resumed run can
replay an epoch exactly.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_itl.datasets.containers import Split
from keras_itl.errors import UserError


def make_batches(
    split: Split,
    batch_size: int,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    shuffle_seed: int | None = None,
    drop_ids: bool = False,
) -> tf.data.Dataset:
    """Batches of (image float32 [B, S, S, C], label int64 [B], id string [B]); (image, label) if ``drop_ids``.

    ``image_size`` resizes to S x S (bilinear), None keeps the native size. ``channels`` (1 or 3)
    converts grayscale to RGB by tiling or RGB to grayscale, None keeps them. ``shuffle_seed``
    permutes the whole split, None keeps the split's order. The last, partial batch is kept.
    """
    if batch_size <= 0:
        raise UserError(f"batch_size must be positive, got {batch_size}")
    if image_size is not None and image_size <= 0:
        raise UserError(f"image_size must be positive, got {image_size}")
    if channels not in (None, 1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels}")

    if shuffle_seed is None:
        order = np.arange(len(split))
    else:
        order = np.random.default_rng(shuffle_seed).permutation(len(split))
    native_height, native_width, native_channels = split.images.shape[1:]
    resize = image_size is not None and (image_size, image_size) != (native_height, native_width)
    convert = channels is not None and channels != native_channels

    def prepare(images: tf.Tensor, labels: tf.Tensor, ids: tf.Tensor):
        images = tf.cast(images, tf.float32)
        if resize:
            images = tf.image.resize(images, (image_size, image_size), method="bilinear")
        if convert:
            images = tf.image.grayscale_to_rgb(images) if channels == 3 else tf.image.rgb_to_grayscale(images)
        return (images, labels) if drop_ids else (images, labels, ids)

    ids = np.asarray(split.ids[order], dtype=str)
    dataset = tf.data.Dataset.from_tensor_slices((split.images[order], split.labels[order].astype(np.int64), ids))
    return dataset.batch(batch_size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
