"""A loaded SavedModel signature: its input/output specs, a SignatureDef proto for metadata, and a call.

TF Serving answers metadata requests with SignatureDef protos; they are rebuilt here from the loaded
function's structured input signature and outputs, so any SavedModel (not only keras-itl exports) is
described the way the official server describes it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

PREDICT_METHOD = "tensorflow/serving/predict"


def dtype_name(dtype: tf.DType) -> str:
    """The API's name of a dtype, e.g. ``DT_FLOAT``, as metadata responses spell it."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def _tensor_info(spec: tf.TensorSpec) -> meta_graph_pb2.TensorInfo:
    info = meta_graph_pb2.TensorInfo(name=spec.name or "", dtype=spec.dtype.as_datatype_enum)
    if spec.shape.rank is None:
        info.tensor_shape.unknown_rank = True
    else:
        for size in spec.shape.as_list():
            info.tensor_shape.dim.add(size=-1 if size is None else size)
    return info


@dataclass(frozen=True)
class Signature:
    """One callable signature with named tensor specs for its inputs and outputs."""

    function: object
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]

    @classmethod
    def from_function(cls, function) -> Signature:
        """Wrap a signature function of ``tf.saved_model.load(...).signatures``."""
        return cls(function, dict(function.structured_input_signature[1]), dict(function.structured_outputs))

    def signature_def(self) -> meta_graph_pb2.SignatureDef:
        """The SignatureDef proto reported by metadata requests."""
        proto = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
        for name, spec in self.inputs.items():
            proto.inputs[name].CopyFrom(_tensor_info(spec))
        for name, spec in self.outputs.items():
            proto.outputs[name].CopyFrom(_tensor_info(spec))
        return proto

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the signature on validated numpy inputs (see ``prediction.check_inputs``)."""
        tensors = {name: tf.constant(value, dtype=self.inputs[name].dtype) for name, value in inputs.items()}
        return {name: tensor.numpy() for name, tensor in self.function(**tensors).items()}


def signatures_of(loaded) -> dict[str, Signature]:
    """The signatures of a ``tf.saved_model.load`` result by name (keep ``loaded`` alive while using them)."""
    return {name: Signature.from_function(fn) for name, fn in loaded.signatures.items()}
