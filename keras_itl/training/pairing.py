"""A paired split: labelled batches of a second domain drawn beside every training batch.

Domain-adaptation methods train on the target while aligning it with the labelled source, so each
training step needs a batch of both. ``train_model(..., pairing=Pairing(...))`` zips the training
batches with batches of ``Pairing.split`` and hands the ``PairedTerm`` one replica's view of both:
the features of ``Pairing.layer`` (a top-level layer of the model), the predicted probabilities, the
labels, and the phase's progress. The paired batches of an epoch are a function of the run's seed and
the epoch alone (as the training batches are), so a resumed run draws the same ones without saving
an iterator position.

A term may own trainable variables (``Pairing.state``, e.g. DANN's domain classifier): they are
trained by the same optimizer, saved in the same checkpoints, and start as built in every phase.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import keras
import tensorflow as tf

from keras_itl.datasets import Split

PAIRED_SEED_OFFSET = 500_009  # the paired split's shuffle stream differs from the training split's


@dataclass(frozen=True)
class PairedBatch:
    """One replica's share of a paired step, as a ``PairedTerm`` sees it.

    ``labels`` of the training batch are -1 where a label is hidden (``--target-labels none`` or ``N``);
    ``progress`` is the fraction of the phase's steps taken before this one, from 0 towards 1.
    """

    features: tf.Tensor
    probs: tf.Tensor
    labels: tf.Tensor
    paired_features: tf.Tensor
    paired_probs: tf.Tensor
    paired_labels: tf.Tensor
    progress: tf.Tensor


PairedTerm: TypeAlias = Callable[[PairedBatch], tf.Tensor]
"""A term added to the training loss of a paired step: one replica's ``PairedBatch`` -> a scalar (a per-replica
mean, like the cross-entropy it is added to)."""


@dataclass(frozen=True, eq=False)
class Pairing:
    """The split whose batches are drawn beside the training batches, and the term computed on both.

    Attributes:
        split: The labelled examples of the second domain (e.g. the source's training split).
        term: The loss term on both batches; the same object across phases lets a phase reuse the traced step.
        layer: The name of a top-level layer of the model whose output is a batch's ``features``.
        state: A layer holding the term's own trainable variables, built under the strategy; None: none.
    """

    split: Split
    term: PairedTerm
    layer: str
    state: keras.layers.Layer | None = None
    initial_state: list = field(init=False, repr=False)  # the state's values when paired: every phase starts there

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_state", [variable.numpy() for variable in self.state_variables])

    @property
    def state_variables(self) -> list:
        """The term's own trainable variables (none without ``state``)."""
        return list(self.state.trainable_variables) if self.state is not None else []


def _layer_output(model: keras.Model, layer: str):
    """``layer``'s output in ``model``'s graph (a nested model's own ``output`` belongs to its inner graph)."""
    return model.get_layer(layer)._inbound_nodes[-1].output_tensors[0]


def feature_view(model: keras.Model, layer: str) -> keras.Model:
    """A model sharing ``model``'s layers that returns (output of ``layer``, the model's output) in one pass."""
    return keras.Model(model.inputs, [_layer_output(model, layer), model.output])


def feature_width(model: keras.Model, layer: str) -> int:
    """The size of the last axis of ``layer``'s output: what a term's own layers take as input."""
    return int(_layer_output(model, layer).shape[-1])
