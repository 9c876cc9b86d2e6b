"""The K-FAC preconditioner of a top:K Gauss-Newton solve steers cg without changing its answer."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_itl.influence import Scope
from keras_itl.influence.derivatives import LossDerivatives
from keras_itl.influence.features import FeatureSet
from keras_itl.influence.kfac import kfac_preconditioner
from keras_itl.influence.solvers import solve_cg

SIZE, CLASSES, EXAMPLES = 6, 3, 64


def _tiny_conv_model() -> tuple[keras.Model, FeatureSet]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inputs = keras.Input((SIZE, SIZE, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(5, 3, strides=2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))
    images = (3.0 + rng.standard_normal((EXAMPLES, SIZE, SIZE, 2)) * 2).astype(np.float32)
    labels = rng.integers(0, CLASSES, EXAMPLES)
    return model, FeatureSet(tf.constant(images), labels, np.arange(EXAMPLES))


def test_kfac_steered_cg_converges_to_plain_cg_in_fewer_iterations():
    model, examples = _tiny_conv_model()
    scope = Scope("all", tuple(model.trainable_weights))
    matrix = LossDerivatives(model, scope, 16).hessian(examples, curvature="gauss-newton")
    damping = 1e-3
    damped = tf.constant(matrix + damping * np.eye(len(matrix)), tf.float64)
    target = tf.constant(np.random.default_rng(1).standard_normal(len(matrix)), tf.float64)

    def product(vector):
        return tf.linalg.matvec(damped, vector)

    preconditioner = kfac_preconditioner(model, scope, examples, batch_size=16)
    assert preconditioner is not None and sum(preconditioner.sizes) == len(matrix)
    plain, plain_iterations, _ = solve_cg(product, target, 1e-9, 5000)
    steered, steered_iterations, residual = solve_cg(product, target, 1e-9, 5000,
                                                     preconditioner=preconditioner.inverse(damping))
    assert residual < 1e-9
    assert np.linalg.norm(steered - plain) <= 1e-5 * np.linalg.norm(plain)
    assert steered_iterations < plain_iterations, (steered_iterations, plain_iterations)
    # the layers are themselves again: the recorder's patches are gone
    assert all("call" not in layer.__dict__ for layer in model.layers)
    np.testing.assert_allclose(model(examples.features[:4]).numpy(), model(examples.features[:4]).numpy())


def test_no_preconditioner_without_a_kernel_to_factor():
    model, examples = _tiny_conv_model()
    bn = model.layers[2]
    assert kfac_preconditioner(model, Scope("bn", tuple(bn.trainable_weights)), examples) is None
