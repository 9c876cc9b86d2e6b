"""Run the model server: model manager, REST (aiohttp) and gRPC (grpcio) side by side until SIGTERM.

Models are loaded before the ports open, as TF Serving does. On SIGTERM or SIGINT both front ends stop
taking new requests, finish the ones in flight (bounded by a grace period), then the manager stops.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from keras_itl.errors import UserError
from keras_itl.serving.grpc_service import make_grpc_server
from keras_itl.serving.model_config import ModelConfig
from keras_itl.serving.model_manager import ModelManager
from keras_itl.serving.rest import make_app

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    """Where and how to listen."""

    host: str = "127.0.0.1"
    rest_port: int = 8501
    grpc_port: int = 8500
    poll_seconds: float = 1.0
    max_request_bytes: int = 64 * 1024 * 1024
    workers: int = 8
    grace_seconds: float = 5.0


async def _serve(manager: ModelManager, options: ServerOptions) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    executor = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="rest-predict")
    grpc_server = make_grpc_server(manager, f"{options.host}:{options.grpc_port}", options.workers,
                                   options.max_request_bytes)
    # No per-request access log: like TF Serving, log model events, not traffic.
    runner = web.AppRunner(make_app(manager, executor, options.max_request_bytes), handle_signals=False,
                           access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, options.host, options.rest_port).start()
        grpc_server.start()
        log.info("REST API on http://%s:%d, gRPC on %s:%d", options.host, options.rest_port, options.host,
                 options.grpc_port)
        await stop.wait()
        log.info("shutting down")
    finally:
        grpc_stopped = grpc_server.stop(options.grace_seconds)
        await runner.cleanup()
        await loop.run_in_executor(None, grpc_stopped.wait)
        executor.shutdown(wait=True)


def run_server(models: list[ModelConfig], options: ServerOptions) -> None:
    """Serve ``models`` until SIGTERM/SIGINT; raises UserError when a port cannot be bound."""
    manager = ModelManager(models, poll_seconds=options.poll_seconds)
    manager.start()
    try:
        asyncio.run(_serve(manager, options))
    except OSError as error:
        raise UserError(f"cannot start the server: {error}") from None
    finally:
        manager.stop()
