"""The pretrained-source cache shared by processes: a source is pretrained once, whoever asks first."""
from __future__ import annotations

import threading
import time

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
