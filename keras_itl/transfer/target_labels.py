"""``--target-labels``: how many of the target's training labels a run may read.

- ``all`` (the default): every label, as loaded.
- ``N``: N labelled images per class (a seeded choice), the rest of the training split unlabelled; the
  validation split keeps its labels (it is the labelled data a user holds out to validate on).
- ``none``: unsupervised domain adaptation. No target label of the training or validation split is
  read: both reach the method with every label hidden, so early stopping and the fine-tuning rate
  factor are chosen on the source's validation split, and only the final test reads target labels.

A hidden label is -1: the training loop leaves such examples out of the cross-entropy and accuracy. A
method that trains on unlabelled target images (a domain-adaptation method) gets them with -1 labels;
one that cannot use them gets the labelled ones only.
"""
from __future__ import annotations

import numpy as np

from keras_itl.datasets import Split, TargetDataset
from keras_itl.errors import UserError

ALL, NONE = "all", "none"
HIDDEN = -1


def labels_per_class(setting: str) -> int | None:
    """The labelled training images per class ``setting`` allows: None for ``all``, 0 for ``none``, else N."""
    if setting == ALL:
        return None
    if setting == NONE:
        return 0
    if not setting.isdigit() or int(setting) < 1:
        raise UserError(f"--target-labels must be all, none or a number of labelled images per class >= 1, "
                        f"got {setting!r}")
    return int(setting)


def hide_labels(split: Split, per_class: int, num_classes: int, seed: int) -> Split:
    """``split`` with all but ``per_class`` labels of each class (chosen with ``seed``) set to -1."""
    rng = np.random.default_rng([seed, 24])
    labels = np.full(len(split), HIDDEN, dtype=np.int64)
    for label in range(num_classes):
        members = np.flatnonzero(split.labels == label)
        kept = rng.permutation(members)[:per_class]
        labels[kept] = label
    return split.with_labels(labels)


def labelled_only(split: Split) -> Split:
    """The examples whose label is not hidden."""
    return split.subset(np.flatnonzero(split.labels != HIDDEN))


def restrict_labels(data: TargetDataset, setting: str, *, keeps_unlabelled: bool, seed: int) -> TargetDataset:
    """The target as a method may see it under ``setting``: hidden labels in the training split (and, for
    ``none``, in the validation split too), the unlabelled training images kept only when the method trains on
    them."""
    per_class = labels_per_class(setting)
    if per_class is None:
        return data
    num_classes = data.info.num_classes
    train = hide_labels(data.split("train"), per_class, num_classes, seed)
    splits = {**data.splits, "train": train if keeps_unlabelled else labelled_only(train)}
    if per_class == 0:
        splits["val"] = hide_labels(data.split("val"), 0, num_classes, seed)
    return TargetDataset(data.info, splits)
