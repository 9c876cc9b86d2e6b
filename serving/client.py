"""Small clients for a TF Serving–compatible server (``keras-itl serve`` or the official one).

``RestClient`` speaks the REST API with the standard library's HTTP client and orjson (numpy batches
are written straight from memory, float32 as shortest round-tripping decimals); ``GrpcClient`` uses the
``tensorflow-serving-api`` stubs. Both take a float image batch (``serving_default``) or a list of
encoded PNG/JPEG files (``serving_bytes``), return outputs as numpy arrays by name, and report server
errors as UserErrors so the CLI prints them as one line.
"""
from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
import orjson
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_itl.errors import UserError
from keras_itl.serving.api_messages import SIGNATURE_DEF_FIELD, to_json_dict
from keras_itl.serving.errors import InvalidArgument
from keras_itl.serving.json_codec import loads
from keras_itl.serving_layout import BYTES_SIGNATURE, DEFAULT_SIGNATURE

Images = np.ndarray | Sequence[bytes]


class ServingClientError(UserError):
    """The server refused a request or could not be reached."""


def _is_encoded(images: Images) -> bool:
    return not isinstance(images, np.ndarray) and all(isinstance(item, bytes) for item in images)


def _signature_for(images: Images, signature_name: str | None) -> str:
    return signature_name or (BYTES_SIGNATURE if _is_encoded(images) else DEFAULT_SIGNATURE)


def _from_json(value: Any) -> np.ndarray:
    """A JSON output tensor as numpy, decoding ``{"b64": ...}`` leaves to bytes."""
    array = np.asarray(value)
    if array.dtype == object:
        array = np.vectorize(lambda leaf: base64.b64decode(leaf["b64"]), otypes=[object])(array)
    return array


class RestClient:
    """Client of the REST API at ``url`` (e.g. ``http://127.0.0.1:8501``) for one model."""

    def __init__(self, url: str, model: str, version: int | None = None, label: str | None = None,
                 timeout: float = 30.0):
        path = f"/v1/models/{model}"
        if version is not None:
            path += f"/versions/{version}"
        elif label is not None:
            path += f"/labels/{label}"
        self.model_url = url.rstrip("/") + path
        self.timeout = timeout
        self._outputs: dict[str, list[str]] = {}

    def _call(self, suffix: str, body: dict | None = None) -> dict:
        data = None if body is None else orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        request = urllib.request.Request(self.model_url + suffix, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = response.read()
        except urllib.error.HTTPError as error:
            try:
                message = loads(error.read())["error"]
            except (InvalidArgument, KeyError, TypeError):
                message = error.reason
            raise ServingClientError(f"server answered {error.code}: {message}") from None
        except (urllib.error.URLError, OSError) as error:
            raise ServingClientError(f"cannot reach {self.model_url}: {error}") from None
        try:
            return loads(answer)
        except InvalidArgument as error:
            raise ServingClientError(f"the server's answer is not JSON: {error}") from None

    def status(self) -> dict:
        """``{"model_version_status": [...]}`` of the model."""
        return self._call("")

    def metadata(self) -> dict:
        """``{"model_spec": ..., "metadata": {"signature_def": ...}}`` of the model."""
        return self._call("/metadata")

    def _output_names(self, signature_name: str) -> list[str]:
        if signature_name not in self._outputs:
            signatures = self.metadata()["metadata"][SIGNATURE_DEF_FIELD]["signature_def"]
            if signature_name not in signatures:
                raise ServingClientError(f"model has no signature {signature_name!r}")
            self._outputs[signature_name] = list(signatures[signature_name]["outputs"])
        return self._outputs[signature_name]

    def predict(self, images: Images, signature_name: str | None = None) -> dict[str, np.ndarray]:
        """Outputs by name for a float batch ``[n, H, W, C]`` or a list of encoded image files."""
        signature_name = _signature_for(images, signature_name)
        if _is_encoded(images):
            payload = [{"b64": base64.b64encode(item).decode("ascii")} for item in images]
        else:
            payload = np.ascontiguousarray(images, dtype=np.float32)
        outputs = self._call(":predict", {"signature_name": signature_name, "inputs": payload})["outputs"]
        names = self._output_names(signature_name)
        if len(names) == 1:  # a single output comes back bare
            outputs = {names[0]: outputs}
        return {name: _from_json(value) for name, value in outputs.items()}


class GrpcClient:
    """Client of the gRPC API at ``target`` (e.g. ``127.0.0.1:8500``) for one model."""

    def __init__(self, target: str, model: str, version: int | None = None, label: str | None = None,
                 timeout: float = 30.0):
        self.target = target
        self.model = model
        self.version = version
        self.label = label
        self.timeout = timeout
        self._channel = grpc.insecure_channel(target)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._inputs: dict[str, str] = {}

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _spec(self, request, signature_name: str = "") -> None:
        request.model_spec.name = self.model
        request.model_spec.signature_name = signature_name
        if self.version is not None:
            request.model_spec.version.value = self.version
        elif self.label is not None:
            request.model_spec.version_label = self.label

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingClientError(f"server answered {error.code().name}: {error.details()}") from None

    def status(self) -> dict:
        """``{"model_version_status": [...]}`` of the model, as over REST."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request)
        return to_json_dict(self._call(self._models.GetModelStatus, request))

    def metadata(self) -> dict:
        """``{"model_spec": ..., "metadata": {"signature_def": ...}}`` of the model, as over REST."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF_FIELD])
        self._spec(request)
        response = self._call(self._predictions.GetModelMetadata, request)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
        return {"model_spec": to_json_dict(response.model_spec),
                "metadata": {SIGNATURE_DEF_FIELD: to_json_dict(signature_defs)}}

    def _input_name(self, signature_name: str) -> str:
        if signature_name not in self._inputs:
            signatures = self.metadata()["metadata"][SIGNATURE_DEF_FIELD]["signature_def"]
            if signature_name not in signatures or len(signatures[signature_name]["inputs"]) != 1:
                raise ServingClientError(f"model has no single-input signature {signature_name!r}")
            self._inputs[signature_name] = next(iter(signatures[signature_name]["inputs"]))
        return self._inputs[signature_name]

    def predict(self, images: Images, signature_name: str | None = None,
                output_filter: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Outputs by name for a float batch ``[n, H, W, C]`` or a list of encoded image files."""
        signature_name = _signature_for(images, signature_name)
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._spec(request, signature_name)
        if _is_encoded(images):
            tensor = tf.make_tensor_proto(list(images), dtype=tf.string)
        else:
            tensor = tf.make_tensor_proto(np.asarray(images, dtype=np.float32))
        request.inputs[self._input_name(signature_name)].CopyFrom(tensor)
        response = self._call(self._predictions.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
