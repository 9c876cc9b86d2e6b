"""TF Serving's REST API on aiohttp: model status, metadata and ``:predict``, errors as ``{"error": ...}``.

The same port also answers the Open Inference Protocol's ``/v2`` routes (``open_inference``) and, when
configured, Prometheus metrics; every other path is a 404.

The event loop only moves bytes: decoding, inference and encoding of a prediction run in thread pools,
so slow requests neither block other REST requests nor the gRPC server. Bodies over ``BIG_BODY_BYTES``
go to a lane of their own (one at a time, at most ``MAX_QUEUED_BIG`` waiting, more get a 503), so a
few huge requests cannot occupy every worker while small requests wait; its model calls run on a CPU
device with a TensorFlow thread pool of its own (``cpu_lanes``). Bodies are limited in size
(413) and in the time their upload may take (408).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from aiohttp import web

from keras_itl.serving import json_codec, open_inference
from keras_itl.serving.api_messages import (
    SIGNATURE_DEF_FIELD,
    model_spec,
    model_status,
    signature_def_map,
    to_json_dict,
)
from keras_itl.serving.cpu_lanes import on_device
from keras_itl.serving.errors import InvalidArgument, ServingError, Unavailable
from keras_itl.serving.http_server import json_error, json_response
from keras_itl.serving.metrics import CONTENT_TYPE, exposition, record_request
from keras_itl.serving.model_manager import ModelManager
from keras_itl.serving.prediction import Predict, get_signature, run_prediction

log = logging.getLogger(__name__)

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<action>/metadata|:predict)?$")
_ACTION_METHODS = {None: "GET", "/metadata": "GET", ":predict": "POST"}
MAX_VERSION = 2**63 - 1  # versions are int64 in TF Serving
BIG_BODY_BYTES = 1024 * 1024
MAX_QUEUED_BIG = 4
_CHUNK = 256 * 1024
# The status label of request metrics for REST answers, named like the gRPC codes TF Serving reports.
_STATUS_NAMES = {200: "OK", 400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED",
                 413: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


@dataclass(frozen=True)
class RestLimits:
    """Bounds on a request: body size, and seconds allowed for the headers and for the body to arrive."""

    max_request_bytes: int = 64 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0


class _BodyTooLarge(Exception):
    pass


def _version(text: str | None) -> int | None:
    """The version of a URL: ASCII digits of an int64, else a malformed request (as TF Serving answers)."""
    if text is None:
        return None
    if len(text) > 19 or int(text) > MAX_VERSION:
        raise InvalidArgument(f"Malformed request: version {text[:40]} is not an int64")
    return int(text)


async def _read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The request body, refused as soon as it is known to exceed ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise _BodyTooLarge()
    body = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise _BodyTooLarge()
    return bytes(body)


class RestApi:
    """Request handlers bound to a model manager and the thread pools that run predictions."""

    def __init__(self, manager: ModelManager, executor: Executor, big_executor: Executor, limits: RestLimits,
                 predict: Predict = run_prediction, metrics_path: str | None = None, big_device: str | None = None):
        self._manager = manager
        self._run_model = predict
        self._v2 = open_inference.OpenInferenceApi(manager, predict)
        self._metrics_path = metrics_path
        self._executor = executor
        self._big_executor = big_executor
        self._limits = limits
        self._big_device = big_device
        self._big_lock = threading.Lock()
        self._big_pending = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Route one request by TF Serving's URL scheme and answer errors as JSON."""
        if request.path == self._metrics_path and request.method == "GET":
            return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE})
        if request.path == "/v2" or request.path.startswith("/v2/"):
            return await self._handle_v2(request)
        if not request.path.startswith("/v1/"):
            return json_error(404, f"Not found: {request.method} {request.path[:200]}")
        match = _PATH.match(request.path)
        action = match["action"] if match else None
        if match is None or request.method != _ACTION_METHODS[action]:
            return json_error(400, f"Malformed request: {request.method} {request.path_qs[:200]}")
        name, label = match["name"], match["label"]
        try:
            version = _version(match["version"])
            if action is None:
                return json_response(to_json_dict(model_status(self._manager, name, version, label)))
            if action == "/metadata":
                return json_response(self._metadata(name, version, label))
        except ServingError as error:
            return json_error(error.http_status, str(error))
        return await self._answer(request, name, functools.partial(self._predict, name, version, label))

    async def _handle_v2(self, request: web.BaseRequest) -> web.StreamResponse:
        """The Open Inference Protocol routes (see ``open_inference``)."""
        try:
            target = open_inference.route(request.method, request.path)
            if target.kind == "server":
                return json_response(self._v2.server_metadata())
            if target.kind == "live":
                return json_response({"live": True})
            if target.kind == "ready":
                ready = self._v2.server_ready()
                return json_response({"ready": ready}, 200 if ready else 400)
            if target.kind == "model":
                return json_response(self._v2.model_metadata(target.name, target.version))
            if target.kind == "model_ready":
                ready = self._v2.model_ready(target.name, target.version)
                return json_response({"name": target.name, "ready": ready}, 200 if ready else 400)
            header_length = request.headers.get(open_inference.HEADER_LENGTH)
            if header_length is not None and not (header_length.isascii() and header_length.isdigit()):
                raise InvalidArgument(f"{open_inference.HEADER_LENGTH} must be a byte count")
        except ServingError as error:
            return json_error(error.http_status, str(error))
        return await self._answer(request, target.name, functools.partial(
            self._infer, target.name, target.version, int(header_length) if header_length else None))

    async def _answer(self, request: web.BaseRequest, name: str, work: Callable[[bytes], web.Response]
                      ) -> web.Response:
        """Run ``work`` on the request's body in a worker thread; errors as JSON; the request counted in metrics."""
        started = time.perf_counter()
        response = await self._answer_body(request, work)
        record_request(self._manager.metric_name(name), "REST", _STATUS_NAMES.get(response.status, "UNKNOWN"),
                       time.perf_counter() - started)
        return response

    async def _answer_body(self, request: web.BaseRequest, work: Callable[[bytes], web.Response]) -> web.Response:
        try:
            return await self._run_with_body(request, work)
        except _BodyTooLarge:
            return self._closing(json_error(413, f"Request body too large: the limit is "
                                                 f"{self._limits.max_request_bytes} bytes"))
        except TimeoutError:
            return self._closing(json_error(408, f"Request body not received within {self._limits.body_timeout:g}s"))
        except ServingError as error:
            return json_error(error.http_status, str(error))
        except Exception as error:  # a bug must still answer in the API's error format
            log.exception("unexpected error serving %s", request.path)
            return json_error(500, f"{type(error).__name__}: {error}")

    @staticmethod
    def _closing(response: web.Response) -> web.Response:
        response.force_close()  # the rest of the body may still be on its way
        return response

    async def _run_with_body(self, request: web.BaseRequest, work: Callable[[bytes], web.Response]) -> web.Response:
        async with asyncio.timeout(self._limits.body_timeout):
            body = await _read_body(request, self._limits.max_request_bytes)
        loop = asyncio.get_running_loop()
        if len(body) <= BIG_BODY_BYTES:
            return await loop.run_in_executor(self._executor, work, body)
        with self._big_lock:
            if self._big_pending >= MAX_QUEUED_BIG:
                raise Unavailable(f"Too many large requests in flight; retry later (at most {MAX_QUEUED_BIG} "
                                  f"bodies larger than {BIG_BODY_BYTES} bytes at a time)")
            self._big_pending += 1
        try:
            return await loop.run_in_executor(self._big_executor, self._on_big_device, work, body)
        finally:
            with self._big_lock:
                self._big_pending -= 1

    def _on_big_device(self, work: Callable[[bytes], web.Response], body: bytes) -> web.Response:
        with on_device(self._big_device):  # its own TensorFlow thread pool (see cpu_lanes)
            return work(body)

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict:
        loaded = self._manager.resolve(name, version, label)
        return {"model_spec": to_json_dict(model_spec(loaded)),
                "metadata": {SIGNATURE_DEF_FIELD: to_json_dict(signature_def_map(loaded))}}

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> web.Response:
        request = json_codec.parse_predict_body(body)
        loaded = self._manager.resolve(name, version, label)
        signature = get_signature(loaded, request.signature_name)
        inputs = json_codec.decode_inputs(request, signature)
        outputs = self._run_model(signature, inputs, (), loaded.name)
        return json_response(json_codec.encode_outputs(outputs, request.format))

    def _infer(self, name: str, version: int | None, header_length: int | None, body: bytes) -> web.Response:
        answer, answer_header_length = self._v2.infer(name, version, body, header_length)
        response = json_response(answer)
        if answer_header_length is not None:
            response.content_type = "application/octet-stream"
            response.headers[open_inference.HEADER_LENGTH] = str(answer_header_length)
        return response
