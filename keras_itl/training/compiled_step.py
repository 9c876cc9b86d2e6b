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
    traced: dict[tf.TypeSpec, tf.types.experimental.PolymorphicFunction] = field(default_factory=dict)

    def step(self, batches: tf.distribute.DistributedDataset) -> tf.types.experimental.PolymorphicFunction:
        """The step traced for these batches' spec, whose batch dimension is unknown: a last, smaller
        batch does not trace the step a second time."""
        spec = batches.element_spec
        if spec not in self.traced:
            self.traced[spec] = tf.function(self.run_step, input_signature=[spec])
        return self.traced[spec]

    def reset(self, learning_rate: float) -> None:
        """A fresh optimizer's state (its slots and iteration count as built) at this phase's rate."""
        for variable, value in zip(self.optimizer.variables, self.initial_state):
            variable.assign(value)
        if not self.cosine:
            self.optimizer.learning_rate = learning_rate


_STEPS: weakref.WeakKeyDictionary[keras.Model, dict[tuple, CompiledStep]] = weakref.WeakKeyDictionary()


def compiled_step(model: keras.Model, strategy: tf.distribute.Strategy, *, optimizer: str, learning_rate: float,
                  schedule: str, decay_steps: int, loss_term: LossTerm | None = None) -> CompiledStep:
    """The optimizer and training step for ``model``'s current trainable set, reset for a new phase.

    A step is reused only for the same strategy, optimizer kind and schedule (for a cosine schedule,
    the same rate and length too), the same trainable variables and the same ``trainable`` flag on
    every layer (the flag decides, for instance, whether BatchNormalization runs in training or
    inference mode inside the traced graph), and the same ``loss_term`` added to the loss.
    """
    # a cosine schedule's rate and length stay Python numbers in the graph: read from variables, TensorFlow
    # computes the schedule in another order and the weights differ in their last bits
    cosine_numbers = (learning_rate, decay_steps) if schedule == "cosine" else None
    key = (optimizer, schedule, cosine_numbers, tuple(id(v) for v in model.trainable_variables),
           tuple(_trainable_flags(model)), loss_term)
    steps = _STEPS.setdefault(model, {})
    cached = steps.get(key)
    if cached is None or cached.strategy is not strategy:
        cached = steps[key] = _build(model, strategy, optimizer, learning_rate, schedule, decay_steps, loss_term)
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
           schedule: str, decay_steps: int, loss_term: LossTerm | None) -> CompiledStep:
    """A new optimizer for the model's trainable variables, built under the strategy, and its untraced step."""
    with strategy.scope():
        cosine = schedule == "cosine"
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps) if cosine else learning_rate
        made = _OPTIMIZERS[optimizer](rate)
        made.build(model.trainable_variables)
    return CompiledStep(strategy=strategy, optimizer=made, cosine=cosine, initial_state=[
        variable.numpy() for variable in made.variables],
        run_step=_step_function(weakref.ref(model), made, strategy, loss_term))


def _step_function(model_ref: weakref.ref, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy,
                   loss_term: LossTerm | None) -> Callable:
    """One training step on a distributed batch: per-replica losses summed over the global batch, then applied.

    Regularisation losses and the ``loss_term`` are per-replica means, so each replica adds its share of them:
    summed over the replicas, the gradient is that of one term."""
    variables = model_ref().trainable_variables

    def replica_step(images, labels):
        model = model_ref()
        context = tf.distribute.get_replica_context()
        global_count = context.all_reduce("sum", tf.cast(tf.shape(labels)[0], tf.float32))
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
            loss = tf.reduce_sum(per_example) / global_count
            if model.losses:
                loss += tf.add_n(model.losses) / context.num_replicas_in_sync
            if loss_term is not None:
                loss += loss_term(model, images, labels, probs) / context.num_replicas_in_sync
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1), labels), tf.float32))
        return tf.reduce_sum(per_example), correct

    def step(batch):
        loss_sum, correct = strategy.run(replica_step, args=batch)
        reduce = tf.distribute.ReduceOp.SUM
        return strategy.reduce(reduce, loss_sum, axis=None), strategy.reduce(reduce, correct, axis=None)

    return step
