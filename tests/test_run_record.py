"""run.json as a typed record: written and read back unchanged, older records still read, and the
options a later command needs (dataset splits, export metadata, the model to rebuild) come from it."""
from __future__ import annotations

import json

import pytest
import tensorflow as tf

from keras_itl.errors import UserError
from keras_itl.run_record import RUN_FILE, RunRecord, find_run, restore_checkpoint

CONFIG = {"target": "digits", "arch": "small-cnn", "method": "instance", "source": "mnist-5k", "image_size": None,
          "seed": 3, "val_fraction": 0.2, "max_train_examples": 100, "label_noise": 0.2, "noise_kind": "pair",
          "imbalance": "0:0.5", "data_dir": None}
DATASET = {"name": "digits", "num_classes": 10, "class_names": [str(i) for i in range(10)],
           "image_shape": [8, 8, 1], "sizes": {"train": 90, "val": 10, "test": 20}}


def _record() -> RunRecord:
    return RunRecord(config=CONFIG, test={"loss": 0.5, "accuracy": 0.8, "error_rate": 0.2, "num_examples": 20},
                     phases=[{"name": "finetune", "history": []}], dataset=DATASET, seconds=1.5,
                     files={"model": "model.keras"}, influence={"selection": {"drop_ids": ["a", "b", "c"]}})


def test_a_record_reads_back_as_written_with_the_keys_run_json_always_had(tmp_path):
    path = _record().write(tmp_path)
    assert path == tmp_path / RUN_FILE
    assert list(json.loads(path.read_text())) == ["config", "test", "phases", "dataset", "seconds", "files",
                                                  "influence", "fine_tuning"]  # the last one added later
    assert RunRecord.read(tmp_path) == _record()
    assert RunRecord.read(tmp_path / "elsewhere") is None


def test_an_older_record_without_phases_or_files_still_reads(tmp_path):
    (tmp_path / RUN_FILE).write_text(json.dumps({"config": CONFIG, "dataset": DATASET, "unknown": 1}))
    record = RunRecord.read(tmp_path)
    assert record.phases == [] and record.files == {} and record.dropped == 0 and record.class_names[0] == "0"


def test_the_run_decides_the_dataset_options_and_the_export_metadata():
    record = _record()
    assert record.dataset_options() == {"seed": 3, "val_fraction": 0.2, "data_dir": None, "max_train_examples": 100,
                                        "label_noise": 0.2, "noise_kind": "pair", "imbalance": (0, 0.5)}
    metadata = record.export_metadata()
    assert (metadata["architecture"], metadata["method"], metadata["dropped_instances"]) == ("small-cnn",
                                                                                             "instance", 3)
    assert metadata["metrics"]["error_rate"] == 0.2 and metadata["training_options"] == CONFIG
    assert record.image_size == 28  # small-cnn's default, as the run built it


def test_a_checkpoint_is_restored_into_the_model_the_record_describes(tmp_path):
    record = _record()
    record.write(tmp_path)
    model = record.build_model()
    checkpoints = tmp_path / "checkpoints" / "finetune"
    saved = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), checkpoints, 1).save()
    assert find_run(checkpoints) == (tmp_path, record)
    restored, found = restore_checkpoint(checkpoints, saved)
    assert found == record
    for mine, theirs in zip(restored.get_weights(), model.get_weights()):
        assert (mine == theirs).all()
    other = tmp_path / "other"
    other.mkdir()
    RunRecord(config={**CONFIG, "image_size": 12}, dataset={**DATASET, "num_classes": 3}).write(other)
    with pytest.raises(UserError, match="does not match the model described by"):
        restore_checkpoint(other, saved)
    with pytest.raises(UserError, match="no run.json above"):
        restore_checkpoint(tmp_path.parent / "nowhere", saved)
