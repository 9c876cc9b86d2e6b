"""The Open Inference Protocol (KServe v2) over gRPC: ``inference.GRPCInferenceService`` on the gRPC port.

Implements ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata and ModelInfer (the
protocol's required methods); the others (streaming, statistics, repository, shared memory, tracing,
logging) answer UNIMPLEMENTED. The messages are the ones Triton's client ships
(``tritonclient.grpc.service_pb2``), so ``tritonclient.grpc`` works unchanged.

Tensors arrive either as typed ``contents`` or, as Triton clients send them, as ``raw_input_contents``
(little-endian, row-major; BYTES elements each prefixed by a 4-byte length). Outputs are always
returned as ``raw_output_contents``. The checks are the REST API's (``open_inference``): the element
count must match the shape, the datatype the signature's, and errors carry TF Serving's gRPC codes.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tritonclient.grpc import service_pb2, service_pb2_grpc

from keras_itl.serving.errors import InvalidArgument
from keras_itl.serving.model_manager import ModelManager
from keras_itl.serving.open_inference import OpenInferenceApi, bytes_elements, datatype, input_array, output_bytes
from keras_itl.serving.prediction import Predict, get_signature
from keras_itl.serving.rpc_status import abort_on_errors, counted

# The typed ``contents`` field holding each datatype (FP16 has none: it travels as raw bytes).
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}
MAX_VERSION_DIGITS = 18


def _version(text: str) -> int | None:
    """A request's ``version`` ("" for the latest): ASCII digits of an int64."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_VERSION_DIGITS):
        raise InvalidArgument(f"Malformed request: version {text[:40]!r} is not an int64")
    return int(text)


def _tensor_metadata(tensor: dict) -> service_pb2.ModelMetadataResponse.TensorMetadata:
    return service_pb2.ModelMetadataResponse.TensorMetadata(name=tensor["name"], datatype=tensor["datatype"],
                                                            shape=tensor["shape"])


def _input(tensor, raw: bytes | None, dtype: tf.DType) -> np.ndarray:
    """One InferInputTensor as numpy, from its raw bytes or its typed contents."""
    spec = {"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype}
    if raw is not None:
        return input_array(spec, dtype, raw)
    field = _CONTENTS.get(tensor.datatype)
    if field is None:
        raise InvalidArgument(f"input '{tensor.name}': datatype {tensor.datatype!r} needs raw_input_contents")
    values = list(getattr(tensor.contents, field))
    if tensor.datatype == "BYTES":  # bytes, not the text the JSON path reads: checked in the raw layout
        return input_array(spec, dtype, bytes_elements(values))
    spec["data"] = values
    return input_array(spec, dtype, None)


class OpenInferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The v2 gRPC methods over the same model manager and predict function as the other APIs."""

    def __init__(self, manager: ModelManager, predict: Predict):
        self._manager = manager
        self._api = OpenInferenceApi(manager, predict)
        self._predict = predict

    def ServerLive(self, request, context):  # noqa: N802 (gRPC method names)
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # noqa: N802
        return service_pb2.ServerReadyResponse(ready=self._api.server_ready())

    @abort_on_errors
    def ServerMetadata(self, request, context):  # noqa: N802
        return service_pb2.ServerMetadataResponse(**self._api.server_metadata())

    @abort_on_errors
    def ModelReady(self, request, context):  # noqa: N802
        return service_pb2.ModelReadyResponse(ready=self._api.model_ready(request.name, _version(request.version)))

    @abort_on_errors
    def ModelMetadata(self, request, context):  # noqa: N802
        metadata = self._api.model_metadata(request.name, _version(request.version))
        return service_pb2.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"],
            inputs=[_tensor_metadata(t) for t in metadata["inputs"]],
            outputs=[_tensor_metadata(t) for t in metadata["outputs"]])

    @abort_on_errors
    def ModelInfer(self, request, context):  # noqa: N802
        """Run a signature (``parameters.signature_name``, default ``serving_default``) on the request's tensors."""
        return counted(self._manager.metric_name(request.model_name), "GRPC", lambda: self._infer(request))

    def _infer(self, request) -> service_pb2.ModelInferResponse:
        loaded = self._manager.resolve(request.model_name, _version(request.model_version))
        chosen = request.parameters["signature_name"].string_param if "signature_name" in request.parameters else None
        signature = get_signature(loaded, chosen)
        names = [tensor.name for tensor in request.inputs]
        if sorted(names) != sorted(signature.inputs) or len(set(names)) != len(names):
            raise InvalidArgument(f"inputs {names} do not match the model's inputs {sorted(signature.inputs)}")
        raws = list(request.raw_input_contents)
        if raws and len(raws) != len(names):
            raise InvalidArgument(f"{len(raws)} raw_input_contents for {len(names)} inputs")
        inputs = {tensor.name: _input(tensor, raws[index] if raws else None, signature.inputs[tensor.name].dtype)
                  for index, tensor in enumerate(request.inputs)}
        outputs = self._predict(signature, inputs, [wanted.name for wanted in request.outputs], loaded.name)
        response = service_pb2.ModelInferResponse(model_name=request.model_name, model_version=str(loaded.version),
                                                  id=request.id)
        for name, value in outputs.items():
            value = np.asarray(value)
            response.outputs.add(name=name, datatype=datatype(tf.as_dtype(value.dtype)), shape=list(value.shape))
            response.raw_output_contents.append(output_bytes(value))
        return response


def add_open_inference_service(server, manager: ModelManager, predict: Predict) -> None:
    """Serve the v2 gRPC methods on ``server`` (a grpcio server not yet started)."""
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(OpenInferenceService(manager, predict), server)
