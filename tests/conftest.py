"""Test session set-up: two logical CPU devices, so distributed training is tested for real.

Logical devices must be configured before TensorFlow runs its first op, hence at import time here.
"""
import os
import socket

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402
import pytest  # noqa: E402

HEAVY_ARCHS = ("densenet121", "resnet50")  # minutes of graph tracing per training call on this CPU


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first: slow end-to-end tests, the heavy architectures' before the rest.

    With ``--dist worksteal`` an idle worker takes the back half of a busy one's queue, so what
    stays queued at the end is short and no worker ends waiting on one long test.
    """
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None,
                                 not any(arch in item.nodeid for arch in HEAVY_ARCHS)))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep pretrained-source caches out of the user's home directory."""
    monkeypatch.setenv("KERAS_ITL_CACHE", str(tmp_path_factory.getbasetemp() / "keras-itl-cache"))


@pytest.fixture(autouse=True)
def _release_models_after_slow_tests(request):
    """Reset Keras' global state and collect garbage after each end-to-end test, so a worker that
    runs many experiments does not carry every one's models and traced graphs into the next."""
    yield
    if request.node.get_closest_marker("slow"):
        keras.backend.clear_session()


@pytest.fixture
def unreachable_network(monkeypatch):
    """Every host name fails to resolve at once, as on a machine without network, whatever machine runs the test."""
    def unresolvable(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
