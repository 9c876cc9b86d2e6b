"""The real download paths that the mock-data tests bypass, run with the network unreachable.

They must get as far as the network and fail there: a missing module or any other break on the
way (as tensorflow-datasets' undeclared ``importlib_resources`` once was) fails these tests, and
the user's one-line message must name the network, not something else.
"""
from __future__ import annotations

import socket
import urllib.error

import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import downloader

from keras_itl.backbones import build_model
from keras_itl.datasets import load_dataset
from keras_itl.errors import UserError, network_failure, one_line


def _chain(error: BaseException) -> list[BaseException]:
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


@pytest.mark.slow
def test_svhn_download_runs_the_real_prepare_path_and_fails_on_the_network(tmp_path, monkeypatch,
                                                                          unreachable_network):
    monkeypatch.setattr(downloader, "MAX_RETRIES", 1)  # TFDS would back off for minutes before giving up
    with pytest.raises(UserError) as caught:
        load_dataset("svhn", data_dir=str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("TFDS dataset 'svhn_cropped' could not be downloaded: the network is unreachable")
    assert "--data-dir or TFDS_DATA_DIR" in message and str(tmp_path) in message
    assert any(isinstance(error, socket.gaierror) for error in _chain(caught.value)), "failed before the network"


def test_other_prepare_failures_are_named_as_themselves(tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise ModuleNotFoundError("No module named 'importlib_resources'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", broken)
    with pytest.raises(UserError) as caught:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = str(caught.value)
    assert "ModuleNotFoundError: No module named 'importlib_resources'" in message
    assert "network" not in message and "offline" not in message


@pytest.mark.slow
def test_imagenet_weights_by_name_fail_on_the_network_with_a_weights_hint(tmp_path, monkeypatch,
                                                                         unreachable_network):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached weights to fall back on
    with pytest.raises(UserError) as caught:
        build_model("vgg16", 3, image_size=32, weights="imagenet")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("ImageNet weights for vgg16 could not be downloaded: the network is unreachable")
    assert "--weights PATH" in message


@pytest.mark.parametrize(
    ("error", "is_network"),
    [
        (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (urllib.error.HTTPError("http://x", 404, "Not Found", None, None), False),
        (ModuleNotFoundError("No module named 'x'"), False),
        (ValueError("bad data dir"), False),
    ],
)
def test_network_failures_are_told_from_other_failures(error, is_network):
    assert (network_failure(error) is error) == is_network


def test_a_network_failure_is_found_behind_a_wrapping_exception():
    try:
        try:
            raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))
        except urllib.error.URLError:
            raise Exception("URL fetch failure on https://example.invalid/w.h5")  # noqa: B904 - as keras get_file re-raises
    except Exception as wrapped:
        assert isinstance(network_failure(wrapped), urllib.error.URLError)
        assert one_line(wrapped) == "Exception: URL fetch failure on https://example.invalid/w.h5"


def test_one_line_names_errors_without_a_message():
    assert one_line(ValueError()) == "ValueError"
    assert one_line(OSError("first\nsecond")) == "OSError: first"
