"""The frozen part computed once: cuts on chains and DAGs, cached activations against the uncached
path, the memory-mapped cache, saved solutions, honest solvers and error hints that name real options."""
from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from keras_itl.backbones import build_model
from keras_itl.cli.main import main
from keras_itl.datasets import Split
from keras_itl.errors import UserError
from keras_itl.influence import (
    InfluenceConfig,
    SolverError,
    SolverOptions,
    compute_influence,
    frozen_features,
    prepare_features,
)
from keras_itl.influence.cut import PointwiseConv
from keras_itl.influence.loo import check_leave_one_out
from keras_itl.influence.store import SOLUTION_FILE
from tests.helpers import bright_quadrant_split

SIZE = 12


def _noisy(split: Split, every: int = 5) -> Split:
    """Every ``every``-th label moved to the next class, so the loss has something to say."""
    flip = np.arange(len(split)) % every == 0
    return split.with_labels(np.where(flip, (split.labels + 1) % 4, split.labels))


@pytest.fixture(scope="module")
def data():
    return (_noisy(bright_quadrant_split(160, size=SIZE, seed=1)),
            bright_quadrant_split(40, size=SIZE, seed=2, prefix="val"))


@pytest.fixture(scope="module")
def small_cnn(data):
    keras.utils.set_random_seed(0)
    model = build_model("small-cnn", 4, image_size=SIZE, channels=1)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(data[0].images.astype("float32"), data[0].labels, epochs=2, batch_size=32, verbose=0)
    return model


def _tiny_resnet(seed: int = 0) -> keras.Model:
    """A ResNet-style DAG: stem, two residual blocks (one with a projection shortcut), pooled softmax head.

    The blocks sit inside a nested 'backbone' model, as in keras_itl.backbones.
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    for block, filters in ((1, 8), (2, 12)):
        shortcut = x if filters == 8 else layers.Conv2D(filters, 1, name=f"block{block}_project")(x)
        y = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv1")(x)
        y = layers.BatchNormalization(name=f"block{block}_bn")(y)
        y = layers.Conv2D(filters, 3, padding="same", name=f"block{block}_conv2")(y)
        x = layers.Activation("relu", name=f"block{block}_out")(layers.Add(name=f"block{block}_add")([shortcut, y]))
    backbone = keras.Model(inputs, layers.GlobalAveragePooling2D(name="pool")(x), name="backbone")
    outer = keras.Input((SIZE, SIZE, 1))
    probabilities = layers.Dense(4, activation="softmax", name="head")(backbone(layers.Rescaling(1 / 255)(outer)))
    return keras.Model(outer, probabilities)


@pytest.fixture(scope="module")
def tiny_resnet(data):
    model = _tiny_resnet()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(data[0].images.astype("float32"), data[0].labels, epochs=3, batch_size=32, verbose=0)
    return model


def _config(scope: str, **options) -> InfluenceConfig:
    solver = {"solver": "cg", "damping": 0.1, "cg_tolerance": 1e-7, "cg_max_iterations": 500, **options}
    return InfluenceConfig(scope=scope, solver=SolverOptions(**solver), batch_size=32)


def _uncached(model, train, val, config):
    """Today's path: the whole model on images for every pass."""
    features = frozen_features(model, config.scope, {"train": train, "val": val}, batch_size=32, freeze=False)
    return compute_influence(model, train, val, config, features=features, verbose=False)


def _assert_same(result, reference, rtol=1e-5):
    scale = np.abs(reference.table.scores).max()
    assert np.abs(result.table.scores - reference.table.scores).max() <= rtol * scale
    assert result.val_loss == pytest.approx(reference.val_loss, rel=rtol)
    np.testing.assert_allclose(result.table.losses, reference.table.losses, rtol=rtol, atol=1e-6)
    np.testing.assert_array_equal(result.table.predicted_labels, reference.table.predicted_labels)
    assert result.solver.damping == reference.solver.damping


@pytest.mark.parametrize("scope", ["head", "top:3"])
def test_cached_activations_give_the_uncached_numbers_on_small_cnn(small_cnn, data, scope):
    train, val = data
    config = _config(scope, damping=1.0)
    reference = _uncached(small_cnn, train, val, config)
    result = compute_influence(small_cnn, train, val, config, verbose=False)
    assert reference.frozen["after_layer"] is None and result.frozen["after_layer"] is not None
    assert result.frozen["storage"] == "memory" and result.frozen["at_scope_boundary"]
    _assert_same(result, reference)


def test_dag_cuts_only_at_block_boundaries_and_gives_the_uncached_numbers(tiny_resnet, data):
    train, val = data
    # top:2 = head + block2_conv2: inside block 2 the shortcut still carries block1_out, so the
    # nearest cut below is block1_out and block 2's first layers run in the trainable part too.
    config = _config("top:2", damping_retries=3)
    result = compute_influence(tiny_resnet, train, val, config, verbose=False)
    assert result.frozen["after_layer"] == "block1_out" and not result.frozen["at_scope_boundary"]
    assert {"block2_conv1", "block2_bn"} <= set(result.frozen["recomputed_layers"])
    _assert_same(result, _uncached(tiny_resnet, train, val, _config("top:2", damping=result.solver.damping)))
    head = compute_influence(tiny_resnet, train, val, _config("head"), verbose=False)
    assert head.frozen["after_layer"] == "pool" and head.frozen["at_scope_boundary"]
    _assert_same(head, _uncached(tiny_resnet, train, val, _config("head")))


def _pointwise_block_model() -> keras.Model:
    """A stem pooled to 1x1 spatial, then a bottleneck block (1x1, 3x3 with a 2x2 stride, 1x1 convolutions, batch
    norm, shortcut) and a softmax head: ResNet50's last block at 32 px in miniature."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 1))
    stem = layers.Conv2D(6, 3, padding="same", activation="relu", name="stem")(layers.Rescaling(1 / 255)(inputs))
    x = layers.AveragePooling2D(SIZE, name="to_1x1")(stem)
    y = layers.Conv2D(5, 1, name="reduce")(x)
    y = layers.Activation("relu")(layers.BatchNormalization(name="reduce_bn")(y))
    y = layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="spatial")(y)
    y = layers.Conv2D(6, 1, use_bias=False, name="expand")(y)
    x = layers.Activation("relu", name="block_out")(layers.Add()([x, y]))
    return keras.Model(inputs, layers.Dense(4, activation="softmax", name="head")(layers.Flatten()(x)))


def test_convolutions_at_1x1_spatial_run_as_matrix_products_with_the_same_numbers(data):
    """Cut above the stem, the block's convolutions see 1x1 inputs and run as matrix products (PointwiseConv):
    Gauss-Newton products and influence equal the whole model's, and the 3x3 kernel's off-centre taps get zero."""
    train, val = data
    model = _pointwise_block_model()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(train.images.astype("float32"), train.labels, epochs=3, batch_size=32, verbose=0)
    features = frozen_features(model, "top:4", {"train": train})
    assert features.cut.after_layer == "to_1x1"
    assert {layer.name for layer in features.trainable.layers if isinstance(layer, PointwiseConv)} == {
        "reduce_pointwise", "spatial_pointwise", "expand_pointwise"}
    whole = frozen_features(model, "top:4", {"train": train}, freeze=False)
    vector = tf.constant(np.random.default_rng(0).standard_normal(features.scope.num_parameters), tf.float32)
    products = [part.derivatives(32).hvp(part.splits["train"], vector, curvature="gauss-newton").numpy()
                for part in (features, whole)]
    assert np.abs(products[0] - products[1]).max() <= 1e-5 * np.abs(products[1]).max()
    spatial = features.scope.unflatten(tf.constant(products[0]))[[v.path for v in features.scope.variables].index(
        "spatial/kernel")].numpy()
    assert np.abs(spatial[1, 1]).max() > 0 and np.abs(spatial).sum() == np.abs(spatial[1, 1]).sum()
    config = _config("top:4", damping_retries=3)
    result = compute_influence(model, train, val, config, verbose=False)
    _assert_same(result, _uncached(model, train, val, _config("top:4", damping=result.solver.damping)))


def test_frozen_and_trainable_parts_compose_to_the_model(tiny_resnet, data):
    images = data[1].images[:8].astype("float32")
    for scope in ("head", "top:2", "top:5"):
        cut = frozen_features(tiny_resnet, scope, {}).cut
        composed = cut.trainable(cut.frozen(images, training=False), training=False)
        np.testing.assert_allclose(composed, tiny_resnet(images, training=False), rtol=1e-5, atol=1e-6)
        trainable_weights = {id(w) for w in cut.trainable.weights}
        assert all(id(w) in trainable_weights for w in tiny_resnet.get_layer("head").weights)  # shared, not copied


def test_after_the_features_nothing_below_the_cut_is_run_again(small_cnn, data):
    """Solve, scores and the LOO check give the same numbers with the frozen layers' weights wrecked."""
    train, val = data
    config = _config("head", damping=1.0)
    features = prepare_features(small_cnn, train, val, config)
    reference = compute_influence(small_cnn, train, val, config, features=features, verbose=False)
    reference_loo = check_leave_one_out(small_cnn, train, val, reference, 3, config, features=features,
                                        verbose=False)
    backbone = small_cnn.get_layer("backbone")
    saved = backbone.get_weights()
    try:
        backbone.set_weights([np.full_like(w, 7.0) for w in saved])
        result = compute_influence(small_cnn, train, val, config, features=features, verbose=False)
        loo = check_leave_one_out(small_cnn, train, val, result, 3, config, features=features, verbose=False)
    finally:
        backbone.set_weights(saved)
    np.testing.assert_array_equal(result.table.scores, reference.table.scores)
    np.testing.assert_allclose(loo.actual, reference_loo.actual, rtol=1e-6)


def test_memory_mapped_cache_gives_the_same_numbers_and_leaves_no_files(small_cnn, data, tmp_path):
    train, val = data
    in_memory = compute_influence(small_cnn, train, val, _config("top:3", damping=1.0), verbose=False)
    config = InfluenceConfig(scope="top:3", solver=SolverOptions(solver="cg", damping=1.0, cg_tolerance=1e-7),
                             batch_size=32, cache_dir=str(tmp_path / "cache"), memory_limit_mb=0.0)
    features = prepare_features(small_cnn, train, val, config)
    assert features.splits["train"].memory_mapped and features.describe()["storage"] == "memory-mapped"
    assert list((tmp_path / "cache").iterdir()) == []  # mapped, then unlinked
    result = compute_influence(small_cnn, train, val, config, features=features, verbose=False)
    _assert_same(result, in_memory, rtol=1e-6)


def test_saved_solution_is_reused_only_for_the_same_model_scope_settings_and_data(small_cnn, data, tmp_path):
    train, val = data
    path = tmp_path / SOLUTION_FILE
    first = compute_influence(small_cnn, train, val, _config("head"), solution_path=path, verbose=False)
    again = compute_influence(small_cnn, train, val, _config("head"), solution_path=path, verbose=False)
    assert not first.solver.reused and again.solver.reused and path.exists()
    np.testing.assert_array_equal(again.table.scores, first.table.scores)
    assert again.solver.iterations == first.solver.iterations
    other_damping = compute_influence(small_cnn, train, val, _config("head", damping=0.5), solution_path=path,
                                      verbose=False)
    assert not other_damping.solver.reused
    fewer = compute_influence(small_cnn, train.subset(np.arange(150)), val, _config("head", damping=0.5),
                              solution_path=path, verbose=False)
    assert not fewer.solver.reused
    head = small_cnn.get_layer("head")
    saved = head.get_weights()
    try:
        head.set_weights([w * 1.01 for w in saved])
        assert not compute_influence(small_cnn, train, val, _config("head", damping=0.5), solution_path=path,
                                     verbose=False).solver.reused
    finally:
        head.set_weights(saved)


def test_unconverged_lissa_fails_instead_of_returning_a_wrong_answer(small_cnn, data):
    train, val = data
    with pytest.raises(SolverError, match="lissa did not converge.*--lissa-depth"):
        compute_influence(small_cnn, train, val, _config("head", solver="lissa", lissa_depth=3, damping_retries=0),
                          verbose=False)
    converged = compute_influence(small_cnn, train, val, _config("head", solver="lissa", damping=1.0,
                                                                 lissa_scale=5.0, lissa_depth=200), verbose=False)
    assert converged.solver.residual <= 1e-2


def test_zero_validation_gradient_has_its_own_message(data):
    train, val = data
    model = _tiny_resnet()
    kernel = model.get_layer("head").get_weights()[0]
    model.get_layer("head").set_weights([np.zeros_like(kernel), np.array([200.0, 0, 0, 0], np.float32)])
    certain = Split(val.images, np.zeros(len(val), np.int64), val.ids)  # predicted class 0 with p = 1.0 exactly
    with pytest.raises(UserError, match="zero gradient over the head scope"):
        compute_influence(model, train, certain, _config("head"), verbose=False)


def test_every_option_an_error_names_exists():
    commands = {name: {opt for param in command.params for opt in param.opts}
                for name, command in main.commands.items()}
    # the engine, and the workflow of `keras-itl influence` above it
    sources = [*Path("keras_itl/influence").glob("*.py"), Path("keras_itl/inspection.py")]
    named = {option for source in sources for option in re.findall(r"--[a-z][a-z-]+", source.read_text())}
    assert "--cg-max-iterations" in named and "--lissa-depth" in named
    known = set().union(*commands.values(), {"--help"})  # click gives every command --help
    assert not named - known, named - known
    solver_named = {option for option in named if option.startswith(("--cg", "--lissa", "--damping", "--solver"))}
    assert solver_named <= commands["influence"] and solver_named <= commands["train"]


@pytest.mark.slow
def test_influence_command_reuses_its_saved_solution(tmp_path):
    keras.utils.set_random_seed(0)
    build_model("small-cnn", 10, image_size=8, channels=1).save(tmp_path / "model.keras")
    args = ["influence", "--model", str(tmp_path / "model.keras"), "--target", "digits", "--output",
            str(tmp_path / "out"), "--quiet", "--damping", "0.1", "--lissa-depth", "50"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "reused" not in first.output and (tmp_path / "out" / SOLUTION_FILE).exists()
    scores = (tmp_path / "out" / "influence.csv").read_text()
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "saved solution reused" in second.output, second.output
    assert (tmp_path / "out" / "influence.csv").read_text() == scores
