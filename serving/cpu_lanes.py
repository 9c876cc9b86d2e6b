"""A CPU device with its own TensorFlow thread pool for big requests, so they do not stall small ones.

TensorFlow runs every operation's inner loops in one intra-op thread pool per process. A model call on
a big batch (the 16 MB request of ``benchmarks/serving_latency.py``: 2,670 images) queues each of its
convolutions there as a few long tasks, and the operations of small requests queued behind them wait
until those tasks are done: 200-400 ms per small request with one such call in flight, on 2 cores.

Here the server splits the CPU into two logical devices, each with a pool of its own
(``TF_OVERRIDE_GLOBAL_THREADPOOL``, read by TensorFlow when it creates its devices), and runs the model
calls of the big-body lane on the second. Small requests keep the first, and the operating system
shares the cores between both pools instead of one queue making small requests wait for whole
operations: measured in one process, a batch-1 call beside the 2,670-image call at most ~25 ms instead
of ~300-500 ms, the big call no slower. The model stays loaded once: its variables live on the first
device and the second reads them in place (both are host memory).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

THREAD_POOL_PER_DEVICE = "TF_OVERRIDE_GLOBAL_THREADPOOL"
BIG_LANE_DEVICE = "/CPU:1"


def prepare_before_tensorflow() -> None:
    """Ask TensorFlow for a thread pool per CPU device; only takes effect before TensorFlow's devices exist."""
    os.environ.setdefault(THREAD_POOL_PER_DEVICE, "1")


def split_cpu() -> str | None:
    """Make two logical CPU devices; the big lane's device, or None to leave the devices as they are.

    Left as they are when TensorFlow already runs (its devices are made once) or when it has an
    accelerator (a GPU, where model calls run anyway, and which the big lane must not leave for a CPU).
    """
    import tensorflow as tf

    devices = tf.config.list_physical_devices()
    if any(device.device_type != "CPU" for device in devices):
        return None
    cpu = next(device for device in devices if device.device_type == "CPU")
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:  # the runtime was initialized before the server started: keep its one device
        return None
    return BIG_LANE_DEVICE


@contextlib.contextmanager
def on_device(device: str | None) -> Iterator[None]:
    """Place the TensorFlow operations run inside the block on ``device`` (None: where they would go anyway)."""
    if device is None:
        yield
        return
    import tensorflow as tf

    with tf.device(device):
        yield
