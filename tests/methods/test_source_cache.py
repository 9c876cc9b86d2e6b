"""The pretrained-source cache shared by processes: a source is pretrained once, whoever asks first."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_itl import pretrained
from keras_itl.training import TrainConfig


def test_two_callers_wanting_the_same_source_pretrain_it_once(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_ITL_CACHE", str(tmp_path))
    pretrainings = []

    def slow_pretrain(source, arch, path, key, fields, **kwargs):  # stands in for minutes of training
        pretrainings.append(key)
        time.sleep(0.5)
        path.write_bytes(b"model")

    monkeypatch.setattr(pretrained, "_pretrain", slow_pretrain)
    paths = []

    def ask():
        paths.append(pretrained.pretrain_on_dataset("mnist-5k", "small-cnn", image_size=12, channels=1,
                                                    config=TrainConfig(epochs=1), strategy=tf.distribute.get_strategy(),
                                                    verbose=False))

    callers = [threading.Thread(target=ask) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(pretrainings) == 1  # the second caller waited for the first one's model, then reused it
    assert len(paths) == 2 and paths[0] == paths[1] and paths[0].read_bytes() == b"model"


_TINY = ["--source", "mnist-5k", "--target", "digits", "--image-size", "12", "--source-epochs", "1",
         "--epochs", "1", "--head-epochs", "0", "--max-train-examples", "60", "--quiet"]
_LIKE_AN_EXPERIMENT = """
import sys
from keras_itl.transfer import TransferConfig, run_transfer
common = dict(target="digits", source="mnist-5k", image_size=12, source_epochs=1, epochs=1, head_epochs=0,
              max_train_examples=60)
run_transfer(TransferConfig(method="scratch", **common), sys.argv[1] + "/scratch", verbose=False)
run_transfer(TransferConfig(method="model", **common), sys.argv[1] + "/model", verbose=False)
"""


@pytest.mark.slow
def test_the_source_cache_holds_the_same_weights_whichever_command_filled_it(tmp_path):
    """`keras-itl train` creates its strategy before the run starts; an experiment runs the scratch row first.
    Either way the pretrained source gets the same cache key and the same weights, to the last bit."""
    commands = {"train": [sys.executable, "-m", "keras_itl.cli.main", "train", "--method", "model", *_TINY,
                          "--output", str(tmp_path / "train-run")],
                "experiment": [sys.executable, "-c", _LIKE_AN_EXPERIMENT, str(tmp_path / "experiment-runs")]}
    running = {name: subprocess.Popen(command, env={**os.environ, "KERAS_ITL_CACHE": str(tmp_path / name)},
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, command in commands.items()}
    for name, process in running.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}: {stderr[-2000:]}"
    cached = {name: sorted((tmp_path / name).glob("*.keras")) for name in commands}
    assert [p.name for p in cached["train"]] == [p.name for p in cached["experiment"]] and len(cached["train"]) == 1
    key = json.loads(cached["train"][0].with_suffix(".json").read_text())
    assert set(key) >= {"onednn", "intra_op_threads"}  # the kernels that trained it are part of its key
    weights = {name: keras.saving.load_model(paths[0]).get_weights() for name, paths in cached.items()}
    assert all(np.array_equal(a, b) for a, b in zip(weights["train"], weights["experiment"], strict=True))
