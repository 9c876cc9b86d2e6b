"""The domain-adaptation methods' shared fit: the model-based schedule with the labelled source beside the target.

``coral``, ``mmd`` and ``dann`` fine-tune exactly as ``model`` does (head phase, then the backbone at a
rate factor chosen on validation loss), so they differ from it only in the term each training step adds:
the source batch's cross-entropy plus a weighted distance between the source and target features
(keras_itl.transfer.alignment). The source is the dataset the backbone was pretrained on, split as it
was for pretraining, so its validation split - what validates a run without target labels - was never
trained on.
"""
from __future__ import annotations

from collections.abc import Callable

import keras

from keras_itl.datasets import TargetDataset, load_dataset
from keras_itl.errors import UserError
from keras_itl.methods import MethodInputs, MethodOutcome
from keras_itl.training import Pairing
from keras_itl.transfer.alignment import AlignmentTerm
from keras_itl.transfer.config import TransferConfig
from keras_itl.transfer.fine_tuning import fit_target
from keras_itl.transfer.target_labels import NONE


def load_source_data(config: TransferConfig, num_classes: int) -> TargetDataset:
    """The labelled source dataset (``--source``, a dataset spec: TransferConfig checks), split as for pretraining;
    a one-line error unless it has the target's classes."""
    source = load_dataset(config.source, seed=config.seed, val_fraction=config.val_fraction,
                          data_dir=config.data_dir)
    if source.info.num_classes != num_classes:
        raise UserError(f"--method {config.method} learns the target's classes from the source's labels: the source "
                        f"has {source.info.num_classes} classes, the target {num_classes}")
    return source


def validation_split(inputs: MethodInputs, source: TargetDataset):
    """The split that early-stops and chooses the rate factor: the target's, or without target labels the
    source's; and its name for run.json."""
    if inputs.config.target_labels == NONE:
        return source.split("val"), "source val"
    return inputs.data.split("val"), "target val"


def fit_aligned(inputs: MethodInputs, distance: Callable, weight: float,
                state: keras.layers.Layer | None = None) -> MethodOutcome:
    """Fine-tune like ``model`` with ``AlignmentTerm(distance, weight)`` on every step's source and target batch.

    ``state``: the distance's own trainable layer (DANN's domain classifier), built under the strategy."""
    config = inputs.config
    source = load_source_data(config, inputs.data.info.num_classes)
    val, validated_on = validation_split(inputs, source)
    pairing = Pairing(source.split("train"), AlignmentTerm(distance, weight), layer=config.align_layer, state=state)
    fitted = fit_target(inputs.model, inputs.data.split("train"), val, config, strategy=inputs.strategy,
                        run_dir=inputs.run_dir, resume=inputs.resume, verbose=inputs.verbose, pairing=pairing)
    return MethodOutcome(fitted.phases, fine_tuning={**fitted.lr_factor.to_dict(), "validation": validated_on})
