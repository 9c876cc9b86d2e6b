"""Request errors of the model server, each knowing its REST status code and gRPC status code.

The REST and gRPC front ends share one prediction core; raising these from the core lets each front end
answer with the code TF Serving uses for the same mistake, without the core knowing about protocols.
"""
from __future__ import annotations

import grpc


class ServingError(Exception):
    """A request the server refuses; ``str(error)`` is the message returned to the client."""

    http_status = 500
    grpc_code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServingError):
    """Malformed body, wrong dtype or shape, bad base64, undecodable image."""

    http_status = 400
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class ServableNotFound(ServingError):
    """Unknown model, version or label."""

    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class SignatureNotFound(ServingError):
    """The model has no signature of the requested name (400 over REST, FAILED_PRECONDITION over gRPC)."""

    http_status = 400
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ServingError):
    """The server is too busy for this request now (503 over REST, UNAVAILABLE over gRPC)."""

    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE
