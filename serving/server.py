"""Run the model server: model manager, REST (aiohttp) and gRPC (grpcio) side by side until SIGTERM.

Models are loaded before the ports open, as TF Serving does. On SIGTERM or SIGINT both front ends stop
taking new requests and finish the ones in flight within ``grace_seconds``; a request still running
after that (a huge body being decoded, a slow model) does not hold the exit: the process ends at the
latest ``EXIT_MARGIN_SECONDS`` after the grace period, so an orchestrator's SIGKILL is never needed.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from keras_itl.errors import UserError
from keras_itl.serving.batching import Batcher
from keras_itl.serving.batching_parameters import BatchingOptions
from keras_itl.serving.cpu_lanes import split_cpu
from keras_itl.serving.grpc_service import make_grpc_server
from keras_itl.serving.http_server import HttpServer
from keras_itl.serving.model_config import ModelConfig
from keras_itl.serving.model_manager import LoadRetries, ModelManager
from keras_itl.serving.prediction import run_prediction
from keras_itl.serving.rest import BIG_BODY_BYTES, RestApi, RestLimits

log = logging.getLogger(__name__)

GRPC_MAX_MESSAGE_BYTES = 2**31 - 1  # TF Serving's limit (grpcio's largest), "2 GiB"
EXIT_MARGIN_SECONDS = 2.0
KEEPALIVE_SECONDS = 75.0  # idle keep-alive connections are closed after this
LINGER_SECONDS = 1.0  # after an early answer (408, 413), how long the rest of a body is read before closing


@dataclass(frozen=True)
class ServerOptions:
    """Where and how to listen, the bounds on requests, and how failed loads are retried."""

    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    poll_seconds: float = 1.0
    rest_limits: RestLimits = field(default_factory=RestLimits)
    grpc_max_message_bytes: int = GRPC_MAX_MESSAGE_BYTES
    workers: int = 8
    grace_seconds: float = 5.0
    load_retries: LoadRetries = field(default_factory=LoadRetries)
    metrics_path: str | None = None  # REST path of the Prometheus metrics; None: not served
    batching: BatchingOptions | None = None  # server-side batching; None: every request runs alone


def host_port(host: str, port: int) -> str:
    """``host:port`` for gRPC, with an IPv6 address in brackets (``[::1]:8500``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _exit_by(seconds: float) -> None:
    """End the process after ``seconds`` even if threads are still busy (a daemon timer; harmless if we exit first)."""
    def force_exit() -> None:
        log.warning("requests still running %.0fs after SIGTERM; exiting without them", seconds)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, force_exit)
    timer.daemon = True
    timer.start()


async def _serve(manager: ModelManager, options: ServerOptions, big_device: str | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    executor = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="rest-predict")
    big_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rest-big")
    batcher = Batcher(options.batching) if options.batching else None
    predict = batcher.predict if batcher else run_prediction
    grpc_server = make_grpc_server(manager, host_port(options.host, options.grpc_port), options.workers,
                                   options.grpc_max_message_bytes, predict)
    api = RestApi(manager, executor, big_executor, options.rest_limits, predict, options.metrics_path, big_device)
    # No per-request access log: like TF Serving, log model events, not traffic.
    http = HttpServer(api.handle, options.rest_limits.header_timeout, access_log=None,
                      keepalive_timeout=KEEPALIVE_SECONDS, lingering_time=LINGER_SECONDS)
    runner = web.ServerRunner(http, handle_signals=False, shutdown_timeout=options.grace_seconds)
    await runner.setup()
    try:
        await web.TCPSite(runner, options.host, options.rest_port).start()
        grpc_server.start()
        log.info("REST API on http://%s, gRPC on %s", host_port(options.host, options.rest_port),
                 host_port(options.host, options.grpc_port))
        await stop.wait()
        log.info("shutting down (grace period %gs)", options.grace_seconds)
        _exit_by(options.grace_seconds + EXIT_MARGIN_SECONDS)
    finally:
        grpc_stopped = grpc_server.stop(options.grace_seconds)
        await runner.cleanup()
        await loop.run_in_executor(None, grpc_stopped.wait)
        for pool in (executor, big_executor):
            pool.shutdown(wait=False, cancel_futures=True)
        if batcher:
            batcher.stop()


def run_server(models: list[ModelConfig], options: ServerOptions) -> None:
    """Serve ``models`` until SIGTERM/SIGINT; raises UserError when a port cannot be bound."""
    big_device = split_cpu()  # before the models load: TensorFlow's devices are made once
    if big_device:
        log.info("bodies over %d bytes run their model calls on %s, with a TensorFlow thread pool of its own",
                 BIG_BODY_BYTES, big_device)
    manager = ModelManager(models, poll_seconds=options.poll_seconds, retries=options.load_retries)
    manager.start()
    try:
        asyncio.run(_serve(manager, options, big_device))
    except OSError as error:
        raise UserError(f"cannot start the server: {error}") from None
    finally:
        manager.stop()
