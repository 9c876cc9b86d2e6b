"""What every dataset source (TFDS, folder, embedded) hands to the split pipeline."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from keras_itl.datasets.containers import Split


@dataclass
class SourceData:
    """A source's examples before any split or option is applied.

    ``train`` is the pool from which val (and the test split, when ``test`` is None) is carved.
    """

    name: str
    class_names: list[str]
    train: Split
    test: Split | None = None
    skipped_files: list[str] = field(default_factory=list)


def make_ids(name: str, split: str, count: int) -> np.ndarray:
    """Ids ``<name>/<split>/<index>`` for the examples of a source split, in source order."""
    return np.array([f"{name}/{split}/{index:05d}" for index in range(count)], dtype=object)
