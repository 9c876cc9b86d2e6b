"""Replay a version's warmup requests before it serves, as TF Serving does.

An exporter may ship ``assets.extra/tf_serving_warmup_requests``, a TFRecord of PredictionLog protos.
Running them at load time moves one-off costs (first-call allocation, kernel selection) out of the
first real requests after a hot swap; a warmup request that fails makes the version fail to load,
so a model that cannot answer its own sample requests is never served.
"""
from __future__ import annotations

import time
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from keras_itl.serving.errors import ServingError
from keras_itl.serving.metrics import record_warmup
from keras_itl.serving.prediction import run_prediction
from keras_itl.serving.signatures import Signature
from keras_itl.serving_layout import DEFAULT_SIGNATURE, warmup_path

MAX_WARMUP_RECORDS = 1000


def replay_warmup(version_dir: Path, signatures: dict[str, Signature]) -> int:
    """Run the predict requests of the version's warmup file (if any); return how many ran."""
    path = warmup_path(version_dir)
    if not path.is_file():
        return 0
    started, count = time.perf_counter(), 0
    for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path}: only predict warmup requests are supported")
        request = log.predict_log.request
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        if name not in signatures:
            raise ValueError(f"{path}: warmup request for unknown signature {name!r}")
        count += 1
        try:
            run_prediction(signatures[name], {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()},
                           request.output_filter)
        except ServingError as error:
            raise ValueError(f"{path}: warmup request {count} failed: {error}") from None
    record_warmup(version_dir, time.perf_counter() - started)
    return count
