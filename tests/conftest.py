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

import pytest  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow end-to-end tests first, so parallel workers do not end waiting on one long test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep pretrained-source caches out of the user's home directory."""
    monkeypatch.setenv("KERAS_ITL_CACHE", str(tmp_path_factory.getbasetemp() / "keras-itl-cache"))


@pytest.fixture
def unreachable_network(monkeypatch):
    """Every host name fails to resolve at once, as on a machine without network, whatever machine runs the test."""
    def unresolvable(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
