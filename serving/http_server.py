"""aiohttp's low-level HTTP server, hardened for the REST API: JSON errors everywhere and a header timeout.

aiohttp answers protocol-level failures (an unknown method name, an over-long request line or header,
a broken chunked body) itself, before any handler runs, with a text/plain page; here they are answered
as TF Serving answers every error, ``{"error": ...}`` JSON. aiohttp also waits for a request's headers
for as long as the client likes, so a client sending them a byte at a time (slowloris) holds a
connection forever; here a connection whose headers are not complete ``header_timeout`` seconds after
their first byte arrived is closed. (The body's read timeout is the request handler's job.)

This relies on two attributes of aiohttp's ``RequestHandler`` (``_waiter``, set while it waits for the
next request, and ``_request_count``); the REST tests exercise both behaviours.
"""
from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)


def json_response(payload: dict | bytes, status: int = 200) -> web.Response:
    """A JSON response from a dict or already-encoded JSON bytes."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return web.Response(body=body, status=status, content_type="application/json")


def json_error(status: int, message: str) -> web.Response:
    """TF Serving's error body, ``{"error": message}``."""
    return json_response({"error": message}, status)


class _Connection(RequestHandler):
    """One HTTP connection: protocol errors as JSON, and a deadline for each request's headers."""

    header_timeout = 10.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        idle, requests = self._waiter is not None, self._request_count
        super().data_received(data)
        if self._request_count != requests:
            self._cancel_header_deadline()
        elif idle and self._header_deadline is None:  # the first bytes of a request's headers
            self._header_deadline = self._loop.call_later(self.header_timeout, self._headers_overdue)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        if self._waiter is not None and not self._waiter.done():  # still no complete request
            log.info("closing a connection whose request headers took over %gs", self.header_timeout)
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """Answer a request aiohttp could not parse (or a handler crash) with a JSON error, then close."""
        if status >= 500:  # a bug in a handler: keep the traceback for the operator, not the client
            log.error("error handling %s %s", request.method, request.path, exc_info=exc)
        else:
            log.debug("HTTP error %d: %s", status, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started, cannot send the error")
        text = message or (str(exc) if exc is not None and status != 500 else "Internal server error")
        response = json_error(status, f"Malformed request: {text}" if status == 400 else text)
        response.force_close()
        return response


class HttpServer(web.Server):
    """``web.Server`` whose connections are ``_Connection``s with the given header timeout."""

    def __init__(self, handler, header_timeout: float, **kwargs):
        super().__init__(handler, **kwargs)
        self._header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        connection = _Connection(self, loop=self._loop, **self._kwargs)
        connection.header_timeout = self._header_timeout
        return connection
