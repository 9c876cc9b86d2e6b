"""Dataset specs: the short names users type, and which source reads each spec.

A spec is a short name from ``DATASET_NAMES``, ``tfds:<name>[/<config>]`` for any TFDS
image-classification dataset, or ``folder:<path>`` for a folder of class sub-folders.
"""
from __future__ import annotations

from collections.abc import Callable

from keras_itl.datasets.embedded import load_digits, load_mnist_5k
from keras_itl.datasets.folder import load_folder
from keras_itl.datasets.source import SourceData
from keras_itl.datasets.tfds_source import load_tfds
from keras_itl.errors import UserError

# Short name -> TFDS name. EMNIST "balanced": 47 classes of letters and digits, equal class sizes.
_TFDS_NAMES = {
    "svhn": "svhn_cropped",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "mnist": "mnist",
    "emnist": "emnist/balanced",
}
_EMBEDDED: dict[str, Callable[[], SourceData]] = {"digits": load_digits, "mnist-5k": load_mnist_5k}

DATASET_NAMES: tuple[str, ...] = (*_TFDS_NAMES, *_EMBEDDED)

_TFDS_PREFIX = "tfds:"
_FOLDER_PREFIX = "folder:"


def read_source(spec: str, data_dir: str | None = None) -> SourceData:
    """The examples named by ``spec``; ``data_dir`` is the TFDS data directory (None: TFDS default)."""
    if spec in _EMBEDDED:
        return _EMBEDDED[spec]()
    if spec in _TFDS_NAMES:
        return load_tfds(_TFDS_NAMES[spec], data_dir)
    if spec.startswith(_TFDS_PREFIX) and spec[len(_TFDS_PREFIX):]:
        return load_tfds(spec[len(_TFDS_PREFIX):], data_dir)
    if spec.startswith(_FOLDER_PREFIX) and spec[len(_FOLDER_PREFIX):]:
        return load_folder(spec[len(_FOLDER_PREFIX):])
    raise UserError(
        f"unknown dataset {spec!r}; choose one of: {', '.join(DATASET_NAMES)}, "
        f"or {_TFDS_PREFIX}<name>[/<config>] (any TFDS image-classification dataset), "
        f"or {_FOLDER_PREFIX}<path> (one sub-folder of images per class)"
    )
