"""A model's optimizer and traced training step, kept for the next phase that trains the same variables.

Tracing a training step costs far more than running it on a small target: about 12 CPU seconds
for DenseNet121 on 2 CPU cores, against a second or two for an epoch of a few hundred
images. The instance method trains the same model again after selecting instances (and once per
candidate drop set when candidates are judged by full refits), with the same trainable variables
and settings - only the data differ, and the number of steps when instances were dropped. So a
model keeps one optimizer and traced step per trainable set (and, under a cosine schedule, per
rate and length, which the graph holds as numbers): a later phase resets the optimizer's state to
the one it was built with, sets a constant rate, and runs the step it already has - the same
weights, to the last bit, as a new optimizer and a new trace.

The cache holds models weakly and the step reaches its model through a weak reference, so a
model nobody else holds is freed with its graphs.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import keras
import numpy as np
import tensorflow as tf

from keras_itl.training.pairing import PairedBatch, Pairing, feature_view

LossTerm: TypeAlias = Callable[[keras.Model, tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]
"""A term a method adds to the training loss: ``(model, images, labels, predicted probabilities)`` of one replica's
batch -> a scalar (a mean over the batch, like the cross-entropy it is added to), e.g. a domain-alignment penalty."""


@dataclass
class CompiledStep:
    """One trainable set's optimizer and its traced step."""

    strategy: tf.distribute.Strategy
    optimizer: keras.optimizers.Optimizer
    cosine: bool  # a cosine schedule, whose rate and length are part of the step's key; else a constant rate
    run_step: Callable  # one step on a distributed batch, not yet traced
    initial_state: list[np.ndarray]  # the optimizer's variables as built: what a fresh one starts from
    pairing: Pairing | None  # its term's own variables (e.g. a domain classifier) start each phase as built
    traced: dict[tf.TypeSpec, tf.types.experimental.PolymorphicFunction] = field(default_factory=dict)

    def step(self, batches: tf.distribute.DistributedDataset) -> tf.types.experimental.PolymorphicFunction:
        """The step traced for these batches' spec, whose batch dimension is unknown: a last, smaller
        batch does not trace the step a second time."""
        spec = batches.element_spec
        if spec not in self.traced:
            self.traced[spec] = tf.function(self.run_step, input_signature=[spec])
        return self.traced[spec]

    def reset(self, learning_rate: float) -> None:
        """A fresh optimizer's state (its slots and iteration count as built) at this phase's rate, and a paired
        term's own variables as built."""
        for variable, value in zip(self.optimizer.variables, self.initial_state):
            variable.assign(value)
        if self.pairing is not None:
            for variable, value in zip(self.pairing.state_variables, self.pairing.initial_state):
                variable.assign(value)
        if not self.cosine:
            self.optimizer.learning_rate = learning_rate


_STEPS: weakref.WeakKeyDictionary[keras.Model, dict[tuple, CompiledStep]] = weakref.WeakKeyDictionary()


def compiled_step(model: keras.Model, strategy: tf.distribute.Strategy, *, optimizer: str, learning_rate: float,
                  schedule: str, decay_steps: int, loss_term: LossTerm | None = None,
                  pairing: Pairing | None = None) -> CompiledStep:
    """The optimizer and training step for ``model``'s current trainable set, reset for a new phase.

    A step is reused only for the same strategy, optimizer kind and schedule (for a cosine schedule,
    the same rate and length too), the same trainable variables and the same ``trainable`` flag on
    every layer (the flag decides, for instance, whether BatchNormalization runs in training or
    inference mode inside the traced graph), the same ``loss_term`` added to the loss, and for a
    ``pairing`` the same term, feature layer and state, and the phase's length (its progress's unit).
    """
    # a cosine schedule's rate and length stay Python numbers in the graph: read from variables, TensorFlow
    # computes the schedule in another order and the weights differ in their last bits
    cosine_numbers = (learning_rate, decay_steps) if schedule == "cosine" else None
    paired = (pairing.term, pairing.layer, pairing.state, decay_steps) if pairing is not None else None
    key = (optimizer, schedule, cosine_numbers, tuple(id(v) for v in model.trainable_variables),
           tuple(_trainable_flags(model)), loss_term, paired)
    steps = _STEPS.setdefault(model, {})
    cached = steps.get(key)
    if cached is None or cached.strategy is not strategy:
        cached = steps[key] = _build(model, strategy, optimizer, learning_rate, schedule, decay_steps, loss_term,
                                     pairing)
    cached.reset(learning_rate)
    return cached


def release_compiled_steps(model: keras.Model) -> None:
    """Drop the optimizers and traced steps ``model`` keeps, once no more training will follow."""
    _STEPS.pop(model, None)


def compiled_steps(model: keras.Model) -> list[tf.types.experimental.PolymorphicFunction]:
    """The traced steps ``model`` keeps, one per trainable set (and batch spec) it was trained with."""
    return [step for compiled in _STEPS.get(model, {}).values() for step in compiled.traced.values()]


def _trainable_flags(layer: keras.layers.Layer):
    """Every layer's ``trainable`` flag, nested models' layers included, in a fixed order."""
    yield id(layer), layer.trainable
    for inner in getattr(layer, "layers", ()):
        yield from _trainable_flags(inner)


_OPTIMIZERS: dict[str, Callable] = {  # registry.OPTIMIZERS -> how to make one
    "adam": keras.optimizers.Adam,
    "sgd": lambda rate: keras.optimizers.SGD(rate, momentum=0.9),
}


def _build(model: keras.Model, strategy: tf.distribute.Strategy, optimizer: str, learning_rate: float,
           schedule: str, decay_steps: int, loss_term: LossTerm | None, pairing: Pairing | None) -> CompiledStep:
    """A new optimizer for the model's (and a paired term's) trainable variables, built under the strategy, and
    its untraced step."""
    term_variables = pairing.state_variables if pairing is not None else []
    with strategy.scope():
        cosine = schedule == "cosine"
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps) if cosine else learning_rate
        made = _OPTIMIZERS[optimizer](rate)
        made.build([*model.trainable_variables, *term_variables])
    return CompiledStep(strategy=strategy, optimizer=made, cosine=cosine, initial_state=[
        variable.numpy() for variable in made.variables], pairing=pairing,
        run_step=_step_function(weakref.ref(model), made, strategy, loss_term, pairing, decay_steps))


def _step_function(model_ref: weakref.ref, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy,
                   loss_term: LossTerm | None, pairing: Pairing | None, total_steps: int) -> Callable:
    """One training step on a distributed batch: per-replica losses summed over the global batch, then applied.

    The cross-entropy covers the labelled examples (a label of -1 is hidden: it adds nothing to the loss,
    the accuracy or its count) and is divided by their number in the global batch. Regularisation losses,
    the ``loss_term`` and a paired term are per-replica means, so each replica adds its share of them:
    summed over the replicas, the gradient is that of one term. A paired step runs the model once on each
    batch, through a view that also returns the pairing's feature layer."""
    model = model_ref()
    variables = [*model.trainable_variables, *(pairing.state_variables if pairing is not None else [])]
    view = feature_view(model, pairing.layer) if pairing is not None else None
    del model  # the step holds the model weakly (the view's layers are the model's)

    def replica_step(batch, paired=None):
        model = model_ref()
        images, labels = batch
        context = tf.distribute.get_replica_context()
        labelled = tf.cast(labels >= 0, tf.float32)
        global_labelled = tf.maximum(context.all_reduce("sum", tf.reduce_sum(labelled)), 1.0)
        with tf.GradientTape() as tape:
            if paired is None:
                probs = model(images, training=True)
            else:
                features, probs = view(images, training=True)
                paired_features, paired_probs = view(paired[0], training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(tf.maximum(labels, 0), probs) * labelled
            loss = tf.reduce_sum(per_example) / global_labelled
            if model.losses:
                loss += tf.add_n(model.losses) / context.num_replicas_in_sync
            if loss_term is not None:
                loss += loss_term(model, images, labels, probs) / context.num_replicas_in_sync
            if paired is not None:
                progress = tf.minimum(tf.cast(optimizer.iterations, tf.float32) / float(total_steps), 1.0)
                loss += pairing.term(PairedBatch(features, probs, labels, paired_features, paired_probs,
                                                 paired[1], progress)) / context.num_replicas_in_sync
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1), labels), tf.float32))
        return tf.reduce_sum(per_example), correct, tf.reduce_sum(labelled)

    def step(batch):
        args = batch if pairing is not None else (batch,)
        totals = strategy.run(replica_step, args=args)
        return tuple(strategy.reduce(tf.distribute.ReduceOp.SUM, total, axis=None) for total in totals)

    return step
