"""Target datasets for instance-based transfer learning: load, split, perturb, batch.

``load_dataset(spec, ...)`` returns a ``TargetDataset`` with train/val/test ``Split``s of uint8
images, int64 labels and stable string ids, plus a ``DatasetInfo``; ``make_batches`` turns a
Split into a tf.data pipeline. The order in which splits and options are applied is documented
in ``keras_itl.datasets.loading``.
"""
from keras_itl.datasets.batches import make_batches
from keras_itl.datasets.containers import DatasetInfo, Split, TargetDataset
from keras_itl.datasets.loading import load_dataset
from keras_itl.datasets.options import parse_imbalance
from keras_itl.datasets.specs import DATASET_NAMES

__all__ = [
    "DATASET_NAMES",
    "DatasetInfo",
    "Split",
    "TargetDataset",
    "load_dataset",
    "make_batches",
    "parse_imbalance",
]
