"""The domain-adaptation terms against NumPy references on fixed features, and the gradient reversal layer."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_itl.training import PairedBatch
from keras_itl.transfer.alignment import (
    MMD_BANDWIDTHS,
    AlignmentTerm,
    DomainConfusion,
    coral_distance,
    domain_classifier,
    mmd_distance,
    reversal_coefficient,
    reverse_gradient,
)


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(7, 5)).astype(np.float32)
    target = (rng.normal(size=(5, 5)) * 2 + 1).astype(np.float32)  # another batch size, scale and mean
    return source, target


def numpy_coral(source, target):
    d = source.shape[1]
    return np.sum((np.cov(source, rowvar=False) - np.cov(target, rowvar=False)) ** 2) / (4 * d * d)


def numpy_mmd(source, target):
    joint = np.concatenate([source, target]).astype(np.float64)
    squared = ((joint[:, None, :] - joint[None, :, :]) ** 2).sum(-1)
    n = len(joint)
    bandwidth = squared.sum() / (n * n - n)
    kernel = sum(np.exp(-squared / (m * bandwidth)) for m in MMD_BANDWIDTHS)
    s = len(source)
    return kernel[:s, :s].mean() + kernel[s:, s:].mean() - 2 * kernel[:s, s:].mean()


def test_coral_equals_the_numpy_reference(features):
    source, target = features
    assert float(coral_distance(tf.constant(source), tf.constant(target))) == pytest.approx(
        numpy_coral(source, target), rel=1e-5)
    assert float(coral_distance(tf.constant(source), tf.constant(source))) == pytest.approx(0, abs=1e-9)


def test_mmd_equals_the_numpy_reference(features):
    source, target = features
    assert float(mmd_distance(tf.constant(source), tf.constant(target))) == pytest.approx(
        numpy_mmd(source, target), rel=1e-5)
    shifted = float(mmd_distance(tf.constant(source), tf.constant(target + 5.0)))
    assert shifted > float(mmd_distance(tf.constant(source), tf.constant(target)))  # further apart, larger


def test_the_domain_loss_equals_the_numpy_reference(features):
    source, target = features
    classifier = domain_classifier(5, seed=0)
    (w1, b1), (w2, b2) = [[v.numpy() for v in layer.weights] for layer in classifier.layers]
    joint = np.concatenate([source, target]).astype(np.float64)
    logits = (np.maximum(joint @ w1 + b1, 0) @ w2 + b2)[:, 0]
    domains = np.r_[np.ones(len(source)), np.zeros(len(target))]
    probability = 1 / (1 + np.exp(-logits))
    expected = -np.mean(domains * np.log(probability) + (1 - domains) * np.log(1 - probability))
    loss = DomainConfusion(classifier)(tf.constant(source), tf.constant(target), tf.constant(0.3))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_the_reversal_layer_flips_the_gradients_sign_and_scales_it():
    inputs = tf.constant([[1.0, -2.0, 3.0]])
    weights = tf.constant([[0.5, 2.0, -1.0]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        reversed_ = reverse_gradient(inputs, tf.constant(0.25))
        plain = tf.reduce_sum(weights * inputs)
        through = tf.reduce_sum(weights * reversed_)
    np.testing.assert_array_equal(reversed_.numpy(), inputs.numpy())  # the identity forward
    np.testing.assert_allclose(tape.gradient(through, inputs).numpy(), -0.25 * tape.gradient(plain, inputs).numpy())


def test_the_reversal_coefficient_follows_ganins_schedule():
    progress = np.array([0.0, 0.1, 0.5, 1.0], np.float32)
    expected = 2 / (1 + np.exp(-10 * progress)) - 1
    np.testing.assert_allclose(reversal_coefficient(tf.constant(progress)).numpy(), expected, rtol=1e-6)
    assert expected[0] == 0 and expected[-1] > 0.9999


def test_the_term_adds_the_source_cross_entropy_and_the_weighted_distance(features):
    source, target = features
    probs = np.full((7, 3), 0.2, np.float32)
    probs[:, 0] = 0.6
    labels = np.array([0, 0, 1, 2, 0, 1, 0])
    batch = PairedBatch(features=tf.constant(target), probs=tf.constant(probs[:5]), labels=tf.constant(labels[:5]),
                        paired_features=tf.constant(source), paired_probs=tf.constant(probs),
                        paired_labels=tf.constant(labels), progress=tf.constant(0.0))
    cross_entropy = -np.mean(np.log(probs[np.arange(7), labels]))
    term = AlignmentTerm(lambda s, t, p: coral_distance(s, t), weight=3.0)
    assert float(term(batch)) == pytest.approx(cross_entropy + 3.0 * numpy_coral(source, target), rel=1e-5)
