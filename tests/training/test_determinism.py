"""Same seed, same numbers: a rerun of part of a small experiment gives identical results.json numbers."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from tensorflow.python.framework import config as tf_config

from keras_itl.determinism import make_deterministic
from keras_itl.experiment import run_experiment
from keras_itl.training import make_strategy

TIMING_KEYS = ("seconds", "seconds_mean", "stage_seconds", "run_dir")


def _numbers(path, methods: list[str]) -> dict:
    """results.json's rows and runs of ``methods`` without wall-clock times and paths: everything a
    rerun must reproduce exactly."""
    saved = json.loads(path.read_text())
    return {part: [{k: v for k, v in entry.items() if k not in TIMING_KEYS}
                   for entry in saved[part] if entry["method"] in methods] for part in ("rows", "runs")}


def test_make_deterministic_turns_on_op_determinism():
    make_deterministic()
    assert tf_config.is_op_determinism_enabled()  # no public getter in TF 2.21


@pytest.mark.slow
def test_two_runs_of_a_small_experiment_give_identical_numbers(tiny_noisy_experiment, tmp_path):
    """The first run is the shared tiny digits-noisy experiment (every row); the second reruns four of
    its rows - scratch, model, influence and cleanlab - in the same process, after other runs."""
    rerun = replace(tiny_noisy_experiment.preset, instance_policies=("auto", "cleanlab"))
    run_experiment(rerun, tmp_path / "second", export_base=None, strategy=make_strategy(["/cpu:0"]), verbose=False)
    methods = ["scratch", "model", "instance[influence]", "instance[cleanlab]"]
    first = _numbers(tiny_noisy_experiment.out / "results.json", methods)
    second = _numbers(tmp_path / "second" / "results.json", methods)
    assert first == second
    assert [run["method"] for run in second["runs"]] == methods
