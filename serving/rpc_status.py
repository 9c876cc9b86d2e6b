"""How gRPC methods answer errors and count requests, shared by TF Serving's services and the v2 service.

A ServingError becomes the gRPC status TF Serving uses for it (``abort_on_errors``); ``counted`` records
a request in the Prometheus metrics with the status name it ended with.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypeVar

from keras_itl.serving.errors import ServingError
from keras_itl.serving.metrics import record_request

T = TypeVar("T")


def abort_on_errors(method):
    """Turn ServingErrors raised by a servicer method into the matching gRPC status."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(error.grpc_code, str(error))
    return wrapper


def counted(model_label: str, entrypoint: str, work: Callable[[], T]) -> T:
    """Run ``work`` and record it as one request of ``model_label``: status OK or its error's code name."""
    started, status = time.perf_counter(), "INTERNAL"
    try:
        result = work()
        status = "OK"
        return result
    except ServingError as error:
        status = error.grpc_code.name
        raise
    finally:
        record_request(model_label, entrypoint, status, time.perf_counter() - started)
