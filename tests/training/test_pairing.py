"""A paired split in the training loop: its batches reach the term, hidden labels add nothing, a term's own
variables are trained and checkpointed, and a crashed paired run resumes to the same weights."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_itl.backbones import build_model
from keras_itl.training import Pairing, TrainConfig, make_strategy, train_model
from tests.helpers import bright_quadrant_split, crash_after_epoch

CONFIG = TrainConfig(epochs=3, batch_size=16, patience=None)


def _model(strategy, seed=0):
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        return build_model("small-cnn", 4, image_size=12, channels=1)


def _train(tmp_path, name, *, pairing=None, train=None, strategy=None, seed=0, resume=False, config=CONFIG):
    strategy = strategy or make_strategy(["/cpu:0"])
    model = _model(strategy, seed)
    train = bright_quadrant_split(48, seed=1) if train is None else train
    result = train_model(model, train, None, config, strategy=strategy, run_dir=tmp_path / name, verbose=False,
                         pairing=pairing, resume=resume)
    return model, result


def _source():
    return bright_quadrant_split(40, seed=5, prefix="source")


def zero_term(batch):
    return tf.zeros(())


def source_cross_entropy(batch):
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(batch.paired_labels, batch.paired_probs))


def _assert_same(first, second):
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_a_zero_paired_term_changes_nothing_and_a_source_term_does(tmp_path):
    plain, _ = _train(tmp_path, "plain")
    zero, _ = _train(tmp_path, "zero", pairing=Pairing(_source(), zero_term, layer="backbone"))
    _assert_same(plain.get_weights(), zero.get_weights())
    paired, _ = _train(tmp_path, "paired", pairing=Pairing(_source(), source_cross_entropy, layer="backbone"))
    assert max(np.abs(a - b).max() for a, b in zip(plain.get_weights(), paired.get_weights())) > 1e-3


def test_the_term_sees_both_batches_features_and_a_progress_from_zero_towards_one(tmp_path):
    seen = []

    def recording(batch):
        seen.append((batch.features.shape[-1], batch.paired_features.shape[-1], batch.paired_labels.dtype))
        tf.debugging.assert_greater_equal(batch.progress, 0.0)
        tf.debugging.assert_less(batch.progress, 1.0)
        return tf.zeros(())

    _train(tmp_path, "head", pairing=Pairing(_source(), recording, layer="head"))
    assert seen[0] == (4, 4, tf.int64)  # traced once: the head's probabilities, four classes


def test_hidden_labels_add_nothing_to_the_loss_or_the_reported_numbers(tmp_path):
    train = bright_quadrant_split(48, seed=1)
    hidden = train.with_labels(np.full(len(train), -1))
    strategy = make_strategy(["/cpu:0"])
    before = _model(strategy).get_weights()
    model, result = _train(tmp_path, "hidden", train=hidden)
    _assert_same(before, model.get_weights())  # no labelled example, no term: nothing to learn from
    assert [record["labelled"] for record in result.history] == [0, 0, 0]
    half = train.with_labels(np.where(np.arange(len(train)) % 2 == 0, train.labels, -1))
    _, result = _train(tmp_path, "half", train=half)
    assert [record["labelled"] for record in result.history] == [24, 24, 24]


def test_two_replicas_pair_like_one(tmp_path):
    finals = []
    for devices in (["/cpu:0"], ["/cpu:0", "/cpu:1"]):
        model, _ = _train(tmp_path, str(len(devices)), strategy=make_strategy(devices),
                          pairing=Pairing(_source(), source_cross_entropy, layer="backbone"))
        finals.append(model.get_weights())
    for one, two in zip(*finals):
        np.testing.assert_allclose(one, two, atol=2e-6, rtol=1e-5)


class Critic:
    """A paired term with its own trainable layer (as DANN's domain classifier is)."""

    def __init__(self, strategy):
        with strategy.scope():
            self.layer = keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(3))
            self.layer.build((None, 128))

    def __call__(self, batch):
        return tf.square(tf.reduce_mean(self.layer(batch.paired_features)) - tf.reduce_mean(self.layer(batch.features)))


@pytest.mark.slow
def test_a_crashed_paired_run_with_term_state_resumes_to_the_same_weights(tmp_path, monkeypatch):
    strategy = make_strategy(["/cpu:0"])
    critic = Critic(strategy)
    built = [w.numpy() for w in critic.layer.weights]
    pairing = Pairing(_source(), critic, layer="backbone", state=critic.layer)
    reference, _ = _train(tmp_path, "a", pairing=pairing, strategy=strategy)
    trained = [w.numpy() for w in critic.layer.weights]
    assert max(np.abs(a - b).max() for a, b in zip(built, trained)) > 1e-4  # the term's layer was trained

    with crash_after_epoch(monkeypatch, 2):
        _train(tmp_path, "b", pairing=pairing, strategy=strategy)  # the phase starts from the layer as built
    for variable in critic.layer.weights:  # everything must come from the checkpoint
        variable.assign(np.zeros(variable.shape))
    resumed, result = _train(tmp_path, "b", pairing=pairing, strategy=strategy, seed=7, resume=True)
    assert [record["epoch"] for record in result.history] == [1, 2, 3]
    _assert_same(reference.get_weights(), resumed.get_weights())
    _assert_same(trained, [w.numpy() for w in critic.layer.weights])
