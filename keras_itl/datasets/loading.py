"""``load_dataset``: read a dataset spec, split it, and apply the small-target options.

The steps run in this order; each sees only the result of the one before:

1. Read the source: its train pool, and its own test split when it has one (TFDS ``test``).
2. test: when the source has no test split, hold out a stratified ``test_fraction`` of the pool.
3. val: hold out a stratified ``val_fraction`` of the rest; what remains is train. Every class with
   two or more examples appears in each hold-out, and each class keeps at least one in train.
4. ``imbalance=(A, share)``: subsample train so class A makes up ``share`` of it (all of A is kept
   when the other classes can supply the remainder; they are drawn stratified).
5. ``max_train_examples=N``: stratified subsample of train to N examples.
6. ``label_noise=P``: exactly ``round(P * len(train))`` training labels move to another class -
   uniformly random (``noise_kind="symmetric"``) or c -> c + 1 mod K (``"pair"``); their ids are
   listed in ``info.flipped_ids``.

val and test are never subsampled, imbalanced or noised: they measure the clean target domain.
Each random step draws from its own generator derived from ``seed`` and the step's name, so the
same spec and seed give identical splits, and e.g. changing the noise level leaves the val split
unchanged. Every split keeps the source order; ``make_batches`` shuffles.
"""
from __future__ import annotations

import numpy as np

from keras_itl import registry
from keras_itl.datasets.containers import DatasetInfo, Split, TargetDataset
from keras_itl.datasets.options import check_options, check_share, resolve_class
from keras_itl.datasets.sampling import (
    flip_labels,
    holdout_indices,
    imbalance_indices,
    stage_rng,
    subsample_indices,
)
from keras_itl.datasets.specs import read_source
from keras_itl.errors import UserError


def load_dataset(
    spec: str,
    *,
    seed: int = registry.SEED,
    val_fraction: float = registry.VAL_FRACTION,
    test_fraction: float = 0.2,
    max_train_examples: int | None = None,
    imbalance: tuple[int | str, float] | None = None,
    label_noise: float = registry.LABEL_NOISE,
    noise_kind: str = registry.NOISE_KIND,
    data_dir: str | None = None,
) -> TargetDataset:
    """Load ``spec`` as train/val/test splits with the options applied (see the module docstring).

    Args:
        spec: Dataset spec: a short name (``digits``, ``svhn``, ...), ``tfds:NAME`` or ``folder:PATH``.
        seed: Seed of every random step; each step derives its own generator from it and the step's name.
        val_fraction: Stratified fraction of the train pool held out as val, strictly between 0 and 1.
        test_fraction: Stratified fraction held out as test; used only when the source has no test split.
        max_train_examples: Stratified subsample of train to this many examples; None keeps all of it.
        imbalance: (class index or name, share of train) the class is made to take; None leaves train as split.
        label_noise: Fraction of training labels flipped to another class, at least 0 and below 1.
        noise_kind: How a label flips: ``"symmetric"`` (a uniformly random other class) or ``"pair"`` (c -> c + 1).
        data_dir: TFDS data directory; None: TFDS's default (``$TFDS_DATA_DIR`` when set).

    Returns:
        The ``train``, ``val`` and ``test`` splits and their DatasetInfo (class names, image shape, sizes, and
        the ids whose labels were flipped).

    Raises:
        UserError: for a bad spec or option, or data that is not available.
    """
    check_options(
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        max_train_examples=max_train_examples,
        label_noise=label_noise,
        noise_kind=noise_kind,
    )
    if imbalance is not None:
        check_share(imbalance[1])
    source = read_source(spec, data_dir)
    class_names = source.class_names
    num_classes = len(class_names)

    pool, test = source.train, source.test
    if test is None:
        pool, test = _hold_out(pool, test_fraction, num_classes, stage_rng(seed, "test"), "test")
    train, val = _hold_out(pool, val_fraction, num_classes, stage_rng(seed, "val"), "val")
    classes_before = train.class_counts(num_classes) > 0

    if imbalance is not None:
        majority = resolve_class(imbalance[0], class_names)
        train = train.subset(
            imbalance_indices(train.labels, majority, imbalance[1], num_classes, stage_rng(seed, "imbalance"))
        )
    if max_train_examples is not None:
        train = train.subset(
            subsample_indices(train.labels, max_train_examples, num_classes, stage_rng(seed, "subsample"))
        )
    flipped_ids: list[str] = []
    if label_noise > 0:
        if num_classes < 2:
            raise UserError("label_noise needs at least two classes to flip labels between")
        noisy, flipped = flip_labels(train.labels, label_noise, num_classes, stage_rng(seed, "noise"), noise_kind)
        train = train.with_labels(noisy)
        flipped_ids = [str(example_id) for example_id in train.ids[flipped]]

    lost = np.flatnonzero(classes_before & (train.class_counts(num_classes) == 0))
    if len(lost):
        raise UserError(
            f"the options leave no training example of class(es) {', '.join(class_names[c] for c in lost)}; "
            "raise max_train_examples or lower imbalance / label_noise"
        )

    splits = {"train": train, "val": val, "test": test}
    info = DatasetInfo(
        spec=spec,
        name=source.name,
        num_classes=num_classes,
        class_names=list(class_names),
        image_shape=tuple(int(dim) for dim in train.images.shape[1:]),
        sizes={name: len(split) for name, split in splits.items()},
        flipped_ids=flipped_ids,
        skipped_files=list(source.skipped_files),
    )
    return TargetDataset(info=info, splits=splits)


def _hold_out(
    split: Split, fraction: float, num_classes: int, rng: np.random.Generator, what: str
) -> tuple[Split, Split]:
    """(rest, held out): a stratified ``fraction`` of ``split`` held out as the ``what`` split."""
    held = holdout_indices(split.labels, fraction, num_classes, rng)
    if len(held) == 0:
        raise UserError(f"too few examples to hold out a {what} split: add images so some class has at least 2")
    rest = np.setdiff1d(np.arange(len(split)), held)
    return split.subset(rest), split.subset(held)
