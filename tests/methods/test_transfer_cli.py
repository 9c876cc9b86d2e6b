"""Transfer methods through the Python API and the CLI, on the real offline digits data."""
from __future__ import annotations

import json
import re
import shutil

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from keras_itl.backbones import BACKBONE_NAME, build_model
from keras_itl.cli.main import main
from keras_itl.datasets import load_dataset
from keras_itl.pretrained import cache_dir, pretrain_on_dataset
from keras_itl.run_record import RunRecord
from keras_itl.training import make_strategy
from keras_itl.transfer import TransferConfig, freeze_for_fine_tuning, run_transfer

SMALL = ["--arch", "small-cnn", "--image-size", "16", "--max-train-examples", "200", "--batch-size", "32",
         "--quiet"]


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


TRAIN = ["train", "--target", "digits", "--epochs", 2, "--seed", 3, *SMALL]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``keras-itl train`` TRAIN into ``<root>/run``, exported as ``digits`` under ``<root>/saved``: (root, its output).

    Tests that write into the run take a copy."""
    root = tmp_path_factory.mktemp("cli-train")
    trained = _invoke(*TRAIN, "--output", root / "run", "--export", "digits", "--export-base", root / "saved")
    assert trained.exit_code == 0, trained.output
    return root, trained.output


def test_scratch_run_writes_model_metrics_and_plots(trained_digits_run):
    """The suite's trained digits run (`keras-itl train`: run_transfer from scratch): its files and test metrics."""
    run = trained_digits_run / "run"
    for name in ("model.keras", "run.json", "metrics-test.json", "confusion-test.png", "training_curves.png",
                 "history-scratch.json"):
        assert (run / name).exists(), name
    record = RunRecord.read(run)
    assert record.config["method"] == "scratch"
    saved = json.loads((run / "metrics-test.json").read_text())
    assert saved["accuracy"] == pytest.approx(record.test["accuracy"])
    assert record.test["error_rate"] < 0.5  # 10 classes: chance is 0.9


@pytest.mark.slow
def test_model_based_transfer_starts_from_the_cached_source_backbone(tmp_path):
    # With the backbone frozen in the head phase and no fine-tuning budget for it, the transferred
    # backbone must be exactly the source's.
    config = TransferConfig(target="digits", source="mnist-5k", method="model", image_size=16, epochs=1,
                            head_epochs=1, source_epochs=1, max_train_examples=200, fine_tune_layers=1,
                            fine_tune_lr_factor=1e-12)
    # Pretrained first, as the transfer would (a transfer that pretrains itself is every experiment's model row):
    # the transfer must find it in the cache rather than train another.
    pretrained = pretrain_on_dataset("mnist-5k", "small-cnn", image_size=16, channels=1,
                                     config=config.train_config(epochs=config.source_epochs), strategy=make_strategy(),
                                     verbose=False)
    cached = list(cache_dir().glob("small-cnn-mnist-5k-16px-seed0-*.keras"))
    assert cached == [pretrained]
    written = pretrained.stat().st_mtime_ns
    source_backbone = keras.saving.load_model(pretrained).get_layer(BACKBONE_NAME).get_weights()
    result = run_transfer(config, tmp_path, verbose=False)
    assert list(cache_dir().glob("small-cnn-mnist-5k-16px-seed0-*.keras")) == cached
    assert pretrained.stat().st_mtime_ns == written
    kept = keras.saving.load_model(tmp_path / "model.keras").get_layer(BACKBONE_NAME).get_weights()
    for a, b in zip(source_backbone[:-2], kept[:-2]):  # all but the top (unfrozen) layer
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in result.phases] == ["head", "finetune"]
    assert result.test.error_rate < 0.5


def test_fine_tuning_keeps_batch_norm_in_inference_mode():
    backbone = build_model("resnet50", 3, image_size=32).get_layer(BACKBONE_NAME)
    freeze_for_fine_tuning(backbone, top_layers=10)
    batch_norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)
    trainable = [layer for layer in backbone.layers if layer.trainable and layer.weights]
    assert trainable and all(backbone.layers.index(layer) >= len(backbone.layers) - 10 for layer in trainable)


def test_cli_train_then_evaluate_matches_an_independent_count(cli_run, tmp_path):
    root, output = cli_run
    out = root / "run"
    assert re.search(r"test error rate \d+\.\d\d%", output)
    assert (root / "saved" / "digits" / "1" / "saved_model.pb").exists()
    assert str(root / "saved" / "digits" / "1") in output

    evaluated = _invoke("evaluate", "--model", out, "--output", tmp_path / "eval")
    assert evaluated.exit_code == 0, evaluated.output
    printed = float(re.search(r"accuracy (\d+\.\d\d)%", evaluated.output).group(1)) / 100

    model = keras.saving.load_model(out / "model.keras")
    test = load_dataset("digits", seed=3).split("test")
    images = np.asarray(keras.ops.image.resize(test.images.astype("float32"), (16, 16)))
    expected = float(np.mean(np.argmax(model.predict(images, verbose=0), axis=1) == test.labels))
    assert printed == pytest.approx(expected, abs=0.006)  # printed with two decimals
    saved = json.loads((tmp_path / "eval" / "metrics-test.json").read_text())
    assert saved["accuracy"] == pytest.approx(expected, abs=1e-9)
    assert (tmp_path / "eval" / "confusion-test.png").stat().st_size > 1000
    assert "per-class accuracy" in evaluated.output


@pytest.mark.parametrize("args,message", [
    (["--target", "no-such-data"], "digits"),
    (["--target", "digits", "--arch", "alexnet"], "small-cnn"),
    (["--target", "digits", "--epochs", "0"], "must be positive"),
    (["--target", "digits", "--batch-size", "-4"], "must be positive"),
    (["--target", "digits", "--method", "model"], "--source"),
    (["--target", "digits", "--imbalance", "42:0.9"], "42"),
    (["--target", "folder:/no/such/folder"], "/no/such/folder"),
    (["--target", "digits", "--export", "../escape"], "invalid model name"),
])
def test_cli_bad_input_is_one_line_without_traceback(tmp_path, args, message):
    result = _invoke("train", *args, "--output", tmp_path / "bad", "--quiet")
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_rerun_into_a_checkpointed_output_asks_for_resume(cli_run, tmp_path):
    shutil.copytree(cli_run[0] / "run", tmp_path / "run")
    args = [*TRAIN, "--output", tmp_path / "run"]
    again = _invoke(*args)
    assert again.exit_code != 0 and "--resume" in again.output
    resumed = _invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output


def test_every_command_documents_every_option():
    for command in main.commands.values():
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{command.name} --{param.name} has no help"


@pytest.mark.slow
def test_imagenet_pipeline_runs_offline_with_random_weights(tmp_path):
    result = _invoke("train", "--source", "imagenet", "--weights", "random", "--arch", "vgg16",
                     "--target", "digits", "--image-size", 32, "--max-train-examples", 20, "--epochs", 1,
                     "--head-epochs", 1, "--batch-size", 20, "--output", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    assert "model: vgg16 from imagenet on digits" in result.output
    model = keras.saving.load_model(tmp_path / "model.keras")
    assert model.input_shape == (None, 32, 32, 3)  # grayscale digits converted for an RGB backbone
