"""The Open Inference Protocol (KServe v2) REST and gRPC APIs of ``keras-itl serve``: the protocol's own
example bodies, and unchanged Triton clients (``tritonclient.http`` with JSON and binary tensor data,
``tritonclient.grpc`` on the gRPC port)."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.serving.serving_helpers import Server, get_json, post, request, save_affine, save_text, save_two_in_two_out

pytestmark = pytest.mark.xdist_group("test_serving_v2")  # one worker runs the module: its server starts once


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2")
    save_affine(root / "hpt" / "1", 0.5, 2.0)
    save_two_in_two_out(root / "multi" / "1")
    save_text(root / "text" / "1")
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "\n".join(
        f'  config {{ name: "{name}" base_path: "{root / name}" model_platform: "tensorflow" }}'
        for name in ("hpt", "multi", "text")) + "\n}\n")
    running = Server(["--model-config-file", str(config)], root / "server.log")
    try:
        for name in ("hpt", "multi", "text"):
            running.wait_available(name)
        yield running
    finally:
        running.stop()


def test_health_and_metadata(server):
    assert get_json(f"{server.url}/v2/health/live") == (200, {"live": True})
    assert get_json(f"{server.url}/v2/health/ready") == (200, {"ready": True})
    assert get_json(f"{server.url}/v2")[1]["name"] == "keras-itl"
    assert get_json(f"{server.url}/v2/models/hpt/ready") == (200, {"name": "hpt", "ready": True})
    assert get_json(f"{server.url}/v2/models/hpt/versions/7/ready") == (400, {"name": "hpt", "ready": False})
    assert get_json(f"{server.url}/v2/models/multi") == (200, {
        "name": "multi", "versions": ["1"], "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1, 2]},
                   {"name": "b", "datatype": "INT64", "shape": [-1]}],
        "outputs": [{"name": "b_twice", "datatype": "INT64", "shape": [-1]},
                    {"name": "sum", "datatype": "FP32", "shape": [-1]}]})  # sorted by name
    status, error = get_json(f"{server.url}/v2/models/nope")
    assert status == 404 and "nope" in error["error"]


def test_the_protocols_example_inference_request(server):
    # The shape of the specification's example: several inputs, flattened row-major data, an id, chosen outputs.
    body = {"id": "42", "inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                                   {"name": "b", "shape": [2], "datatype": "INT64", "data": [10, 20]}],
            "outputs": [{"name": "sum"}]}
    assert post(f"{server.url}/v2/models/multi/versions/1/infer", body) == (200, {
        "model_name": "multi", "model_version": "1", "id": "42",
        "outputs": [{"name": "sum", "datatype": "FP32", "shape": [2], "data": [13.0, 27.0]}]})
    status, answer = post(f"{server.url}/v2/models/text/infer",
                          {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["ab", "ä"]}]})
    assert status == 200 and {o["name"]: o["data"] for o in answer["outputs"]} == {"length": [2, 2],
                                                                                  "text_bytes": ["ab", "ä"]}


@pytest.mark.parametrize("body, fragment", [
    ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1]}]}, "FP32"),
    ({"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1]}]}, "values for shape"),
    ({"inputs": [{"name": "x", "shape": [2**40, 3], "datatype": "FP32", "data": [1]}]}, "values for shape"),
    ({"inputs": [{"name": "y", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}, "do not match"),
    ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}], "outputs": [{"name": "z"}]},
     "unknown outputs"),
    ({"inputs": "nope"}, "list"),
    ({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [[1], [2, 3]]}]}, "regular nesting"),
])
def test_bad_inference_requests_get_400_json(server, body, fragment):
    status, answer = post(f"{server.url}/v2/models/hpt/infer", body)
    assert status == 400 and fragment in answer["error"]


def test_deeply_nested_bytes_data_is_refused(server):
    body = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ' + b"[" * 900 + b'"a"' \
        + b"]" * 900 + b"}]}"
    status, raw = request(f"{server.url}/v2/models/text/infer", body)
    assert status == 400 and list(json.loads(raw)) == ["error"]


def test_malformed_v2_paths_are_400_json(server):
    for path, method in (("/v2/models/hpt/infer", "GET"), ("/v2/health/dead", "GET"), ("/v2/models/hpt", "POST")):
        status, raw = request(f"{server.url}{path}", b"{}" if method == "POST" else None, method=method)
        assert status == 400 and "Malformed request" in json.loads(raw)["error"]


@pytest.mark.parametrize("binary", [False, True])
def test_triton_client_works_unchanged(server, binary):
    client = triton.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("multi")
    assert [t["name"] for t in client.get_model_metadata("multi")["inputs"]] == ["a", "b"]
    a = np.array([[1.5, 2.0], [3.0, -4.25]], np.float32)
    b = np.array([7, 9], np.int64)
    inputs = [triton.InferInput("a", list(a.shape), "FP32"), triton.InferInput("b", list(b.shape), "INT64")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("sum", "b_twice")]
    result = client.infer("multi", inputs, outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), a.sum(axis=1) + b)
    np.testing.assert_array_equal(result.as_numpy("b_twice"), b * 2)
    text = triton.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"xyz", b"\xc3\xa4"], dtype=object), binary_data=binary)
    answer = client.infer("text", [text], outputs=[triton.InferRequestedOutput("length", binary_data=binary)])
    np.testing.assert_array_equal(answer.as_numpy("length"), [3, 2])
    client.close()


def test_triton_grpc_client_works_unchanged(server):
    client = triton_grpc.InferenceServerClient(server.grpc_target)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("multi")
    assert client.is_model_ready("hpt", "1") and not client.is_model_ready("hpt", "7")
    assert client.get_server_metadata().name == "keras-itl"
    metadata = client.get_model_metadata("multi")
    assert metadata.versions == ["1"]
    assert [(t.name, t.datatype) for t in metadata.inputs] == [("a", "FP32"), ("b", "INT64")]
    a = np.array([[1.5, 2.0], [3.0, -4.25]], np.float32)
    b = np.array([7, 9], np.int64)
    inputs = [triton_grpc.InferInput("a", list(a.shape), "FP32"), triton_grpc.InferInput("b", list(b.shape), "INT64")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("multi", inputs, outputs=[triton_grpc.InferRequestedOutput("sum")], request_id="r1")
    np.testing.assert_array_equal(result.as_numpy("sum"), a.sum(axis=1) + b)
    assert result.as_numpy("b_twice") is None and result.get_response().id == "r1"
    text = triton_grpc.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([b"xyz", b"\xc3\xa4"], dtype=object))
    np.testing.assert_array_equal(client.infer("text", [text]).as_numpy("length"), [3, 2])
    for call, code in ((lambda: client.get_model_metadata("nope"), "StatusCode.NOT_FOUND"),
                       (lambda: client.infer("hpt", [inputs[1]]), "StatusCode.INVALID_ARGUMENT"),
                       (lambda: client.is_model_ready("hpt", "1x"), "StatusCode.INVALID_ARGUMENT")):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == code
    client.close()


def _typed_infer(server, tensor: service_pb2.ModelInferRequest.InferInputTensor, model: str = "hpt"):
    request = service_pb2.ModelInferRequest(model_name=model, inputs=[tensor])
    with grpc.insecure_channel(server.grpc_target) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def test_grpc_typed_contents_and_their_errors(server):
    tensor = service_pb2.ModelInferRequest.InferInputTensor
    answer = _typed_infer(server, tensor(name="x", datatype="FP32", shape=[2, 1],
                                         contents=service_pb2.InferTensorContents(fp32_contents=[2.0, 4.0])))
    assert [out.name for out in answer.outputs] == ["y"] and list(answer.outputs[0].shape) == [2, 1]
    np.testing.assert_array_equal(np.frombuffer(answer.raw_output_contents[0], "<f4"), [3.0, 4.0])
    text = _typed_infer(server, tensor(name="text", datatype="BYTES", shape=[1],
                                       contents=service_pb2.InferTensorContents(bytes_contents=[b"abcd"])), "text")
    outputs = {out.name: (out.datatype, raw) for out, raw in zip(text.outputs, text.raw_output_contents)}
    assert outputs["length"] == ("INT32", np.array([4], "<i4").tobytes())
    assert outputs["text_bytes"] == ("BYTES", b"\x04\x00\x00\x00abcd")
    for bad, fragment in (
            (tensor(name="x", datatype="FP32", shape=[3, 1],
                    contents=service_pb2.InferTensorContents(fp32_contents=[1])),
             "1 values for shape [3, 1]"),
            (tensor(name="x", datatype="INT64", shape=[1, 1],
                    contents=service_pb2.InferTensorContents(int64_contents=[1])),
             "expects datatype FP32"),
            (tensor(name="x", datatype="FP16", shape=[1, 1]), "needs raw_input_contents"),
            (tensor(name="x", datatype="FP32", shape=[2**40, 3]), "values for shape")):
        with pytest.raises(grpc.RpcError) as caught:
            _typed_infer(server, bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in caught.value.details()
