"""A real ``keras-itl serve`` subprocess for tests, HTTP helpers to talk to it, and SavedModels to serve.

Every served model is a SavedModel built with TensorFlow alone, so the tests also show that the server
is not tied to keras-itl's own exports.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ``keras-itl serve`` subprocess listening on ``host`` (IPv4 or IPv6 loopback), with its ports and log."""

    def __init__(self, args: list[str], log_path: Path, host: str = "127.0.0.1"):
        self.host = host
        self.rest_port, self.grpc_port = free_port(), free_port()
        address = f"[{host}]" if ":" in host else host
        self.url = f"http://{address}:{self.rest_port}"
        self.grpc_target = f"{address}:{self.grpc_port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from keras_itl.cli.main import main; main()", "serve", "--host", host,
             "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_available(self, model: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.log()}"
            try:
                status = get_json(f"{self.url}/v1/models/{model}")[1]
                if any(s["state"] == "AVAILABLE" for s in status.get("model_version_status", [])):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"model {model} not available within {timeout}s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def request(url: str, body: bytes | None = None, method: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_json(url: str) -> tuple[int, dict]:
    status, body = request(url)
    return status, json.loads(body)


def post(url: str, payload) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, raw = request(url, body)
    return status, json.loads(raw)


# -- SavedModels built with TensorFlow alone ---------------------------------------------------------
def _save(module: tf.Module, path: Path, signatures: dict) -> None:
    """Save elsewhere, then rename into place, as a careful exporter does."""
    staging = path.parent / f".staging-{path.name}"
    tf.saved_model.save(module, str(staging), signatures=signatures)
    os.rename(staging, path)


def save_affine(path: Path, scale: float, offset: float) -> None:
    """y = scale * x + offset over a [None, 1] float input ``x``."""
    module = tf.Module()
    module.scale, module.offset = tf.Variable(scale), tf.Variable(offset)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def affine(x):
        return {"y": module.scale * x + module.offset}

    _save(module, path, {"serving_default": affine})


def save_two_in_two_out(path: Path) -> None:
    """sum = a[:, 0] + a[:, 1] + b (float), b_twice = 2 b (int64)."""
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                  tf.TensorSpec([None], tf.int64, name="b")])
    def combine(a, b):
        return {"sum": tf.reduce_sum(a, axis=1) + tf.cast(b, tf.float32), "b_twice": b * 2}

    _save(module, path, {"serving_default": combine})


def save_text(path: Path) -> None:
    """A string input ``text`` → its byte length and the bytes themselves (``text_bytes``)."""
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def describe(text):
        return {"length": tf.strings.length(text), "text_bytes": tf.identity(text)}

    _save(module, path, {"serving_default": describe})


def _probabilities(images):
    bright = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3]) / 255.0
    probabilities = tf.stack([1.0 - bright, bright], axis=1)
    return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=1)}


def save_classifier(path: Path) -> None:
    """Two classes, 'dark' and 'bright', by mean pixel; float images or PNG bytes (``serving_bytes``)."""
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 1], tf.float32, name="images")])
    def from_images(images):
        return _probabilities(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def from_bytes(image_bytes):
        decode = lambda data: tf.io.decode_png(data, channels=1)  # noqa: E731
        return _probabilities(tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec([4, 4, 1], tf.uint8)))

    _save(module, path, {"serving_default": from_images, "serving_bytes": from_bytes})


def save_spin(path: Path) -> None:
    """A deliberately slow signature: ``steps`` sequential scalar updates (keeps one core busy)."""
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="steps")])
    def spin(steps):
        _, total = tf.while_loop(lambda i, acc: i < steps, lambda i, acc: (i + 1, acc * 0.5 + 1.0),
                                 (tf.constant(0, tf.int64), tf.constant(0.0)))
        return {"total": total}

    _save(module, path, {"serving_default": spin})


def write_warmup(version_dir: Path, x: np.ndarray) -> None:
    """A TF Serving warmup file holding one predict request for ``serving_default`` with input ``x``."""
    request = predict_pb2.PredictRequest()
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    extra = version_dir / "assets.extra"
    extra.mkdir()
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        writer.write(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())


def png(value: int) -> bytes:
    return tf.io.encode_png(np.full((4, 4, 1), value, np.uint8)).numpy()
