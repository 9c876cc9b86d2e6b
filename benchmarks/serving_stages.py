"""CPU of each stage of a REST ``:predict`` in one process: decoding the body, the model call, encoding the answer.

The benchmark's small-cnn (random weights, 28x28x1) is exported and loaded as ``keras-itl serve`` loads it,
and the server's own functions are timed stage by stage on the bodies ``serving_latency.py`` sends: JSON
batch 1, JSON batch 32 (orjson's float32 text) and batch 32 as ``{"b64": ...}`` PNGs for ``serving_bytes``.
Decoding and encoding are Python holding the GIL, timed as the calling thread's CPU; the model call is timed
as the CPU of the whole process (TensorFlow's threads included) and as wall time. Each figure is the median
of many calls. Measured on a loaded machine the microseconds grow, but the stages' ratios to the model call
(the last columns: the share of a request's CPU that REST adds in the server) stay informative.

    python benchmarks/serving_stages.py [--calls 300]
"""
from __future__ import annotations

import argparse
import base64
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import tensorflow as tf  # noqa: E402
from serving_latency import export_classifier  # noqa: E402  (the benchmarks' shared model)

from keras_itl.serving import json_codec  # noqa: E402
from keras_itl.serving.model_manager import load_saved_model  # noqa: E402
from keras_itl.serving.prediction import get_signature, run_prediction  # noqa: E402
from keras_itl.serving_layout import BYTES_SIGNATURE  # noqa: E402


def median_us(stage: Callable[[], object], calls: int, clock: Callable[[], int]) -> float:
    """Median of ``clock`` (nanoseconds) over ``calls`` calls of ``stage``, in microseconds."""
    stage()
    spans = []
    for _ in range(calls):
        started = clock()
        stage()
        spans.append(clock() - started)
    return statistics.median(spans) / 1000


def process_cpu_us(stage: Callable[[], object], calls: int) -> float:
    """Mean CPU of the whole process (every thread) per call of ``stage``, in microseconds."""
    stage()
    started = time.process_time_ns()
    for _ in range(calls):
        stage()
    return (time.process_time_ns() - started) / calls / 1000


def bodies(rng: np.random.Generator) -> dict[str, bytes]:
    """The request bodies of serving_latency.py's REST clients."""
    small, batch = (rng.integers(0, 256, (size, 28, 28, 1)).astype(np.float32) for size in (1, 32))
    pngs = [base64.b64encode(tf.io.encode_png(image.astype(np.uint8)).numpy()).decode("ascii") for image in batch]
    return {"JSON b1": orjson.dumps({"instances": small}, option=orjson.OPT_SERIALIZE_NUMPY),
            "JSON b32": orjson.dumps({"instances": batch}, option=orjson.OPT_SERIALIZE_NUMPY),
            "b64 PNG b32": orjson.dumps({"signature_name": BYTES_SIGNATURE,
                                         "instances": [{"b64": png} for png in pngs]})}


def measure(loaded, body: bytes, calls: int, model_calls: int) -> dict[str, float]:
    """Microseconds of each stage of one request body (see the module docstring)."""
    request = json_codec.parse_predict_body(body)
    signature = get_signature(loaded, request.signature_name)
    inputs = json_codec.decode_inputs(request, signature)
    outputs = run_prediction(signature, inputs)
    return {"decode": median_us(lambda: json_codec.decode_inputs(json_codec.parse_predict_body(body), signature),
                                calls, time.thread_time_ns),
            "model CPU": process_cpu_us(lambda: run_prediction(signature, inputs), model_calls),
            "model wall": median_us(lambda: run_prediction(signature, inputs), model_calls, time.perf_counter_ns),
            "encode": median_us(lambda: json_codec.encode_outputs(outputs, request.format), calls,
                                time.thread_time_ns)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per stage (a tenth for batch-32 model calls)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        loaded = load_saved_model("digits", 1, export_classifier(Path(temp) / "digits"))
        gc.collect()
        gc.freeze()  # as the server does after a load
        print(f"{'request':<12}{'bytes':>8}{'decode':>9}{'model CPU':>11}{'model wall':>12}{'encode':>8}"
              f"{'decode/model':>14}{'encode/model':>14}   (µs; decode, encode: thread CPU)")
        for case, body in bodies(np.random.default_rng(0)).items():
            stages = measure(loaded, body, args.calls, args.calls if "b1" in case else max(10, args.calls // 10))
            print(f"{case:<12}{len(body):>8}{stages['decode']:>9.0f}{stages['model CPU']:>11.0f}"
                  f"{stages['model wall']:>12.0f}{stages['encode']:>8.0f}"
                  f"{stages['decode'] / stages['model CPU']:>14.3f}{stages['encode'] / stages['model CPU']:>14.3f}")


if __name__ == "__main__":
    main()
