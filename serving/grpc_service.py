"""TF Serving's gRPC services (PredictionService, ModelService) on a grpcio thread-pool server, beside the
Open Inference Protocol's GRPCInferenceService (``open_inference_grpc``) on the same port.

grpcio runs each call in its own worker thread, so inference here runs beside the REST event loop
rather than on it. Tensors travel as TensorProtos, converted with ``tf.make_ndarray`` /
``tf.make_tensor_proto`` as TF Serving clients do. A TensorProto's dtype and shape are checked before
it is converted: a tiny message can claim a shape of terabytes (one value, broadcast), so a tensor may
not decode to more bytes than the largest message the server accepts.
"""
from __future__ import annotations

import math
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_itl.serving.api_messages import SIGNATURE_DEF_FIELD, model_spec, model_status, signature_def_map
from keras_itl.serving.errors import InvalidArgument
from keras_itl.serving.model_manager import ModelManager
from keras_itl.serving.open_inference_grpc import add_open_inference_service
from keras_itl.serving.prediction import Predict, get_signature, run_prediction
from keras_itl.serving.rpc_status import abort_on_errors, counted
from keras_itl.serving.signatures import dtype_name
from keras_itl.serving_layout import DEFAULT_SIGNATURE

_POINTER_BYTES = 8  # a string element costs at least its object reference once decoded


def tensor_from_proto(name: str, proto, max_bytes: int) -> np.ndarray:
    """A request TensorProto as numpy, refusing (before allocating) dtypes and sizes no request may carry."""
    try:
        dtype = tf.as_dtype(proto.dtype)
    except TypeError:
        raise InvalidArgument(f"input '{name}' has an unknown dtype enum {proto.dtype}") from None
    if dtype.base_dtype != dtype or dtype in (tf.variant, tf.resource):  # reference types, handles, variants
        raise InvalidArgument(f"input '{name}' has dtype {dtype_name(dtype.base_dtype)}, which requests cannot carry")
    if proto.tensor_shape.unknown_rank:
        raise InvalidArgument(f"input '{name}' has an unknown rank; requests need a full shape")
    sizes = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in sizes):
        raise InvalidArgument(f"input '{name}' has a negative dimension in shape {sizes}")
    decoded = math.prod(sizes) * (dtype.size or _POINTER_BYTES)
    if decoded > max_bytes:
        raise InvalidArgument(f"input '{name}' of shape {sizes} would take {decoded} bytes, over the limit of "
                              f"{max_bytes}")
    if proto.tensor_content and dtype != tf.string and len(proto.tensor_content) != decoded:
        raise InvalidArgument(f"input '{name}': tensor_content has {len(proto.tensor_content)} bytes, shape "
                              f"{sizes} of {dtype_name(dtype)} needs {decoded}")
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"cannot read input tensor '{name}': {error}") from None


def _addressed(spec) -> tuple[str, int | None, str | None]:
    """(name, version, label) of a request's ModelSpec."""
    choice = spec.WhichOneof("version_choice")
    return (spec.name, spec.version.value if choice == "version" else None,
            spec.version_label if choice == "version_label" else None)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over the manager's loaded versions."""

    def __init__(self, manager: ModelManager, max_tensor_bytes: int, predict: Predict = run_prediction):
        self._manager = manager
        self._max_tensor_bytes = max_tensor_bytes
        self._run_model = predict

    @abort_on_errors
    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        """Run a signature; ``output_filter`` selects which outputs to return."""
        return counted(self._manager.metric_name(request.model_spec.name), "GRPC", lambda: self._predict(request))

    def _predict(self, request) -> predict_pb2.PredictResponse:
        loaded = self._manager.resolve(*_addressed(request.model_spec))
        signature = get_signature(loaded, request.model_spec.signature_name)
        inputs = {name: tensor_from_proto(name, proto, self._max_tensor_bytes)
                  for name, proto in request.inputs.items()}
        outputs = self._run_model(signature, inputs, request.output_filter, loaded.name)
        response = predict_pb2.PredictResponse(
            model_spec=model_spec(loaded, request.model_spec.signature_name or DEFAULT_SIGNATURE))
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response

    @abort_on_errors
    def GetModelMetadata(self, request, context):  # noqa: N802
        """Signature definitions of a version (the only metadata field TF Serving offers)."""
        if list(request.metadata_field) != [SIGNATURE_DEF_FIELD]:
            raise InvalidArgument(f"metadata_field must be [\"{SIGNATURE_DEF_FIELD}\"], got "
                                  f"{list(request.metadata_field)}")
        loaded = self._manager.resolve(*_addressed(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec(loaded))
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_def_map(loaded))
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus over the manager's version states."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    @abort_on_errors
    def GetModelStatus(self, request, context):  # noqa: N802
        """States of every version of a model, or of the addressed version."""
        return model_status(self._manager, *_addressed(request.model_spec))


def make_grpc_server(manager: ModelManager, address: str, workers: int, max_message_bytes: int,
                     predict: Predict = run_prediction) -> grpc.Server:
    """A (not yet started) grpcio server bound to ``address``; raises OSError when the port is taken."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", max_message_bytes),
                                  ("grpc.max_send_message_length", max_message_bytes),
                                  ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, max_message_bytes, predict), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)
    add_open_inference_service(server, manager, predict)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"cannot listen for gRPC on {address}: {error}") from None
    if not bound:
        raise OSError(f"cannot listen for gRPC on {address}")
    return server
