"""A preconditioner for conjugate gradient on the Hessian of a softmax head over cached features.

The head is multinomial logistic regression on the frozen part's activations x (plus a constant 1
for the bias): with logits z = V^T x~ and p = softmax(z), its mean-loss Hessian is

    H = mean_i (diag(p_i) - p_i p_i^T)  (x)  x~_i x~_i^T.

On features of a backbone (above all a randomly initialised one) x~ x~^T has a few huge
eigenvalues (the features' mean) and a long decaying tail, so plain CG needs hundreds of
iterations at small damping - and in float32 it can stall before reaching its tolerance. A
Kronecker-factored approximation H ~ A (x) B with A = mean x~ x~^T (kept as its top ``RANK``
eigenpairs, found by a randomised range finder on a sample of the rows) and B = mean
diag(p) - p p^T (C x C, decomposed exactly) inverts cheaply: in the eigenbases of A and B,
(A (x) B + damping*I) is diagonal, and the rest of A is treated as zero (curvature ``damping``).
It only steers CG: the solve still stops on the true residual ||(H + damping*I) s - v|| / ||v||,
so its result is the one plain CG converges to.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf

from keras_itl.influence.scope import Scope

RANK = 64  # eigenpairs of A kept: the tail beyond them carries little curvature
SAMPLE = 1024  # rows the factors are estimated on (enough for a preconditioner; bounded cost at any N)
POWER_ITERATIONS = 2
OVERSAMPLING = 10
DAMPING_FLOOR = 1e-6  # relative to the largest curvature, for a solve at zero damping

Preconditioner = Callable[[tf.Tensor], tf.Tensor]


def _softmax_dense(trainable: keras.Model, scope: Scope) -> keras.layers.Dense | None:
    """The Dense softmax layer when ``trainable`` is nothing but that layer on its input and ``scope`` its weights."""
    layers = [layer for layer in trainable.layers if not isinstance(layer, keras.layers.InputLayer)]
    if len(layers) != 1 or not isinstance(layers[0], keras.layers.Dense):
        return None
    dense = layers[0]
    if getattr(dense.activation, "__name__", None) != "softmax":
        return None
    if [id(w) for w in dense.trainable_weights] != [id(v) for v in scope.variables]:
        return None
    return dense


def _top_eigenpairs(rows: np.ndarray, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(basis [columns, rank], eigenvalues) of rows^T rows / len(rows): randomised range finder, power iterations."""
    rng = np.random.default_rng(seed)
    sketch = rows @ rng.standard_normal((rows.shape[1], rank + OVERSAMPLING)).astype(rows.dtype)
    for _ in range(POWER_ITERATIONS):
        sketch, _ = np.linalg.qr(sketch)
        sketch = rows @ (rows.T @ sketch)
    sketch, _ = np.linalg.qr(sketch)
    _, singular, right = np.linalg.svd(sketch.T @ rows, full_matrices=False)
    return right[:rank].T, singular[:rank] ** 2 / len(rows)


@dataclass(frozen=True)
class HeadPreconditioner:
    """The factors of A (x) B for one softmax head; ``inverse(damping)`` applies (A (x) B + damping*I)^-1."""

    name: ClassVar[str] = "kronecker-low-rank"

    feature_basis: tf.Tensor  # [inputs (+1 for the bias), rank]
    feature_eigenvalues: tf.Tensor  # [rank]
    class_basis: tf.Tensor  # [classes, classes]
    class_eigenvalues: tf.Tensor  # [classes]

    def inverse(self, damping: float) -> Preconditioner:
        """v -> (A (x) B + damping*I)^-1 v on flat scope vectors (kernel row-major, then bias)."""
        rows, classes = int(self.feature_basis.shape[0]), int(self.class_basis.shape[0])
        largest = float(tf.reduce_max(self.feature_eigenvalues) * tf.reduce_max(self.class_eigenvalues))
        damping = max(damping, DAMPING_FLOOR * largest, 1e-30)
        scale = 1.0 / (self.feature_eigenvalues[:, None] * self.class_eigenvalues[None, :] + damping)
        basis, class_basis = self.feature_basis, self.class_basis

        def apply(vector: tf.Tensor) -> tf.Tensor:
            # kernel rows, then the bias row: the flat layout; the factors are float64, the solve's vectors any float
            matrix = tf.reshape(tf.cast(vector, tf.float64), [rows, classes])
            coefficients = tf.matmul(basis, matrix, transpose_a=True)
            rest = (matrix - tf.matmul(basis, coefficients)) / damping
            rotated = tf.matmul(coefficients, class_basis) * scale
            result = rest + tf.matmul(basis, tf.matmul(rotated, class_basis, transpose_b=True))
            return tf.cast(tf.reshape(result, [-1]), vector.dtype)

        return apply


def head_preconditioner(trainable: keras.Model, scope: Scope, features: tf.Tensor | np.ndarray,
                        seed: int = 0) -> HeadPreconditioner | None:
    """The preconditioner of a softmax head on ``features`` (the rows its Hessian is taken over), or None
    when the scope is not exactly a Dense softmax layer fed by the cached activations."""
    dense = _softmax_dense(trainable, scope)
    if dense is None or len(features) == 0:
        return None
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(features), min(SAMPLE, len(features)), replace=False))
    rows = np.asarray(features[chosen] if isinstance(features, np.ndarray) else tf.gather(features, chosen),
                      np.float32).reshape(len(chosen), -1)
    probabilities = np.asarray(trainable(rows, training=False), np.float64)
    class_curvature = (np.diag(probabilities.sum(axis=0)) - probabilities.T @ probabilities) / len(rows)
    class_eigenvalues, class_basis = np.linalg.eigh(class_curvature)
    if len(dense.trainable_weights) == 2:  # the bias is a weight on a constant 1
        rows = np.hstack([rows, np.ones((len(rows), 1), np.float32)])
    basis, eigenvalues = _top_eigenpairs(rows.astype(np.float64), min(RANK, *rows.shape), seed)
    return HeadPreconditioner(feature_basis=tf.constant(basis, tf.float64),
                              feature_eigenvalues=tf.constant(eigenvalues, tf.float64),
                              class_basis=tf.constant(class_basis, tf.float64),
                              class_eigenvalues=tf.constant(np.maximum(class_eigenvalues, 0.0), tf.float64))
