"""Influence engine: exact/cg/lissa against a closed form, JVP against per-example gradients,
predictions against leave-one-out retraining, and mislabel detection."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from keras_itl.backbones import build_model
from keras_itl.datasets import Split
from keras_itl.errors import UserError
from keras_itl.influence import (
    InfluenceConfig,
    SolverError,
    SolverOptions,
    compute_influence,
    select_scope,
)
from keras_itl.influence.derivatives import LossDerivatives
from keras_itl.influence.features import image_examples
from keras_itl.influence.loo import check_leave_one_out
from keras_itl.influence.solvers import solve, solve_cg, solve_exact
from keras_itl.training import TrainConfig, make_strategy, train_model
from tests.helpers import bright_quadrant_split

SHAPE, CLASSES = (2, 2, 3), 3
FEATURES = int(np.prod(SHAPE))


def _feature_split(n: int, seed: int, flip: float = 0.0) -> Split:
    """Three noisy clusters of 12 uint8 features, stored as 2x2 RGB 'images'."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    centres = np.random.default_rng(99).uniform(40, 215, (CLASSES, FEATURES))
    features = np.clip(centres[labels] + rng.normal(0, 45, (n, FEATURES)), 0, 255).astype(np.uint8)
    flipped = rng.random(n) < flip
    labels = np.where(flipped, (labels + 1) % CLASSES, labels)
    return Split(images=features.reshape(n, *SHAPE), labels=labels.astype(np.int64),
                 ids=np.array([f"lr/{seed}/{i:03d}" for i in range(n)], dtype=object))


def _logistic_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax", name="head")(x))


def _closed_form_scores(model: keras.Model, train: Split, val: Split, damping: float) -> np.ndarray:
    """Softmax regression by hand: gradients x~ (p - y)^T, Hessian mean of kron(x~ x~^T, diag(p) - p p^T)."""
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("head").get_weights())

    def parts(split):
        x = np.hstack([split.images.reshape(len(split), -1) / 255.0, np.ones((len(split), 1))])
        logits = x @ np.vstack([kernel, bias])
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        residual = p - np.eye(CLASSES)[split.labels]
        return x, p, np.einsum("na,nc->nac", x, residual).reshape(len(split), -1)

    x, p, train_grads = parts(train)
    hessian = np.mean([np.kron(np.outer(xi, xi), np.diag(pi) - np.outer(pi, pi)) for xi, pi in zip(x, p)], axis=0)
    val_gradient = parts(val)[2].mean(axis=0)
    s = np.linalg.solve(hessian + damping * np.eye(len(hessian)), val_gradient)
    return train_grads @ s


# Session scope: the slow leave-one-out test runs apart from this module's other tests (slow tests go first),
# and a module fixture would be trained again when the rest of the module runs.
@pytest.fixture(scope="session")
def logistic():
    train, val = _feature_split(120, 0, flip=0.1), _feature_split(60, 1)
    strategy = make_strategy(["/cpu:0"])
    with strategy.scope():
        model = _logistic_model()
    train_model(model, train, None, TrainConfig(epochs=40, batch_size=120, learning_rate=0.05, lr_schedule="constant",
                                                patience=None), strategy=strategy, run_dir=_tmp("lr-train"),
                verbose=False)
    return model, train, val


def _tmp(name: str):
    import tempfile
    return tempfile.mkdtemp(prefix=f"keras-itl-{name}-")


def _influence(model, train, val, solver="exact", damping=0.01, batch_size=32, **options):
    config = InfluenceConfig(scope="head", solver=SolverOptions(solver=solver, damping=damping, **options),
                             batch_size=batch_size)
    return compute_influence(model, train, val, config, verbose=False)


def test_exact_scores_equal_the_closed_form(logistic):
    model, train, val = logistic
    expected = _closed_form_scores(model, train, val, damping=0.01)
    result = _influence(model, train, val, "exact")
    scale = np.abs(expected).max()
    np.testing.assert_allclose(result.table.scores, expected, atol=1e-3 * scale)
    np.testing.assert_allclose(result.table.predicted_delta_val_loss, expected / len(train), atol=1e-3 * scale / 120)
    assert result.solver.residual < 1e-4 and result.solver.min_eigenvalue > 0


@pytest.mark.parametrize("solver,options,tolerance", [
    ("cg", {"cg_tolerance": 1e-6}, 1e-3),
    ("lissa", {"lissa_scale": 2.0, "lissa_depth": 400}, 2e-2),
])
def test_iterative_solvers_agree_with_exact(logistic, solver, options, tolerance):
    model, train, val = logistic
    exact = _influence(model, train, val, "exact", damping=0.1).table.scores
    result = _influence(model, train, val, solver, damping=0.1, batch_size=len(train), **options)
    assert np.abs(result.table.scores - exact).max() <= tolerance * np.abs(exact).max()
    assert result.solver.converged
    assert result.solver.preconditioner == ("kronecker-low-rank" if solver == "cg" else None)  # the head's


def test_jvp_scores_equal_per_example_gradient_dot_products():
    model = build_model("small-cnn", 4, image_size=8, channels=1)
    split = bright_quadrant_split(12, size=8, seed=3)
    scope = select_scope(model, "all")
    derivatives = LossDerivatives(model, scope, batch_size=5)
    direction = tf.random.stateless_normal([scope.num_parameters], seed=[1, 2])
    examples = image_examples(model, split)
    _, jvp_scores, _ = (np.concatenate(parts) for parts in
                        zip(*derivatives.directional_derivatives(examples, direction)))
    explicit = []
    for i in range(len(split)):
        images, labels = next(iter(examples.subset([i]).batches(1)))
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(labels, model(images, training=False))[0]
        explicit.append(float(tf.reduce_sum(scope.flatten(tape.gradient(loss, scope.tf_variables)) * direction)))
    np.testing.assert_allclose(jvp_scores, explicit, rtol=1e-4, atol=1e-4 * np.abs(explicit).max())


@pytest.mark.slow
def test_predictions_correlate_with_leave_one_out_retraining(logistic):
    model, train, val = logistic
    config = InfluenceConfig(scope="head", solver=SolverOptions(solver="cg", damping=0.01, cg_tolerance=1e-6),
                             batch_size=120)
    result = compute_influence(model, train, val, config, verbose=False)
    before = [w.copy() for w in model.get_weights()]
    report = check_leave_one_out(model, train, val, result, 30, config, verbose=False)
    assert len(report.actual) == 30 and len(set(report.ids)) == 30
    assert report.pearson >= 0.9, report
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the check leaves the model as it found it


def test_flipped_labels_rank_as_most_harmful(tmp_path):
    rng = np.random.default_rng(0)
    clean = bright_quadrant_split(200, size=12, seed=11)
    flipped = rng.choice(200, 20, replace=False)
    labels = clean.labels.copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 4, 20)) % 4
    train = Split(clean.images, labels, clean.ids)
    val = bright_quadrant_split(80, size=12, seed=12, prefix="val")
    strategy = make_strategy(["/cpu:0"])
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model("small-cnn", 4, image_size=12, channels=1)
    train_model(model, train, val, TrainConfig(epochs=4, batch_size=32, patience=None), strategy=strategy,
                run_dir=tmp_path, verbose=False)
    result = compute_influence(model, train, val, InfluenceConfig(scope="head"), verbose=False)
    is_flipped = np.zeros(200, bool)
    is_flipped[flipped] = True
    auc = roc_auc_score(is_flipped, -result.table.predicted_delta_val_loss)
    assert auc >= 0.9, auc


def test_csv_has_one_row_per_training_id(logistic, tmp_path):
    model, train, val = logistic
    result = _influence(model, train, val, "cg")
    result.table.write_csv(tmp_path / "influence.csv", ["a", "b", "c"])
    rows = (tmp_path / "influence.csv").read_text().splitlines()
    assert rows[0] == "id,label,predicted_label,loss,score,predicted_delta_val_loss,dropped"
    assert [r.split(",")[0] for r in rows[1:]] == list(train.ids)
    order = result.table.harmful_order()
    assert np.all(np.diff(result.table.predicted_delta_val_loss[order]) >= 0)


def test_bad_inputs_are_clear_errors(logistic):
    model, train, val = logistic
    empty = val.subset([])
    with pytest.raises(UserError, match="validation split is empty"):
        _influence(model, train, empty)
    with pytest.raises(UserError, match="unknown solver"):
        SolverOptions(solver="newton")
    with pytest.raises(UserError, match="unknown scope"):
        select_scope(model, "middle")
    with pytest.raises(UserError, match="K must be positive"):
        select_scope(model, "top:0")
    linear = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(UserError, match="final Dense softmax"):
        select_scope(linear, "head")
    frozen = _logistic_model()
    frozen.trainable = False
    with pytest.raises(UserError, match="selects no trainable weights"):
        select_scope(frozen, "all")
    with pytest.raises(SolverError, match="did not converge in 1 iterations .relative residual"):
        _influence(model, train, val, "cg", cg_max_iterations=1, cg_tolerance=1e-12)
    with pytest.raises(SolverError, match="limited to"):
        select_and_exact = InfluenceConfig(scope="all", solver=SolverOptions(solver="exact"))
        compute_influence(build_model("small-cnn", 4, image_size=12, channels=1),
                          bright_quadrant_split(8), bright_quadrant_split(4, seed=1), select_and_exact, verbose=False)


def test_indefinite_systems_are_refused_not_solved():
    indefinite = np.diag([2.0, 1.0, -0.5])
    target = tf.constant([1.0, 1.0, 1.0])
    with pytest.raises(SolverError, match="not positive definite.*raise --damping above 0.5"):
        solve_exact(indefinite, target, damping=0.0)
    matrix = tf.constant(indefinite, tf.float32)
    with pytest.raises(SolverError, match="curvature"):
        solve_cg(lambda v: tf.linalg.matvec(matrix, v), target, 1e-6, 10)


def test_failed_solves_retry_with_ten_times_the_damping_when_allowed():
    indefinite = np.diag([2.0, 1.0, -0.5])  # H + damping*I is positive definite from damping 0.5 on
    target = tf.constant([1.0, 1.0, 1.0])
    matrix = tf.constant(indefinite, tf.float32)

    def product(vector):
        return tf.linalg.matvec(matrix, vector)

    def run(retries):
        heard = []
        solution, report = solve(SolverOptions(solver="cg", damping=0.01, damping_retries=retries), target,
                                 product, lambda v, rng: product(v), lambda: indefinite, 3, notify=heard.append)
        return solution, report, heard

    with pytest.raises(SolverError, match="curvature"):
        run(retries=1)  # 0.01 -> 0.1: still indefinite, and the last failure is what the caller sees
    solution, report, heard = run(retries=3)  # 0.01 -> 0.1 -> 1.0 solves
    assert report.damping == pytest.approx(1.0) and report.requested_damping == 0.01 and report.converged
    assert len(heard) == 2 and "retrying with damping 1" in heard[-1]
    np.testing.assert_allclose(solution.numpy(), 1 / (np.diag(indefinite) + 1.0), rtol=1e-5)
