"""The server's second CPU device for big requests: made before TensorFlow runs, never after."""
from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from keras_itl.serving.cpu_lanes import prepare_before_tensorflow, split_cpu
prepare_before_tensorflow()
import tensorflow as tf
{before}
print(split_cpu(), len(tf.config.list_logical_devices("CPU")))
"""


def _run(before: str) -> str:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(before=before)], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("\n")[-2]


def test_a_fresh_process_gets_a_second_cpu_device():
    assert _run("") == "/CPU:1 2"


def test_a_running_tensorflow_keeps_its_one_device():
    assert _run("tf.constant(1.0) + 1.0") == "None 1"
