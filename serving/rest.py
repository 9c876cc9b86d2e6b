"""TF Serving's REST API on aiohttp: model status, metadata and ``:predict``, errors as ``{"error": ...}``.

The event loop only moves bytes: decoding, inference and encoding of a prediction run in the shared
thread pool, so slow requests neither block other REST requests nor the gRPC server.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from concurrent.futures import Executor

from aiohttp import web

from keras_itl.serving import json_codec
from keras_itl.serving.api_messages import (SIGNATURE_DEF_FIELD, model_spec, model_status, signature_def_map,
                                            to_json_dict)
from keras_itl.serving.errors import InvalidArgument, ServingError
from keras_itl.serving.model_manager import ModelManager
from keras_itl.serving.prediction import get_signature, run_prediction

log = logging.getLogger(__name__)

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<action>/metadata|:predict)?$")
_ACTION_METHODS = {None: "GET", "/metadata": "GET", ":predict": "POST"}


def _json_response(payload: dict | bytes, status: int = 200) -> web.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    return web.Response(body=body, status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json_response({"error": message}, status)


class RestApi:
    """Request handlers bound to a model manager and the thread pool that runs inference."""

    def __init__(self, manager: ModelManager, executor: Executor):
        self._manager = manager
        self._executor = executor

    async def handle(self, request: web.Request) -> web.Response:
        """Route one request by TF Serving's URL scheme and answer errors as JSON."""
        match = _PATH.match(request.path)
        action = match["action"] if match else None
        if match is None or request.method != _ACTION_METHODS[action]:
            return _error(400, f"Malformed request: {request.method} {request.path_qs}")
        name, label = match["name"], match["label"]
        version = int(match["version"]) if match["version"] else None
        try:
            if action is None:
                return _json_response(to_json_dict(model_status(self._manager, name, version, label)))
            if action == "/metadata":
                return _json_response(self._metadata(name, version, label))
            body = await request.read()
            loop = asyncio.get_running_loop()
            return _json_response(await loop.run_in_executor(self._executor, self._predict, name, version,
                                                             label, body))
        except web.HTTPRequestEntityTooLarge as error:
            return _error(413, f"Request body too large: {error.text}")
        except ServingError as error:
            return _error(error.http_status, str(error))
        except Exception as error:  # a bug must still answer in the API's error format
            log.exception("unexpected error serving %s", request.path)
            return _error(500, f"{type(error).__name__}: {error}")

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict:
        loaded = self._manager.resolve(name, version, label)
        return {"model_spec": to_json_dict(model_spec(loaded)),
                "metadata": {SIGNATURE_DEF_FIELD: to_json_dict(signature_def_map(loaded))}}

    def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        if not body.strip():
            raise InvalidArgument("JSON Parse error: the request body is empty")
        request = json_codec.parse_predict_body(body)
        loaded = self._manager.resolve(name, version, label)
        signature = get_signature(loaded, request.signature_name)
        inputs = json_codec.decode_inputs(request, signature)
        outputs = run_prediction(signature, inputs)
        return json_codec.encode_outputs(outputs, request.format)


def make_app(manager: ModelManager, executor: Executor, max_request_bytes: int) -> web.Application:
    """The aiohttp application; bodies above ``max_request_bytes`` get a 413 JSON error."""
    app = web.Application(client_max_size=max_request_bytes)
    app.router.add_route("*", "/{tail:.*}", RestApi(manager, executor).handle)
    return app
