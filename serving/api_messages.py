"""The status and metadata messages of the TF Serving API, built once for both protocols.

gRPC returns these protos as they are; REST returns their JSON mapping (field names as in the protos,
default values printed, int64 as strings), which is the shape TF Serving's REST API documents.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2, status_pb2

from keras_itl.serving.model_manager import LoadedVersion, ModelManager

SIGNATURE_DEF_FIELD = "signature_def"


def model_spec(loaded: LoadedVersion, signature_name: str = "") -> model_pb2.ModelSpec:
    """The ModelSpec naming the version that answered a request."""
    spec = model_pb2.ModelSpec(name=loaded.name, signature_name=signature_name)
    spec.version.value = loaded.version
    return spec


def model_status(manager: ModelManager, name: str, version: int | None = None,
                 label: str | None = None) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatusResponse for a model, or for one of its versions."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in manager.statuses(name, version, label):
        code = error_codes_pb2.UNKNOWN if status.error else error_codes_pb2.OK
        response.model_version_status.add(
            version=status.version,
            state=get_model_status_pb2.ModelVersionStatus.State.Value(status.state),
            status=status_pb2.StatusProto(error_code=code, error_message=status.error))
    return response


def signature_def_map(loaded: LoadedVersion) -> get_model_metadata_pb2.SignatureDefMap:
    """Every signature of a loaded version as a SignatureDefMap."""
    result = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in loaded.signatures.items():
        result.signature_def[name].CopyFrom(signature.signature_def())
    return result


def to_json_dict(message: Message) -> dict[str, Any]:
    """A proto as TF Serving's REST API writes it."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)
