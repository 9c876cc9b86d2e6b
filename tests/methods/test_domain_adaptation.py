"""The domain-adaptation methods (coral, mmd, dann) and --target-labels end to end: each method trains on the
model-based schedule with the source beside the target; without target labels no target training or validation
label is read; bad settings are one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

import keras_itl.transfer.run
from keras_itl.cli.main import main
from keras_itl.datasets import TargetDataset, load_dataset
from keras_itl.errors import UserError
from keras_itl.experiment import row_label
from keras_itl.presets import PRESETS
from keras_itl.transfer import TransferConfig, run_transfer
from keras_itl.transfer.alignment import DOMAIN_CLASSIFIER_UNITS
from keras_itl.transfer.domain_adaptation import load_source_data
from keras_itl.transfer.target_labels import restrict_labels

TINY = dict(target="digits", source="mnist-5k", image_size=12, source_epochs=1, epochs=1, head_epochs=1,
            max_train_examples=60)


def _run(tmp_path, name, **changes):
    config = TransferConfig(**{**TINY, **changes})
    return run_transfer(config, tmp_path / name, verbose=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["coral", "mmd", "dann"])
def test_each_method_fine_tunes_like_model_with_the_source_beside_the_target(tmp_path, method):
    result = _run(tmp_path, method, method=method)
    assert [phase.name for phase in result.phases] == ["head", "finetune-lr0.1", "finetune-lr1"]
    assert result.fine_tuning["validation"] == "target val"
    assert 0 <= result.test.error_rate < 0.9
    run = json.loads((tmp_path / method / "run.json").read_text())
    assert run["config"]["method"] == method and f"{method}_weight" in run["config"]["method_options"]
    saved = [shape for _, shape in tf.train.list_variables(str(tmp_path / method / "checkpoints" / "head" / "ckpt-1"))]
    assert ([128, DOMAIN_CLASSIFIER_UNITS] in saved) == (method == "dann")  # the domain classifier is checkpointed


@pytest.mark.slow
def test_without_target_labels_scrambled_target_labels_give_bit_identical_weights(tmp_path, monkeypatch):
    reference = _run(tmp_path, "plain", method="dann", target_labels="none", fine_tune_lr_factor=1.0)
    assert reference.fine_tuning["validation"] == "source val"
    loaded = keras_itl.transfer.run.load_target

    def scrambled(config):
        data = loaded(config)
        rng = np.random.default_rng(1)
        splits = {name: split.with_labels(rng.permutation(split.labels) if name != "test" else split.labels)
                  for name, split in data.splits.items()}
        return TargetDataset(data.info, splits)

    monkeypatch.setattr(keras_itl.transfer.run, "load_target", scrambled)
    again = _run(tmp_path, "scrambled", method="dann", target_labels="none", fine_tune_lr_factor=1.0)
    for a, b in zip(reference.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_model_without_target_labels_is_the_source_only_row(tmp_path):
    result = _run(tmp_path, "source-only", method="model", target_labels="none", fine_tune_lr_factor=1.0,
                  head_epochs=0)
    assert result.fine_tuning["validation"] == "source val"
    assert result.phases[0].history[0].get("labelled") is None  # trained on the (labelled) source
    assert row_label(result.config) == "source-only"


def test_n_labels_per_class_keep_the_validation_labels_and_none_hides_them():
    data = load_dataset("digits", seed=0, max_train_examples=100)
    few = restrict_labels(data, "2", keeps_unlabelled=True, seed=0)
    labels = few.split("train").labels
    assert len(labels) == 100 and np.bincount(labels[labels >= 0]).tolist() == [2] * 10
    assert (labels == -1).sum() == 80
    np.testing.assert_array_equal(few.split("val").labels, data.split("val").labels)
    assert len(restrict_labels(data, "2", keeps_unlabelled=False, seed=0).split("train")) == 20
    hidden = restrict_labels(data, "none", keeps_unlabelled=True, seed=0)
    assert (hidden.split("train").labels == -1).all() and (hidden.split("val").labels == -1).all()
    np.testing.assert_array_equal(hidden.split("test").labels, data.split("test").labels)
    assert restrict_labels(data, "all", keeps_unlabelled=True, seed=0) is data


@pytest.mark.parametrize(("changes", "message"), [
    ({"target_labels": "0"}, "--target-labels must be all, none or a number of labelled images per class >= 1, "
                             "got '0'"),
    ({"target_labels": "some"}, "--target-labels must be all, none or a number"),
    ({"method": "scratch", "source": None, "target_labels": "none"}, "--method scratch learns from target labels"),
    ({"method": "instance", "target_labels": "none"}, "--method instance learns from target labels; with "
                                                      "--target-labels none use --method model"),
    ({"method": "coral", "source": "imagenet", "arch": "vgg16"}, "--method coral with --target-labels all trains on "
                                                                 "the source's labelled images: --source must be a "
                                                                 "dataset spec, not imagenet"),
    ({"method": "model", "source": "imagenet", "arch": "vgg16", "target_labels": "none"}, "--source must be a "
                                                                                           "dataset spec"),
    ({"method": "mmd", "align_layer": "logits"}, "unknown align layer 'logits'; choose one of: backbone, head"),
])
def test_bad_settings_are_one_line_errors(changes, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        TransferConfig(**{**TINY, **changes})


def test_a_source_with_other_classes_is_refused():
    config = TransferConfig(**{**TINY, "method": "coral", "source": "digits"})
    with pytest.raises(UserError, match="the source has 10 classes, the target 3$"):
        load_source_data(config, 3)


def test_the_cli_refuses_a_bad_target_labels_value_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "--target", "digits", "--source", "mnist-5k", "--method", "mmd",
                                       "--target-labels", "-3", "--output", str(tmp_path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: --target-labels must be all, none or a number")


def test_the_domain_shift_presets_run_every_method_and_the_paper_presets_do_not_pair():
    assert PRESETS["mnist-digits"].methods == ("scratch", "model", "instance", "coral", "mmd", "dann")
    assert PRESETS["digits-mnist-unlabelled"].methods == ("model", "coral", "mmd", "dann")
    assert PRESETS["digits-mnist-unlabelled"].target_labels == "none"
    assert PRESETS["digits"].methods == PRESETS["cifar10"].methods == ("scratch", "model", "instance")


@pytest.mark.slow
def test_n_labels_per_class_leave_the_rest_unlabelled_for_alignment_and_out_of_plain_fine_tuning(tmp_path):
    few = dict(target_labels="2", head_epochs=0, fine_tune_lr_factor=1.0)
    aligned = _run(tmp_path, "mmd", method="mmd", **few)
    assert [record["labelled"] for record in aligned.phases[0].history] == [20]  # 2 of each class, of 60 images
    assert aligned.fine_tuning["validation"] == "target val"  # the validation split keeps its labels
    plain = _run(tmp_path, "model", method="model", **few)
    assert "labelled" not in plain.phases[0].history[0]  # trained on the 20 labelled images alone
