"""The softmax head's cg preconditioner changes how fast cg converges, never what it converges to;
cg that cannot reach its tolerance fails early."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_itl.influence import Scope, SolverError
from keras_itl.influence.preconditioner import head_preconditioner
from keras_itl.influence.solvers import solve_cg

INPUTS, CLASSES, EXAMPLES = 100, 5, 300  # more inputs than the preconditioner keeps eigenpairs of


def _ill_conditioned_head(seed: int = 0) -> tuple[keras.Model, Scope, np.ndarray]:
    """A Dense softmax head on features like a random backbone's: a large common mean and a decaying spectrum."""
    rng = np.random.default_rng(seed)
    spread = 0.9 ** np.arange(INPUTS)
    features = (20.0 + rng.standard_normal((EXAMPLES, INPUTS)) * 8.0 * spread).astype(np.float32)
    inputs = keras.Input((INPUTS,))
    dense = keras.layers.Dense(CLASSES, activation="softmax")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([rng.normal(0, 0.05, (INPUTS, CLASSES)).astype(np.float32),
                       rng.normal(0, 0.5, CLASSES).astype(np.float32)])
    return model, Scope("head", tuple(dense.trainable_weights)), features


def _closed_form_hessian(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """mean_i kron(x~ x~^T, diag(p) - p p^T) in float64: the head's Hessian in the flat layout (kernel rows, bias)."""
    x = np.hstack([features.astype(np.float64), np.ones((len(features), 1))])
    kernel, bias = (w.astype(np.float64) for w in model.get_weights())
    logits = x @ np.vstack([kernel, bias])
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    curvature = np.einsum("nc,cd->ncd", p, np.eye(CLASSES)) - np.einsum("nc,nd->ncd", p, p)
    size = x.shape[1] * CLASSES
    return np.einsum("na,nb,ncd->acbd", x, x, curvature).reshape(size, size) / len(x)


def test_preconditioned_cg_converges_to_plain_cg_in_far_fewer_iterations():
    model, scope, features = _ill_conditioned_head()
    hessian = _closed_form_hessian(model, features)
    damping = 1e-3
    matrix = tf.constant(hessian + damping * np.eye(len(hessian)), tf.float64)
    target = tf.constant(np.random.default_rng(1).standard_normal(len(hessian)), tf.float64)

    def product(vector):
        return tf.linalg.matvec(matrix, vector)

    preconditioner = head_preconditioner(model, scope, features)
    assert preconditioner is not None
    plain, plain_iterations, _ = solve_cg(product, target, 1e-10, 5000)
    steered, steered_iterations, residual = solve_cg(product, target, 1e-10, 5000,
                                                     preconditioner=preconditioner.inverse(damping))
    assert residual < 1e-10
    assert np.linalg.norm(steered - plain) <= 1e-5 * np.linalg.norm(plain)
    exact = np.linalg.solve(matrix.numpy(), target.numpy())
    assert np.linalg.norm(steered.numpy() - exact) <= 1e-5 * np.linalg.norm(exact)
    assert steered_iterations * 3 <= plain_iterations, (steered_iterations, plain_iterations)


def test_preconditioner_is_only_built_for_a_softmax_head_on_its_input():
    model, scope, features = _ill_conditioned_head()
    inputs = keras.Input((INPUTS,))
    hidden = keras.layers.Dense(8, activation="relu")
    head = keras.layers.Dense(CLASSES, activation="softmax")
    deeper = keras.Model(inputs, head(hidden(inputs)))
    assert head_preconditioner(deeper, Scope("top:2", (*hidden.trainable_weights, *head.trainable_weights)),
                               features) is None
    assert head_preconditioner(deeper, Scope("head", tuple(head.trainable_weights)), features) is None
    linear = keras.Model(inputs, keras.layers.Dense(CLASSES)(inputs))
    assert head_preconditioner(linear, Scope("head", tuple(linear.layers[-1].trainable_weights)), features) is None


def test_cg_that_cannot_reach_its_tolerance_fails_early():
    # float32 on eigenvalues over 8 decades: cg stalls far above 1e-7 long before its 2000 iterations
    matrix = tf.constant(np.diag(np.logspace(0, 8, 200)), tf.float32)
    target = tf.ones([200])
    products = []

    def product(vector):
        products.append(1)
        return tf.linalg.matvec(matrix, vector)

    with pytest.raises(SolverError, match="cg is stalling at relative residual .* raise --damping"):
        solve_cg(product, target, 1e-7, 2000)
    assert len(products) < 1000
