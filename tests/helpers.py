"""Small synthetic datasets shared by the tests: learnable, tiny, deterministic."""
from __future__ import annotations

import numpy as np

from keras_itl.datasets import Split

HEAVY_ARCHS = ("densenet121", "resnet50")  # minutes of graph tracing per training call on a 2-core CPU


def bright_quadrant_split(n: int, *, size: int = 12, channels: int = 1, num_classes: int = 4,
                          seed: int = 0, prefix: str = "toy") -> Split:
    """Images whose class is the quadrant holding a bright blob, on uniform noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.int64)
    images = rng.integers(0, 60, (n, size, size, channels)).astype(np.uint8)
    half = size // 2
    for i, label in enumerate(labels):
        row, col = divmod(int(label) % 4, 2)
        images[i, row * half:(row + 1) * half, col * half:(col + 1) * half, :] += 150
    ids = np.array([f"{prefix}/{i:04d}" for i in range(n)], dtype=object)
    return Split(images=images, labels=labels, ids=ids)
