"""The TF Serving-compatible server, run as a real ``keras-itl serve`` subprocess on free localhost ports.

Every served model is a SavedModel built here with TensorFlow alone, so the tests also show that the
server is not tied to keras-itl's own exports. One server (started from a ModelServerConfig) serves
all the models of the module; hot reload and half-written versions work on their own models there.
"""
from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_itl.cli.main import main
from keras_itl.serving.client import GrpcClient, RestClient, ServingClientError
from tests.serving.serving_helpers import (
    Server,
    get_json,
    png,
    post,
    request,
    save_affine,
    save_classifier,
    save_spin,
    save_text,
    save_two_in_two_out,
    write_warmup,
)

pytestmark = pytest.mark.xdist_group("test_serving")  # one worker runs the module: its server starts once

MAX_REQUEST_BYTES = 200_000
SPIN_STEPS = 150_000
MODELS = ("half_plus_two", "multi", "text", "classifier", "spin", "reload", "broken", "warm", "versioned")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for name in MODELS:
        (root / name).mkdir()
    save_affine(root / "half_plus_two" / "1", 0.5, 2.0)
    save_affine(root / "versioned" / "1", 1.0, 1.0)
    save_affine(root / "versioned" / "2", 1.0, 2.0)
    save_two_in_two_out(root / "multi" / "1")
    save_text(root / "text" / "1")
    save_classifier(root / "classifier" / "1")
    save_spin(root / "spin" / "1")
    save_affine(root / "reload" / "1", 1.0, 1.0)
    save_affine(root / "broken" / "1", 1.0, 1.0)
    for version, warmup_x in ((1, np.ones((2, 1), np.float32)), (2, np.ones((1, 3), np.float32))):
        save_affine(root / "warm" / str(version), 1.0, float(version))
        write_warmup(root / "warm" / str(version), warmup_x)
    return root


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    config = tmp_path_factory.mktemp("config") / "models.config"
    entries = []
    for name in (name for name in MODELS if name != "versioned"):  # versioned gets a policy and labels below
        entries.append(f'config {{ name: "{name}" base_path: "{models / name}" model_platform: "tensorflow" }}')
    entries.append(f'config {{ name: "versioned" base_path: "{models / "versioned"}" model_platform: "tensorflow" '
                   'model_version_policy { all {} } version_labels { key: "stable" value: 1 } '
                   'version_labels { key: "canary" value: 2 } }')
    config.write_text("model_config_list {\n  " + "\n  ".join(entries) + "\n}\n")
    running = Server(["--model-config-file", str(config), "--poll-seconds", "0.3",
                      "--max-request-bytes", str(MAX_REQUEST_BYTES)], config.parent / "server.log")
    try:
        for name in MODELS:
            running.wait_available(name)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as open_channel:
        yield open_channel


def model_url(server: Server, path: str) -> str:
    return f"{server.url}/v1/models/{path}"


# -- REST: status and metadata ---------------------------------------------------------------------
def test_rest_model_status(server):
    available = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert get_json(model_url(server, "half_plus_two")) == (200, {"model_version_status": [available]})
    assert get_json(model_url(server, "half_plus_two/versions/1")) == (200, {"model_version_status": [available]})
    status, body = get_json(model_url(server, "versioned"))
    assert status == 200 and [s["version"] for s in body["model_version_status"]] == ["2", "1"]
    assert get_json(model_url(server, "versioned/labels/stable"))[1]["model_version_status"][0]["version"] == "1"
    assert get_json(model_url(server, "nope")) == (404, {"error": "Could not find any versions of model nope"})
    assert get_json(model_url(server, "half_plus_two/versions/7"))[0] == 404


def test_rest_metadata_describes_the_signature(server):
    status, body = get_json(model_url(server, "half_plus_two/metadata"))
    assert status == 200
    assert body["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    for tensors, name in ((signature["inputs"], "x"), (signature["outputs"], "y")):
        assert list(tensors) == [name]
        assert tensors[name]["dtype"] == "DT_FLOAT"
        assert [d["size"] for d in tensors[name]["tensor_shape"]["dim"]] == ["-1", "1"]
    classifier = get_json(model_url(server, "classifier/metadata"))[1]["metadata"]["signature_def"]["signature_def"]
    assert classifier["serving_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert classifier["serving_bytes"]["outputs"]["classes"]["dtype"] == "DT_INT64"
    assert get_json(model_url(server, "versioned/versions/1/metadata"))[1]["model_spec"]["version"] == "1"
    assert get_json(model_url(server, "nope/metadata")) == (
        404, {"error": "Servable not found for request: Latest(nope)"})


# -- REST: predict -----------------------------------------------------------------------------------
def test_rest_predict_row_and_columnar(server):
    url = model_url(server, "half_plus_two:predict")
    assert post(url, {"instances": [[1.0], [2.0], [5.0]]}) == (200, {"predictions": [[2.5], [3.0], [4.5]]})
    assert post(url, {"inputs": [[1.0], [2.0]]}) == (200, {"outputs": [[2.5], [3.0]]})
    assert post(url, {"inputs": {"x": [[1.0]]}}) == (200, {"outputs": [[2.5]]})
    assert post(url, {"signature_name": "serving_default", "instances": [{"x": [4.0]}]}) == (
        200, {"predictions": [[4.0]]})


def test_rest_predict_several_inputs_and_outputs(server):
    url = model_url(server, "multi:predict")
    rows = {"instances": [{"a": [1.0, 2.0], "b": 3}, {"a": [0.5, 0.25], "b": -1}]}
    assert post(url, rows) == (200, {"predictions": [{"sum": 6.0, "b_twice": 6}, {"sum": -0.25, "b_twice": -2}]})
    columns = {"inputs": {"a": [[1.0, 2.0], [0.5, 0.25]], "b": [3, -1]}}
    assert post(url, columns) == (200, {"outputs": {"sum": [6.0, -0.25], "b_twice": [6, -2]}})
    assert post(url, {"inputs": {"a": [[1.0, 2.0]], "b": [2.0]}}) == (200, {"outputs": {"sum": [5.0], "b_twice": [4]}})


def test_rest_predict_strings_and_b64(server):
    url = model_url(server, "text:predict")
    raw = "héllo".encode()
    b64 = base64.b64encode(raw).decode()
    binary = bytes([0, 255, 7])
    status, body = post(url, {"instances": [{"b64": b64}, "ab", {"b64": base64.b64encode(binary).decode()}]})
    assert status == 200
    assert body == {"predictions": [{"length": 6, "text_bytes": {"b64": b64}},
                                    {"length": 2, "text_bytes": {"b64": "YWI="}},
                                    {"length": 3, "text_bytes": {"b64": base64.b64encode(binary).decode()}}]}
    assert post(url, {"inputs": {"text": [{"b64": b64}]}}) == (
        200, {"outputs": {"length": [6], "text_bytes": [{"b64": b64}]}})


def test_rest_predict_versions_and_labels(server):
    def y(path):
        return post(model_url(server, f"versioned{path}:predict"), {"instances": [[10.0]]})

    assert y("") == (200, {"predictions": [[12.0]]})
    assert y("/versions/1") == (200, {"predictions": [[11.0]]})
    assert y("/versions/2") == (200, {"predictions": [[12.0]]})
    assert y("/labels/stable") == (200, {"predictions": [[11.0]]})
    assert y("/labels/canary") == (200, {"predictions": [[12.0]]})
    assert y("/versions/3") == (404, {"error": "Servable not found for request: Specific(versioned, 3)"})
    assert y("/labels/nightly")[0] == 404
    assert post(model_url(server, "nope:predict"), {"instances": [[1.0]]}) == (
        404, {"error": "Servable not found for request: Latest(nope)"})


def test_rest_floats_round_trip_and_non_finite_tokens(server):
    status, raw = request(model_url(server, "half_plus_two:predict"),
                          b'{"instances": [[0.1], [0.3], [NaN], [Infinity], [-Infinity]]}')
    assert status == 200
    text = raw.decode()
    assert "NaN" in text and "Infinity" in text and "-Infinity" in text and "null" not in text
    assert "[2.05]" in text, "float32 values are written with their shortest round-tripping digits"
    predictions = np.asarray(json.loads(text)["predictions"], dtype=np.float32)
    expected = np.float32(0.5) * np.array([[0.1], [0.3]], np.float32) + np.float32(2.0)
    np.testing.assert_array_equal(predictions[:2], expected)  # exact: every float32 bit survives the text
    assert np.isnan(predictions[2, 0]) and predictions[3, 0] == np.inf and predictions[4, 0] == -np.inf


BAD_REQUESTS = [
    ("half_plus_two:predict", b"{not json", "JSON"),
    ("half_plus_two:predict", b"", "empty"),
    ("half_plus_two:predict", b"[1, 2]", "object"),
    ("half_plus_two:predict", b'{"instances": [["a"]]}', "DT_FLOAT"),
    ("half_plus_two:predict", b'{"instances": [[1.0, 2.0]]}', "shape"),
    ("half_plus_two:predict", b'{"instances": [[1.0], [1.0, 2.0]]}', "same length"),
    ("half_plus_two:predict", b'{"instances": []}', "non-empty"),
    ("half_plus_two:predict", b'{"instances": [[1.0]], "inputs": [[1.0]]}', "exactly one"),
    ("half_plus_two:predict", b'{"signature_name": "serving_default"}', "exactly one"),
    ("half_plus_two:predict", b'{"signature_name": "nope", "instances": [[1.0]]}', "nope"),
    ("multi:predict", b'{"instances": [{"a": [1.0, 2.0]}]}', "keys"),
    ("multi:predict", b'{"inputs": {"a": [[1.0, 2.0]], "b": [1.5]}}', "non-integral"),
    ("text:predict", b'{"instances": [{"b64": "not base64!"}]}', "base64"),
    ("text:predict", b'{"instances": [3]}', "strings"),
    ("classifier:predict", b'{"signature_name": "serving_bytes", "instances": [{"b64": "aGVsbG8="}]}', "image"),
]


@pytest.mark.parametrize("path, body, fragment", BAD_REQUESTS)
def test_rest_bad_requests_answer_400_json(server, path, body, fragment):
    status, raw = request(model_url(server, path), body)
    assert status == 400
    error = json.loads(raw)
    assert list(error) == ["error"] and fragment in error["error"]
    assert post(model_url(server, "half_plus_two:predict"), {"instances": [[2.0]]}) == (200, {"predictions": [[3.0]]})


def test_rest_malformed_paths_and_methods(server):
    for url, method in ((model_url(server, "half_plus_two:predict"), "GET"),
                        (model_url(server, "half_plus_two"), "POST"),
                        (model_url(server, "half_plus_two:explode"), "POST"),
                        (f"{server.url}/v1/whatever", "GET")):
        status, raw = request(url, b"{}" if method == "POST" else None, method=method)
        assert status == 400 and json.loads(raw)["error"].startswith("Malformed request: ")


def test_rest_unknown_paths_answer_404_json(server):
    for path in ("/v3/whatever", "/", "/favicon.ico", "/v1", "/v2x"):
        status, raw = request(f"{server.url}{path}")
        assert status == 404 and json.loads(raw)["error"].startswith("Not found")


def test_rest_oversized_body_gets_413_json(server):
    body = json.dumps({"instances": [[1.0]] * (MAX_REQUEST_BYTES // 5)}).encode()
    assert len(body) > MAX_REQUEST_BYTES
    status, raw = request(model_url(server, "half_plus_two:predict"), body)
    assert status == 413 and "too large" in json.loads(raw)["error"]
    assert post(model_url(server, "half_plus_two:predict"), {"instances": [[2.0]]}) == (200, {"predictions": [[3.0]]})


# -- gRPC ------------------------------------------------------------------------------------------
def predict_request(model: str, inputs: dict, signature: str = "", **spec) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    if "version" in spec:
        req.model_spec.version.value = spec["version"]
    if "label" in spec:
        req.model_spec.version_label = spec["label"]
    for name, value in inputs.items():
        req.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return req


def test_grpc_predict(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(predict_request("half_plus_two", {"x": np.array([[1.0], [5.0]], np.float32)}))
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["y"]), [[2.5], [4.5]])
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("half_plus_two", 1, "serving_default")
    inputs = {"a": np.array([[1.0, 2.0]], np.float32), "b": np.array([4], np.int64)}
    response = stub.Predict(predict_request("multi", inputs), timeout=30)
    assert set(response.outputs) == {"sum", "b_twice"}
    filtered = predict_request("multi", inputs)
    filtered.output_filter.append("b_twice")
    response = stub.Predict(filtered)
    assert list(response.outputs) == ["b_twice"] and tf.make_ndarray(response.outputs["b_twice"]).tolist() == [8]
    labelled = stub.Predict(predict_request("versioned", {"x": np.array([[1.0]], np.float32)}, label="stable"))
    assert labelled.model_spec.version.value == 1 and tf.make_ndarray(labelled.outputs["y"]).tolist() == [[2.0]]
    text = stub.Predict(predict_request("text", {"text": np.array([b"\x00\xff", b"abc"], dtype=object)}))
    assert tf.make_ndarray(text.outputs["text_bytes"]).tolist() == [b"\x00\xff", b"abc"]


@pytest.mark.parametrize("make, code", [
    (lambda: predict_request("half_plus_two", {"x": np.ones((1, 1), np.float32)}, signature="nope"),
     grpc.StatusCode.FAILED_PRECONDITION),
    (lambda: predict_request("half_plus_two", {"z": np.ones((1, 1), np.float32)}), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda: predict_request("half_plus_two", {"x": np.ones((1, 3), np.float32)}), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda: predict_request("half_plus_two", {"x": np.ones((1, 1), np.float64)}), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda: predict_request("nope", {"x": np.ones((1, 1), np.float32)}), grpc.StatusCode.NOT_FOUND),
    (lambda: predict_request("half_plus_two", {"x": np.ones((1, 1), np.float32)}, version=9),
     grpc.StatusCode.NOT_FOUND),
])
def test_grpc_predict_errors(channel, make, code):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Predict(make())
    assert caught.value.code() == code


def test_grpc_metadata_and_status(channel):
    request_ = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request_.model_spec.name = "classifier"
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request_)
    assert response.model_spec.name == "classifier" and response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "serving_bytes"}
    images = signatures.signature_def["serving_default"].inputs["images"]
    assert images.dtype == tf.float32.as_datatype_enum and [d.size for d in images.tensor_shape.dim] == [-1, 4, 4, 1]

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "versioned"
    statuses = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request).model_version_status
    assert [(s.version, s.state, s.status.error_code) for s in statuses] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0),
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]
    status_request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as caught:
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# -- clients and the predict command ---------------------------------------------------------------
def test_rest_and_grpc_clients_agree(server):
    images = np.stack([np.full((4, 4, 1), 51.0, np.float32), np.full((4, 4, 1), 204.0, np.float32)])
    rest = RestClient(server.url, "classifier")
    with GrpcClient(server.grpc_target, "classifier") as rpc:
        for outputs in (rest.predict(images), rpc.predict(images), rest.predict([png(51), png(204)]),
                        rpc.predict([png(51), png(204)])):
            np.testing.assert_allclose(outputs["probabilities"], [[0.8, 0.2], [0.2, 0.8]], rtol=1e-6)
            assert outputs["classes"].tolist() == [0, 1]
        assert rest.status() == rpc.status()
        assert rest.metadata() == rpc.metadata()
        assert rpc.predict(images, output_filter=["classes"]).keys() == {"classes"}
        single = RestClient(server.url, "half_plus_two").predict(np.array([[2.0]], np.float32))
        assert single["y"].tolist() == [[3.0]]
        with pytest.raises(ServingClientError, match="404"):
            RestClient(server.url, "nope").status()
    with GrpcClient(server.grpc_target, "nope") as unknown, pytest.raises(ServingClientError, match="NOT_FOUND"):
        unknown.status()


def test_rest_and_grpc_return_bitwise_identical_float32_outputs(server, channel):
    rng = np.random.default_rng(7)
    # Over 32 KB of JSON, so the numeric fast path reads it (smaller bodies take the plain parse).
    x = np.concatenate([rng.standard_normal(3000), rng.uniform(-1e30, 1e30, 1000), rng.uniform(-1e-30, 1e-30, 1000),
                        [0.0, -0.0, 1.0, 3.4e38, 1e-45]]).astype(np.float32).reshape(-1, 1)
    rpc = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        predict_request("half_plus_two", {"x": x}), timeout=30)
    expected = tf.make_ndarray(rpc.outputs["y"])
    by_client = RestClient(server.url, "half_plus_two").predict(x)["y"].astype(np.float32)
    status, raw = request(model_url(server, "half_plus_two:predict"), json.dumps({"instances": x.tolist()}).encode())
    by_stdlib_json = np.asarray(json.loads(raw)["predictions"], np.float32)
    assert status == 200 and expected.dtype == np.float32
    for answer in (by_client, by_stdlib_json):
        np.testing.assert_array_equal(answer.view(np.uint32), expected.view(np.uint32))


def test_predict_command_over_rest_and_grpc(server, tmp_path):
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    dark.write_bytes(png(51))
    bright.write_bytes(png(204))
    for endpoint in (["--server", server.url], ["--grpc", server.grpc_target]):
        result = CliRunner().invoke(main, ["predict", *endpoint, "--model", "classifier", str(dark), str(bright)])
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == [f"{dark}: 0 (0.8000), 1 (0.2000)",
                                              f"{bright}: 1 (0.8000), 0 (0.2000)"]
    undecodable = tmp_path / "not-an-image.png"
    undecodable.write_bytes(b"plain text")
    result = CliRunner().invoke(main, ["predict", "--server", server.url, "--model", "classifier", str(undecodable)])
    assert result.exit_code == 1 and result.output.startswith("Error: server answered 400: ")
    assert len(result.output.strip().splitlines()) == 1


# -- concurrency, hot reload, half-written versions ------------------------------------------------
def test_concurrent_requests_all_succeed(server):
    failures, results = [], []

    def client(index: int) -> None:
        try:
            with GrpcClient(server.grpc_target, "half_plus_two") as rpc:
                for step in range(10):
                    x = float(index * 100 + step)
                    if step % 2:
                        out = rpc.predict(np.array([[x]], np.float32))["y"]
                    else:
                        out = post(model_url(server, "half_plus_two:predict"), {"instances": [[x]]})[1]["predictions"]
                    results.append(float(out[0][0]) == 0.5 * x + 2)
        except Exception as error:  # collected: assertions in threads would be lost
            failures.append(repr(error))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and len(results) == 80 and all(results)


def test_slow_inference_blocks_neither_rest_nor_grpc(server):
    slow_result = {}

    def slow() -> None:
        slow_result["response"] = post(model_url(server, "spin:predict"), {"inputs": SPIN_STEPS})

    started = time.monotonic()
    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    fast_started = time.monotonic()
    assert post(model_url(server, "half_plus_two:predict"), {"instances": [[2.0]]})[0] == 200
    assert get_json(model_url(server, "spin"))[0] == 200
    with GrpcClient(server.grpc_target, "half_plus_two") as rpc:
        assert rpc.predict(np.array([[2.0]], np.float32))["y"].tolist() == [[3.0]]
    fast_elapsed = time.monotonic() - fast_started
    still_running = thread.is_alive()
    thread.join(timeout=120)
    slow_elapsed = time.monotonic() - started
    assert slow_result["response"][0] == 200
    assert still_running, f"the slow request finished in {slow_elapsed:.2f}s; raise SPIN_STEPS"
    assert fast_elapsed < 1.0, f"fast requests waited {fast_elapsed:.2f}s behind a {slow_elapsed:.2f}s one"


def test_hot_reload_serves_new_version_without_errors(server, models):
    url = model_url(server, "reload:predict")
    seen, errors = [], []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            status, body = post(url, {"instances": [[10.0]]})
            if status != 200:
                errors.append((status, body))
            else:
                seen.append(body["predictions"][0][0])

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        time.sleep(0.5)
        save_affine(models / "reload" / "2", 1.0, 2.0)
        pushed = time.monotonic()
        while time.monotonic() - pushed < 10 and (not seen or seen[-1] != 12.0):
            time.sleep(0.05)
        switched = time.monotonic() - pushed
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert seen[0] == 11.0 and seen[-1] == 12.0 and set(seen) == {11.0, 12.0}, "version 1 then version 2"
    assert switched < 5.0
    assert 11.0 not in seen[seen.index(12.0):], "once version 2 answers, version 1 never does again"
    statuses = {s["version"]: s["state"] for s in get_json(model_url(server, "reload"))[1]["model_version_status"]}
    assert statuses == {"2": "AVAILABLE", "1": "END"}


def test_half_written_versions_are_ignored_and_failures_reported(server, models):
    base = models / "broken"
    (base / "5" / "variables").mkdir(parents=True)  # a copy still in progress: no saved_model.pb yet
    (base / "6").mkdir()
    (base / "6" / "saved_model.pb").write_bytes(b"\x00 definitely not a SavedModel")
    (base / "not-a-version").mkdir()
    deadline = time.monotonic() + 15
    statuses = {}
    while time.monotonic() < deadline:
        statuses = {s["version"]: s for s in get_json(model_url(server, "broken"))[1]["model_version_status"]}
        if statuses.get("6", {}).get("state") == "END":
            break
        assert post(model_url(server, "broken:predict"), {"instances": [[1.0]]}) == (200, {"predictions": [[2.0]]})
        time.sleep(0.1)
    assert set(statuses) == {"1", "6"}, "the incomplete directory 5 is never considered"
    assert statuses["1"]["state"] == "AVAILABLE" and statuses["1"]["status"]["error_code"] == "OK"
    assert statuses["6"]["state"] == "END" and statuses["6"]["status"]["error_code"] != "OK"
    assert statuses["6"]["status"]["error_message"]
    assert post(model_url(server, "broken:predict"), {"instances": [[1.0]]}) == (200, {"predictions": [[2.0]]})
    assert post(model_url(server, "broken/versions/6:predict"), {"instances": [[1.0]]})[0] == 404


def test_warmup_requests_replay_at_load_and_a_failing_warmup_blocks_the_version(server):
    statuses = {s["version"]: s for s in get_json(model_url(server, "warm"))[1]["model_version_status"]}
    assert statuses["1"]["state"] == "AVAILABLE"
    assert statuses["2"]["state"] == "END" and "warmup request 1 failed" in statuses["2"]["status"]["error_message"]
    assert post(model_url(server, "warm:predict"), {"instances": [[1.0]]}) == (200, {"predictions": [[2.0]]})
    assert "warm version 1: replayed 1 warmup requests" in server.log()


# -- command line: names, imports -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "x/../y"])
def test_serve_rejects_unsafe_model_names(tmp_path, name):
    result = CliRunner().invoke(main, ["serve", "--model-base-path", str(tmp_path), "--model-name", name])
    assert result.exit_code == 1
    assert result.output.startswith("Error: invalid model name") and len(result.output.strip().splitlines()) == 1


def test_serve_refuses_bad_options_before_importing_tensorflow(tmp_path):
    params = tmp_path / "batching.config"
    params.write_text("pad_variable_length_inputs: true\n")
    report = ("import sys\nfrom keras_itl.cli.main import main\n"
              "try:\n    main()\nfinally:\n    print(sorted(sys.modules))")
    for args, fragment in ((["--model-base-path", str(tmp_path), "--model-name", "../evil"], "invalid model name"),
                           (["--model-base-path", str(tmp_path), "--model-name", "m", "--enable_batching",
                             "--batching_parameters_file", str(params)], "pad_variable_length_inputs")):
        done = subprocess.run([sys.executable, "-c", report, "serve", *args], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1 and done.stderr.startswith("Error: ") and fragment in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "tensorflow" not in ast.literal_eval(done.stdout.strip().splitlines()[-1])


def test_the_server_process_does_not_load_keras(server):
    """TensorFlow's eager import of Keras (and so of scikit-learn and matplotlib) is skipped by the server."""
    here = Path("/proc/self/maps").read_text()  # this test process imported Keras: the check sees its libraries
    assert "/sklearn/" in here and "/matplotlib/" in here
    mapped = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "/tensorflow/" in mapped
    assert "/sklearn/" not in mapped and "/matplotlib/" not in mapped


# -- deployment files for the official server --------------------------------------------------------
def test_deployment_files_serve_saved_models_on_the_standard_ports():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    serving = Path(__file__).resolve().parents[2] / "serving"
    config = text_format.Parse((serving / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    entries = config.model_config_list.config
    assert entries and all(e.base_path == f"/models/{e.name}" and e.model_platform == "tensorflow" for e in entries)
    compose = (serving / "docker-compose.yml").read_text()
    for line in ("image: tensorflow/serving", "../saved_models:/models", "./models.config:/config/models.config",
                 "--model_config_file=/config/models.config", "127.0.0.1:8500:8500", "127.0.0.1:8501:8501"):
        assert line in compose
