"""The Open Inference Protocol (KServe v2) REST API beside TF Serving's, so KServe and Triton clients work.

Routes (``{m}`` a model name, ``/versions/{v}`` optional): ``GET /v2`` (server metadata),
``GET /v2/health/live``, ``GET /v2/health/ready`` (200 when every model has a servable version, else
400), ``GET /v2/models/{m}`` (model metadata: versions, and the inputs/outputs of its
``serving_default`` signature), ``GET /v2/models/{m}/ready`` and ``POST /v2/models/{m}/infer``.

Tensors are ``{"name", "shape", "datatype", "data"}`` with v2's datatypes (``FP32``, ``INT64``,
``BYTES``, ...) and data flattened in row-major order (nested lists are accepted too). The binary
tensor data extension that Triton clients use by default is supported: with an
``Inference-Header-Content-Length`` header the body is that many bytes of JSON followed by the raw
tensors of inputs whose parameters give ``binary_data_size``; outputs requested with
``"parameters": {"binary_data": true}`` come back the same way. A request may pick another
signature with ``"parameters": {"signature_name": ...}``. Errors are ``{"error": "..."}``.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import tensorflow as tf

import keras_itl
from keras_itl.serving.errors import InvalidArgument, ServableNotFound
from keras_itl.serving.json_codec import loads
from keras_itl.serving.model_manager import ModelManager
from keras_itl.serving.prediction import Predict, get_signature
from keras_itl.serving.signatures import Signature
from keras_itl.serving_layout import DEFAULT_SIGNATURE

HEADER_LENGTH = "Inference-Header-Content-Length"
_DATATYPES = {tf.bool: "BOOL", tf.uint8: "UINT8", tf.uint16: "UINT16", tf.uint32: "UINT32", tf.uint64: "UINT64",
              tf.int8: "INT8", tf.int16: "INT16", tf.int32: "INT32", tf.int64: "INT64", tf.float16: "FP16",
              tf.float32: "FP32", tf.float64: "FP64", tf.string: "BYTES"}
_PATH = re.compile(r"^/v2(?:/health/(?P<health>live|ready)"
                   r"|/models/(?P<name>[^/]+)(?:/versions/(?P<version>[0-9]{1,18}))?(?P<action>/ready|/infer)?)?$")


@dataclass(frozen=True)
class Route:
    """What a ``/v2`` request asks for: ``kind`` is server, live, ready, model, model_ready or infer."""

    kind: str
    name: str | None = None
    version: int | None = None


def route(method: str, path: str) -> Route:
    """The route of a ``/v2`` path and method; InvalidArgument (400) when neither fits the protocol."""
    match = _PATH.match(path)
    if match is None:
        raise InvalidArgument(f"Malformed request: {method} {path[:200]}")
    if match["health"]:
        kind = match["health"]
    elif match["name"] is None:
        kind = "server"
    else:
        kind = {None: "model", "/ready": "model_ready", "/infer": "infer"}[match["action"]]
    if method != ("POST" if kind == "infer" else "GET"):
        raise InvalidArgument(f"Malformed request: {method} {path[:200]}")
    return Route(kind, match["name"], int(match["version"]) if match["version"] else None)


def datatype(dtype: tf.DType) -> str:
    """v2's name of a TF dtype."""
    if dtype not in _DATATYPES:
        raise InvalidArgument(f"dtype {dtype.name} has no Open Inference Protocol datatype")
    return _DATATYPES[dtype]


def _tensor_metadata(name: str, spec: tf.TensorSpec) -> dict:
    shape = [-1 if size is None else size for size in spec.shape.as_list()] if spec.shape.rank is not None else [-1]
    return {"name": name, "datatype": _DATATYPES.get(spec.dtype, spec.dtype.name), "shape": shape}


def bytes_elements(items: list[bytes]) -> bytes:
    """BYTES elements in the binary data layout (see ``_decode_bytes``)."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _decode_bytes(raw: bytes, count: int, name: str) -> np.ndarray:
    """BYTES binary data: each element a 4-byte little-endian length, then its bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(f"input '{name}': truncated BYTES binary data")
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4:offset + 4 + length])
        offset += 4 + length
    if offset != len(raw) or len(items) != count:
        raise InvalidArgument(f"input '{name}': BYTES binary data does not hold {count} elements")
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def input_array(spec: dict, dtype: tf.DType, binary: bytes | None) -> np.ndarray:
    """One request tensor as numpy, its element count checked against its shape before anything is allocated.

    ``binary`` is the tensor's raw data (binary tensor data extension, or gRPC's raw contents) if it has any.
    """
    name = spec.get("name")
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(size, int) and 0 <= size < 2**62 for size in shape):
        raise InvalidArgument(f"input '{name}': 'shape' must be a list of non-negative integers")
    if spec.get("datatype") != datatype(dtype):
        raise InvalidArgument(f"input '{name}' expects datatype {datatype(dtype)}, got {spec.get('datatype')!r}")
    count = math.prod(shape)
    if binary is not None:
        if dtype == tf.string:
            return _decode_bytes(binary, count, name).reshape(shape)
        numpy_dtype = np.dtype(dtype.as_numpy_dtype).newbyteorder("<")
        if len(binary) != count * numpy_dtype.itemsize:
            raise InvalidArgument(f"input '{name}': {len(binary)} bytes of binary data for shape {shape}")
        return np.frombuffer(binary, numpy_dtype).astype(dtype.as_numpy_dtype).reshape(shape)
    data = spec.get("data")
    if not isinstance(data, list):
        raise InvalidArgument(f"input '{name}' needs 'data' (a list) or binary data")
    try:
        flat = np.asarray(data, dtype=object if dtype == tf.string else dtype.as_numpy_dtype).ravel()
    except (ValueError, TypeError, OverflowError):  # ragged, too deep, or values of another type
        raise InvalidArgument(f"input '{name}' expects {datatype(dtype)} data in a regular nesting") from None
    if dtype == tf.string:
        if any(not isinstance(item, str) for item in flat):
            raise InvalidArgument(f"input '{name}': BYTES data must be strings")
        try:
            flat[:] = [item.encode("utf-8") for item in flat]
        except UnicodeEncodeError:
            raise InvalidArgument(f"input '{name}': strings must be valid Unicode") from None
    if flat.size != count:
        raise InvalidArgument(f"input '{name}': {flat.size} values for shape {shape}")
    return flat.reshape(shape)


def _split_body(body: bytes, header_length: int | None) -> tuple[dict, bytes]:
    if header_length is None:
        header, binary = body, b""
    elif 0 <= header_length <= len(body):
        header, binary = body[:header_length], body[header_length:]
    else:
        raise InvalidArgument(f"{HEADER_LENGTH} {header_length} does not fit the {len(body)}-byte body")
    request = loads(header)
    if not isinstance(request, dict):
        raise InvalidArgument("the inference request must be a JSON object")
    return request, binary


def _inputs(request: dict, signature: Signature, binary: bytes) -> dict[str, np.ndarray]:
    specs = request.get("inputs")
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise InvalidArgument("'inputs' must be a list of tensor objects")
    names = [spec.get("name") for spec in specs]
    if sorted(map(str, names)) != sorted(signature.inputs) or len(set(names)) != len(names):
        raise InvalidArgument(f"inputs {names} do not match the model's inputs {sorted(signature.inputs)}")
    inputs, offset = {}, 0
    for spec in specs:
        size = (spec.get("parameters") or {}).get("binary_data_size")
        part = None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidArgument(f"input '{spec['name']}': binary_data_size {size!r} exceeds the binary data")
            part, offset = binary[offset:offset + size], offset + size
        inputs[spec["name"]] = input_array(spec, signature.inputs[spec["name"]].dtype, part)
    if offset != len(binary):
        raise InvalidArgument("the body holds more binary data than the inputs' binary_data_size")
    return inputs


def output_bytes(array: np.ndarray) -> bytes:
    """An output's raw data: little-endian row-major values, or length-prefixed BYTES elements."""
    if array.dtype == object:
        return bytes_elements(array.ravel())
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def _output(name: str, array: np.ndarray, as_binary: bool) -> tuple[dict, bytes]:
    tensor = {"name": name, "datatype": datatype(tf.as_dtype(array.dtype)), "shape": list(array.shape)}
    if as_binary:
        raw = output_bytes(array)
        tensor["parameters"] = {"binary_data_size": len(raw)}
        return tensor, raw
    if array.dtype == object:
        tensor["data"] = [item.decode("utf-8", errors="replace") for item in array.ravel()]
    elif array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidArgument(f"output '{name}' holds NaN or infinity, which JSON data cannot carry; "
                              "request it with binary_data")
    else:
        tensor["data"] = array.ravel()
    return tensor, b""


class OpenInferenceApi:
    """The v2 endpoints over a model manager; ``predict`` runs a signature (directly or batched)."""

    def __init__(self, manager: ModelManager, predict: Predict):
        self._manager = manager
        self._predict = predict

    def server_metadata(self) -> dict:
        return {"name": "keras-itl", "version": keras_itl.__version__, "extensions": ["binary_tensor_data"]}

    def server_ready(self) -> bool:
        return all(self._is_ready(name, None) for name in self._manager.model_names())

    def _is_ready(self, name: str, version: int | None) -> bool:
        try:
            self._manager.resolve(name, version)
            return True
        except ServableNotFound:
            return False

    def model_ready(self, name: str, version: int | None) -> bool:
        if name not in self._manager.model_names():
            raise ServableNotFound(f"Servable not found for request: Latest({name})")
        return self._is_ready(name, version)

    def model_metadata(self, name: str, version: int | None) -> dict:
        loaded = self._manager.resolve(name, version)
        signature = get_signature(loaded, DEFAULT_SIGNATURE)
        versions = [str(status.version) for status in self._manager.statuses(name) if status.state == "AVAILABLE"]
        return {"name": name, "versions": versions, "platform": "tensorflow_savedmodel",
                "inputs": [_tensor_metadata(n, spec) for n, spec in sorted(signature.inputs.items())],
                "outputs": [_tensor_metadata(n, spec) for n, spec in sorted(signature.outputs.items())]}

    def infer(self, name: str, version: int | None, body: bytes, header_length: int | None) -> tuple[bytes, int | None]:
        """The response body, and its JSON header's length when binary outputs follow it."""
        request, binary = _split_body(body, header_length)
        parameters = request.get("parameters") or {}
        loaded = self._manager.resolve(name, version)
        signature = get_signature(loaded, parameters.get("signature_name") if isinstance(parameters, dict) else None)
        inputs = _inputs(request, signature, binary)
        wanted = request.get("outputs") or []
        if not isinstance(wanted, list) or not all(isinstance(w, dict) and isinstance(w.get("name"), str)
                                                   for w in wanted):
            raise InvalidArgument("'outputs' must be a list of objects with a 'name'")
        outputs = self._predict(signature, inputs, [w["name"] for w in wanted], loaded.name)
        binary_names = {w["name"] for w in wanted if (w.get("parameters") or {}).get("binary_data")}
        if isinstance(parameters, dict) and parameters.get("binary_data_output"):
            binary_names = set(outputs)
        tensors, raws = [], []
        for output_name, value in outputs.items():
            tensor, raw = _output(output_name, np.asarray(value), output_name in binary_names)
            tensors.append(tensor)
            raws.append(raw)
        response: dict[str, Any] = {"model_name": name, "model_version": str(loaded.version), "outputs": tensors}
        if "id" in request:
            response["id"] = request["id"]
        header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
        return (header + b"".join(raws), len(header)) if binary_names else (header, None)
