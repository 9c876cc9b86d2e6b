"""Prometheus metrics under TF Serving's names, and its ``--monitoring_config_file`` format.

TF Serving exports (among others) these, which dashboards built for it query by name:

- ``:tensorflow:serving:request_count{model_name, status}``: requests by outcome (``OK`` or the error's
  gRPC code name, e.g. ``INVALID_ARGUMENT``, whichever protocol carried them);
- ``:tensorflow:serving:request_latency{model_name, API, entrypoint}``: histogram, microseconds, from
  request arrival to answer (``entrypoint`` is ``REST`` or ``GRPC``, ``API`` is ``predict``);
- ``:tensorflow:serving:runtime_latency{model_name, API, runtime}``: histogram, microseconds, of the
  model call alone;
- ``:tensorflow:cc:saved_model:load_attempt_count{model_path, status}``: version loads, ``success`` or
  ``fail``; ``:tensorflow:cc:saved_model:load_latency{model_path}``: total microseconds spent in
  successful loads;
- ``:tensorflow:serving:model_warmup_latency{model_path, status}``: histogram, microseconds, of replaying a
  version's warmup file (recorded, as in TF Serving, when the whole file was replayed: status ``OK``);
- with server-side batching, the batching session's: ``...:batching_session:queuing_latency{thread_pool_name}``
  (microseconds a request waited in the batch queue), ``...:batching_session:wrapped_run_count`` (model
  calls made for batches), and ``...:batching_session:input_batch_size``, ``processed_batch_size`` and
  ``padding_size{execution_batch_size}`` (rows per request, per model call, and padding rows added; TF
  Serving keeps these three as percentiles, here they are histograms).

The values live in one process-wide registry (as TF Serving's do) and are written by
``prometheus_client``. Counters are exposed as untyped samples under their exact names: the client
library's counter type would append ``_total``, and TF Serving's names have no suffix.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from keras_itl.errors import UserError
from keras_itl.serving.config_protos import parse_config

REGISTRY = CollectorRegistry(auto_describe=True)
# TF Serving's latency buckets: 10 us growing by 1.8x, 33 of them (up to ~2.3 hours).
LATENCY_BUCKETS_US = tuple(10 * 1.8**k for k in range(33))
DEFAULT_PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class _Count(Collector):
    """A monotonically increasing value per label set, exposed under exactly ``name``."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]):
        self._name, self._documentation, self._labelnames = name, documentation, labelnames
        self._values: dict[tuple[str, ...], float] = defaultdict(float)
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] += amount

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self._name, self._documentation, "unknown")
        with self._lock:
            for labels, value in self._values.items():
                metric.add_sample(self._name, dict(zip(self._labelnames, labels)), value)
        yield metric


def _histogram(name: str, documentation: str, labelnames: tuple[str, ...]) -> prometheus_client.Histogram:
    return prometheus_client.Histogram(name, documentation, labelnames, buckets=LATENCY_BUCKETS_US, registry=REGISTRY)


prometheus_client.disable_created_metrics()
REQUEST_COUNT = _Count(":tensorflow:serving:request_count", "The total number of requests.",
                       ("model_name", "status"))
REQUEST_LATENCY = _histogram(":tensorflow:serving:request_latency", "Distribution of wall time (in microseconds) "
                             "for Tensorflow Serving request.", ("model_name", "API", "entrypoint"))
RUNTIME_LATENCY = _histogram(":tensorflow:serving:runtime_latency", "Distribution of wall time (in microseconds) "
                             "for Tensorflow runtime.", ("model_name", "API", "runtime"))
LOAD_ATTEMPTS = _Count(":tensorflow:cc:saved_model:load_attempt_count",
                       "The number of times a SavedModel was successfully loaded.", ("model_path", "status"))
LOAD_LATENCY = _Count(":tensorflow:cc:saved_model:load_latency",
                      "Latency in microseconds for SavedModels that were successfully loaded.", ("model_path",))


WARMUP_LATENCY = _histogram(":tensorflow:serving:model_warmup_latency",
                            "Distribution of wall time (in microseconds) for warming up the model.",
                            ("model_path", "status"))
# TF Serving's queuing-latency buckets: 100 us growing by 1.2x, 52 of them (~1 second).
QUEUING_BUCKETS_US = tuple(100 * 1.2**k for k in range(52))
SIZE_BUCKETS = tuple(2**k for k in range(17))
BATCH_QUEUING_LATENCY = prometheus_client.Histogram(
    ":tensorflow:serving:batching_session:queuing_latency", "Distribution of wall time spent (in microseconds) in "
    "queuing", ("thread_pool_name",), buckets=QUEUING_BUCKETS_US, registry=REGISTRY)
WRAPPED_RUN_COUNT = _Count(":tensorflow:serving:batching_session:wrapped_run_count",
                           "Total count of run calls on the wrapped session", ())
INPUT_BATCH_SIZE = prometheus_client.Histogram(":tensorflow:serving:batching_session:input_batch_size",
                                               "Tracks the batch size distribution on the inputs.", (),
                                               buckets=SIZE_BUCKETS, registry=REGISTRY)
PROCESSED_BATCH_SIZE = prometheus_client.Histogram(":tensorflow:serving:batching_session:processed_batch_size",
                                                   "Tracks the batch size distribution on processing.", (),
                                                   buckets=SIZE_BUCKETS, registry=REGISTRY)
PADDING_SIZE = prometheus_client.Histogram(":tensorflow:serving:batching_session:padding_size",
                                           "Tracks the padding size distribution on batches.",
                                           ("execution_batch_size",),
                                           buckets=(0, *SIZE_BUCKETS), registry=REGISTRY)


def record_request(model_name: str, entrypoint: str, status: str, seconds: float, api: str = "predict") -> None:
    """Count one request and its latency."""
    REQUEST_COUNT.inc(model_name, status)
    REQUEST_LATENCY.labels(model_name, api, entrypoint).observe(seconds * 1e6)


def record_runtime(model_name: str, seconds: float, api: str = "predict") -> None:
    """The model call's share of a request."""
    RUNTIME_LATENCY.labels(model_name, api, "TF").observe(seconds * 1e6)


def record_load(model_path: Path, seconds: float | None) -> None:
    """One load attempt of a version directory; ``seconds`` is None when it failed."""
    LOAD_ATTEMPTS.inc(str(model_path), "fail" if seconds is None else "success")
    if seconds is not None:
        LOAD_LATENCY.inc(str(model_path), amount=seconds * 1e6)


def record_warmup(model_path: Path, seconds: float) -> None:
    """A version's warmup file replayed in full."""
    WARMUP_LATENCY.labels(str(model_path), "OK").observe(seconds * 1e6)


def record_queued(rows: int) -> None:
    """A request of ``rows`` rows entered a batch queue."""
    INPUT_BATCH_SIZE.observe(rows)


def record_dequeued(thread_pool_name: str, waited_seconds: list[float]) -> None:
    """Requests taken from a batch queue, and how long each waited there."""
    for seconds in waited_seconds:
        BATCH_QUEUING_LATENCY.labels(thread_pool_name).observe(seconds * 1e6)


def record_batch(rows: int, size: int) -> None:
    """One model call for a batch of ``rows`` rows padded to ``size``."""
    WRAPPED_RUN_COUNT.inc()
    PROCESSED_BATCH_SIZE.observe(size)
    PADDING_SIZE.labels(str(size)).observe(size - rows)


def exposition() -> bytes:
    """The metrics in Prometheus' text format."""
    return prometheus_client.generate_latest(REGISTRY)


def metrics_path(monitoring_config_file: str | Path | None) -> str | None:
    """The REST path serving Prometheus metrics per a text MonitoringConfig file, or None when disabled."""
    if monitoring_config_file is None:
        return None
    path = Path(monitoring_config_file)
    config = parse_config(path, "MonitoringConfig")
    if not config.prometheus_config.enable:
        return None
    served = config.prometheus_config.path or DEFAULT_PATH
    if not served.startswith("/") or served.startswith("/v1/"):
        raise UserError(f"monitoring config {path}: prometheus_config.path must start with '/' and lie outside /v1/")
    return served
