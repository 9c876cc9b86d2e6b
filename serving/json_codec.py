"""The JSON side of the REST API: request bodies to numpy inputs, numpy outputs to response bodies.

Follows TF Serving's JSON mapping: ``instances`` (row format) or ``inputs`` (columnar format), binary
strings as ``{"b64": ...}``, NaN/Infinity as bare tokens, floats with enough digits to round-trip, and
outputs named ``*_bytes`` written back as ``{"b64": ...}``.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from keras_itl.serving.errors import InvalidArgument
from keras_itl.serving.signatures import Signature, dtype_name

ROW, COLUMNAR = "instances", "inputs"


@dataclass(frozen=True)
class PredictBody:
    """A parsed ``:predict`` body: the signature name, the format, and the raw JSON tensors."""

    signature_name: str
    format: str
    payload: Any


def parse_predict_body(body: bytes) -> PredictBody:
    """Parse and check the outer structure of a ``:predict`` request body."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidArgument(f"JSON Parse error: {error}") from None
    if not isinstance(request, dict):
        raise InvalidArgument("JSON Value: the request body must be a JSON object")
    present = [key for key in (ROW, COLUMNAR) if key in request]
    if len(present) != 1:
        raise InvalidArgument("JSON object: the request must have exactly one of 'instances' or 'inputs'"
                              + (", not both" if present else ""))
    signature_name = request.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise InvalidArgument("'signature_name' must be a string")
    return PredictBody(signature_name, present[0], request[present[0]])


# -- JSON values to numpy ------------------------------------------------------------------------------
def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and list(value) == ["b64"]


def _string_leaf(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"input '{name}': invalid base64 in {{\"b64\": ...}} value") from None
    raise InvalidArgument(f"input '{name}' expects strings or {{\"b64\": ...}} objects, got {json.dumps(value)[:80]}")


def _nested_shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    shapes = {_nested_shape(item, name) for item in value}
    if len(shapes) != 1:
        raise InvalidArgument(f"input '{name}': lists at the same depth must all have the same length")
    return (len(value),) + shapes.pop()


def _flatten(value: Any) -> list:
    return [leaf for item in value for leaf in _flatten(item)] if isinstance(value, list) else [value]


def _string_array(value: Any, name: str) -> np.ndarray:
    shape = _nested_shape(value, name)
    leaves = [_string_leaf(leaf, name) for leaf in _flatten(value)]
    array = np.empty(len(leaves), dtype=object)
    array[:] = leaves
    return array.reshape(shape)


def _numeric_array(value: Any, dtype: tf.DType, name: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError:
        raise InvalidArgument(f"input '{name}': lists at the same depth must all have the same length") from None
    if array.size and (array.dtype.kind not in "biuf" or (array.dtype.kind == "b") != dtype.is_bool):
        raise InvalidArgument(f"input '{name}' expects {dtype_name(dtype)} values")
    if dtype.is_integer:
        if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.floor(array))):
            raise InvalidArgument(f"input '{name}' expects {dtype_name(dtype)} values, got non-integral numbers")
        if array.size and (array.min() < dtype.min or array.max() > dtype.max):
            raise InvalidArgument(f"input '{name}': value out of range for {dtype_name(dtype)}")
    return array.astype(dtype.as_numpy_dtype)


def _to_array(value: Any, dtype: tf.DType, name: str) -> np.ndarray:
    """Convert a JSON tensor (nested lists of leaves) into a numpy array of ``dtype``."""
    if dtype == tf.string:
        return _string_array(value, name)
    if dtype.is_floating or dtype.is_integer or dtype.is_bool:
        return _numeric_array(value, dtype, name)
    raise InvalidArgument(f"input '{name}' has dtype {dtype_name(dtype)}, which JSON requests cannot carry")


def _named_value(value: Any, names: list[str]) -> Any:
    """Unwrap ``{"<only input>": value}`` for single-input signatures; keep anything else as the value."""
    if len(names) == 1 and isinstance(value, dict) and list(value) == names:
        return value[names[0]]
    return value


def decode_inputs(body: PredictBody, signature: Signature) -> dict[str, np.ndarray]:
    """The numpy inputs of a request, in row or columnar format, converted to the signature's dtypes."""
    names = list(signature.inputs)
    if body.format == ROW:
        if not isinstance(body.payload, list) or not body.payload:
            raise InvalidArgument("'instances' must be a non-empty list")
        rows = [_named_value(row, names) for row in body.payload]
        if len(names) == 1:
            columns = {names[0]: rows}
        else:
            for row in rows:
                if not isinstance(row, dict) or set(row) != set(names):
                    raise InvalidArgument(f"every instance must be an object with the keys {sorted(names)}")
            columns = {name: [row[name] for row in rows] for name in names}
    else:
        payload = _named_value(body.payload, names)
        if len(names) == 1:
            columns = {names[0]: payload}
        elif not isinstance(payload, dict) or set(payload) != set(names):
            raise InvalidArgument(f"'inputs' must be an object with the keys {sorted(names)}")
        else:
            columns = payload
    return {name: _to_array(value, signature.inputs[name].dtype, name) for name, value in columns.items()}


# -- numpy to JSON values ------------------------------------------------------------------------------
def _bytes_leaf(value: bytes, as_b64: bool) -> Any:
    if not as_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(value).decode("ascii")}


def to_json_value(array: np.ndarray, name: str) -> Any:
    """A numpy output as JSON-ready nested lists (``*_bytes`` outputs and non-UTF-8 strings as b64)."""
    array = np.asarray(array)
    if array.dtype.kind == "f" and array.dtype != np.float64:
        # str() of a float32/float16 scalar is its shortest round-tripping decimal.
        leaves = [float(str(x)) for x in array.ravel()]
    elif array.dtype.kind in "OSU":
        leaves = [_bytes_leaf(x if isinstance(x, bytes) else str(x).encode(), name.endswith("_bytes"))
                  for x in array.ravel()]
    else:
        return array.tolist()
    holder = np.empty(len(leaves), dtype=object)
    holder[:] = leaves
    return holder.reshape(array.shape).tolist()


def encode_outputs(outputs: dict[str, np.ndarray], body_format: str) -> bytes:
    """The response body: ``{"predictions": ...}`` for row requests, ``{"outputs": ...}`` for columnar."""
    batch_sizes = {np.shape(value)[0] if np.ndim(value) else None for value in outputs.values()}
    if body_format == ROW and (len(batch_sizes) != 1 or None in batch_sizes):
        raise InvalidArgument("the row format needs every output to have the same batch size; "
                              "use the columnar 'inputs' format for this signature")
    values = {name: to_json_value(value, name) for name, value in outputs.items()}
    if len(values) == 1:  # a single output is written bare in both formats
        tensors = next(iter(values.values()))
    elif body_format == ROW:
        tensors = [{name: column[i] for name, column in values.items()} for i in range(batch_sizes.pop())]
    else:
        tensors = values
    key = "predictions" if body_format == ROW else "outputs"
    return json.dumps({key: tensors}, allow_nan=True, separators=(",", ":")).encode("utf-8")
