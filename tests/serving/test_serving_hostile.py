"""``keras-itl serve`` under hostile input and resource pressure (issue 13), against a real subprocess.

Each defect found when the server was tried as an attacker or a careless operator would has a test:
bodies that used to crash the JSON decoder, version paths outside int64, protocol-level errors that
came back as text/plain, slowloris connections, gRPC tensors that claimed terabytes, failed loads
that were never retried, SIGTERM waiting for a huge request, IPv6 hosts. A seeded fuzz test then
throws a few hundred bodies of those classes at REST and gRPC (TF Serving's and v2's) and checks the
server stays correct. One server serves the module, on the IPv6 loopback where the machine has one;
the last test stops it with SIGTERM during a slow request.
"""
from __future__ import annotations

import base64
import contextlib
import json
import random
import shutil
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

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
)

pytestmark = pytest.mark.xdist_group("test_serving_hostile")  # one worker runs the module: its server starts once

MAX_REQUEST_BYTES = 2_000_000
GRPC_MAX_MESSAGE_BYTES = 4_000_000
HEADER_TIMEOUT, BODY_TIMEOUT = 1.0, 2.0
LOAD_RETRIES = 3
RETRY_INTERVAL = 2.0
SERVED = ("hpt", "multi", "text", "classifier", "spin")
GRACE_SECONDS = 1.0


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-models")
    save_affine(root / "hpt" / "1", 0.5, 2.0)
    save_two_in_two_out(root / "multi" / "1")
    save_text(root / "text" / "1")
    save_classifier(root / "classifier" / "1")
    save_spin(root / "spin" / "1")
    # "late": saved_model.pb copied before variables/, as a careless copy does; "broken": never loadable.
    save_affine(root / "staging" / "late", 1.0, 5.0)
    (root / "late" / "1").mkdir(parents=True)
    shutil.copy(root / "staging" / "late" / "saved_model.pb", root / "late" / "1")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    return root


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    """The module's server, on the IPv6 loopback where there is one; the module's last test stops it."""
    config = tmp_path_factory.mktemp("hostile-config") / "models.config"
    entries = [f'config {{ name: "{name}" base_path: "{models / name}" model_platform: "tensorflow" }}'
               for name in (*SERVED, "late", "broken")]
    config.write_text("model_config_list {\n  " + "\n  ".join(entries) + "\n}\n")
    running = Server(["--model-config-file", str(config), "--poll-seconds", "0.2",
                      "--max-request-bytes", str(MAX_REQUEST_BYTES),
                      "--grpc-max-message-bytes", str(GRPC_MAX_MESSAGE_BYTES),
                      "--header-timeout-seconds", str(HEADER_TIMEOUT), "--body-timeout-seconds", str(BODY_TIMEOUT),
                      "--max_num_load_retries", str(LOAD_RETRIES),
                      "--load_retry_interval_micros", str(int(RETRY_INTERVAL * 1e6)),
                      "--grace-seconds", str(GRACE_SECONDS)],
                     config.parent / "server.log", host="::1" if _ipv6_loopback() else "127.0.0.1")
    try:
        for name in SERVED:
            running.wait_available(name)
        yield running
    finally:
        running.stop()


# -- availability (first: failed loads are retried from the server's start) ----------------------------
def test_failed_loads_are_retried_then_given_up(server, models):
    status = get_json(f"{server.url}/v1/models/late")[1]["model_version_status"][0]
    assert status["state"] == "END" and status["status"]["error_message"]
    shutil.copytree(models / "staging" / "late" / "variables", models / "late" / "1" / "variables")
    server.wait_available("late", timeout=30)
    assert post(f"{server.url}/v1/models/late:predict", {"instances": [[1.0]]}) == (200, {"predictions": [[6.0]]})
    deadline = time.monotonic() + 30
    while server.log().count("failed to load broken version 1") < 1 + LOAD_RETRIES and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(RETRY_INTERVAL + 1.0)  # no further attempt may happen
    assert server.log().count("failed to load broken version 1") == 1 + LOAD_RETRIES


def url(server: Server, path: str) -> str:
    return f"{server.url}/v1/models/{path}"


def assert_json_error(status: int, raw: bytes, expected_status: int, fragment: str = "") -> None:
    assert status == expected_status, raw[:300]
    error = json.loads(raw)
    assert list(error) == ["error"] and fragment in error["error"], error


def assert_still_correct(server: Server) -> None:
    assert post(url(server, "hpt:predict"), {"instances": [[2.0]]}) == (200, {"predictions": [[3.0]]})


def nested(depth: int, leaf: bytes) -> bytes:
    return b"[" * depth + leaf + b"]" * depth


HUGE_INT = b"1" * 4301
HOSTILE_BODIES = [
    ("deep instances", "hpt", b'{"instances": ' + nested(10_000, b"1") + b"}", "JSON Parse error"),
    ("deep strings 100", "text", b'{"instances": ' + nested(100, b'"a"') + b"}", "dimensions"),
    ("deep strings 900", "text", b'{"instances": ' + nested(900, b'"a"') + b"}", "dimensions"),
    ("deep with NaN", "hpt", b'{"instances": ' + nested(1100, b"NaN") + b"}", "JSON Parse error"),
    ("huge int, float input", "hpt", b'{"instances": [[' + HUGE_INT + b"]]}", "JSON Parse error"),
    ("huge int, int64 input", "multi", b'{"inputs": {"a": [[1, 2]], "b": [' + HUGE_INT + b"]}}", "JSON Parse error"),
    ("huge int beside NaN", "hpt", b'{"instances": [[' + HUGE_INT + b"], [NaN]]}", "JSON Parse error"),
    ("int64 overflow", "multi", b'{"inputs": {"a": [[1, 2]], "b": [100000000000000000000000000000]}}', "range"),
    ("lone surrogate in b64", "classifier", b'{"signature_name": "serving_bytes", "instances": [{"b64": "\\udfff"}]}',
     "JSON Parse error"),
    ("lone surrogate in string", "text", b'{"instances": ["\\udfff"]}', "JSON Parse error"),
    ("lone surrogate beside NaN", "text", b'{"instances": ["\\udfff"], "x": NaN}', "Unicode"),
    ("lone surrogate b64 beside NaN", "classifier",
     b'{"signature_name": "serving_bytes", "instances": [{"b64": "\\udfff"}], "x": NaN}', "base64"),
    ("rank 40", "hpt", b'{"instances": ' + nested(40, b"1") + b"}", "dimensions"),
    ("NaN in a numeric fast-path body", "hpt", b'{"instances": [[1.0], [nan]]}', "JSON Parse error"),
]


@pytest.mark.parametrize("model, body, fragment", [case[1:] for case in HOSTILE_BODIES],
                         ids=[case[0] for case in HOSTILE_BODIES])
def test_hostile_bodies_get_a_400_json_error(server, model, body, fragment):
    status, raw = request(url(server, f"{model}:predict"), body)
    assert_json_error(status, raw, 400, fragment)
    assert_still_correct(server)


def test_hostile_bodies_leave_no_traceback_in_the_log(server):
    for _, model, body, _ in HOSTILE_BODIES:
        request(url(server, f"{model}:predict"), body)
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("version, expected", [("1" * 4301, 400), ("99999999999999999999", 400),
                                               ("%D9%A1", 400), ("9223372036854775807", 404), ("1", 200)])
def test_versions_are_ascii_int64(server, version, expected):
    status, raw = request(url(server, f"hpt/versions/{version}"))
    if expected == 200:
        assert status == 200 and json.loads(raw)["model_version_status"][0]["version"] == "1"
    else:
        assert_json_error(status, raw, expected)


def raw_exchange(server: Server, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes on a new connection and read until the server closes it."""
    with socket.create_connection((server.host, server.rest_port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def parse_response(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("data", [
    b"GET /v1/models/" + b"x" * 10_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",  # request line too long
    b"G(T /v1/models/hpt HTTP/1.1\r\nHost: a\r\n\r\n",  # not a method token
    b"BREW /v1/models/hpt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",  # unknown method
    b"GET /v1/models/hpt HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 10_000 + b"\r\n\r\n",  # header too long
    b"POST /v1/models/hpt:predict HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunk
    b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",  # outside /v1
], ids=["long-url", "bad-method-token", "unknown-method", "long-header", "bad-chunk", "unknown-path"])
def test_protocol_errors_are_json(server, data):
    status, headers, body = parse_response(raw_exchange(server, data))
    assert 400 <= status < 500 and headers["content-type"].startswith("application/json")
    assert list(json.loads(body)) == ["error"]


def test_slowloris_headers_are_cut_off(server):
    started = time.monotonic()
    answer = raw_exchange(server, b"POST /v1/models/hpt:predict HTTP/1.1\r\nHost: a\r\nContent-Le")
    assert answer == b"" and time.monotonic() - started < HEADER_TIMEOUT + 5


def test_slow_bodies_get_408_json(server):
    head = b"POST /v1/models/hpt:predict HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
    status, headers, body = parse_response(raw_exchange(server, head + b'{"instances"'))
    assert status == 408 and "not received" in json.loads(body)["error"]
    assert_still_correct(server)


def test_oversized_bodies_get_413_without_being_read(server):
    head = (b"POST /v1/models/hpt:predict HTTP/1.1\r\nHost: a\r\nContent-Length: "
            + str(MAX_REQUEST_BYTES + 1).encode() + b"\r\n\r\n")
    status, _, body = parse_response(raw_exchange(server, head))
    assert status == 413 and "too large" in json.loads(body)["error"]


def test_big_bodies_are_answered_like_small_ones(server):
    """A body over 1 MiB runs in the big-body lane, whose model calls use a CPU device of their own."""
    values = np.arange(150_000, dtype=np.float32).reshape(-1, 1) / 8
    body = json.dumps({"instances": values.tolist()}).encode()
    assert len(body) > 1024 * 1024
    status, raw = request(url(server, "hpt:predict"), body)
    assert status == 200, raw[:300]
    np.testing.assert_array_equal(np.asarray(json.loads(raw)["predictions"], np.float32), values * 0.5 + 2)
    assert_still_correct(server)
    assert "model calls on /CPU:1" in server.log()


# -- gRPC ------------------------------------------------------------------------------------------
def grpc_predict(server: Server, inputs: dict[str, tensor_pb2.TensorProto], model: str = "hpt", timeout: float = 30):
    request_proto = predict_pb2.PredictRequest()
    request_proto.model_spec.name = model
    for name, proto in inputs.items():
        request_proto.inputs[name].CopyFrom(proto)
    with grpc.insecure_channel(server.grpc_target, options=[("grpc.max_send_message_length", 2**31 - 1)]) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request_proto, timeout=timeout)


def tensor(dtype: int, dims: list[int], **values) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, **values)


@pytest.mark.parametrize("proto, fragment", [
    (tensor(types_pb2.DT_VARIANT, [1]), "DT_VARIANT"),
    (tensor(types_pb2.DT_RESOURCE, [1]), "DT_RESOURCE"),
    (tensor(types_pb2.DT_FLOAT_REF, [1], float_val=[1.0]), "DT_FLOAT"),
    (tensor(types_pb2.DT_FLOAT, [2**40, 3], float_val=[1.0]), "over the limit"),
    (tensor(types_pb2.DT_STRING, [2**40], string_val=[b"a"]), "over the limit"),
    (tensor(types_pb2.DT_FLOAT, [4, -1], float_val=[1.0]), "negative"),
    (tensor(types_pb2.DT_FLOAT, [1000, 1], tensor_content=b"\0" * 12), "tensor_content"),
    (tensor(12345, [1]), "dtype"),
], ids=["variant", "resource", "ref", "huge-shape", "huge-strings", "negative-dim", "short-content", "bad-enum"])
def test_grpc_hostile_tensors_are_invalid_argument(server, proto, fragment):
    with pytest.raises(grpc.RpcError) as caught:
        grpc_predict(server, {"x": proto})
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in caught.value.details()


def test_grpc_message_limit_is_configurable(server):
    big = tf.make_tensor_proto(np.ones((GRPC_MAX_MESSAGE_BYTES // 4 + 10, 1), np.float32))
    with pytest.raises(grpc.RpcError) as caught:
        grpc_predict(server, {"x": big})
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    fits = tf.make_ndarray(grpc_predict(server, {"x": tf.make_tensor_proto(np.ones((100_000, 1), np.float32))})
                           .outputs["y"])
    assert fits.shape == (100_000, 1) and np.all(fits == 2.5)


# -- fuzzing ---------------------------------------------------------------------------------------
def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _fuzz_body(rng: random.Random) -> tuple[str, bytes]:
    """One body drawn from the hostile classes, mutated at random."""
    kind = rng.choice(["deep", "huge-int", "surrogate", "numbers", "mutated", "garbage", "nan", "strings", "b64", "v2"])
    if kind == "v2":  # Open Inference Protocol bodies, posted to /v2/models/<model>/infer
        tensor = {"name": rng.choice(["x", "text", "a"]), "datatype": rng.choice(["FP32", "BYTES", "INT64", "FP99"]),
                  "shape": [rng.choice([0, 1, 2, 2**40, -1]) for _ in range(rng.randint(0, 3))],
                  "data": rng.choice([[1.0], ["a"], [[1.0]], "x", [1e308] * 2])}
        return rng.choice(["hpt", "text"]) + "/infer", json.dumps({"inputs": [tensor]}).encode()
    if kind == "deep":
        depth = rng.choice([rng.randint(1, 64), rng.randint(900, 1100), rng.randint(1100, 20_000)])
        return rng.choice(["hpt", "text"]), b'{"instances": ' + nested(depth, rng.choice([b"1", b'"a"', b""])) + b"}"
    if kind == "huge-int":
        digits = rng.choice([19, 20, 40, 4300, 4301, 20_000])
        literal = (b"-" if rng.random() < 0.5 else b"") + b"9" * digits
        return rng.choice(["hpt", "multi"]), b'{"inputs": {"a": [[1, 2]], "b": [' + literal + b"]}}"
    if kind == "surrogate":
        escape = rng.choice([b"\\udfff", b"\\ud800", b"\\ud800\\u0041", b"\\u0000"])
        return rng.choice(["text", "classifier"]), (b'{"signature_name": "serving_bytes", "instances": [{"b64": "'
                                                     + escape + b'"}]}')
    if kind == "numbers":
        rows = rng.randint(1, 50)
        values = ",".join(rng.choice(["1", "-0.5", "1e308", "1e999", "1.2.3", "+1", ".5", "0x10", "[2]", "true"])
                          for _ in range(rows))
        return "hpt", ("{\"instances\": [" + ",".join(f"[{v}]" for v in values.split(",")) + "]}").encode()
    if kind == "nan":
        return "hpt", rng.choice([b'{"instances": [[NaN], [Infinity], [-Infinity]]}', b'{"instances": [[NaN]',
                                  b'{"instances": [[NaN], [' + b"1" * 5000 + b"]]}"])
    if kind == "strings":
        return "text", json.dumps({"instances": [chr(rng.randint(32, 0x10FFFF)) if rng.random() < 0.9 else 5
                                                 for _ in range(rng.randint(1, 20))]}, ensure_ascii=rng.random() < 0.5
                                  ).encode(errors="surrogatepass")
    if kind == "b64":
        payload = rng.choice([png(7), b"\x89PNG\r\n\x1a\n", b"GIF89a" + bytes(20), b"\xff\xd8\xff", b"BM" + bytes(30)])
        return "classifier", json.dumps({"signature_name": "serving_bytes",
                                         "instances": [{"b64": base64.b64encode(payload).decode()}]}).encode()
    if kind == "mutated":
        body = bytearray(json.dumps({"instances": [[rng.uniform(-9, 9)] for _ in range(rng.randint(1, 20))]}).encode())
        for _ in range(rng.randint(1, 5)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        return "hpt", bytes(body)
    return rng.choice(["hpt", "text", "multi"]), bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))


def _fuzz_tensor(rng: random.Random) -> tensor_pb2.TensorProto:
    dtype = rng.choice([0, *range(1, 24), 101, 120, 12345])
    dims = [rng.choice([0, 1, 2, 3, 10, 2**20, 2**40, 2**62, -1]) for _ in range(rng.randint(0, 4))]
    proto = tensor(dtype, dims)
    choice = rng.random()
    if choice < 0.3:
        proto.float_val.extend([rng.uniform(-5, 5) for _ in range(rng.randint(0, 5))])
    elif choice < 0.6:
        proto.tensor_content = bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 4, 8, 40])))
    elif choice < 0.8:
        proto.string_val.extend([bytes(rng.randrange(256) for _ in range(5))])
    return proto


def _fuzz_infer(rng: random.Random) -> service_pb2.ModelInferRequest:
    """A v2 gRPC ModelInfer request with random names, datatypes, shapes, contents or raw bytes."""
    request = service_pb2.ModelInferRequest(model_name=rng.choice(["hpt", "text", "nope", ""]),
                                            model_version=rng.choice(["", "", "1", "7", "1x", "\u0661", "9" * 30]))
    for _ in range(rng.choice([0, 1, 1, 1, 2])):
        tensor = request.inputs.add(name=rng.choice(["x", "text", "a"]),
                                    datatype=rng.choice(["FP32", "FP16", "BYTES", "INT64", "BOOL", "FP99", ""]),
                                    shape=[rng.choice([0, 1, 2, 3, 2**40, 2**62]) for _ in range(rng.randint(0, 3))])
        if rng.random() < 0.5:
            request.raw_input_contents.append(bytes(rng.randrange(256) for _ in range(rng.choice([0, 2, 4, 8, 12]))))
        else:
            tensor.contents.fp32_contents.extend([rng.uniform(-5, 5) for _ in range(rng.randint(0, 4))])
            tensor.contents.bytes_contents.extend([b"\xff" * rng.randint(0, 3)] * rng.randint(0, 2))
            tensor.contents.int64_contents.extend([2**63 - 1] * rng.randint(0, 2))
    if rng.random() < 0.2:
        request.parameters["signature_name"].string_param = rng.choice(["serving_default", "nope", ""])
    return request


def test_seeded_fuzz_keeps_the_server_correct_and_bounded(server):
    rng = random.Random(1234)
    before = _rss_kib(server.process.pid)
    statuses = []
    for _ in range(250):
        model, body = _fuzz_body(rng)
        target = f"{server.url}/v2/models/{model}" if model.endswith("/infer") else url(server, f"{model}:predict")
        status, raw = request(target, body)
        answer = json.loads(raw)
        assert status == 200 or (400 <= status < 500 and list(answer) == ["error"]), (status, body[:200], raw[:300])
        statuses.append(status)
    codes = []
    for _ in range(150):
        try:
            grpc_predict(server, {"x": _fuzz_tensor(rng)}, model=rng.choice(["hpt", "text"]), timeout=30)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, set(codes)
    assert statuses.count(400) > 100 and codes.count(grpc.StatusCode.INVALID_ARGUMENT) > 100
    v2_codes = []
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(150):
            try:
                stub.ModelInfer(_fuzz_infer(rng), timeout=30)
                v2_codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                v2_codes.append(error.code())
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
               grpc.StatusCode.FAILED_PRECONDITION}
    assert set(v2_codes) <= allowed and v2_codes.count(grpc.StatusCode.INVALID_ARGUMENT) > 50, set(v2_codes)
    assert_still_correct(server)
    assert "Traceback" not in server.log()
    assert _rss_kib(server.process.pid) - before < 400 * 1024, "the server's memory grew by over 400 MB"


# -- process-level behaviour: last, as it stops the module's server -------------------------------------
def test_ipv6_host_and_sigterm_exit_bounded_by_the_grace_period(server):
    if server.host != "::1":
        pytest.skip("this machine has no IPv6 loopback")
    assert post(url(server, "spin:predict"), {"inputs": 10})[0] == 200
    assert grpc_predict(server, {"steps": tf.make_tensor_proto(np.int64(10))}, model="spin").outputs["total"]

    def slow_request() -> None:
        with contextlib.suppress(OSError):  # the server goes away mid-request
            request(url(server, "spin:predict"), b'{"inputs": 2000000000}')

    slow = threading.Thread(target=slow_request, daemon=True)
    slow.start()
    time.sleep(1.0)  # the slow prediction is running
    server.process.terminate()
    started = time.monotonic()
    server.process.wait(timeout=30)
    assert time.monotonic() - started < 15, "exit waited for the request instead of the grace period"
    assert "still running" in server.log() or "shutting down" in server.log()
