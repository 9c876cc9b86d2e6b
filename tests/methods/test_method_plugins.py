"""Transfer methods are plug-ins: a method registered by name is a CLI choice, an experiment row and what
run_transfer trains with (never model-based in disguise); its loss hook reaches the training step."""
from __future__ import annotations

import importlib
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

import keras_itl.methods
from keras_itl.backbones import build_model
from keras_itl.errors import UserError
from keras_itl.experiment import train_command
from keras_itl.methods import Method, MethodOutcome, all_methods, method_names
from keras_itl.options import OPTIONS, Option, from_record
from keras_itl.presets import PRESETS
from keras_itl.training import TrainConfig, make_strategy, train_model
from keras_itl.transfer import TransferConfig
from tests.helpers import bright_quadrant_split

PENALTY = 1.0


def kernel_penalty(model, images, labels, probs):
    """A large L2 term on every kernel: training under it must end with smaller kernels."""
    return PENALTY * tf.add_n([tf.reduce_sum(tf.square(w)) for w in model.trainable_weights if "kernel" in w.path])


def zero_term(model, images, labels, probs):
    return tf.zeros(())


def _trained_weights(tmp_path, loss_term, name):
    strategy = make_strategy(["/cpu:0"])
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model("small-cnn", 4, image_size=12, channels=1)
    train_model(model, bright_quadrant_split(64, seed=1), None, TrainConfig(epochs=2, batch_size=16, patience=None),
                strategy=strategy, run_dir=tmp_path / name, verbose=False, loss_term=loss_term)
    return model


def test_the_loss_hook_changes_training_and_a_zero_term_changes_nothing(tmp_path):
    plain = _trained_weights(tmp_path, None, "plain")
    zero = _trained_weights(tmp_path, zero_term, "zero")
    penalised = _trained_weights(tmp_path, kernel_penalty, "penalised")
    for a, b in zip(plain.get_weights(), zero.get_weights()):
        np.testing.assert_array_equal(a, b)

    def kernel_norm(model):
        return sum(float(np.sum(np.square(w.numpy()))) for w in model.trainable_weights if "kernel" in w.path)

    assert kernel_norm(penalised) < 0.9 * kernel_norm(plain)


@pytest.fixture
def head_only_method():
    """A method registered as a plug-in module would register it: trains the head alone, with the loss hook."""
    calls = []

    def fit(inputs):
        calls.append((inputs.config.method, inputs.config.method_options))
        backbone = inputs.model.get_layer("backbone")
        backbone.trainable = False
        phase = train_model(inputs.model, inputs.data.split("train"), inputs.data.split("val"),
                            inputs.config.train_config(), strategy=inputs.strategy, run_dir=inputs.run_dir,
                            name="head-only", resume=inputs.resume, verbose=inputs.verbose, loss_term=zero_term)
        return MethodOutcome([phase])

    penalty = Option("head_penalty", "--head-penalty", 0.0, "head-only: weight of an L2 term.", kind="float")
    method = keras_itl.methods.register(Method(name="head-only", help="train the new head alone", fit=fit,
                                               position=50, options=(penalty,)))
    yield calls
    del keras_itl.methods._METHODS[method.name]
    del OPTIONS["head_penalty"]
    importlib.reload(importlib.import_module("keras_itl.cli.main"))  # declare the CLI again without the method


def test_a_registered_method_is_a_cli_choice_and_run_transfer_trains_with_it(head_only_method, tmp_path):
    assert method_names() == ("scratch", "model", "instance", "coral", "mmd", "dann", "head-only")  # by position
    main = importlib.reload(importlib.import_module("keras_itl.cli.main")).main
    help_text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    assert "head-only: train the new head alone" in help_text and "--head-penalty FLOAT head-only:" in help_text
    args = ["train", "--target", "digits", "--source", "mnist-5k", "--image-size", "12", "--source-epochs", "1",
            "--epochs", "1", "--max-train-examples", "60", "--quiet", "--output", str(tmp_path)]
    refused = CliRunner().invoke(main, [*args, "--head-penalty", "0.5"])  # model-based: not its option
    assert refused.exit_code == 1
    assert refused.output.strip() == "Error: --head-penalty is an option of --method head-only, not model"
    result = CliRunner().invoke(main, [*args, "--method", "head-only", "--head-penalty", "0.5"])
    assert result.exit_code == 0, result.output
    assert head_only_method == [("head-only", {"head_penalty": 0.5})]
    run = json.loads((tmp_path / "run.json").read_text())
    assert [phase["name"] for phase in run["phases"]] == ["head-only"]
    assert run["config"]["method"] == "head-only" and run["fine_tuning"] is None
    config = from_record(TransferConfig, run["config"])
    assert config.method_options == {"head_penalty": 0.5}
    assert train_command(config, tmp_path).split()[-4:-2] == ["--head-penalty", "0.5"]  # what --dry-run prints
    assert TransferConfig(target="digits", source="mnist-5k", method="head-only").method_options == \
        {"head_penalty": 0.0}


def test_presets_and_the_experiment_take_their_methods_from_the_registry(head_only_method):
    assert PRESETS["digits"].methods == ("scratch", "model", "instance")  # declared before the test's method
    assert PRESETS["cifar10"].paper_error("vgg16", "head-only") is None
    assert PRESETS["cifar10"].paper_error("vgg16", "instance[influence]") == 5.01
    assert "head-only" in all_methods()


def test_an_unknown_method_or_method_option_is_an_error_never_a_fallback():
    with pytest.raises(UserError, match="'penalty' is not an option of any method"):
        TransferConfig(target="digits", source="mnist-5k", method_options={"penalty": 1.0})
    with pytest.raises(UserError, match="unknown method 'distill'; choose one of: scratch, model, instance"):
        TransferConfig(target="digits", source="mnist-5k", method="distill")
