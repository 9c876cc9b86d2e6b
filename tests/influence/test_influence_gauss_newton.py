"""The Gauss-Newton curvature (--hessian gauss-newton) is mean_i J_i^T H_i J_i, equals the exact Hessian on a
softmax Dense head, and stays positive semi-definite where the exact Hessian of a deeper scope is not."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_itl.influence import InfluenceConfig, SolverOptions, compute_influence, select_scope
from keras_itl.influence.derivatives import LossDerivatives
from keras_itl.influence.features import FeatureSet

INPUTS, HIDDEN, CLASSES, EXAMPLES = 3, 4, 3, 40


def _mlp(seed: int = 0) -> tuple[keras.Model, FeatureSet]:
    """inputs -> Dense(HIDDEN, relu) -> Dense(CLASSES, softmax) with weights large enough for a non-convex loss."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((INPUTS,))
    hidden = keras.layers.Dense(HIDDEN, activation="relu")
    head = keras.layers.Dense(CLASSES, activation="softmax")
    model = keras.Model(inputs, head(hidden(inputs)))
    hidden.set_weights([rng.normal(0, 1.0, (INPUTS, HIDDEN)).astype(np.float32),
                        rng.normal(0, 0.5, HIDDEN).astype(np.float32)])
    head.set_weights([rng.normal(0, 1.5, (HIDDEN, CLASSES)).astype(np.float32),
                      rng.normal(0, 0.5, CLASSES).astype(np.float32)])
    features = rng.normal(0, 1.0, (EXAMPLES, INPUTS)).astype(np.float32)
    labels = rng.integers(0, CLASSES, EXAMPLES)
    return model, FeatureSet(features, labels, np.arange(EXAMPLES).astype(str))


def _hand_gauss_newton(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """mean_i J_i^T (diag p_i - p_i p_i^T) J_i in float64, J_i written out for z = relu(x W1 + b1) W2 + b2 in the
    scope's flat layout (W1 rows, b1, W2 rows, b2)."""
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    total = 0.0
    for row in x.astype(np.float64):
        pre = row @ w1 + b1
        active = (pre > 0).astype(np.float64)
        hidden = np.maximum(pre, 0)
        logits = hidden @ w2 + b2
        p = np.exp(logits - logits.max())
        p /= p.sum()
        jacobian = np.zeros((CLASSES, w1.size + b1.size + w2.size + b2.size))
        for c in range(CLASSES):
            through_hidden = active * w2[:, c]  # dz_c / d pre_j
            jacobian[c] = np.concatenate([np.outer(row, through_hidden).ravel(), through_hidden,
                                          np.outer(hidden, np.eye(CLASSES)[c]).ravel(), np.eye(CLASSES)[c]])
        total = total + jacobian.T @ (np.diag(p) - np.outer(p, p)) @ jacobian
    return total / len(x)


def _relative(actual, expected) -> float:
    return float(np.linalg.norm(np.asarray(actual, np.float64) - expected) / np.linalg.norm(expected))


def test_gauss_newton_matrix_and_products_match_the_hand_computed_jacobians():
    model, examples = _mlp()
    derivatives = LossDerivatives(model, select_scope(model, "all"), batch_size=16)
    expected = _hand_gauss_newton(model, examples.features.numpy())
    assert _relative(derivatives.hessian(examples, curvature="gauss-newton"), expected) <= 1e-5
    vector = np.random.default_rng(1).standard_normal(len(expected))
    product = derivatives.hvp(examples, tf.constant(vector, tf.float32), curvature="gauss-newton")
    assert _relative(product, expected @ vector) <= 1e-5
    # The test can fail: here the exact Hessian is not the Gauss-Newton matrix, and it is indefinite.
    exact = derivatives.hessian(examples, curvature="exact")
    assert _relative(exact, expected) > 1e-2
    assert np.linalg.eigvalsh(exact)[0] < -1e-4 < np.linalg.eigvalsh(expected)[0] + 1e-4


def test_gauss_newton_equals_the_exact_hessian_on_a_softmax_head():
    model, examples = _mlp()
    derivatives = LossDerivatives(model, select_scope(model, "head"), batch_size=16)
    exact = derivatives.hessian(examples, curvature="exact")
    assert _relative(derivatives.hessian(examples, curvature="gauss-newton"), exact) <= 1e-5


def test_influence_solves_with_gauss_newton_where_the_exact_hessian_is_indefinite(tmp_path):
    from keras_itl.datasets import Split

    model, examples = _mlp()
    # compute_influence takes images: 1x1x3 pixels that a Rescaling and a Reshape in front turn back into the features.
    inputs = keras.Input((1, 1, INPUTS))
    restored = keras.layers.Rescaling(1 / 40, offset=-128 / 40)(inputs)
    wrapped = keras.Model(inputs, model(keras.layers.Reshape((INPUTS,))(restored)))
    images = np.clip(np.rint(examples.features.numpy() * 40 + 128), 0, 255).astype(np.uint8).reshape(-1, 1, 1, INPUTS)
    split = Split(images, examples.labels, examples.ids)
    train, val = split.subset(np.arange(30)), split.subset(np.arange(30, EXAMPLES))

    def run(hessian: str):
        config = InfluenceConfig(scope="all", batch_size=16,
                                 solver=SolverOptions(solver="exact", hessian=hessian, damping=1e-3, damping_retries=0))
        return compute_influence(wrapped, train, val, config, verbose=False)

    with pytest.raises(Exception, match="not positive definite"):
        run("exact")
    result = run("gauss-newton")
    assert result.solver.hessian == "gauss-newton" and result.solver.residual < 1e-3
