"""The distances the domain-adaptation methods add to the training loss, and the term that adds them.

- ``coral_distance`` (Sun & Saenko, Deep CORAL, 2016): the squared Frobenius distance between the source
  and target feature covariances, divided by 4 d^2.
- ``mmd_distance`` (Long et al., DAN, 2015): the squared maximum mean discrepancy under a sum of Gaussian
  kernels whose bandwidths are multiples of the batch's mean squared distance (a multi-kernel MMD with equal
  kernel weights, the biased estimate).
- ``DomainConfusion`` (Ganin et al., DANN, 2016): a domain classifier's logistic loss, seen by the features
  through a gradient reversal layer whose coefficient grows as 2 / (1 + exp(-10 p)) - 1 over training
  progress p.

Each is computed on one replica's batch pair. ``AlignmentTerm`` adds the source's cross-entropy (its
labels are what a domain-adaptation method learns the classes from when the target's are hidden) and the
weighted distance.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from keras_itl.training import PairedBatch

MMD_BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)  # times the batch's mean squared distance
DOMAIN_CLASSIFIER_UNITS = 100  # hidden units of DANN's domain classifier


def _covariance(features: tf.Tensor) -> tf.Tensor:
    count = tf.cast(tf.shape(features)[0], features.dtype)
    centred = features - tf.reduce_mean(features, axis=0, keepdims=True)
    return tf.matmul(centred, centred, transpose_a=True) / tf.maximum(count - 1.0, 1.0)


def coral_distance(source: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """||C_source - C_target||_F^2 / (4 d^2) for features of shape (n, d) (unbiased covariances).

    Args:
        source: Source features, (n_s, d).
        target: Target features, (n_t, d).

    Returns:
        A scalar.
    """
    width = tf.cast(tf.shape(source)[1], source.dtype)
    return tf.reduce_sum(tf.square(_covariance(source) - _covariance(target))) / (4.0 * width * width)


def mmd_distance(source: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Squared multi-kernel MMD between two feature batches: mean K_ss + mean K_tt - 2 mean K_st, where K sums
    Gaussian kernels exp(-||x - y||^2 / (m * b)) over ``MMD_BANDWIDTHS`` m, with b the mean squared distance
    between distinct examples of the joint batch (held constant in the gradient).

    Args:
        source: Source features, (n_s, d).
        target: Target features, (n_t, d).

    Returns:
        A scalar.
    """
    joint = tf.concat([source, target], axis=0)
    norms = tf.reduce_sum(tf.square(joint), axis=1)
    squared = tf.maximum(norms[:, None] + norms[None, :] - 2.0 * tf.matmul(joint, joint, transpose_b=True), 0.0)
    count = tf.cast(tf.shape(joint)[0], joint.dtype)
    bandwidth = tf.stop_gradient(tf.maximum(tf.reduce_sum(squared) / tf.maximum(count * count - count, 1.0), 1e-12))
    kernel = tf.add_n([tf.exp(-squared / (multiple * bandwidth)) for multiple in MMD_BANDWIDTHS])
    n_source = tf.shape(source)[0]
    return (tf.reduce_mean(kernel[:n_source, :n_source]) + tf.reduce_mean(kernel[n_source:, n_source:])
            - 2.0 * tf.reduce_mean(kernel[:n_source, n_source:]))


@tf.custom_gradient
def reverse_gradient(inputs: tf.Tensor, coefficient: tf.Tensor):
    """The identity forward; backward, the gradient times -``coefficient`` (none flows to the coefficient)."""
    def gradient(upstream):
        return -coefficient * upstream, tf.zeros_like(coefficient)

    return tf.identity(inputs), gradient


def reversal_coefficient(progress: tf.Tensor) -> tf.Tensor:
    """DANN's schedule: 2 / (1 + exp(-10 p)) - 1, from 0 at the start of training towards 1 at its end."""
    return 2.0 / (1.0 + tf.exp(-10.0 * progress)) - 1.0


def domain_classifier(width: int, seed: int) -> keras.Sequential:
    """DANN's domain classifier on features of ``width``: one hidden ReLU layer, one logit (source vs target).

    Built here (under the caller's strategy scope) with seeded initialisers, so a resumed run builds it alike."""
    layers, glorot = keras.layers, keras.initializers.GlorotUniform
    classifier = keras.Sequential([
        layers.Dense(DOMAIN_CLASSIFIER_UNITS, activation="relu", kernel_initializer=glorot(seed)),
        layers.Dense(1, kernel_initializer=glorot(seed + 1)),
    ], name="domain_classifier")
    classifier.build((None, width))
    return classifier


@dataclass(frozen=True, eq=False)
class DomainConfusion:
    """DANN's adversarial distance: the domain classifier's mean logistic loss (source 1, target 0) on features
    passed through the gradient reversal layer at the scheduled coefficient."""

    classifier: keras.Model

    def __call__(self, source: tf.Tensor, target: tf.Tensor, progress: tf.Tensor) -> tf.Tensor:
        joint = reverse_gradient(tf.concat([source, target], axis=0), reversal_coefficient(progress))
        logits = self.classifier(joint, training=True)[:, 0]
        domains = tf.concat([tf.ones(tf.shape(source)[:1]), tf.zeros(tf.shape(target)[:1])], axis=0)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=domains, logits=logits))


@dataclass(frozen=True, eq=False)
class AlignmentTerm:
    """A paired term: the source batch's mean cross-entropy plus ``weight`` x ``distance`` (source features,
    target features, progress). Compared by identity, so one run's phases reuse one traced step."""

    distance: Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]
    weight: float

    def __call__(self, batch: PairedBatch) -> tf.Tensor:
        source_loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(batch.paired_labels,
                                                                                  batch.paired_probs))
        return source_loss + self.weight * self.distance(batch.paired_features, batch.features, batch.progress)
