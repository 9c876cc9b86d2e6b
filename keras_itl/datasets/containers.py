"""The in-memory form of a target dataset: splits of (image, label, id) arrays plus their metadata.

Everything downstream (training, influence, selection, reports) works on these containers, so they
carry the per-example ``id`` that lets a user trace a dropped instance back to their own data.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_itl.errors import UserError


@dataclass(frozen=True, eq=False)
class Split:
    """One split held in memory, one row per example.

    ``images`` is (N, H, W, C) uint8 at the native size, ``labels`` is (N,) int64 and ``ids`` is (N,)
    of Python ``str``: a stable name for each example that survives every later stage.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, H, W, C), got shape {self.images.shape}")
        if not len(self.images) == len(self.labels) == len(self.ids):
            raise ValueError(
                f"images, labels and ids differ in length: {len(self.images)}, {len(self.labels)}, {len(self.ids)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray | list[int]) -> Split:
        """The examples at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return Split(self.images[indices], self.labels[indices], self.ids[indices])

    def with_labels(self, labels: np.ndarray) -> Split:
        """The same examples with replacement labels (used to inject label noise)."""
        return dataclasses.replace(self, labels=np.asarray(labels, dtype=np.int64))

    def class_counts(self, num_classes: int) -> np.ndarray:
        """Number of examples of each class, indexed by class."""
        return np.bincount(self.labels, minlength=num_classes)


@dataclass
class DatasetInfo:
    """What was loaded and how: enough to describe the data in a report or reproduce the load."""

    spec: str
    name: str
    num_classes: int
    class_names: list[str]
    image_shape: tuple[int, int, int]
    sizes: dict[str, int]
    flipped_ids: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    decisions: dict | None = None  # a person's decisions applied to the training split (keras_itl.decisions)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (tuples become lists)."""
        as_dict = dataclasses.asdict(self)
        as_dict["image_shape"] = list(self.image_shape)
        return as_dict


@dataclass
class TargetDataset:
    """A loaded target domain: its train, val and test splits and their description."""

    info: DatasetInfo
    splits: dict[str, Split]

    def split(self, name: str) -> Split:
        """The split called ``name``; a UserError names the valid splits otherwise."""
        if name not in self.splits:
            raise UserError(f"unknown split {name!r}; choose one of: {', '.join(self.splits)}")
        return self.splits[name]
