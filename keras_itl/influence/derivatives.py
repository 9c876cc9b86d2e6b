"""Derivatives of the per-example loss over a parameter scope, streamed over batches.

The model differentiated is whatever maps the examples' inputs to class probabilities: the whole
classifier on images (scope ``all``), or the trainable part above a cut on cached activations of
the frozen part (``head``, ``top:K``; see ``keras_itl.influence.features``). All passes run the model in inference mode
(BatchNormalization uses its moving statistics), so
the loss is a fixed function of the scope's parameters. Nothing here holds more than one batch of
per-example quantities: gradients and Hessian-vector products are summed as they stream, and the
per-instance directional derivatives come out batch by batch.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_itl.influence.scope import Scope
from keras_itl.influence.sharding import UNSHARDED, WorkerShard

if TYPE_CHECKING:  # features builds on this module
    from keras_itl.influence.features import Examples


class LossDerivatives:
    """Gradient, Hessian-vector products, dense Hessian and per-example JVPs of one model's loss.

    ``model`` maps the examples' inputs to probabilities; ``scope`` holds (some of) its variables.
    """

    def __init__(self, model: keras.Model, scope: Scope, batch_size: int = 64):
        self.model = model
        self.scope = scope
        self.batch_size = batch_size
        self._primals = scope.tf_variables
        # Fixed signatures: one trace per pass whatever the batch size (last batches, single examples).
        batch = (tf.TensorSpec([None, *model.input_shape[1:]], tf.float32), tf.TensorSpec([None], tf.int64))
        vector = tf.TensorSpec([scope.num_parameters], tf.float32)
        self._gradient_fn = tf.function(self._batch_gradient, input_signature=batch)
        self._hvp_fn = tf.function(self._batch_hvp, input_signature=(*batch, vector))
        self._jvp_fn = tf.function(self._batch_jvp, input_signature=(*batch, vector))
        self._hessian_fn = tf.function(self._batch_hessian, input_signature=batch)

    def _losses(self, inputs, labels):
        probs = self.model(inputs, training=False)
        return keras.losses.sparse_categorical_crossentropy(labels, probs), probs

    def _batch_gradient(self, inputs, labels):
        with tf.GradientTape() as tape:
            tape.watch(self._primals)
            losses, _ = self._losses(inputs, labels)
            total = tf.reduce_sum(losses)
        return total, self.scope.flatten(tape.gradient(total, self._primals))

    def _batch_hvp(self, inputs, labels, vector):
        # Reverse over reverse: the gradient of (gradient . vector). Same product as forward over
        # reverse, but TF's ForwardAccumulator made it ~6x slower on a cached-features head.
        with tf.GradientTape() as outer:
            outer.watch(self._primals)
            with tf.GradientTape() as inner:
                inner.watch(self._primals)
                losses, _ = self._losses(inputs, labels)
                total = tf.reduce_sum(losses)
            gradient = self.scope.flatten(inner.gradient(total, self._primals))
            directional = tf.reduce_sum(gradient * vector)
        return self.scope.flatten(outer.gradient(directional, self._primals,
                                                 unconnected_gradients=tf.UnconnectedGradients.ZERO))

    def _batch_jvp(self, inputs, labels, vector):
        with tf.autodiff.ForwardAccumulator(self._primals, self.scope.unflatten(vector)) as accumulator:
            losses, probs = self._losses(inputs, labels)
        derivatives = accumulator.jvp(losses, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return losses, derivatives, tf.argmax(probs, axis=-1)

    def _batch_hessian(self, inputs, labels):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                outer.watch(self._primals)
                inner.watch(self._primals)
                losses, _ = self._losses(inputs, labels)
                total = tf.reduce_sum(losses)
            gradient = self.scope.flatten(inner.gradient(total, self._primals))
        blocks = outer.jacobian(gradient, self._primals, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.concat([tf.reshape(b, [tf.shape(gradient)[0], -1]) for b in blocks], axis=1)

    def mean_gradient(self, examples: Examples, shard: WorkerShard = UNSHARDED) -> tuple[tf.Tensor, float]:
        """(mean gradient of the loss, mean loss) over the examples; with ``shard``, summed over the workers' shards."""
        gradient = tf.zeros([self.scope.num_parameters])
        loss = 0.0
        for inputs, labels in shard.take(examples).batches(self.batch_size):
            total, batch_gradient = self._gradient_fn(inputs, labels)
            gradient += batch_gradient
            loss += float(total)
        return shard.sum(gradient) / len(examples), float(shard.sum(np.asarray(loss))) / len(examples)

    def hvp(self, examples: Examples, vector: tf.Tensor, shard: WorkerShard = UNSHARDED) -> tf.Tensor:
        """Mean-loss Hessian over the examples times ``vector`` (Pearlmutter's trick, reverse over reverse)."""
        product = tf.zeros_like(vector)
        for inputs, labels in shard.take(examples).batches(self.batch_size):
            product += self._hvp_fn(inputs, labels, vector)
        return shard.sum(product) / len(examples)

    def hessian(self, examples: Examples, shard: WorkerShard = UNSHARDED) -> np.ndarray:
        """The dense mean-loss Hessian, float64, for small scopes only."""
        size = self.scope.num_parameters
        hessian = np.zeros((size, size))
        for inputs, labels in shard.take(examples).batches(self.batch_size):
            hessian += self._hessian_fn(inputs, labels).numpy()
        hessian = shard.sum(hessian) / len(examples)
        return (hessian + hessian.T) / 2

    def directional_derivatives(self, examples: Examples, vector: tf.Tensor
                                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per batch: (per-example loss, d/de loss_i(theta + e*vector) = g_i . vector, predicted class)."""
        for inputs, labels in examples.batches(self.batch_size):
            losses, derivatives, predicted = self._jvp_fn(inputs, labels, vector)
            yield losses.numpy(), derivatives.numpy(), predicted.numpy()
