"""A model trained and exported by keras-itl, served by ``keras-itl serve``: the same classes over
REST (float and b64), gRPC and in-process, and bless/push publishing a version that hot-reloads."""
from __future__ import annotations

import shutil
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from keras_itl.cli.main import main
from keras_itl.datasets import load_dataset, make_batches
from keras_itl.serving.client import GrpcClient, RestClient
from tests.serving.serving_helpers import Server, get_json, post

SIZE = 16  # the suite's trained digits run (tests/conftest.py)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(trained_digits_run, tmp_path_factory):
    """A copy of the suite's trained digits run and its export (SIZE x SIZE): these tests bless and push into it."""
    root = tmp_path_factory.mktemp("exported") / "digits"
    shutil.copytree(trained_digits_run, root)
    return root


@pytest.fixture(scope="module")
def served(exported):
    server = Server(["--model-base-path", str(exported / "saved" / "digits"), "--model-name", "digits",
                     "--poll-seconds", "0.3"], exported / "server.log")
    try:
        server.wait_available("digits")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def test_images():
    split = load_dataset("digits", seed=0).split("test").subset(np.arange(24))
    resized = next(iter(make_batches(split, 24, image_size=SIZE, channels=1, drop_ids=True)))[0].numpy()
    pngs = [tf.io.encode_png(image).numpy() for image in split.images]
    return resized, pngs


def test_exported_model_predicts_the_same_classes_everywhere(exported, served, test_images):
    floats, pngs = test_images
    in_process = keras.saving.load_model(exported / "run" / "model.keras").predict(floats, verbose=0)
    expected = in_process.argmax(axis=1)
    saved = tf.saved_model.load(str(exported / "saved" / "digits" / "1"))
    direct = saved.signatures["serving_default"](images=tf.constant(floats))
    np.testing.assert_array_equal(direct["classes"].numpy(), expected)

    status, rows = post(f"{served.url}/v1/models/digits:predict", {"instances": floats.tolist()})
    assert status == 200
    assert [row["classes"] for row in rows["predictions"]] == expected.tolist()
    np.testing.assert_allclose([row["probabilities"] for row in rows["predictions"]], in_process, atol=1e-5)

    from_bytes = RestClient(served.url, "digits").predict(pngs)
    np.testing.assert_array_equal(from_bytes["classes"], expected)  # decoded and resized inside the graph
    with GrpcClient(served.grpc_target, "digits") as client:
        np.testing.assert_array_equal(client.predict(floats)["classes"], expected)
        np.testing.assert_array_equal(client.predict(pngs)["classes"], expected)


def test_blessed_push_hot_reloads_while_a_client_keeps_predicting(exported, served, test_images):
    floats, _ = test_images
    run = exported / "run"
    evaluated = _invoke("evaluate", "--model", run, "--baseline", exported / "saved" / "digits")
    assert evaluated.exit_code == 0, evaluated.output
    assert "blessed" in evaluated.output and "NOT blessed" not in evaluated.output  # equal error is not worse

    errors, answered, stop = [], [], threading.Event()

    def keep_predicting():
        client = RestClient(served.url, "digits")
        while not stop.is_set() and len(answered) < 2000:
            try:
                answered.append(client.predict(floats[:2])["classes"])
            except Exception as error:  # any failure during the reload is what this test is about
                errors.append(error)

    looping = threading.Thread(target=keep_predicting)
    looping.start()
    try:
        pushed = _invoke("push", "--model", run, "--serving-dir", exported / "saved" / "digits")
        assert pushed.exit_code == 0, pushed.output
        assert "version 2" in pushed.output
        deadline = threading.Event()
        for _ in range(100):
            versions = get_json(f"{served.url}/v1/models/digits")[1]["model_version_status"]
            if any(v["version"] == "2" and v["state"] == "AVAILABLE" for v in versions):
                break
            deadline.wait(0.1)
        else:
            pytest.fail(f"version 2 never became available: {versions}")
    finally:
        stop.set()
        looping.join(timeout=30)
    assert not errors, errors[:3]
    assert len(answered) > 0
    assert get_json(f"{served.url}/v1/models/digits/versions/2")[0] == 200
