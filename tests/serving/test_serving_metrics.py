"""A server that batches (``--enable_batching`` with a BatchingParameters file) and exports Prometheus
metrics under TF Serving's names (a MonitoringConfig file), serving from ``--model-base-path``.

Its model has a warmup file, so batching and warmup metrics show too. The tests run in order on the
module's one server: the metrics are counted first, then concurrent REST and gRPC requests are
batched, and the last test stops it with SIGTERM and checks it exits cleanly.
"""
from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from keras_itl.serving.client import GrpcClient, RestClient
from tests.serving.serving_helpers import Server, post, request, save_affine, write_warmup

pytestmark = pytest.mark.xdist_group("test_serving_metrics")  # one worker runs the module: its server starts once

METRICS_PATH = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    save_affine(root / "hpt" / "1", 0.5, 2.0)
    write_warmup(root / "hpt" / "1", np.ones((1, 1), np.float32))
    config = root / "monitoring.config"
    config.write_text(f'prometheus_config {{\n  enable: true,\n  path: "{METRICS_PATH}"\n}}\n')
    params = root / "batching.config"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 20000 }\n")
    running = Server(["--model-base-path", str(root / "hpt"), "--model-name", "hpt",
                      "--monitoring_config_file", str(config), "--enable_batching",
                      "--batching_parameters_file", str(params)], root / "server.log")
    try:
        running.wait_available("hpt")
        yield running
    finally:
        running.stop()


def scrape(server: Server) -> dict[tuple[str, tuple], float]:
    status, raw = request(server.url + METRICS_PATH)
    assert status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(raw.decode()) for sample in family.samples}


def grpc_predict(server: Server, model: str, x) -> None:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    with grpc.insecure_channel(server.grpc_target) as channel:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)


def test_requests_runtime_and_loads_are_counted_under_tf_serving_names(server):
    for _ in range(3):
        assert post(f"{server.url}/v1/models/hpt:predict", {"instances": [[1.0]]})[0] == 200
    assert post(f"{server.url}/v1/models/hpt:predict", {"instances": [["x"]]})[0] == 400
    assert post(f"{server.url}/v1/models/nope:predict", {"instances": [[1.0]]})[0] == 404
    grpc_predict(server, "hpt", np.ones((2, 1), np.float32))
    with pytest.raises(grpc.RpcError):
        grpc_predict(server, "hpt", np.ones((2, 3), np.float32))
    samples = scrape(server)

    def value(name: str, **labels) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    count = ":tensorflow:serving:request_count"
    assert value(count, model_name="hpt", status="OK") == 4
    assert value(count, model_name="hpt", status="INVALID_ARGUMENT") == 2
    assert value(count, model_name="<unknown model>", status="NOT_FOUND") == 1
    latency = ":tensorflow:serving:request_latency_count"
    assert value(latency, model_name="hpt", API="predict", entrypoint="REST") == 4
    assert value(latency, model_name="hpt", API="predict", entrypoint="GRPC") == 2
    runtime = value(":tensorflow:serving:runtime_latency_count", model_name="hpt", API="predict", runtime="TF")
    assert runtime == 4  # the requests that reached the model: the failed ones were refused before it
    load_path = next(dict(labels)["model_path"] for name, labels in samples
                     if name == ":tensorflow:cc:saved_model:load_attempt_count")
    assert load_path.endswith("/hpt/1")
    assert value(":tensorflow:cc:saved_model:load_attempt_count", model_path=load_path, status="success") == 1
    assert value(":tensorflow:cc:saved_model:load_latency", model_path=load_path) > 0
    assert value(":tensorflow:serving:model_warmup_latency_count", model_path=load_path, status="OK") == 1
    # Batching: three REST requests of 1 row and one gRPC request of 2 rows went through the batch queue,
    # one at a time, so each made one model call of its own size (no padding).
    batching = ":tensorflow:serving:batching_session:"
    assert value(batching + "queuing_latency_count", thread_pool_name="batch_threads") == 4
    assert value(batching + "wrapped_run_count") == 4
    assert (value(batching + "input_batch_size_count"), value(batching + "input_batch_size_sum")) == (4, 5)
    assert (value(batching + "processed_batch_size_count"), value(batching + "processed_batch_size_sum")) == (4, 5)
    assert value(batching + "padding_size_count", execution_batch_size="1") == 3
    assert value(batching + "padding_size_sum", execution_batch_size="2") == 0


def test_metrics_are_only_served_at_the_configured_path(server):
    assert request(server.url + "/metrics")[0] == 404
    assert request(server.url + METRICS_PATH + "x")[0] == 404


@pytest.mark.slow
def test_batching_server_answers_rest_and_grpc_concurrently(server):
    rest = RestClient(server.url, "hpt")

    def one(i: int) -> np.ndarray:
        x = np.full((1 + i % 3, 1), float(i), np.float32)
        if i % 2:
            return rest.predict(x)["y"], x
        with GrpcClient(server.grpc_target, "hpt") as rpc:
            return rpc.predict(x)["y"], x

    with ThreadPoolExecutor(8) as pool:
        for y, x in pool.map(one, range(24)):
            np.testing.assert_array_equal(y, 0.5 * x + 2.0)


# -- last, as it stops the module's server ------------------------------------------------------------
def test_serve_from_base_path_and_sigterm_shuts_down_cleanly(server):
    assert post(f"{server.url}/v1/models/hpt:predict", {"instances": [[1.0]]}) == (200, {"predictions": [[2.5]]})
    server.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = server.process.wait(timeout=15)
    assert code == 0, server.log()
    assert time.monotonic() - started < 10.0, "most of this is TensorFlow's own teardown at exit"
    with pytest.raises(OSError):
        request(f"{server.url}/v1/models/hpt")
