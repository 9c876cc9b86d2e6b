"""The custom training loop: learns, is replica-count invariant, resumes exactly, stops on NaN."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_itl.backbones import build_model
from keras_itl.datasets import Split
from keras_itl.evaluation import evaluate_model
from keras_itl.errors import UserError
from keras_itl.training import TrainConfig, TrainingDiverged, make_strategy, train_model
from keras_itl.training import run_state
from tests.helpers import bright_quadrant_split


def _model(strategy, seed=0, init=None):
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = build_model("small-cnn", 4, image_size=12, channels=1)
    if init is not None:
        model.set_weights(init)
    return model


@pytest.fixture(scope="module")
def data():
    return bright_quadrant_split(96, seed=1), bright_quadrant_split(32, seed=2, prefix="val")


@pytest.fixture(scope="module")
def initial_weights():
    return _model(one_replica()).get_weights()


def one_replica():
    return make_strategy(["/cpu:0"])


def test_loss_decreases_and_model_learns(tmp_path, data, initial_weights):
    train, val = data
    strategy = one_replica()
    model = _model(strategy, init=initial_weights)
    result = train_model(model, train, val, TrainConfig(epochs=4, batch_size=16, learning_rate=3e-3),
                         strategy=strategy, run_dir=tmp_path, verbose=False)
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert result.history[-1]["val_accuracy"] > 0.9
    assert (tmp_path / "history-train.json").exists()
    assert list((tmp_path / "logs" / "train").iterdir())


def test_two_replicas_reach_the_same_weights_as_one(tmp_path, data, initial_weights):
    train, _ = data
    config = TrainConfig(epochs=2, batch_size=20, learning_rate=1e-3, patience=None)
    finals = []
    for devices in (["/cpu:0"], ["/cpu:0", "/cpu:1"]):
        strategy = make_strategy(devices)
        assert strategy.num_replicas_in_sync == len(devices)
        model = _model(strategy, init=initial_weights)
        train_model(model, train, None, config, strategy=strategy, run_dir=tmp_path / str(len(devices)),
                    verbose=False)
        finals.append(model.get_weights())
    moved = max(np.abs(a - b).max() for a, b in zip(finals[0], initial_weights))
    assert moved > 1e-3
    for one, two in zip(*finals):
        np.testing.assert_allclose(one, two, atol=2e-6, rtol=1e-5)


def test_a_last_batch_smaller_than_the_replica_count_is_left_out(tmp_path, initial_weights):
    strategy = make_strategy(["/cpu:0", "/cpu:1"])
    model = _model(strategy, init=initial_weights)
    train = bright_quadrant_split(33, seed=4)  # batches of 16, 16 and 1: the 1 cannot be split in two
    result = train_model(model, train, None, TrainConfig(epochs=2, batch_size=16), strategy=strategy,
                         run_dir=tmp_path, verbose=False)
    assert len(result.history) == 2
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_resume_after_a_crash_ends_with_the_same_weights(tmp_path, data, initial_weights, monkeypatch):
    train, val = data
    config = TrainConfig(epochs=4, batch_size=16, learning_rate=1e-3, patience=None)
    strategy = one_replica()
    uninterrupted = _model(strategy, init=initial_weights)
    train_model(uninterrupted, train, val, config, strategy=strategy, run_dir=tmp_path / "a", verbose=False)

    original = run_state.RunState.end_epoch

    def crash_after_second_epoch(self, record, improved):
        original(self, record, improved)
        if int(self.epoch.numpy()) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_state.RunState, "end_epoch", crash_after_second_epoch)
    crashed = _model(strategy, init=initial_weights)
    with pytest.raises(KeyboardInterrupt):
        train_model(crashed, train, val, config, strategy=strategy, run_dir=tmp_path / "b", verbose=False)
    monkeypatch.setattr(run_state.RunState, "end_epoch", original)

    with pytest.raises(UserError, match="--resume"):
        train_model(_model(strategy, init=initial_weights), train, val, config,
                    strategy=strategy, run_dir=tmp_path / "b", verbose=False)
    resumed = _model(strategy, seed=7)  # different init: everything must come from the checkpoint
    result = train_model(resumed, train, val, config, strategy=strategy, run_dir=tmp_path / "b",
                         resume=True, verbose=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    for a, b in zip(uninterrupted.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_early_stopping_restores_best_weights(tmp_path, data, initial_weights):
    train, _ = data
    # Validation labels unrelated to the images: the more the model learns, the worse it does there.
    unrelated = bright_quadrant_split(32, seed=3, prefix="val")
    val = Split(unrelated.images, np.random.default_rng(0).permutation(unrelated.labels), unrelated.ids)
    strategy = one_replica()
    model = _model(strategy, init=initial_weights)
    config = TrainConfig(epochs=12, batch_size=16, learning_rate=3e-3, lr_schedule="constant", patience=2)
    result = train_model(model, train, val, config, strategy=strategy, run_dir=tmp_path, verbose=False)
    assert result.stopped_early and len(result.history) < 12
    best = min(r["val_loss"] for r in result.history)
    assert result.history[result.best_epoch - 1]["val_loss"] == best
    assert evaluate_model(model, val).loss == pytest.approx(best, rel=1e-4)


def test_nan_loss_stops_with_a_clear_error(tmp_path, data, initial_weights):
    train, val = data
    strategy = one_replica()
    model = _model(strategy, init=initial_weights)
    head = model.get_layer("head")
    head.set_weights([np.full_like(w, np.nan) for w in head.get_weights()])
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 1 step 1"):
        train_model(model, train, val, TrainConfig(epochs=2, batch_size=16), strategy=strategy,
                    run_dir=tmp_path, verbose=False)


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", -1), ("optimizer", "rmsprop")])
def test_bad_config_is_a_user_error(field, value):
    with pytest.raises(UserError):
        TrainConfig(**{field: value})
