"""Server-side batching: concurrent requests share model calls, get their own rows back, fail alone.

A batching ``keras-itl serve`` answering concurrent REST and gRPC requests is tested in test_serving_metrics.py,
on that module's batching server."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from keras_itl.cli.main import main
from keras_itl.errors import UserError
from keras_itl.serving.batching import Batcher
from keras_itl.serving.batching_parameters import BatchingOptions, load_batching_parameters
from keras_itl.serving.errors import InvalidArgument, Unavailable
from keras_itl.serving.signatures import Signature


class Recorder:
    """A signature ``y = 2x`` over ``x: [None, 2]`` that records the batch size of every call."""

    def __init__(self, gate: threading.Event | None = None):
        self.sizes: list[int] = []
        self.gate = gate
        self.entered = threading.Event()
        self.signature = Signature(self._call, {"x": tf.TensorSpec([None, 2], tf.float32, name="x")},
                                   {"y": tf.TensorSpec([None, 2], tf.float32)})

    def _call(self, x):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.sizes.append(int(x.shape[0]))
        return {"y": x * 2.0}


def _concurrently(batcher: Batcher, signature: Signature, batches: list[np.ndarray]) -> list:
    start = threading.Barrier(len(batches))

    def call(x):
        start.wait()
        return batcher.predict(signature, {"x": x})["y"]

    with ThreadPoolExecutor(len(batches)) as pool:
        return list(pool.map(call, batches))


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    recorder = Recorder()
    batcher = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1))
    try:
        batches = [np.full((1 + i % 2, 2), i, np.float32) for i in range(8)]
        results = _concurrently(batcher, recorder.signature, batches)
    finally:
        batcher.stop()
    for x, y in zip(batches, results):
        np.testing.assert_array_equal(y, x * 2)
    assert sum(recorder.sizes) == sum(len(x) for x in batches) and len(recorder.sizes) < len(batches)
    assert max(recorder.sizes) <= 8


def test_batches_are_padded_to_allowed_sizes():
    recorder = Recorder()
    batcher = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1,
                                      allowed_batch_sizes=(4, 8)))
    try:
        results = _concurrently(batcher, recorder.signature, [np.ones((1, 2), np.float32)] * 3)
    finally:
        batcher.stop()
    assert all(y.shape == (1, 2) for y in results)
    assert set(recorder.sizes) <= {4, 8}


def test_bad_requests_fail_alone_and_full_queues_refuse():
    gate = threading.Event()
    recorder = Recorder(gate)
    batcher = Batcher(BatchingOptions(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1,
                                      num_batch_threads=1))
    try:
        with pytest.raises(InvalidArgument):
            batcher.predict(recorder.signature, {"x": np.ones((1, 3), np.float32)})
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(batcher.predict, recorder.signature, {"x": np.ones((2, 2), np.float32)})
            assert recorder.entered.wait(10)  # the first batch is running, held at the gate
            queued = pool.submit(batcher.predict, recorder.signature, {"x": np.ones((2, 2), np.float32)})
            threading.Event().wait(0.1)
            with pytest.raises(Unavailable):
                batcher.predict(recorder.signature, {"x": np.ones((1, 2), np.float32)})
            gate.set()
            assert first.result(10)["y"].shape == (2, 2) and queued.result(10)["y"].shape == (2, 2)
    finally:
        gate.set()
        batcher.stop()


def test_batching_parameters_file(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 500 }\n"
                    "num_batch_threads { value: 2 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 16\n")
    assert load_batching_parameters(path) == BatchingOptions(16, 500, 100, 2, (4, 16))
    path.write_text('thread_pool_name { value: "shared_pool" }\nnum_batch_threads { value: 1 }\n'
                    "pad_variable_length_inputs: false\n")
    options = load_batching_parameters(path)
    assert options.thread_pool_name == "shared_pool"
    batcher = Batcher(options)
    try:
        assert "shared_pool-0" in {thread.name for thread in threading.enumerate()}
    finally:
        batcher.stop()
    path.write_text("pad_variable_length_inputs: true\n")
    with pytest.raises(UserError, match="pad_variable_length_inputs is not supported"):
        load_batching_parameters(path)
    path.write_text("max_batch_size { value: 16 }\nallowed_batch_sizes: 8\n")
    result = CliRunner().invoke(main, ["serve", "--model-base-path", str(tmp_path), "--model-name", "m",
                                       "--enable_batching", "--batching_parameters_file", str(path)])
    assert result.exit_code != 0 and "allowed_batch_sizes must increase and end at max_batch_size" in result.output
