"""Measure a classifier on a split: loss, accuracy, error rate, per-class accuracy, confusion."""
from __future__ import annotations

import os
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_itl.datasets import Split, TargetDataset, load_dataset, make_batches
from keras_itl.errors import UserError, one_line

_EPSILON = 1e-7  # the same probability clip Keras applies in its cross-entropy


@dataclass
class Metrics:
    """Evaluation of one model on one split; ``confusion[i][j]`` counts true i predicted j."""

    loss: float
    accuracy: float
    error_rate: float
    num_examples: int
    per_class_accuracy: dict[str, float | None]
    confusion: list[list[int]]

    def to_dict(self) -> dict:
        return asdict(self)


_FORWARD: weakref.WeakKeyDictionary[keras.Model, tf.types.experimental.PolymorphicFunction] = (
    weakref.WeakKeyDictionary())


def forward_function(model: keras.Model) -> tf.types.experimental.PolymorphicFunction:
    """The model's inference pass on float32 pixels, traced once per model for any batch size: repeated
    evaluations stay fast, and an export of an evaluated model reuses the trace.

    Keras' own predict machinery is avoided on purpose: under a multi-replica strategy it returns
    per-replica copies of the outputs. The function reaches the model through a weak reference:
    a cached function holding the model would keep every evaluated model (and its graph) alive.
    """
    if model not in _FORWARD:
        model_ref = weakref.ref(model)
        batch = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)  # any batch size: traced once
        _FORWARD[model] = tf.function(lambda images: model_ref()(images, training=False), input_signature=[batch])
    return _FORWARD[model]


def predict_probabilities(model: keras.Model, split: Split, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for every example of the split, in split order."""
    _, size, _, channels = model.input_shape
    batches = make_batches(split, batch_size, image_size=size, channels=channels, drop_ids=True)
    forward = forward_function(model)
    return np.concatenate([forward(images).numpy() for images, _ in batches])


def metrics_from_probabilities(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> Metrics:
    """Metrics of predicted probabilities against integer labels."""
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probs.shape[1]
    picked = np.clip(probs[np.arange(len(labels)), labels], _EPSILON, 1.0)
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    totals = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / totals[i]) if totals[i] else None)
        for i, name in enumerate(class_names)
    }
    accuracy = float(np.mean(predicted == labels))
    return Metrics(loss=float(-np.mean(np.log(picked))), accuracy=accuracy, error_rate=1.0 - accuracy,
                   num_examples=int(len(labels)), per_class_accuracy=per_class, confusion=confusion.tolist())


def evaluate_model(model: keras.Model, split: Split, *, class_names: list[str] | None = None,
                   batch_size: int = 256) -> Metrics:
    """Evaluate ``model`` on every example of ``split``.

    Args:
        model: A classifier returning class probabilities; images are resized and converted to its input.
        split: The examples and integer labels to evaluate on.
        class_names: Names of the model's outputs, keying ``per_class_accuracy``; None: "0".."K-1".
        batch_size: Examples per prediction batch (memory only; the metrics do not depend on it).

    Returns:
        Loss, accuracy, error rate, example count, per-class accuracy and confusion matrix.
    """
    probs = predict_probabilities(model, split, batch_size)
    names = class_names or [str(i) for i in range(probs.shape[1])]
    return metrics_from_probabilities(probs, split.labels, names)


def load_trained_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` model file, or the ``model.keras`` inside a ``keras-itl train`` output directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise UserError(f"no model at {path}; pass a .keras file or a keras-itl train output directory")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # Keras raises many types for unreadable files
        raise UserError(f"cannot load model {path}: {one_line(error)}") from None


def evaluate_saved_model(model_path: str | os.PathLike, target: str, *, split: str = "test",
                         **dataset_options) -> tuple[Metrics, TargetDataset]:
    """Evaluate a saved model on a split of a target dataset (options as for ``load_dataset``).

    The loaded dataset is returned too, so callers (e.g. blessing against a baseline) need not load it again.
    """
    model = load_trained_model(model_path)
    data = load_dataset(target, **dataset_options)
    if model.output_shape[-1] != data.info.num_classes:
        raise UserError(f"the model predicts {model.output_shape[-1]} classes but {target} has "
                        f"{data.info.num_classes}")
    return evaluate_model(model, data.split(split), class_names=data.info.class_names), data
