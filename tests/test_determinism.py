"""Same seed, same numbers: two runs of a small experiment give identical results.json numbers."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from tensorflow.python.framework import config as tf_config

from keras_itl.determinism import make_deterministic
from keras_itl.experiment import run_experiment
from keras_itl.presets import get_preset

TIMING_KEYS = ("seconds", "seconds_mean", "stage_seconds", "run_dir")


def _numbers(path) -> dict:
    """results.json without wall-clock times and paths: everything a rerun must reproduce exactly."""
    saved = json.loads(path.read_text())
    return {"rows": [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in saved["rows"]],
            "runs": [{k: v for k, v in run.items() if k not in TIMING_KEYS} for run in saved["runs"]]}


def test_make_deterministic_turns_on_op_determinism():
    make_deterministic()
    assert tf_config.is_op_determinism_enabled()  # no public getter in TF 2.21


@pytest.mark.slow
def test_two_runs_of_a_small_experiment_give_identical_numbers(tmp_path):
    preset = replace(get_preset("digits-noisy"), max_train_examples=60, image_size=12, epochs=2, head_epochs=1,
                     source_epochs=1, instance_policies=("auto", "cleanlab"))
    for name in ("first", "second"):
        run_experiment(preset, tmp_path / name, export_base=None, verbose=False)
    first, second = _numbers(tmp_path / "first" / "results.json"), _numbers(tmp_path / "second" / "results.json")
    assert first == second
    assert [run["method"] for run in first["runs"]] == ["scratch", "model", "instance[influence]",
                                                        "instance[cleanlab]"]
