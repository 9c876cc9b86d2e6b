"""Derivatives of the per-example loss over a parameter scope, streamed over batches.

The model differentiated is whatever maps the examples' inputs to class probabilities: the whole
classifier on images (scope ``all``), or the trainable part above a cut on cached activations of
the frozen part (``head``, ``top:K``; see ``keras_itl.influence.features``). All passes run the model in inference mode
(BatchNormalization uses its moving statistics), so
the loss is a fixed function of the scope's parameters. Nothing here holds more than one batch of
per-example quantities: gradients and Hessian-vector products are summed as they stream, and the
per-instance directional derivatives come out batch by batch.

Curvature comes in two kinds (``registry.HESSIANS``). ``exact`` is the Hessian of the mean loss.
``gauss-newton`` is the generalised Gauss-Newton matrix G = mean_i J_i^T H_i J_i, with J_i the
Jacobian of example i's logits z_i over the scope and H_i = diag(p_i) - p_i p_i^T the Hessian of
softmax cross-entropy in the logits: positive semi-definite everywhere, so conjugate gradient is
valid on any sub-network at any point, and it drops only the term in which the loss's slope
multiplies the logits' own curvature - zero when the logits are linear in the scope (a Dense softmax
head), so there G equals the exact Hessian. The logits are the softmax's input when Keras keeps it
(``_keras_logits``) and log-probabilities otherwise: they differ by a per-example shift along the
all-ones direction, which H_i annihilates, so G is the same.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from keras_itl.influence.scope import Scope
from keras_itl.influence.sharding import UNSHARDED, WorkerShard
from keras_itl.registry import HESSIAN, HESSIANS

CURVATURES = {  # what each registry.HESSIANS choice solves with, as influence.json explains it
    "exact": "the exact Hessian of the mean training loss (Koh & Liang); indefinite on a non-convex scope away from "
             "a minimum, where cg fails",
    "gauss-newton": "the generalised Gauss-Newton matrix mean_i J_i^T (diag p_i - p_i p_i^T) J_i (J_i: the logits' "
                    "Jacobian): positive semi-definite on every scope, so cg is valid; equal to the exact Hessian on "
                    "a softmax Dense head",
}

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
        self._product_fns = {"exact": tf.function(self._batch_hvp, input_signature=(*batch, vector)),
                             "gauss-newton": tf.function(self._batch_gauss_newton_product,
                                                         input_signature=(*batch, vector))}
        self._matrix_fns = {"exact": tf.function(self._batch_hessian, input_signature=batch),
                            "gauss-newton": tf.function(self._batch_gauss_newton, input_signature=batch)}
        self._jvp_fn = tf.function(self._batch_jvp, input_signature=(*batch, vector))

    def _losses(self, inputs, labels):
        probs = self.model(inputs, training=False)
        return keras.losses.sparse_categorical_crossentropy(labels, probs), probs

    def _logits(self, inputs):
        """(logits, probabilities); log-probabilities stand in for logits Keras did not keep (same G)."""
        probs = self.model(inputs, training=False)
        logits = getattr(probs, "_keras_logits", None)
        return (tf.math.log(probs) if logits is None else logits), probs

    @staticmethod
    def _softmax_hessian_times(probs, vector):
        """H_i u_i = p_i * u_i - p_i (p_i . u_i) per example: the cross-entropy Hessian in the logits."""
        return probs * vector - probs * tf.reduce_sum(probs * vector, axis=-1, keepdims=True)

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

    def _batch_gauss_newton_product(self, inputs, labels, vector):
        # J v forward (one accumulator over the forward pass), H (J v) per example, J^T (.) backward.
        del labels  # H_i depends on the probabilities only
        with tf.GradientTape() as tape:
            tape.watch(self._primals)
            with tf.autodiff.ForwardAccumulator(self._primals, self.scope.unflatten(vector)) as accumulator:
                logits, probs = self._logits(inputs)
            directional = accumulator.jvp(logits, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        weights = tf.stop_gradient(self._softmax_hessian_times(probs, directional))
        return self.scope.flatten(tape.gradient(logits, self._primals, output_gradients=weights,
                                                unconnected_gradients=tf.UnconnectedGradients.ZERO))

    def _batch_gauss_newton(self, inputs, labels):
        del labels
        with tf.GradientTape() as tape:
            tape.watch(self._primals)
            logits, probs = self._logits(inputs)
        blocks = tape.jacobian(logits, self._primals, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        jacobian = tf.concat([tf.reshape(b, [tf.shape(logits)[0], tf.shape(logits)[1], -1]) for b in blocks],
                             axis=2)  # [batch, classes, parameters]
        output_hessian = tf.linalg.diag(probs) - probs[:, :, None] * probs[:, None, :]
        return tf.einsum("bcp,bcd,bdq->pq", jacobian, output_hessian, jacobian)

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

    def hvp(self, examples: Examples, vector: tf.Tensor, shard: WorkerShard = UNSHARDED,
            curvature: str = HESSIAN) -> tf.Tensor:
        """Mean-loss curvature over the examples times ``vector``: the Gauss-Newton matrix's (forward then
        reverse mode) or, with ``curvature="exact"``, the exact Hessian's (Pearlmutter's trick, reverse over
        reverse)."""
        batch_product = self._product_fns[_checked(curvature)]
        product = None  # a sum started from the first batch: one pass less over a vector of every parameter
        for inputs, labels in shard.take(examples).batches(self.batch_size):
            part = batch_product(inputs, labels, vector)
            product = part if product is None else product + part
        return shard.sum(tf.zeros_like(vector) if product is None else product) / len(examples)

    def hessian(self, examples: Examples, shard: WorkerShard = UNSHARDED, curvature: str = HESSIAN) -> np.ndarray:
        """The dense mean-loss curvature matrix (exact Hessian or Gauss-Newton), float64, for small scopes only."""
        batch_matrix = self._matrix_fns[_checked(curvature)]
        size = self.scope.num_parameters
        hessian = np.zeros((size, size))
        for inputs, labels in shard.take(examples).batches(self.batch_size):
            hessian += batch_matrix(inputs, labels).numpy()
        hessian = shard.sum(hessian) / len(examples)
        return (hessian + hessian.T) / 2

    def directional_derivatives(self, examples: Examples, vector: tf.Tensor
                                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per batch: (per-example loss, d/de loss_i(theta + e*vector) = g_i . vector, predicted class)."""
        for inputs, labels in examples.batches(self.batch_size):
            losses, derivatives, predicted = self._jvp_fn(inputs, labels, vector)
            yield losses.numpy(), derivatives.numpy(), predicted.numpy()


def _checked(curvature: str) -> str:
    if curvature not in HESSIANS:
        raise ValueError(f"unknown curvature {curvature!r}; choose one of: {', '.join(HESSIANS)}")
    return curvature
