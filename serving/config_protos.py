"""TF Serving's text-format config files that the ``tensorflow-serving-api`` package has no classes for.

``--monitoring_config_file`` holds a ``MonitoringConfig`` (monitoring_config.proto) and
``--batching_parameters_file`` a ``BatchingParameters`` (session_bundle_config.proto). The messages are
declared here with the same package, field names, numbers and types as TF Serving's protos, so the
same files parse, and read with protobuf's text format.
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from google.protobuf.message import Message

from keras_itl.errors import UserError

_Field = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "tensorflow.serving"


def _add_message(file: descriptor_pb2.FileDescriptorProto, name: str, fields: list[tuple]) -> None:
    """Declare message ``name`` with fields ``(name, number, type, type_name or None, repeated)``."""
    message = file.message_type.add(name=name)
    for field_name, number, field_type, type_name, repeated in fields:
        field = message.field.add(name=field_name, number=number, type=field_type,
                                  label=_Field.LABEL_REPEATED if repeated else _Field.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(name="keras_itl/tf_serving_configs.proto", package=_PACKAGE,
                                              syntax="proto3", dependency=[wrappers_pb2.DESCRIPTOR.name])
    _add_message(file, "PrometheusConfig", [("enable", 1, _Field.TYPE_BOOL, None, False),
                                            ("path", 2, _Field.TYPE_STRING, None, False)])
    _add_message(file, "MonitoringConfig", [("prometheus_config", 1, _Field.TYPE_MESSAGE,
                                             f".{_PACKAGE}.PrometheusConfig", False)])
    int64 = (_Field.TYPE_MESSAGE, ".google.protobuf.Int64Value", False)
    _add_message(file, "BatchingParameters", [
        ("max_batch_size", 1, *int64), ("batch_timeout_micros", 2, *int64), ("max_enqueued_batches", 3, *int64),
        ("num_batch_threads", 4, *int64),
        ("thread_pool_name", 5, _Field.TYPE_MESSAGE, ".google.protobuf.StringValue", False),
        ("allowed_batch_sizes", 6, _Field.TYPE_INT64, None, True),
        ("pad_variable_length_inputs", 7, _Field.TYPE_BOOL, None, False)])
    pool.Add(file)
    return pool


_POOL = _build_pool()


def parse_config(path: str | Path, message_name: str) -> Message:
    """Parse the text-format file ``path`` as TF Serving's ``message_name``; a UserError when it does not parse."""
    message_class = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{message_name}"))
    path = Path(path)
    try:
        return text_format.Parse(path.read_text(), message_class())
    except (OSError, text_format.ParseError) as error:
        raise UserError(f"cannot read {message_name} file {path}: {error}") from None
