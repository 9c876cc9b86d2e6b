"""The JSON side of the REST API: request bodies to numpy inputs, numpy outputs to response bodies.

Follows TF Serving's JSON mapping: ``instances`` (row format) or ``inputs`` (columnar format), binary
strings as ``{"b64": ...}``, NaN/Infinity as bare tokens, floats with enough digits to round-trip, and
outputs named ``*_bytes`` written back as ``{"b64": ...}``.

Speed: bodies are parsed with orjson; in bodies of ``FAST_PATH_BYTES`` or more, a tensor that is one
plain array of numbers stays text (``RawArray``) until the signature's dtype is known, then
``numeric_json`` reads it into numpy without building nested lists. Numeric outputs are written by orjson
from the numpy arrays (float32 as the
shortest decimal that reads back to the same float32). Only non-finite floats, strings and dtypes
orjson cannot write take the slower path through Python lists and the standard library.

Limits: orjson refuses nesting deeper than 1024 and integer literals beyond 64 bits; tensors may have
at most ``MAX_RANK`` dimensions; every refusal is an InvalidArgument (a 400), never a crash.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import tensorflow as tf

from keras_itl.serving.errors import InvalidArgument
from keras_itl.serving.numeric_json import MAX_RANK, find_tensor_array, parse_number_array
from keras_itl.serving.signatures import Signature, dtype_name

ROW, COLUMNAR = "instances", "inputs"
MAX_DEPTH = 1024  # orjson's nesting limit, applied to the standard-library fallback too
_NUMPY_FLOATS = (np.float16, np.float32, np.float64)
_PLACEHOLDER = b"0"
FAST_PATH_BYTES = 2 * 1024


@dataclass(frozen=True)
class RawArray:
    """A request tensor kept as the text of a JSON array of numbers (and its byte classes), read once its
    dtype is known."""

    text: bytes
    classes: np.ndarray


def _max_depth(body: bytes) -> int:
    """Deepest nesting of brackets and braces (strings included, which can only overestimate)."""
    raw = np.frombuffer(body, np.uint8)
    marks = raw[np.isin(raw, np.frombuffer(b"[]{}", np.uint8))]
    if not len(marks):
        return 0
    return int(np.cumsum(np.where((marks == ord("[")) | (marks == ord("{")), 1, -1).astype(np.int32)).max())


def loads(body: bytes) -> Any:
    """Parse JSON as TF Serving does (bare NaN/Infinity accepted); any malformed body is an InvalidArgument."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if b"NaN" not in body and b"Infinity" not in body:
            raise InvalidArgument(f"JSON Parse error: {error}") from None
    # orjson refuses NaN/Infinity tokens; the standard library reads them, within the same depth limit.
    if _max_depth(body) > MAX_DEPTH:
        raise InvalidArgument(f"JSON Parse error: nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and the int digit limit are ValueErrors
        raise InvalidArgument(f"JSON Parse error: {error}") from None


def _parse_request(body: bytes) -> Any:
    """The request object, with its tensor left as a RawArray when it is one plain array of numbers.

    Below ``FAST_PATH_BYTES`` a plain parse is quicker than the fast path's vectorised passes.
    """
    found = find_tensor_array(body) if len(body) >= FAST_PATH_BYTES else None
    if found is not None:
        key = found.key
        try:
            request = orjson.loads(body[:found.start] + _PLACEHOLDER + body[found.end:])
        except orjson.JSONDecodeError:
            request = None
        if isinstance(request, dict) and type(request.get(key)) is int and request[key] == 0:
            request[key] = RawArray(body[found.start:found.end], found.classes)
            return request
    return loads(body)


@dataclass(frozen=True)
class PredictBody:
    """A parsed ``:predict`` body: the signature name, the format, and the raw JSON tensors."""

    signature_name: str
    format: str
    payload: Any


def parse_predict_body(body: bytes) -> PredictBody:
    """Parse and check the outer structure of a ``:predict`` request body."""
    if not body.strip():
        raise InvalidArgument("JSON Parse error: the request body is empty")
    request = _parse_request(body)
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
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape such as "\udfff"
            raise InvalidArgument(f"input '{name}': strings must be valid Unicode") from None
    if _is_b64(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"input '{name}': invalid base64 in {{\"b64\": ...}} value") from None
    got = "a number" if isinstance(value, (int, float)) else f"a JSON {type(value).__name__}"
    raise InvalidArgument(f"input '{name}' expects strings or {{\"b64\": ...}} objects, got {got}")


def _leaves(value: Any, name: str) -> tuple[list, tuple[int, ...]]:
    """The leaves of a nested-list tensor in row-major order and its shape; iterative, so depth cannot crash it."""
    shape = []
    probe = value
    while isinstance(probe, list):
        if len(shape) == MAX_RANK:
            raise InvalidArgument(f"input '{name}': tensors may have at most {MAX_RANK} dimensions")
        shape.append(len(probe))
        probe = probe[0] if probe else None
    level = [value]
    for size in shape:
        if any(not isinstance(item, list) or len(item) != size for item in level):
            raise InvalidArgument(f"input '{name}': lists at the same depth must all have the same length")
        level = [leaf for item in level for leaf in item]
    if any(isinstance(leaf, list) for leaf in level):
        raise InvalidArgument(f"input '{name}': lists at the same depth must all have the same length")
    return level, tuple(shape)


def _string_array(value: Any, name: str) -> np.ndarray:
    leaves, shape = _leaves(value, name)
    array = np.empty(len(leaves), dtype=object)
    array[:] = [_string_leaf(leaf, name) for leaf in leaves]
    return array.reshape(shape)


def _check_rank(value: Any, name: str) -> None:
    """Refuse nesting deeper than MAX_RANK along the first elements (numpy finds any deeper elsewhere)."""
    for _ in range(MAX_RANK + 1):
        if not isinstance(value, list):
            return
        value = value[0] if value else None
    raise InvalidArgument(f"input '{name}': tensors may have at most {MAX_RANK} dimensions")


def _numeric_array(value: Any, dtype: tf.DType, name: str) -> np.ndarray:
    _check_rank(value, name)
    try:
        array = np.asarray(value)
    except ValueError:  # ragged lists, or nested deeper than numpy's 64 dimensions
        raise InvalidArgument(f"input '{name}': lists at the same depth must all have the same length") from None
    except (OverflowError, TypeError):
        raise InvalidArgument(f"input '{name}' expects {dtype_name(dtype)} values") from None
    if array.ndim > MAX_RANK:
        raise InvalidArgument(f"input '{name}': tensors may have at most {MAX_RANK} dimensions")
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
    if isinstance(body.payload, RawArray):
        dtype = signature.inputs[names[0]].dtype
        if len(names) == 1 and dtype.as_numpy_dtype in _NUMPY_FLOATS:  # the array is the whole tensor
            array = parse_number_array(body.payload.text, dtype.as_numpy_dtype, body.payload.classes)
            if array is not None:
                return {names[0]: array}
        body = PredictBody(body.signature_name, body.format, loads(body.payload.text))
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


def _orjson_ready(array: np.ndarray) -> bool:
    """Whether orjson writes this output from numpy as TF Serving would: float32/64, integers, booleans."""
    if array.dtype.kind == "f":
        return array.dtype.type in (np.float32, np.float64)  # orjson widens float16 before printing it
    return array.dtype.kind in "biu"


def _native(array: np.ndarray) -> np.ndarray | np.generic:
    """The form orjson writes straight from memory: a C-contiguous array, or a numpy scalar for 0-d."""
    return array[()] if array.ndim == 0 else np.ascontiguousarray(array)


def encode_outputs(outputs: dict[str, np.ndarray], body_format: str) -> bytes:
    """The response body: ``{"predictions": ...}`` for row requests, ``{"outputs": ...}`` for columnar."""
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    batch_sizes = {value.shape[0] if value.ndim else None for value in arrays.values()}
    if body_format == ROW and (len(batch_sizes) != 1 or None in batch_sizes):
        raise InvalidArgument("the row format needs every output to have the same batch size; "
                              "use the columnar 'inputs' format for this signature")
    # orjson writes NaN and Infinity as null; the standard library writes the bare tokens TF Serving uses.
    finite = all(np.isfinite(value).all() for value in arrays.values() if value.dtype.kind == "f")
    values = {name: _native(value) if finite and _orjson_ready(value) else to_json_value(value, name)
              for name, value in arrays.items()}
    if len(values) == 1:  # a single output is written bare in both formats
        tensors = next(iter(values.values()))
    elif body_format == ROW:
        tensors = [{name: column[i] for name, column in values.items()} for i in range(batch_sizes.pop())]
    else:
        tensors = values
    key = "predictions" if body_format == ROW else "outputs"
    if finite:
        return orjson.dumps({key: tensors}, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps({key: tensors}, allow_nan=True, separators=(",", ":")).encode("utf-8")
