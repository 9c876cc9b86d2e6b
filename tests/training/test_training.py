"""The custom training loop: learns, is replica-count invariant, resumes exactly, stops on NaN."""
from __future__ import annotations

import gc
import weakref
from dataclasses import asdict, replace

import keras
import numpy as np
import pytest

from keras_itl.backbones import build_model
from keras_itl.datasets import Split
from keras_itl.errors import UserError
from keras_itl.evaluation import evaluate_model
from keras_itl.training import TrainConfig, TrainingDiverged, guard_run_options, make_strategy, run_state, train_model
from keras_itl.training.compiled_step import compiled_steps
from keras_itl.transfer import InstanceOptions, TransferConfig
from tests.helpers import bright_quadrant_split, crash_after_epoch


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


RESUMABLE = TrainConfig(epochs=4, batch_size=16, learning_rate=1e-3, patience=None)
EARLY_STOPPING = TrainConfig(epochs=12, batch_size=16, learning_rate=3e-3, lr_schedule="constant", patience=2)


def _unrelated_val() -> Split:
    """Validation labels unrelated to the images: the more the model learns, the worse it does there."""
    unrelated = bright_quadrant_split(32, seed=3, prefix="val")
    return Split(unrelated.images, np.random.default_rng(0).permutation(unrelated.labels), unrelated.ids)


@pytest.fixture(scope="module")
def uninterrupted(data, initial_weights, tmp_path_factory):
    """RESUMABLE trained without interruption: the model and its result, which the crash-and-resume runs must match."""
    train, val = data
    strategy = one_replica()
    model = _model(strategy, init=initial_weights)
    result = train_model(model, train, val, RESUMABLE, strategy=strategy, run_dir=tmp_path_factory.mktemp("a"),
                         verbose=False)
    return model, result


@pytest.fixture(scope="module")
def early_stopped(data, initial_weights, tmp_path_factory):
    """EARLY_STOPPING trained on ``data``'s training split against an unrelated validation split: model, result, val."""
    train, _ = data
    val = _unrelated_val()
    strategy = one_replica()
    model = _model(strategy, init=initial_weights)
    result = train_model(model, train, val, EARLY_STOPPING, strategy=strategy, run_dir=tmp_path_factory.mktemp("a"),
                         verbose=False)
    return model, result, val


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


@pytest.mark.parametrize(("optimizer", "schedule"), [("adam", "cosine"), ("sgd", "constant")])
def test_a_later_phase_reuses_the_traced_step_and_ends_like_a_fresh_optimizer(tmp_path, data, initial_weights,
                                                                              optimizer, schedule):
    """A phase on a model that trained before - on other data, another trainable set in between, at another
    constant rate - ends with the weights of a new model trained by that phase alone, to the last bit, and
    traces no new step. (A cosine schedule keeps a step per rate and length, so there the earlier phases
    share the later one's: 3 epochs of 4 steps.)"""
    train, _ = data
    strategy = one_replica()
    later = TrainConfig(epochs=3, batch_size=16, learning_rate=2e-3, optimizer=optimizer, lr_schedule=schedule,
                        patience=None, seed=5)
    earlier = replace(later, seed=6, learning_rate=later.learning_rate if schedule == "cosine" else 5e-3)
    subset, other = train.subset(np.arange(64)), train.subset(np.arange(32, 96))  # 4 steps an epoch each

    fresh = _model(strategy, init=initial_weights)
    train_model(fresh, subset, None, later, strategy=strategy, run_dir=tmp_path / "fresh", verbose=False)

    reused = _model(strategy, init=initial_weights)
    train_model(reused, other, None, earlier, strategy=strategy, run_dir=tmp_path / "1", verbose=False)
    reused.layers[-1].trainable = False  # another trainable set: its own step
    train_model(reused, other, None, earlier, strategy=strategy, run_dir=tmp_path / "2", verbose=False)
    reused.layers[-1].trainable = True
    reused.set_weights(initial_weights)
    train_model(reused, subset, None, later, strategy=strategy, run_dir=tmp_path / "3", verbose=False)

    for a, b in zip(fresh.get_weights(), reused.get_weights()):
        np.testing.assert_array_equal(a, b)
    steps = compiled_steps(reused)
    assert [step.experimental_get_tracing_count() for step in steps] == [1, 1]


def test_a_trained_model_is_garbage_collected_when_deleted(tmp_path, data, initial_weights):
    train, val = data
    strategy = one_replica()
    model = _model(strategy, init=initial_weights)
    train_model(model, train.subset(np.arange(32)), val, TrainConfig(epochs=1, batch_size=16), strategy=strategy,
                run_dir=tmp_path, verbose=False)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_last_batch_smaller_than_the_replica_count_is_left_out(tmp_path, initial_weights):
    strategy = make_strategy(["/cpu:0", "/cpu:1"])
    model = _model(strategy, init=initial_weights)
    train = bright_quadrant_split(33, seed=4)  # batches of 16, 16 and 1: the 1 cannot be split in two
    result = train_model(model, train, None, TrainConfig(epochs=2, batch_size=16), strategy=strategy,
                         run_dir=tmp_path, verbose=False)
    assert len(result.history) == 2
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_resume_after_a_crash_ends_with_the_same_weights(tmp_path, data, initial_weights, uninterrupted,
                                                          monkeypatch):
    train, val = data
    config = RESUMABLE
    strategy = one_replica()

    crashed = _model(strategy, init=initial_weights)
    with crash_after_epoch(monkeypatch, 2):
        train_model(crashed, train, val, config, strategy=strategy, run_dir=tmp_path / "b", verbose=False)

    with pytest.raises(UserError, match="--resume"):
        train_model(_model(strategy, init=initial_weights), train, val, config,
                    strategy=strategy, run_dir=tmp_path / "b", verbose=False)
    resumed = _model(strategy, seed=7)  # different init: everything must come from the checkpoint
    result = train_model(resumed, train, val, config, strategy=strategy, run_dir=tmp_path / "b",
                         resume=True, verbose=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    for a, b in zip(uninterrupted[0].get_weights(), resumed.get_weights()):  # (model, result)
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_early_stopping_restores_best_weights(early_stopped):
    model, result, val = early_stopped
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


def _crash_at_epoch(monkeypatch, epoch: int, when: str = "after_checkpoint"):
    """Make training die once ``epoch`` is checkpointed (``when``: after the checkpoint, or before its history copy)."""
    original = run_state.RunState.end_epoch
    original_write = run_state.Path.write_text

    def end_epoch(self, record, improved):
        if when == "before_history_copy" and len(self.history) + 1 == epoch:
            def crash(path, *args, **kwargs):
                if path.name.startswith("history-"):
                    raise KeyboardInterrupt
                return original_write(path, *args, **kwargs)
            monkeypatch.setattr(run_state.Path, "write_text", crash)
        original(self, record, improved)
        if int(self.epoch.numpy()) == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_state.RunState, "end_epoch", end_epoch)
    return lambda: monkeypatch.undo()


def test_resume_refuses_changed_loop_settings(tmp_path, data, initial_weights, monkeypatch):
    train, val = data
    strategy = one_replica()
    config = TrainConfig(epochs=3, batch_size=16, learning_rate=1e-3)
    undo = _crash_at_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train_model(_model(strategy, init=initial_weights), train, val, config, strategy=strategy,
                    run_dir=tmp_path, verbose=False)
    undo()
    for change, flag in [({"learning_rate": 2e-3}, "--lr"), ({"batch_size": 8}, "--batch-size"),
                         ({"seed": 1}, "--seed"), ({"epochs": 5}, "--epochs")]:
        refused = f"cannot resume train: {flag} is .* but the checkpointed run used"
        with pytest.raises(UserError, match=refused) as error:
            train_model(_model(strategy, init=initial_weights), train, val, replace(config, **change),
                        strategy=strategy, run_dir=tmp_path, resume=True, verbose=False)
        assert "\n" not in str(error.value)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, data, initial_weights, uninterrupted,
                                                                   monkeypatch, capsys):
    train, val = data
    config = RESUMABLE
    strategy = one_replica()
    reference, expected = uninterrupted
    undo = _crash_at_epoch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train_model(_model(strategy, init=initial_weights), train, val, config, strategy=strategy,
                    run_dir=tmp_path / "b", verbose=False)
    undo()
    checkpoints = tmp_path / "b" / "checkpoints" / "train"
    data_file = next(checkpoints.glob("ckpt-3.data-*"))
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])  # truncated mid-write

    resumed = _model(strategy, seed=7)
    result = train_model(resumed, train, val, config, strategy=strategy, run_dir=tmp_path / "b", resume=True,
                         verbose=False)
    warning = capsys.readouterr().err
    assert f"checkpoint {checkpoints / 'ckpt-3'} is unreadable" in warning
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == expected.best_epoch
    for a, b in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)

    for index in checkpoints.glob("ckpt-*.index"):
        index.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="no intact checkpoint to resume in .*ckpt-4, ckpt-3 are all unreadable"):
        train_model(_model(strategy), train, val, config, strategy=strategy, run_dir=tmp_path / "b", resume=True,
                    verbose=False)


def test_a_crash_between_checkpoint_and_history_loses_nothing(tmp_path, data, initial_weights, early_stopped,
                                                               monkeypatch):
    train, _ = data
    _, expected, val = early_stopped  # learning makes validation worse: early stop
    config = EARLY_STOPPING
    strategy = one_replica()
    assert expected.stopped_early and expected.best_epoch < len(expected.history)
    undo = _crash_at_epoch(monkeypatch, len(expected.history), when="before_history_copy")
    with pytest.raises(KeyboardInterrupt):
        train_model(_model(strategy, init=initial_weights), train, val, config, strategy=strategy,
                    run_dir=tmp_path / "b", verbose=False)
    undo()
    resumed = train_model(_model(strategy, seed=7), train, val, config, strategy=strategy, run_dir=tmp_path / "b",
                          resume=True, verbose=False)
    assert (resumed.best_epoch, resumed.stopped_early) == (expected.best_epoch, expected.stopped_early)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in expected.history]


RUN_OPTION_CHANGES = [
    ({"seed": 1}, "--seed"), ({"val_fraction": 0.2}, "--val-fraction"), ({"target": "mnist-5k"}, "--target"),
    ({"label_noise": 0.2}, "--label-noise"), ({"imbalance": "0:0.9"}, "--imbalance"), ({"arch": "vgg16"}, "--arch"),
    ({"learning_rate": 0.01}, "--lr"), ({"batch_size": 64}, "--batch-size"), ({"epochs": 20}, "--epochs"),
    ({"max_train_examples": 100}, "--max-train-examples"), ({"method": "instance"}, "--method"),
    ({"instance": InstanceOptions(start="warmup")}, "--instance-start"),
    ({"target_labels": "5"}, "--target-labels"),
]


@pytest.mark.parametrize("change,flag", RUN_OPTION_CHANGES, ids=[flag for _, flag in RUN_OPTION_CHANGES])
def test_resume_refuses_any_changed_run_option(tmp_path, change, flag):
    original = TransferConfig(target="digits", source="mnist-5k", method="model")
    guard_run_options(tmp_path, asdict(replace(original, **change)), resume=True)  # nothing trained yet: any change
    guard_run_options(tmp_path, asdict(original), resume=True)
    (tmp_path / "checkpoints" / "head").mkdir(parents=True)
    (tmp_path / "checkpoints" / "head" / "ckpt-1.index").write_bytes(b"")
    guard_run_options(tmp_path, asdict(replace(original, data_dir="/elsewhere")), resume=True)  # location only
    with pytest.raises(UserError, match=f"cannot resume {tmp_path}: {flag} is .* but the checkpointed run used") \
            as error:
        guard_run_options(tmp_path, asdict(replace(original, **change)), resume=True)
    assert "\n" not in str(error.value)
    print(error.value)


def test_a_run_recorded_before_an_option_existed_resumes_at_its_default_only(tmp_path):
    original = asdict(TransferConfig(target="digits", source="mnist-5k", method="model"))
    older = {name: value for name, value in original.items() if name != "target_labels"}
    guard_run_options(tmp_path, older, resume=False)
    (tmp_path / "checkpoints" / "head").mkdir(parents=True)
    (tmp_path / "checkpoints" / "head" / "ckpt-1.index").write_bytes(b"")
    guard_run_options(tmp_path, original, resume=True)  # the older run read every target label
    with pytest.raises(UserError, match="--target-labels is 5 but the checkpointed run used all"):
        guard_run_options(tmp_path, {**original, "target_labels": "5"}, resume=True)


def test_a_fresh_run_refuses_a_checkpointed_output(tmp_path):
    options = asdict(TransferConfig(target="digits", method="scratch"))
    guard_run_options(tmp_path, options, resume=False)
    (tmp_path / "checkpoints" / "scratch").mkdir(parents=True)
    (tmp_path / "checkpoints" / "scratch" / "ckpt-1.index").write_bytes(b"")
    with pytest.raises(UserError, match="already holds a checkpointed run; pass --resume"):
        guard_run_options(tmp_path, options, resume=False)


def test_cli_resume_with_a_changed_option_is_refused_in_one_line(tmp_path):
    from click.testing import CliRunner

    from keras_itl.cli.main import main

    args = ["train", "--target", "digits", "--epochs", "2", "--image-size", "12", "--max-train-examples", "60",
            "--quiet", "--output", str(tmp_path)]
    assert CliRunner().invoke(main, args).exit_code == 0
    for change, message in [(["--seed", "3"], "--seed is 3 but the checkpointed run used 0"),
                            (["--lr", "0.01"], "--lr is 0.01 but the checkpointed run used 0.001"),
                            (["--val-fraction", "0.2"], "--val-fraction is 0.2 but the checkpointed run used 0.1")]:
        result = CliRunner().invoke(main, [*args, "--resume", *change])
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert message in result.output and result.output.startswith("Error: cannot resume")
        print(result.output.strip())
    assert CliRunner().invoke(main, [*args, "--resume"]).exit_code == 0
