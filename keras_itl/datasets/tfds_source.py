"""Image-classification datasets from TensorFlow Datasets, read whole into NumPy arrays.

Any TFDS dataset with an ``image`` feature and a class-label ``label`` feature works. Its
``train`` split is the train pool and its ``test`` split, when it has one, the test split. Data
must already be on disk (``data_dir`` or TFDS_DATA_DIR) when there is no network; a failed
download becomes a UserError that says whether the network or something else failed.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from keras_itl.datasets.containers import Split
from keras_itl.datasets.images import stack_images
from keras_itl.datasets.source import SourceData, make_ids
from keras_itl.errors import UserError, network_failure, one_line

# TFDS stores EMNIST images transposed relative to MNIST; these datasets are flipped back on load.
_TRANSPOSED = ("emnist",)
_READ_BATCH = 4096


def load_tfds(name: str, data_dir: str | None) -> SourceData:
    """Read the TFDS dataset ``name`` (``dataset[/config][:version]``) into memory."""
    builder = _builder(name, data_dir)
    _check_features(name, builder.info.features)
    try:
        builder.download_and_prepare()
    except Exception as exc:  # TFDS raises whatever its download and build layers raise
        raise _prepare_error(name, builder.data_dir, exc) from exc

    canonical = builder.info.name + (f"/{builder.builder_config.name}" if builder.builder_config else "")
    split_names = set(builder.info.splits)
    if split_names and "train" not in split_names:
        raise UserError(f"TFDS dataset {name!r} has no 'train' split (it has: {', '.join(sorted(split_names))})")
    # Without generated metadata (e.g. under tfds.testing.mock_data) TFDS knows no split names;
    # the usual train/test pair is assumed then.
    has_test = "test" in split_names or not split_names
    return SourceData(
        name=canonical,
        class_names=list(builder.info.features["label"].names),
        train=_read_split(builder, "train", canonical),
        test=_read_split(builder, "test", canonical) if has_test else None,
    )


def _prepare_error(name: str, data_dir: str, error: Exception) -> UserError:
    """A one-line error naming the real cause: no network, or whatever else broke the prepare step."""
    cause = network_failure(error)
    if cause is None:
        return UserError(f"TFDS dataset {name!r} could not be prepared in {data_dir}: {one_line(error)}")
    return UserError(
        f"TFDS dataset {name!r} could not be downloaded: the network is unreachable ({one_line(cause)}); "
        f"prepare it where there is network access (`tfds build {name} --data_dir DIR`) and point "
        f"--data-dir or TFDS_DATA_DIR at DIR (looked in {data_dir})"
    )


def _builder(name: str, data_dir: str | None):
    """The TFDS builder for ``name``; a UserError for an unknown dataset or config."""
    dataset, _, config = name.partition("/")
    try:
        builder_cls = tfds.builder_cls(dataset.split(":")[0])
    except tfds.core.DatasetNotFoundError:
        raise UserError(
            f"unknown TFDS dataset {dataset!r}; `tfds.list_builders()` lists the valid names"
        ) from None
    configs = list(builder_cls.builder_configs)
    if config and config.split(":")[0] not in configs:
        raise UserError(f"TFDS dataset {dataset!r} has no config {config!r}; choose one of: {', '.join(configs)}")
    return tfds.builder(name, data_dir=data_dir)


def _check_features(name: str, features) -> None:
    """UserError unless the dataset has a uint8 ``image`` and a class-label ``label`` feature."""
    image = features["image"] if "image" in features else None
    label = features["label"] if "label" in features else None
    if not isinstance(image, tfds.features.Image) or not isinstance(label, tfds.features.ClassLabel):
        raise UserError(
            f"TFDS dataset {name!r} is not an image-classification dataset: it needs an 'image' and a "
            f"class 'label' feature, it has: {', '.join(features)}"
        )
    if image.np_dtype != np.uint8:
        raise UserError(f"TFDS dataset {name!r} stores {image.np_dtype} images; only uint8 images are supported")


def _read_split(builder, split: str, canonical: str) -> Split:
    """All examples of one TFDS split, in the stored order.

    Fixed-size images are read in large batches; images of varying size one by one, then brought
    to a common size.
    """
    fixed_size = None not in builder.info.features["image"].shape
    dataset = builder.as_dataset(split=split, shuffle_files=False).map(lambda ex: (ex["image"], ex["label"]))
    chunks = list(dataset.batch(_READ_BATCH if fixed_size else 1).as_numpy_iterator())
    if not chunks:
        raise UserError(f"split {split!r} of TFDS dataset {canonical!r} is empty")
    if fixed_size:
        images = np.concatenate([images for images, _ in chunks])
    else:
        images = stack_images([images[0] for images, _ in chunks])
    if builder.info.name in _TRANSPOSED:
        images = images.transpose(0, 2, 1, 3)
    labels = np.concatenate([labels for _, labels in chunks]).astype(np.int64)
    return Split(images, labels, make_ids(canonical, split, len(labels)))
